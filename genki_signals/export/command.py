"""``genki export-graph``: write the ONNX model of a graph node of a spec (or of a graph spec).

The graph's input streams are the names its operators read that no operator writes; each is a
scalar stream unless ``--shape NAME=D[,D...]`` says otherwise (a spec does not know sample
shapes). The outputs are ``--outputs`` or every operator output.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from genki_signals.errors import GraphError
from genki_signals.export.builder import ExportError
from genki_signals.graph import SignalGraph
from genki_signals.signals.base import with_node_defaults
from genki_signals.specfile import SpecError, load_spec_file

__all__ = ["add_verb", "graph_from_spec", "run"]

GRAPH_KINDS = ("graph", "inference")


def add_verb(verbs: Any) -> None:
    p = verbs.add_parser("export-graph", help="write a graph node of a spec as a streaming "
                                              "ONNX model (chunk + state in, outputs + state out)")
    p.add_argument("spec", type=Path, help="topology spec or signal-graph spec (YAML or JSON)")
    p.add_argument("node", nargs="?", help="id of the graph node (topology specs)")
    p.add_argument("--onnx", type=Path, required=True, help="the model file to write")
    p.add_argument("--outputs", help="comma-separated streams to output (default: every "
                                     "operator output)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=D[,D...]",
                   help="per-sample shape of an input stream (default: scalar); repeatable")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def graph_from_spec(path: Path, node: str | None) -> SignalGraph:
    """The SignalGraph of ``node`` in a topology spec, or of a bare signal-graph spec."""
    data = load_spec_file(path)
    base_dir = str(Path(path).resolve().parent)
    if isinstance(data, dict) and "nodes" in data:
        if node is None:
            raise SpecError(f"{path}: a topology spec: name the graph node to export")
        nodes = [n for n in data["nodes"] if isinstance(n, dict)]
        found = next((n for n in nodes if n.get("id") == node), None)
        graphs = [str(n.get("id")) for n in nodes if n.get("kind") in GRAPH_KINDS]
        if found is None or found.get("kind") not in GRAPH_KINDS:
            raise SpecError(f"{path}: no graph node '{node}' (graph nodes: "
                            f"{', '.join(graphs) or 'none'})")
        operators = (found.get("params") or {}).get("operators")
        where = f"{path}: node '{node}'"
    elif isinstance(data, dict) and "operators" in data:
        if node is not None:
            raise SpecError(f"{path}: a signal-graph spec has no nodes (got node '{node}')")
        operators, where = data["operators"], str(path)
    else:
        raise SpecError(f"{path}: neither a topology spec (top-level 'nodes') nor a "
                        f"signal-graph spec (top-level 'operators')")
    if not isinstance(operators, list):
        raise SpecError(f"{where}: field 'params.operators' must be a list")
    specs = [with_node_defaults(o, base_dir=base_dir, threads=1) if isinstance(o, dict) else o
             for o in operators]
    try:
        return SignalGraph.from_dict({"operators": specs})
    except GraphError as exc:
        raise SpecError(f"{where}: {exc}") from exc


def _shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    out = {}
    for item in items:
        name, _, dims = item.partition("=")
        try:
            out[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise SpecError(f"--shape {item!r}: expected NAME=D[,D...] with integer sizes") \
                from None
    return out


def run(args: argparse.Namespace) -> int:
    graph = graph_from_spec(args.spec, args.node)
    written = set(graph.outputs)
    sources = list(dict.fromkeys(i for op in graph.operators for i in op.inputs
                                 if i not in written))
    shapes = _shapes(args.shape)
    unknown = sorted(set(shapes) - set(sources))
    if unknown:
        raise ExportError(f"--shape names stream(s) the graph does not read: "
                          f"{', '.join(unknown)} (inputs: {', '.join(sources)})")
    outputs = args.outputs.split(",") if args.outputs else graph.outputs
    path = graph.to_onnx(args.onnx, inputs={k: shapes.get(k, ()) for k in sources},
                         outputs=outputs, opset=args.opset)
    print(f"{path}: inputs {', '.join(sources)}; outputs {', '.join(outputs)}")
    return 0
