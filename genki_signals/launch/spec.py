"""Topology specs: a YAML/JSON file parsed into typed, completely validated objects.

``load_topology(path)`` / ``parse_topology(data)`` check everything that can be checked without
starting a process, and raise one ``SpecError`` listing every problem, one per line::

    demo.yaml: node 'derived': field 'params.operators[1]': Sum 'x': input 1 'nois' is ...
    demo.yaml: field 'nodes': must be a non-empty list of nodes

Checks, in order (later checks skip what earlier ones found broken, so errors never cascade):

1. structure of every node: unknown keys, required fields, types, id pattern, duplicate ids,
   kind, inputs (policy, maxlen), restart policy, cpu indices, endpoint form;
2. references: dangling inputs, inputs from a node that publishes nothing, cycles (named),
   endpoint clashes, ``clock_leader``;
3. kind-specific ``params``, node by node in topological order, with the stream names flowing
   along the edges (``NODE_KINDS``): a node whose upstream has problems gets its stream checks
   skipped rather than bogus errors.

The stream names each node publishes are kept (``TopologySpec.output_streams``) for the launcher.
Nothing here starts a process or a thread.
"""

from __future__ import annotations

import copy
import graphlib
import ipaddress
import math
import numbers
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from genki_signals.frames import TIMESTAMP
from genki_signals.specfile import SpecError, load_spec_file

__all__ = [
    "TopologySpec", "NodeSpec", "InputSpec", "RestartPolicy", "TopologySpecError",
    "NodeKind", "KindContext", "Upstream", "NODE_KINDS", "SINK_TYPES",
    "load_topology", "parse_topology",
]

ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # topology name: a safe file name
TOP_KEYS = ("name", "nodes", "clock_leader")
NODE_KEYS = ("id", "kind", "params", "inputs", "host", "cpu", "restart", "endpoint")
INPUT_KEYS = ("node", "policy", "maxlen")
RESTART_KEYS = ("policy", "max_restarts", "window", "backoff")
POLICIES = ("latest", "drop_oldest", "lossless")
RESTART_POLICIES = ("never", "on-failure", "always")
DEFAULT_POLICY = "drop_oldest"
DEFAULT_MAXLEN = 1000
DEFAULT_HOST = "localhost"
LAUNCHER = "launcher"  # the clock_leader value naming the launcher itself
MAIN = "main"  # the timeline name of a node's main timeline

Policy = Literal["latest", "drop_oldest", "lossless"]
RestartName = Literal["never", "on-failure", "always"]


# ====================================================================== the typed model
@dataclass(frozen=True)
class InputSpec:
    """One input edge: the upstream node and the queue policy on this edge."""

    node: str
    policy: Policy = DEFAULT_POLICY
    maxlen: int = DEFAULT_MAXLEN  # the bound of a drop_oldest queue

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "policy": self.policy, "maxlen": self.maxlen}


@dataclass(frozen=True)
class RestartPolicy:
    """When the launcher restarts a node: the policy, a budget per window, the first backoff."""

    policy: RestartName = "on-failure"
    max_restarts: int = 5  # at most this many restarts ...
    window: float = 60.0  # ... within this many seconds
    backoff: float = 0.5  # first delay in seconds, doubled per consecutive failure

    def to_dict(self) -> str | dict[str, Any]:
        """The policy name alone when the rest is default, else the mapping form."""
        if (self.max_restarts, self.window, self.backoff) == (5, 60.0, 0.5):
            return self.policy
        return {"policy": self.policy, "max_restarts": self.max_restarts,
                "window": self.window, "backoff": self.backoff}


@dataclass(frozen=True)
class NodeSpec:
    """One node of a topology: one OS process."""

    id: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    inputs: tuple[InputSpec, ...] = ()
    host: str = DEFAULT_HOST
    cpu: tuple[int, ...] | None = None  # core indices for affinity
    restart: RestartPolicy = RestartPolicy()
    endpoint: str | None = None  # explicit publish endpoint; else the launcher picks ipc://

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind,
                               "params": copy.deepcopy(self.params)}
        if self.inputs:
            out["inputs"] = [i.to_dict() for i in self.inputs]
        if self.host != DEFAULT_HOST:
            out["host"] = self.host
        if self.cpu is not None:
            out["cpu"] = list(self.cpu)
        out["restart"] = self.restart.to_dict()
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        return out


