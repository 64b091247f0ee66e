"""Write the deterministic ONNX models: the ones the shipped specs use, or every demo/test model.

A thin CLI over ``genki_signals.testing.onnx_builders`` (which tests and specs import directly)::

    python tools/make_models.py specs/models          # rebuilds specs/models (byte-identical)
    python tools/make_models.py DIRECTORY --all        # also the GRU, CNN and MLP test models

By default only the models that the specs in ``specs/`` load are written (``motion_gru.onnx``),
so rebuilding ``specs/models`` leaves no untracked files behind; ``--all`` adds the demo/test
models (``gru.onnx``, ``cnn.onnx``, ``mlp.onnx``) that tests build for themselves.
Needs the ``onnx`` package; nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genki_signals.testing.onnx_builders import make_motion_gru, make_swipe_cnn, write_all

SHIPPED = {"motion_gru": make_motion_gru, "swipe_cnn": make_swipe_cnn}
"""The models the specs in ``specs/`` use: name -> builder (``<name>.onnx``)."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="models")
    parser.add_argument("--all", action="store_true",
                        help="also write the GRU, CNN and MLP demo/test models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --all models")
    args = parser.parse_args(argv)
    if args.all:
        paths = write_all(args.directory, seed=args.seed)
    else:
        directory = Path(args.directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, build in SHIPPED.items():
            paths[name] = directory / f"{name}.onnx"
            build(paths[name])
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
