"""The ``genki`` command: one console script, verbs behind ``build_parser()``.

``main(argv)`` is testable in-process and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import genki_signals
from genki_signals.errors import GenkiError

if TYPE_CHECKING:
    from genki_signals.launch.forkserver import ForkServer


DESCRIPTION = (
    "Genki Signals: real-time signal processing and machine learning on live sensor streams. "
    "Validate and launch a topology of sources, signal graphs, models and sinks (each its own "
    "process), attach to a running one to watch, plot or record it, and replay recordings.")


@dataclass(frozen=True)
class VerbGroup:
    """Verbs that one module adds to the parser (``module.function(verbs)``), imported only
    when one of them is used or when every verb is listed (``genki --help``): ``genki launch``
    never imports the Foxglove, plot, ONNX export or recording commands."""

    module: str
    function: str
    verbs: tuple[str, ...]

    def add_to(self, verbs: argparse._SubParsersAction) -> None:
        getattr(importlib.import_module(self.module), self.function)(verbs)


VERB_GROUPS = (
    VerbGroup("genki_signals.launch.commands", "add_verbs",
              ("launch", "replay", "topics", "echo", "top")),
    VerbGroup("genki_signals.record.commands", "add_verbs",
              ("record", "inspect", "export", "recover")),
    # plot: a live browser dashboard of a running topology
    VerbGroup("genki_signals.plot.cli", "add_verb", ("plot",)),
    # foxglove: live view in Foxglove of a running topology
    VerbGroup("genki_signals.foxglove.cli", "add_verb", ("foxglove",)),
    # export-graph: a graph node as a streaming ONNX model
    VerbGroup("genki_signals.export.command", "add_verb", ("export-graph",)),
    # keys new: CurveZMQ key pairs for links between hosts
    VerbGroup("genki_signals.bus.keys_cli", "add_verb", ("keys",)),
)
BUILT_IN_VERBS = ("validate", "graph", "schema", "demo")  # added by build_parser itself
_VERB_GROUP = {name: group for group in VERB_GROUPS for name in group.verbs}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The ``genki`` parser; given the ``verb`` about to run, with only its module's verbs
    besides the built-in ones (every verb when ``verb`` is None or not a known verb)."""
    parser = argparse.ArgumentParser(prog="genki", description=DESCRIPTION,
                                     epilog="Run `genki VERB --help` for a verb's options.")
    parser.add_argument("--version", action="version",
                        version=f"genki-signals {genki_signals.__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    p = verbs.add_parser("validate", help="check a spec file without running anything")
    p.add_argument("spec", type=Path, help="topology or signal-graph spec (YAML or JSON)")
    p.set_defaults(func=_cmd_validate)

    p = verbs.add_parser("graph", help="print a topology as a Mermaid flowchart")
    p.add_argument("spec", type=Path, help="topology spec (YAML or JSON)")
    p.set_defaults(func=_cmd_graph)

    p = verbs.add_parser("schema", help="print the JSON Schema of topology spec files "
                                        "(for editors: genki schema > spec.schema.json)")
    p.set_defaults(func=_cmd_schema)

    every = verb not in _VERB_GROUP and verb not in BUILT_IN_VERBS  # --help, a typo, None
    for group in VERB_GROUPS:
        if every or _VERB_GROUP.get(verb) is group:
            group.add_to(verbs)

    p = verbs.add_parser("demo", help="run the seed notebook's demo in-process and print it live")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ``genki launch``: the nodes' fork server starts first, so that its imports (numpy, zmq,
    # the node modules) run while this process imports the CLI and checks the spec. It is not a
    # node: nothing is forked from it before the spec has passed its check.
    fork_server = _early_fork_server(argv)
    try:
        parser = build_parser(argv[0] if argv else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        args.fork_server = fork_server  # cmd_launch hands it to its launcher
        try:
            return int(args.func(args) or 0)
        except GenkiError as exc:
            print(f"genki: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    finally:
        if fork_server is not None:
            fork_server.close()  # a no-op once the launcher has closed it


def _early_fork_server(argv: list[str]) -> ForkServer | None:
    """The fork server of a ``genki launch`` (None for any other verb, for ``--help``, or when
    nodes are spawned: ``GENKI_NODE_START=spawn``)."""
    if not argv or argv[0] != "launch" or "-h" in argv or "--help" in argv:
        return None
    from genki_signals.launch.forkserver import start_fork_server, start_method

    try:
        if start_method() != "fork":
            return None
    except ValueError:
        return None  # the launcher reports it
    return start_fork_server(spec=_launch_spec_argument(argv))


# ``genki launch`` options that take a value (``launch/commands.py``; a test keeps them in step)
LAUNCH_VALUE_OPTIONS = frozenset({"--duration", "--grace", "--run-dir", "--address", "--host",
                                  "--spec-data", "--session", "--skip"})


def _launch_spec_argument(argv: list[str]) -> str | None:
    """The spec file of ``genki launch ARGS`` before the parser exists (it is built after the
    fork server has been forked): the first positional argument. For the fork server's
    preload only (``preload_spec_kinds``), so a wrong guess costs nothing but time."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "--":
            return next(args, None)
        if arg in LAUNCH_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _cmd_validate(args: argparse.Namespace) -> int:
    """A topology spec (top-level ``nodes``) or a bare signal-graph spec (``operators``)."""
    from genki_signals.errors import GraphError
    from genki_signals.graph import SignalGraph
    from genki_signals.launch.spec import parse_topology
    from genki_signals.specfile import SpecError, load_spec_file

    data = load_spec_file(args.spec)
    if isinstance(data, dict) and "nodes" in data:
        try:
            spec = parse_topology(data, path=args.spec)
        except SpecError as exc:
            return _print_problems(args.spec, exc)
        nodes = ", ".join(f"{n.id} ({n.kind})" for n in spec.nodes)
        print(f"{args.spec}: ok (topology '{spec.name}': {len(spec.nodes)} nodes: {nodes})")
        return 0
    if isinstance(data, dict) and "operators" in data:
        try:
            graph = SignalGraph.from_dict(data)
        except GraphError as exc:
            raise SpecError(f"{args.spec}: {exc}") from exc
        print(f"{args.spec}: ok (signal graph: {len(graph)} operators: "
              f"{', '.join(graph.outputs)})")
        return 0
    raise SpecError(f"{args.spec}: neither a topology spec (top-level 'nodes') nor a "
                    f"signal-graph spec (top-level 'operators')")


def _cmd_graph(args: argparse.Namespace) -> int:
    from genki_signals.launch.spec import load_topology
    from genki_signals.specfile import SpecError

    try:
        spec = load_topology(args.spec)
    except SpecError as exc:
        return _print_problems(args.spec, exc)
    print(spec.mermaid(), end="")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    import json

    from genki_signals.launch.schema import topology_schema

    print(json.dumps(topology_schema(), indent=2))
    return 0


def _print_problems(spec: Path, exc: Exception) -> int:
    """Every problem on its own stderr line (each names file, node and field), then a count."""
    problems = str(exc).splitlines()
    print("\n".join(problems), file=sys.stderr)
    print(f"genki: {spec}: {len(problems)} problem(s)", file=sys.stderr)
    return 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from genki_signals.demo import run_demo

    run_demo(duration=args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