@dataclass(frozen=True)
class TopologySpec:
    """A validated topology: nodes in file order, plus what validation learned about streams."""

    name: str
    nodes: tuple[NodeSpec, ...]
    path: Path | None = None
    clock_leader: str | None = None  # a node id or 'launcher' (None: the launcher leads)
    streams: Mapping[str, Mapping[str, str]] = field(
        default_factory=dict, compare=False, hash=False, repr=False)
    """Per node: each output stream -> its timeline (``main`` or the root operator's name)."""

    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"topology '{self.name}' has no node '{node_id}' "
                       f"(nodes: {', '.join(n.id for n in self.nodes)})")

    def downstream(self, node_id: str) -> tuple[NodeSpec, ...]:
        """The nodes that read ``node_id``'s output, in file order."""
        return tuple(n for n in self.nodes if any(i.node == node_id for i in n.inputs))

    def output_streams(self, node_id: str) -> list[str]:
        """The stream names ``node_id`` publishes (``timestamp`` first; none for a sink)."""
        self.node(node_id)
        return list(self.streams.get(node_id, {}))

    def output_timelines(self, node_id: str) -> dict[str, str]:
        """Each output stream of ``node_id`` -> its timeline (``main`` or a root operator)."""
        self.node(node_id)
        return dict(self.streams.get(node_id, {}))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that ``parse_topology`` turns back into an equal spec."""
        out: dict[str, Any] = {"name": self.name}
        if self.clock_leader is not None:
            out["clock_leader"] = self.clock_leader
        out["nodes"] = [n.to_dict() for n in self.nodes]
        return out

    def mermaid(self) -> str:
        """A Mermaid ``flowchart LR``: one box per node (``id<br/>kind``), edges by policy."""
        lines = ["flowchart LR"]
        for n in self.nodes:
            lines.append(f'    {_mermaid_id(n.id)}["{n.id}<br/>{n.kind}"]')
        for n in self.nodes:
            for i in n.inputs:
                lines.append(f"    {_mermaid_id(i.node)} -->|{i.policy}| {_mermaid_id(n.id)}")
        return "\n".join(lines) + "\n"


def _mermaid_id(node_id: str) -> str:
    # A prefix keeps ids like 'end' or 'x1' from reading as Mermaid keywords or edge heads.
    return f"n_{node_id}"


class TopologySpecError(SpecError):
    """An invalid topology spec; ``problems`` holds one line per problem (also the message)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


# ====================================================================== node kinds
@dataclass(frozen=True)
class Upstream:
    """An input as a kind check sees it: its node and what it publishes (None: unknown)."""

    node: str
    streams: Mapping[str, str] | None  # stream -> timeline, None when the upstream is broken


@dataclass(frozen=True)
class KindContext:
    """What a kind's static check gets: the node's params, its inputs, the spec's directory."""

    node_id: str
    params: Any
    upstreams: tuple[Upstream, ...]
    spec_dir: Path | None

    @property
    def streams_known(self) -> bool:
        return all(u.streams is not None for u in self.upstreams)

    def available(self) -> dict[str, str]:
        """Every stream name on the inputs -> the first input node providing it."""
        out: dict[str, str] = {}
        for u in self.upstreams:
            for name in u.streams or {}:
                out.setdefault(name, u.node)
        return out


KindCheck = Callable[[KindContext], tuple[list[str], dict[str, str] | None]]
"""A kind's check: problems (``field '<path>': <message>``) and the outputs (stream ->
timeline), or None for the outputs when they cannot be known."""


@dataclass(frozen=True)
class NodeKind:
    """What validation knows about a node kind."""

    inputs: Literal["none", "required", "optional"]  # "none": a producer (a source)
    publishes: bool  # False: nothing may read from it and it binds no endpoint (a sink)
    check: KindCheck
    doc: str = ""
    normalize: Callable[[Any], Any] | None = None  # params as written -> params as stored
    default_policy: Policy = DEFAULT_POLICY  # an input edge's policy when the spec names none


