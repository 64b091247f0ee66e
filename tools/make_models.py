"""Write the deterministic demo/test ONNX models (GRU, 1-D CNN, MLP) to a directory.

A thin CLI over ``genki_signals.models.onnx_builders`` (which tests and specs import directly)::

    python tools/make_models.py [DIRECTORY] [--seed 0]      # default directory: ./models

Needs the ``onnx`` package; nothing is downloaded.
"""

from __future__ import annotations

import argparse

from pathlib import Path

from genki_signals.models.onnx_builders import make_swipe_cnn, write_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="models")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for kind, path in write_all(args.directory, seed=args.seed).items():
        print(f"{kind}: {path}")
    swipe = Path(args.directory) / "swipe_cnn.onnx"  # the wave-swipe demo's model
    make_swipe_cnn(swipe)
    print(f"swipe_cnn: {swipe}")


if __name__ == "__main__":
    main()
