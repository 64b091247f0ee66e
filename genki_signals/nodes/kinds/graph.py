"""The ``graph`` kind: runs a SignalGraph (``params.operators``) over the node's inputs.

The static check builds each operator with its place in the list, so every problem points at
``params.operators[i]``, and follows the streams: which input (and timeline) each operator
reads, which timeline each output is on. ``inference`` is the same kind with ONNX Runtime
``threads`` (``nodes/kinds/inference.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from genki_signals.frames import TIMESTAMP
from genki_signals.nodes.checkpoint import CheckpointParams
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import MAIN, KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Problem, params
from genki_signals.spec_paths import PathPolicy

Operators = Annotated[tuple[Any, ...], Field(description="a list of operator specs")]

Origin = set[tuple[str, str]]  # {(upstream node, timeline)}


@params
class GraphParams:
    """``operators``: operator specs, as ``SignalGraph.to_dict`` writes them; ``checkpoint``:
    when the node saves its operators' state so a restart resumes it (``nodes/checkpoint.py``;
    by default on lossless inputs, every 50 frames or 0.5 s)."""

    operators: Operators
    checkpoint: CheckpointParams = CheckpointParams()


def _origins(ctx: KindContext) -> tuple[dict[str, Origin], set[str], list[Problem]]:
    """Each input stream -> where it comes from; the ambiguous names, reported."""
    origins: dict[str, Origin] = {}
    for u in ctx.upstreams:
        for name, line in (u.streams or {}).items():
            origins.setdefault(name, set()).add((u.node, line))
    ambiguous, problems = set(), []
    for name, where in origins.items():
        nodes = sorted({n for n, _ in where})
        if name != TIMESTAMP and len(nodes) > 1:
            ambiguous.add(name)
            problems.append(Problem("inputs", f"stream '{name}' is provided by several inputs "
                                              f"({', '.join(nodes)}): ambiguous"))
    return origins, ambiguous, problems


def build_operators(specs: tuple[Any, ...], spec_dir: Any, paths: PathPolicy | None = None
                    ) -> tuple[list[Any], dict[str, int], list[Problem]]:
    """Each operator built with its index: the operators, name -> index, and the problems.

    With ``paths`` (the spec checker), a model operator's file must be where the spec may
    point (``genki_signals.spec_paths``); it is checked before the model is opened."""
    from genki_signals.errors import OperatorError
    from genki_signals.signals.base import Operator, with_node_defaults

    base_dir = str(spec_dir) if spec_dir is not None else None
    ops: list[Any] = []
    index: dict[str, int] = {}
    problems: list[Problem] = []
    for i, spec in enumerate(specs):
        path = f"params.operators[{i}]"
        problem = _model_path_problem(spec, paths)
        if problem is not None:  # worded as the operator's own errors are
            problems.append(Problem(path, f"{spec['type']} '{spec.get('name', '?')}': "
                                          f"model {problem}"))
            continue
        try:
            op = Operator.from_dict(with_node_defaults(spec, base_dir=base_dir)
                                    if isinstance(spec, Mapping) else spec)
        except OperatorError as exc:
            problems.append(Problem(path, str(exc)))
            continue
        if op.name in index:
            first = ops[[o.name for o in ops].index(op.name)]
            problems.append(Problem(path, f"{op.describe()}: duplicate name '{op.name}' "
                                          f"(also {first.describe()})"))
            continue
        index[op.name] = i
        ops.append(op)
    return ops, index, problems


def _model_path_problem(spec: Any, paths: PathPolicy | None) -> str | None:
    """What is wrong with a model operator's ``model`` path (resolved as the operator does:
    against its own ``base_dir`` if the spec sets one, else the spec's folder)."""
    from genki_signals.signals.base import OPERATORS

    if paths is None or not isinstance(spec, Mapping) or not isinstance(spec.get("model"), str):
        return None
    cls = OPERATORS.get(spec.get("type"))  # type: ignore[arg-type]
    if cls is None or "base_dir" not in cls.node_defaults:
        return None
    own_base = spec.get("base_dir")  # else the spec's folder, which ``paths`` resolves against
    return paths.check(spec["model"], must_exist=True,
                       base=own_base if isinstance(own_base, str) and own_base else None)[1]


def graph_outputs(params: Any, ctx: KindContext) -> Outputs:
    from genki_signals.errors import GraphError
    from genki_signals.graph import SignalGraph

    known = ctx.streams_known
    origins, ambiguous, problems = _origins(ctx) if known else ({}, set(), [])
    ops, index, op_problems = build_operators(params.operators, ctx.spec_dir, ctx.paths)
    if op_problems:
        return problems + op_problems, None
    try:
        graph = SignalGraph(ops, source_keys=list(origins) if known else None)
    except GraphError as exc:
        return problems + [Problem(f"params.operators[{index[name]}]" if name in index
                                   else "params.operators", message)
                           for name, message in exc.problems], None
    if not known:
        return problems, None
    problems, outputs = _flow(graph, ctx, origins, ambiguous, index, problems)
    if outputs is not None:  # names and wiring fit: now shapes and dtypes, on zero frames
        from genki_signals.nodes.dry_run import dry_run_graph

        faults, samples = dry_run_graph(ops, ctx.upstreams, index)
        if faults:
            return problems + faults, None
        ctx.published_samples.update(samples or {})
    return problems, outputs


def _flow(graph: Any, ctx: KindContext, origins: dict[str, Origin], ambiguous: set[str],
          index: dict[str, int], problems: list[Problem]) -> Outputs:
    """Operators run per input topic: one combining two inputs (or timelines) never runs."""
    from genki_signals.graph import MAIN as GRAPH_MAIN

    first = (ctx.upstreams[0].node, MAIN)  # where timestamp-only operators run
    op_origin = {k: v for k, v in origins.items() if k != TIMESTAMP and k not in ambiguous}
    single = len(ctx.upstreams) == 1

    def line_of(where: Origin) -> str:
        # With several inputs, each input's main timeline is published as '<input node>'.
        node, line = sorted(where)[0] if where else first
        return node if line == MAIN and not single else line

    # a graph node publishes ``timestamp`` and its operators' outputs, not its inputs
    outputs: dict[str, str] = {TIMESTAMP: MAIN}
    for op in graph.operators:
        where = set().union(*(op_origin.get(i, set()) for i in op.inputs if i != TIMESTAMP))
        if not where and all(i == TIMESTAMP for i in op.inputs):
            where = {first}
        if len(where) > 1:
            sources = ", ".join(f"{n}/{t}" for n, t in sorted(where))
            problems.append(Problem(f"params.operators[{index[op.name]}]", (
                f"{op.describe()} combines streams from different inputs or timelines "
                f"({sources}); join them with an aligner first")))
        op_origin[op.name] = where
        own = graph.timeline_of(op.name)
        outputs[op.name] = own if own != GRAPH_MAIN else line_of(where)
    return problems, (None if problems else outputs)


def build_graph(params: Any, config: NodeConfig, threads: int | None = None) -> NodeLogic:
    from genki_signals.nodes.graph_node import GraphNodeLogic

    return GraphNodeLogic(list(params.operators),
                          upstreams={e.node: list(e.streams) for e in config.inputs},
                          threads=threads, base_dir=config.spec_dir)


KIND = NodeKind(kind="graph", params=GraphParams, build=build_graph, inputs="required",
                publishes=True, outputs=graph_outputs, order=1,
                doc="runs a SignalGraph (params.operators) over its inputs")
