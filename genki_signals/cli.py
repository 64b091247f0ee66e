"""The ``genki`` command: one console script, verbs behind ``build_parser()``.

``main(argv)`` is testable in-process and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import genki_signals
from genki_signals.errors import GenkiError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genki", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version",
                        version=f"genki-signals {genki_signals.__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    p = verbs.add_parser("validate", help="check a spec file without running anything")
    p.add_argument("spec", type=Path, help="topology or signal-graph spec (YAML or JSON)")
    p.set_defaults(func=_cmd_validate)

    p = verbs.add_parser("demo", help="run the seed notebook's demo in-process and print it live")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GenkiError as exc:
        print(f"genki: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _cmd_validate(args: argparse.Namespace) -> int:
    from genki_signals.specfile import load_spec_file
    from genki_signals.graph import SignalGraph

    data = load_spec_file(args.spec)
    graph = SignalGraph.from_dict(data)
    print(f"{args.spec}: ok ({len(graph)} operators: {', '.join(graph.outputs)})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from genki_signals.demo import run_demo

    run_demo(duration=args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