def _f(path: str, message: str) -> str:
    return f"field '{path}': {message}"


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_source(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.data_sources.registry import check_source_params

    problems, names = check_source_params(ctx.params)
    return problems, (None if problems else {n: MAIN for n in names})


def _check_inference(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    return _check_graph(ctx, inference=True)


def _check_graph(ctx: KindContext, inference: bool = False
                 ) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.errors import GraphError
    from genki_signals.graph import MAIN as GRAPH_MAIN, SignalGraph

    params = ctx.params
    if not isinstance(params, Mapping):
        return [_f("params", f"must be a mapping {{operators: [...]}}, got {params!r}")], None
    allowed = ("operators", "threads") if inference else ("operators",)
    problems = [_f(f"params.{k}", f"unknown field (allowed: {', '.join(allowed)})")
                for k in params if k not in allowed]
    threads = params.get("threads")
    if "threads" in params and (not _is_int(threads) or threads < 1):
        problems.append(_f("params.threads", f"must be an integer >= 1, got {threads!r}"))
    operators = params.get("operators")
    if "operators" not in params:
        return problems + [_f("params.operators", "missing required field")], None
    if not isinstance(operators, list):
        return problems + [_f("params.operators", f"must be a list of operator specs, "
                                                  f"got {operators!r}")], None
    known = ctx.streams_known
    origins: dict[str, set[tuple[str, str]]] = {}  # stream -> {(upstream node, timeline)}
    ambiguous: set[str] = set()
    if known:
        for u in ctx.upstreams:
            for name, line in (u.streams or {}).items():
                origins.setdefault(name, set()).add((u.node, line))
        for name, where in origins.items():
            nodes = sorted({n for n, _ in where})
            if name != TIMESTAMP and len(nodes) > 1:
                ambiguous.add(name)
                problems.append(_f("inputs", f"stream '{name}' is provided by several inputs "
                                             f"({', '.join(nodes)}): ambiguous"))
    try:
        from genki_signals.signals.inference import with_model_defaults

        base_dir = str(ctx.spec_dir) if ctx.spec_dir is not None else None
        operators = [with_model_defaults(op, None, base_dir) if isinstance(op, Mapping) else op
                     for op in operators]
        graph = SignalGraph.from_dict({"operators": operators},
                                      source_keys=list(origins) if known else None)
    except GraphError as exc:
        return problems + _graph_problems(exc, operators), None
    if not known:
        return problems, None
    # Operators run per input topic: one combining two inputs (or two timelines) never runs.
    first = (ctx.upstreams[0].node, MAIN)  # where timestamp-only operators run
    op_origin: dict[str, set[tuple[str, str]]] = {
        k: v for k, v in origins.items() if k != TIMESTAMP and k not in ambiguous}
    index = _operator_index(operators)
    single = len(ctx.upstreams) == 1

    def line_of(where: set[tuple[str, str]]) -> str:
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
            path = f"params.operators[{index[op.name]}]" if op.name in index \
                else "params.operators"
            sources = ", ".join(f"{n}/{t}" for n, t in sorted(where))
            problems.append(_f(path, f"{op.describe()} combines streams from different inputs "
                                     f"or timelines ({sources}); join them with an aligner "
                                     f"first"))
        op_origin[op.name] = where
        own = graph.timeline_of(op.name)
        outputs[op.name] = own if own != GRAPH_MAIN else line_of(where)
    return problems, (None if problems else outputs)


def _operator_index(operators: list[Any], last: bool = False) -> dict[str, int]:
    """Operator output name (explicit or default) -> its first (or last) index in the list."""
    from genki_signals.errors import OperatorError
    from genki_signals.signals.base import Operator

    names: dict[str, int] = {}
    for i, spec in enumerate(operators):
        try:
            name = Operator.from_dict(spec).name
        except (OperatorError, TypeError, ValueError):
            continue
        if last or name not in names:
            names[name] = i
    return names


def _graph_problems(exc: Exception, operators: list[Any]) -> list[str]:
    """One problem per line of a GraphError, pointing at the operator when it can."""
    names, later = _operator_index(operators), _operator_index(operators, last=True)
    lines = [ln.strip() for ln in str(exc).splitlines()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    out = []
    for line in lines:
        m = re.match(r"operators\[(\d+)\]: (.*)$", line)
        if m:
            out.append(_f(f"params.operators[{m[1]}]", m[2]))
            continue
        m = re.match(r"\w+ '([A-Za-z_]\w*)'", line)
        index = later if m and ": duplicate name " in line else names  # blame the repeat
        path = f"params.operators[{index[m[1]]}]" if m and m[1] in index else "params.operators"
        out.append(_f(path, line))
    return out


@dataclass(frozen=True)
class SinkType:
    """A sink ``params.type``: its allowed fields and which are required."""

    fields: tuple[str, ...]
    required: tuple[str, ...] = ()
    doc: str = ""
    check: Callable[[Mapping[str, Any], list[str] | None], list[str]] | None = None
    """Type-specific checks: (params, input streams or None) -> problems."""


def _check_plot_sink(params: Mapping[str, Any], available: list[str] | None) -> list[str]:
    from genki_signals.plot.node import check_plot_params

    return check_plot_params(params, available)


def _check_lsl_sink(params: Mapping[str, Any], available: list[str] | None) -> list[str]:
    from genki_signals.nodes.lsl_sink import check_lsl_sink

    return check_lsl_sink(params, available)


def _check_foxglove_sink(params: Mapping[str, Any], available: list[str] | None) -> list[str]:
    from genki_signals.foxglove.sink import check_foxglove_sink

    return check_foxglove_sink(params, available)


SINK_TYPES: dict[str, SinkType] = {
    "printer": SinkType(("keys", "every"), doc="prints the last sample of every Nth frame"),
    "csv": SinkType(("path", "keys"), ("path",),
                    doc="appends every sample to a CSV file (relative to the spec's directory)"),
    "null": SinkType((), doc="discards everything (benchmarks)"),
    "plot": SinkType(("panels", "keys", "host", "port", "fps", "history", "title"),
                     doc="serves a live browser dashboard of its inputs (genki_signals.plot)",
                     check=_check_plot_sink),
    "lsl": SinkType(("keys", "name", "content_type", "nominal_rate", "format", "source_id"),
                    doc="publishes its inputs as Lab Streaming Layer outlets "
                        "(genki_signals.nodes.lsl_sink)",
                    check=_check_lsl_sink),
    "foxglove": SinkType(("keys", "host", "port", "topics"),
                         doc="serves its inputs live over the Foxglove WebSocket protocol "
                             "(genki_signals.foxglove)",
                         check=_check_foxglove_sink),
}


def _check_sink(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    params = ctx.params
    if not isinstance(params, Mapping):
        return [_f("params", f"must be a mapping with a 'type' ({', '.join(SINK_TYPES)}), "
                             f"got {params!r}")], None
    type_name = params.get("type")
    if type_name not in SINK_TYPES:
        what = "missing required field" if "type" not in params \
            else f"unknown sink type {type_name!r}"
        return [_f("params.type", f"{what} (known: {', '.join(SINK_TYPES)})")], None
    sink = SINK_TYPES[type_name]
    allowed = ("type", *sink.fields)
    problems = [_f(f"params.{k}", f"unknown field (allowed: {', '.join(allowed)})")
                for k in params if k not in allowed]
    problems += [_f(f"params.{k}", "missing required field")
                 for k in sink.required if k not in params]
    if "every" in params and (not _is_int(params["every"]) or params["every"] < 1):
        problems.append(_f("params.every", f"must be an integer >= 1, got {params['every']!r}"))
    if "path" in params:
        path = params["path"]
        if not isinstance(path, str) or not path:
            problems.append(_f("params.path", f"must be a non-empty string, got {path!r}"))
        else:
            resolved = Path(path) if Path(path).is_absolute() or ctx.spec_dir is None \
                else ctx.spec_dir / path
            if resolved.is_dir():
                problems.append(_f("params.path", f"{str(resolved)!r} is a directory"))
    if "keys" in params:
        keys = params["keys"]
        if not isinstance(keys, list) or not keys or \
                not all(isinstance(k, str) for k in keys):
            problems.append(_f("params.keys", f"must be a non-empty list of stream names, "
                                              f"got {keys!r}"))
        elif ctx.streams_known:
            available = ctx.available()
            for i, key in enumerate(keys):
                if key not in available:
                    problems.append(_f(f"params.keys[{i}]", (
                        f"stream '{key}' is not published upstream "
                        f"(available: {', '.join(available)})")))
    if sink.check is not None:
        problems += sink.check(params, list(ctx.available()) if ctx.streams_known else None)
    return problems, {}


_CUSTOM_KEYS = ("class", "args")


def _check_custom(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    """The class must import and accept ``args``; what it publishes is not known statically."""
    import inspect

    from genki_signals.nodes.kinds import load_logic_class

    params = ctx.params
    if not isinstance(params, Mapping):
        return [_f("params", f"must be a mapping {{class: 'package.module:Class', args: {{}}}}, "
                             f"got {params!r}")], None
    problems = [_f(f"params.{k}", f"unknown field (allowed: {', '.join(_CUSTOM_KEYS)})")
                for k in params if k not in _CUSTOM_KEYS]
    args = params.get("args", {})
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        problems.append(_f("params.args", f"must be a mapping of keyword arguments, "
                                          f"got {args!r}"))
        args = None
    if "class" not in params:
        return problems + [_f("params.class", "missing required field")], None
    if not isinstance(params["class"], str):
        return problems + [_f("params.class", f"must be 'package.module:Class', "
                                              f"got {params['class']!r}")], None
    try:  # imports the user's module: its top level runs now, in the validating process
        cls = load_logic_class(params["class"])
    except Exception as exc:  # noqa: BLE001 - any import failure is a problem to report
        return problems + [_f("params.class", f"{type(exc).__name__}: {exc}")], None
    if args is not None:
        try:
            inspect.signature(cls).bind(**args)
        except TypeError as exc:
            problems.append(_f("params.args", f"{params['class']}: {exc}"))
    return problems, None


def _check_recorder(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.record.spec_checks import check_recorder

    return check_recorder(ctx)


def _check_replay(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.record.spec_checks import check_replay

    return check_replay(ctx)


def _check_aligner(ctx: KindContext) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.nodes.aligner_node import check_aligner_params

    return check_aligner_params(ctx)


def _normalize_sink(params: Any) -> Any:
    # YAML reads a bare ``type: null`` as None; the user meant the null sink.
    if isinstance(params, Mapping) and "type" in params and params["type"] is None:
        return {**params, "type": "null"}
    return params


NODE_KINDS: dict[str, NodeKind] = {
    "source": NodeKind(inputs="none", publishes=True, check=_check_source,
                       doc="produces frames (params.type names a source type)"),
    "graph": NodeKind(inputs="required", publishes=True, check=_check_graph,
                      doc="runs a SignalGraph (params.operators) over its inputs"),
    "sink": NodeKind(inputs="required", publishes=False, check=_check_sink,
                     doc="consumes frames (params.type: printer, csv, null, plot, lsl, foxglove)",
                     normalize=_normalize_sink),
    "inference": NodeKind(inputs="required", publishes=True, check=_check_inference,
                          doc="a graph of model operators (params.operators) with "
                              "params.threads ONNX Runtime threads per model; publishes "
                              "EventTrigger events on <id>/events"),
    "custom": NodeKind(inputs="optional", publishes=True, check=_check_custom,
                       doc="any NodeLogic subclass by import path (params.class, params.args)"),
    "aligner": NodeKind(inputs="required", publishes=True, check=_check_aligner,
                        doc="joins follower inputs onto the leader input's timestamps "
                            "(params.leader, followers: hold | linear, max_lag)"),
    "recorder": NodeKind(inputs="required", publishes=False, check=_check_recorder,
                         doc="stores its inputs' messages as they crossed the bus in an MCAP "
                             "recording (params.path); inputs lossless unless stated",
                         default_policy="lossless"),
    "replay": NodeKind(inputs="none", publishes=True, check=_check_replay,
                       doc="publishes a recorded node's frames (params.path, node, speed, "
                           "start, loop)"),
}
"""Node kinds a spec may name. Later: inference, replay, recorder, plot, aligner."""


# ====================================================================== parsing
class _Problems:
    """Collects problems and formats them as ``<file>: node '<id>': field '<path>': ...``."""

    def __init__(self, file: str) -> None:
        self.file = file
        self._items: list[tuple[int, int, str]] = []  # (node index or -1, seq, text)
        self.by_node: dict[int, int] = {}

    def top(self, path: str, message: str) -> None:
        self._items.append((-1, len(self._items), f"{self.file}: field '{path}': {message}"))

    def node(self, index: int, node_id: str | None, path: str, message: str) -> None:
        if node_id is None:  # no usable id: locate the node by its position
            where = f"nodes[{index}].{path}" if path else f"nodes[{index}]"
            text = f"{self.file}: field '{where}': {message}"
        else:
            text = f"{self.file}: node '{node_id}': field '{path}': {message}"
        self._items.append((index, len(self._items), text))
        self.by_node[index] = self.by_node.get(index, 0) + 1

    def node_raw(self, index: int, node_id: str | None, problem: str) -> None:
        """A checker's ``field '<path>': <message>`` string."""
        m = re.match(r"field '([^']*)': (.*)$", problem, re.DOTALL)
        path, message = (m[1], m[2]) if m else ("params", problem)
        self.node(index, node_id, path, message)

    def __bool__(self) -> bool:
        return bool(self._items)

    def lines(self) -> list[str]:
        return [text for _, _, text in sorted(self._items)]


@dataclass
class _Draft:
    """A node while it is being checked; ``ok`` False keeps it out of the node graph."""

    index: int
    id: str | None
    kind: str | None
    params: Any
    inputs: list[InputSpec]
    host: str = DEFAULT_HOST
    cpu: tuple[int, ...] | None = None
    restart: RestartPolicy = RestartPolicy()
    endpoint: str | None = None
    ok: bool = True  # usable as a node of the graph (has a unique id)
    has_params: bool = True  # a missing 'params' is reported once, not per kind check
    inputs_ok: bool = True  # every input entry parsed


def load_topology(path: str | os.PathLike[str]) -> TopologySpec:
    """Read and validate a topology spec file (raises ``SpecError`` listing every problem)."""
    path = Path(path)
    return parse_topology(load_spec_file(path), path=path)


def parse_topology(data: Any, path: str | os.PathLike[str] | None = None) -> TopologySpec:
    """Validate a parsed spec (``path`` names the file in messages and anchors relative paths)."""
    path = Path(path) if path is not None else None
    problems = _Problems(str(path) if path is not None else "<topology>")
    if not isinstance(data, Mapping):
        problems.top("", f"a topology spec is a mapping with 'nodes', got {type(data).__name__}")
        raise TopologySpecError(problems.lines())
    for key in data:
        if key not in TOP_KEYS:
            problems.top(str(key), f"unknown field (allowed: {', '.join(TOP_KEYS)})")
    name = _check_name(data, path, problems)
    raw_nodes = data.get("nodes")
    if "nodes" not in data:
        problems.top("nodes", "missing required field")
        raw_nodes = []
    elif not isinstance(raw_nodes, list) or not raw_nodes:
        problems.top("nodes", f"must be a non-empty list of nodes, got {raw_nodes!r}")
        raw_nodes = []

    drafts = [_check_node(i, raw, problems) for i, raw in enumerate(raw_nodes)]
    ids: dict[str, _Draft] = {}
    for d in drafts:
        if d.id is None:
            continue
        if d.id in ids:
            problems.node(d.index, d.id, "id", f"duplicate id (also nodes[{ids[d.id].index}])")
            d.ok = False
        else:
            ids[d.id] = d
    _check_references(drafts, ids, problems)
    order, in_cycle = _order(drafts, ids, problems)
    _check_endpoints(drafts, problems)
    leader = _check_clock_leader(data, ids, problems)
    spec_dir = path.parent if path is not None else None
    streams = _check_kinds(order, in_cycle, ids, spec_dir, problems)
    if problems:
        raise TopologySpecError(problems.lines())
    nodes = tuple(NodeSpec(id=d.id, kind=d.kind, params=copy.deepcopy(d.params),  # type: ignore
                           inputs=tuple(d.inputs), host=d.host, cpu=d.cpu, restart=d.restart,
                           endpoint=d.endpoint) for d in drafts)
    return TopologySpec(name=name, nodes=nodes, path=path, clock_leader=leader,
                        streams={k: dict(v) for k, v in streams.items()})


def _check_name(data: Mapping[str, Any], path: Path | None, problems: _Problems) -> str:
    if "name" not in data:  # the file's stem, made safe as a run-directory name
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem if path is not None else "")
        return stem if NAME_PATTERN.match(stem) else "topology"
    name = data["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.top("name", f"must be a name of letters, digits, '_', '.', '-' (not starting "
                             f"with '.' or '-'), got {name!r}")
        return "topology"
    return name


def _check_node(index: int, raw: Any, problems: _Problems) -> _Draft:
    """Structure of one node: everything that needs no other node."""
    if not isinstance(raw, Mapping):
        problems.node(index, None, "", f"a node is a mapping with 'id' and 'kind', got {raw!r}")
        return _Draft(index, None, None, None, [], ok=False)
    node_id = raw.get("id")
    if "id" not in raw:
        problems.node(index, None, "id", "missing required field")
        node_id = None
    elif not isinstance(node_id, str) or not ID_PATTERN.match(node_id):
        problems.node(index, None, "id", f"must match {ID_PATTERN.pattern}, got {node_id!r}")
        node_id = None
    d = _Draft(index, node_id, None, raw.get("params"), [], ok=node_id is not None,
               has_params="params" in raw)

    def bad(path: str, message: str) -> None:
        problems.node(index, node_id, path, message)

    for key in raw:
        if key not in NODE_KEYS:
            bad(str(key), f"unknown field (allowed: {', '.join(NODE_KEYS)})")
    kind = raw.get("kind")
    if "kind" not in raw:
        bad("kind", "missing required field")
    elif kind not in NODE_KINDS:
        bad("kind", f"unknown kind {kind!r} (known: {', '.join(NODE_KINDS)})")
    else:
        d.kind = kind
        if NODE_KINDS[kind].normalize is not None:
            d.params = NODE_KINDS[kind].normalize(d.params)
    if "params" not in raw:
        bad("params", "missing required field")
    if "inputs" in raw:
        d.inputs, d.inputs_ok = _check_inputs(
            raw["inputs"], bad,
            NODE_KINDS[d.kind].default_policy if d.kind is not None else DEFAULT_POLICY)
    rule = NODE_KINDS[d.kind].inputs if d.kind is not None else "optional"
    if rule == "none" and raw.get("inputs") not in (None, []):
        bad("inputs", f"a {d.kind} node takes no inputs")
    elif rule == "required" and raw.get("inputs") in (None, []):
        bad("inputs", f"a {d.kind} node needs at least one input")
    if "host" in raw:
        host = raw["host"]
        if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9_.:\[\]-]+", host):
            bad("host", f"must be a host name or address, got {host!r}")
        else:
            d.host = host
    if "cpu" in raw:
        d.cpu = _check_cpu(raw["cpu"], d.host, bad)
    if "restart" in raw:
        d.restart = _check_restart(raw["restart"], bad)
    if "endpoint" in raw:
        d.endpoint = _check_endpoint(raw["endpoint"], bad)
        if d.kind is not None and not NODE_KINDS[d.kind].publishes:
            bad("endpoint", f"a {d.kind} node publishes nothing; remove 'endpoint'")
    return d


def _check_inputs(raw: Any, bad: Callable[[str, str], None],
                  default_policy: str = DEFAULT_POLICY) -> tuple[list[InputSpec], bool]:
    """The valid input edges, and whether every entry was valid."""
    if raw is None:
        return [], True
    if not isinstance(raw, list):
        bad("inputs", f"must be a list of node ids or {{node, policy, maxlen}}, got {raw!r}")
        return [], False
    out: list[InputSpec] = []
    seen: set[str] = set()
    all_ok = True
    for i, item in enumerate(raw):
        where = f"inputs[{i}]"
        if isinstance(item, str):
            item = {"node": item}
        if not isinstance(item, Mapping):
            bad(where, f"must be a node id or {{node, policy, maxlen}}, got {item!r}")
            all_ok = False
            continue
        ok = True
        for key in item:
            if key not in INPUT_KEYS:
                bad(f"{where}.{key}", f"unknown field (allowed: {', '.join(INPUT_KEYS)})")
        node = item.get("node")
        if "node" not in item:
            bad(f"{where}.node", "missing required field")
            ok = False
        elif not isinstance(node, str) or not ID_PATTERN.match(node):
            bad(f"{where}.node", f"must be a node id, got {node!r}")
            ok = False
        elif node in seen:
            bad(f"{where}.node", f"node '{node}' is already an input")
            ok = False
        policy = item.get("policy", default_policy)
        if policy not in POLICIES:
            bad(f"{where}.policy", f"must be one of {', '.join(POLICIES)}, got {policy!r}")
            ok = False
        maxlen = item.get("maxlen", DEFAULT_MAXLEN)
        if not _is_int(maxlen) or maxlen < 1:
            bad(f"{where}.maxlen", f"must be an integer >= 1, got {maxlen!r}")
            ok = False
        if ok:
            seen.add(node)
            out.append(InputSpec(node=node, policy=policy, maxlen=int(maxlen)))
        all_ok = all_ok and ok
    return out, all_ok


def _is_local(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1", socket.gethostname())


def _check_cpu(raw: Any, host: str, bad: Callable[[str, str], None]) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        bad("cpu", f"must be a non-empty list of core indices, got {raw!r}")
        return None
    count = psutil.cpu_count() if _is_local(host) else None  # another host: its own count
    ok = True
    for i, core in enumerate(raw):
        if not _is_int(core) or core < 0:
            bad(f"cpu[{i}]", f"must be a core index >= 0, got {core!r}")
            ok = False
        elif count is not None and core >= count:
            bad(f"cpu[{i}]", f"core {core} does not exist: this machine has {count} logical "
                             f"CPUs (0-{count - 1})")
            ok = False
        elif core in raw[:i]:
            bad(f"cpu[{i}]", f"core {core} is listed twice")
            ok = False
    return tuple(int(c) for c in raw) if ok else None


def _check_restart(raw: Any, bad: Callable[[str, str], None]) -> RestartPolicy:
    if isinstance(raw, str):
        raw = {"policy": raw}
        where = {"policy": "restart"}
    elif isinstance(raw, Mapping):
        where = {k: f"restart.{k}" for k in RESTART_KEYS}
    else:
        bad("restart", f"must be one of {', '.join(RESTART_POLICIES)} or a mapping "
                       f"{{{', '.join(RESTART_KEYS)}}}, got {raw!r}")
        return RestartPolicy()
    ok = True
    for key in raw:
        if key not in RESTART_KEYS:
            bad(f"restart.{key}", f"unknown field (allowed: {', '.join(RESTART_KEYS)})")
            ok = False
    if "policy" not in raw:
        bad("restart.policy", "missing required field")
        ok = False
    elif raw["policy"] not in RESTART_POLICIES:
        bad(where["policy"], f"must be one of {', '.join(RESTART_POLICIES)}, "
                             f"got {raw['policy']!r}")
        ok = False
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "max_restarts": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        "window": (lambda v: _is_number(v) and v > 0, "a number > 0"),
        "backoff": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    }
    for key, (valid, what) in checks.items():
        if key in raw and not valid(raw[key]):
            bad(where[key], f"must be {what}, got {raw[key]!r}")
            ok = False
    if not ok:
        return RestartPolicy()
    default = RestartPolicy()
    return RestartPolicy(policy=raw["policy"],
                         max_restarts=int(raw.get("max_restarts", default.max_restarts)),
                         window=float(raw.get("window", default.window)),
                         backoff=float(raw.get("backoff", default.backoff)))


IPC_PATH_MAX = 107  # a Unix socket path holds 108 bytes including the NUL


def _check_endpoint(raw: Any, bad: Callable[[str, str], None]) -> str | None:
    if raw is None:
        return None
    form = "ipc://<path> or tcp://<loopback host>:<port>"
    if not isinstance(raw, str):
        bad("endpoint", f"must be {form}, got {raw!r}")
        return None
    scheme, sep, rest = raw.partition("://")
    if scheme == "ipc" and sep and rest:
        if len(os.fsencode(rest)) > IPC_PATH_MAX:
            bad("endpoint", f"ipc path is longer than {IPC_PATH_MAX} bytes: {raw!r}")
            return None
        return raw
    m = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})", rest) if scheme == "tcp" and sep \
        else None
    if m is None or not 1 <= int(m[2]) <= 65535:
        bad("endpoint", f"must be {form}, got {raw!r}")
        return None
    host = m[1].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        bad("endpoint", f"{raw!r} binds a non-loopback address: remote binding needs CurveZMQ "
                        f"keys, which are not supported yet; use ipc:// or tcp://127.0.0.1:<port>")
        return None
    return raw


def _endpoint_key(endpoint: str) -> tuple[str, ...]:
    """Endpoints that would bind the same socket get the same key."""
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        return ("ipc", os.path.normpath(os.path.abspath(rest)))
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    return ("tcp", "127.0.0.1" if host == "localhost" else host, port)


def _check_references(drafts: list[_Draft], ids: Mapping[str, _Draft],
                      problems: _Problems) -> None:
    for d in drafts:
        for i, edge in enumerate(d.inputs):
            up = ids.get(edge.node)
            if up is None:
                problems.node(d.index, d.id, f"inputs[{i}].node",
                              f"unknown node '{edge.node}' (nodes: {', '.join(ids) or 'none'})")
            elif up.kind is not None and not NODE_KINDS[up.kind].publishes:
                problems.node(d.index, d.id, f"inputs[{i}].node",
                              f"node '{edge.node}' is a {up.kind} and publishes nothing")


def _order(drafts: list[_Draft], ids: Mapping[str, _Draft], problems: _Problems
           ) -> tuple[list[_Draft], set[str]]:
    """Nodes in topological order; each cycle is reported (named) and its nodes left out."""
    deps = {d.id: [e.node for e in d.inputs if e.node in ids] for d in drafts if d.ok}
    in_cycle: set[str] = set()
    while True:
        try:
            order = list(graphlib.TopologicalSorter(deps).static_order())
            break
        except graphlib.CycleError as exc:
            cycle: list[str] = exc.args[1][:-1]  # data-flow order: each feeds the next
            start = min(range(len(cycle)), key=lambda k: ids[cycle[k]].index)
            cycle = cycle[start:] + cycle[:start]
            first = ids[cycle[0]]
            problems.node(first.index, first.id, "inputs",
                          "cycle: " + " -> ".join([*cycle, cycle[0]]))
            in_cycle.update(cycle)
            deps = {k: [v for v in vs if v not in in_cycle]
                    for k, vs in deps.items() if k not in in_cycle}
    return [ids[n] for n in order], in_cycle


def _check_endpoints(drafts: list[_Draft], problems: _Problems) -> None:
    owners: dict[tuple[str, ...], _Draft] = {}
    for d in drafts:
        if d.endpoint is None:
            continue
        key = _endpoint_key(d.endpoint)
        if key in owners:
            other = owners[key]
            problems.node(d.index, d.id, "endpoint",
                          f"{d.endpoint!r} clashes with the endpoint of "
                          f"{_label(other)} ({other.endpoint!r})")
        else:
            owners[key] = d


def _label(d: _Draft) -> str:
    return f"node '{d.id}'" if d.id is not None else f"nodes[{d.index}]"


def _check_clock_leader(data: Mapping[str, Any], ids: Mapping[str, _Draft],
                        problems: _Problems) -> str | None:
    if data.get("clock_leader") is None:
        return None
    leader = data["clock_leader"]
    if not isinstance(leader, str) or (leader != LAUNCHER and leader not in ids):
        problems.top("clock_leader", f"must be a node id or '{LAUNCHER}', got {leader!r} "
                                     f"(nodes: {', '.join(ids) or 'none'})")
        return None
    return leader


def _check_kinds(order: list[_Draft], in_cycle: set[str], ids: Mapping[str, _Draft],
                 spec_dir: Path | None, problems: _Problems) -> dict[str, dict[str, str]]:
    """Kind-specific params in topological order; returns each node's output streams."""
    outputs: dict[str, dict[str, str] | None] = {n: None for n in in_cycle}
    for d in order:
        if d.kind is None or not d.has_params:
            outputs[d.id] = None  # type: ignore[index]
            continue
        upstreams = tuple(Upstream(e.node, outputs.get(e.node)) for e in d.inputs)
        if not d.inputs_ok or any(e.node not in ids for e in d.inputs) or (
                NODE_KINDS[d.kind].inputs == "required" and not d.inputs):
            # A broken or unknown input: nothing to check streams against.
            upstreams += (Upstream("?", None),)
        ctx = KindContext(d.id, d.params, upstreams, spec_dir)  # type: ignore[arg-type]
        kind_problems, streams = NODE_KINDS[d.kind].check(ctx)
        for text in kind_problems:
            problems.node_raw(d.index, d.id, text)
        outputs[d.id] = streams  # type: ignore[index]
    return {k: v for k, v in outputs.items() if v is not None}
