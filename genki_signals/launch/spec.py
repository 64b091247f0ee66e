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
   along the edges: each kind's params class and ``outputs`` hook come from the node-kind
   registry (``genki_signals.nodes.kinds``); a node whose upstream has problems gets its stream
   checks skipped rather than bogus errors.

The stream names each node publishes are kept (``TopologySpec.output_streams``) for the launcher.
The validated model (``TopologySpec``, ``NodeSpec``...) is ``launch/topology.py``, re-exported
here. Nothing here starts a process or a thread.
"""

from __future__ import annotations

import copy
import graphlib
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any


from genki_signals.launch.hosts import HostSpec, check_hosts, check_placements
from genki_signals.launch.topology import (DEFAULT_HOST, DEFAULT_MAXLEN, DEFAULT_POLICY,
                                           LOSSLESS_FIELDS, InputSpec, Limits, NodeSpec,
                                           Policy, RestartName, RestartPolicy, StallPolicy,
                                           TopologySpec, TopologySpecError)
from genki_signals.nodes.kinds import (KindContext, Upstream, is_kind, kind_info, kind_names,
                                       select_kind)
from genki_signals.params import (Field, Float, Int, Problem, Str, params, parse, salvage,
                                  unreported)
from genki_signals.spec_paths import PathPolicy
from genki_signals.specfile import load_spec_file

__all__ = [
    "TopologySpec", "NodeSpec", "InputSpec", "RestartPolicy", "TopologySpecError",
    "load_topology", "parse_topology", "publishes",
]

ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # topology name: a safe file name
TOP_KEYS = ("name", "nodes", "clock_leader", "allow_paths", "hosts", "access")
NODE_KEYS = ("id", "kind", "params", "inputs", "host", "cpu", "restart", "endpoint", "limits",
             "shm_threshold")
RESTART_KEYS = ("policy", "max_restarts", "window", "backoff")
RESTART_POLICIES = ("never", "on-failure", "always")
LAUNCHER = "launcher"  # the clock_leader value naming the launcher itself



def publishes(kind: str) -> bool:
    """Whether a node of ``kind`` publishes (a sink or recorder does not)."""
    return kind_info(kind).publishes


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

    def node_all(self, index: int, node_id: str | None, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.node(index, node_id, p.path, p.message)

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
    limits: Limits = Limits()
    shm_threshold: int | None = None
    parsed: Any = None  # the kind's params object, once checked
    ok: bool = True  # usable as a node of the graph (has a unique id)
    has_params: bool = True  # a missing 'params' is reported once, not per kind check
    inputs_ok: bool = True  # every input entry parsed


def load_topology(path: str | os.PathLike[str],
                  trusted_paths: Iterable[str | os.PathLike[str]] = ()) -> TopologySpec:
    """Read and validate a topology spec file (raises ``SpecError`` listing every problem)."""
    path = Path(path)
    return parse_topology(load_spec_file(path), path=path, trusted_paths=trusted_paths)


def parse_topology(data: Any, path: str | os.PathLike[str] | None = None,
                   trusted_paths: Iterable[str | os.PathLike[str]] = ()) -> TopologySpec:
    """Validate a parsed spec (``path`` names the file in messages and anchors relative paths).

    The spec's file paths must stay inside its folder or its ``allow_paths``
    (``genki_signals.spec_paths``); ``trusted_paths`` are files given on the command line,
    allowed wherever they are. Without ``path`` (a spec built in code) paths resolve against
    the current directory and are not confined.
    """
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
    allow = _check_allow_paths(data, problems)
    policy = PathPolicy.make(spec_dir.absolute() if spec_dir is not None else None, allow,
                             trusted_paths)
    hosts = _check_hosts(data, raw_nodes, drafts, problems, spec_dir)
    access = _check_access(data, spec_dir, problems)
    streams = _check_kinds(order, in_cycle, ids, spec_dir, policy, problems)
    if problems:
        raise TopologySpecError(problems.lines())
    nodes = tuple(NodeSpec(id=d.id, kind=d.kind, params=copy.deepcopy(d.params),  # type: ignore
                           inputs=tuple(d.inputs), host=d.host, cpu=d.cpu, restart=d.restart,
                           endpoint=d.endpoint, limits=d.limits, shm_threshold=d.shm_threshold,
                           parsed=d.parsed) for d in drafts)
    return TopologySpec(name=name, nodes=nodes, path=path, clock_leader=leader,
                        allow_paths=tuple(allow),
                        streams={k: dict(v) for k, v in streams.items()}, hosts=hosts,
                        access=access)


def _check_access(data: Mapping[str, Any], base_dir: Path | None, problems: _Problems
                  ) -> dict[str, tuple[str, ...]]:
    """The ``access:`` section: public keys allowed per role (``bus.security.resolve_access``)."""
    if data.get("access") is None:
        return {}
    from genki_signals.bus.security import SecurityError, resolve_access

    raw = data["access"]
    try:
        resolve_access(raw, base_dir=base_dir)
    except SecurityError as exc:
        problems.top("access", str(exc))
        return {}
    return {role: tuple(str(k) for k in keys or ()) for role, keys in raw.items()}


def _check_hosts(data: Mapping[str, Any], raw_nodes: list[Any], drafts: list[_Draft],
                 problems: _Problems, base_dir: Path | None = None) -> dict[str, HostSpec]:
    """The ``hosts:`` section and every node's placement (see ``launch.hosts``).

    With a hosts section, a node without ``host`` (or with ``host: localhost``, when no host has
    that name) runs on the ``start: local`` host, and is given that host's name."""
    given = {d.id: (d.index, raw_nodes[d.index].get("host")) for d in drafts
             if d.id is not None and isinstance(raw_nodes[d.index], Mapping)}
    if "hosts" not in data:
        for d in drafts:
            host = given.get(d.id, (0, None))[1] if d.id is not None else None
            if isinstance(host, str) and d.host == host and not _is_local(host):
                problems.node(d.index, d.id, "host",
                              f"unknown host '{host}': declare it in a top-level 'hosts:' "
                              f"section (see docs/multihost.md)")
        return {}
    counts: dict[str, int] = {}
    local = next((name for name, h in (data["hosts"] or {}).items()
                  if isinstance(h, Mapping) and (h.get("start") == "local" or (
                      name == "localhost" and h.get("start") is None))), None) \
        if isinstance(data["hosts"], Mapping) else None
    for d in drafts:
        if given.get(d.id, (0, None))[1] is None or (d.host == DEFAULT_HOST and local and
                                                       DEFAULT_HOST not in data["hosts"]):
            d.host = local or d.host
        counts[d.host] = counts.get(d.host, 0) + 1
    hosts = check_hosts(data["hosts"], problems.top, counts, base_dir)
    if isinstance(data["hosts"], Mapping) and data["hosts"]:
        check_placements({d.id: (d.index, d.host) for d in drafts if d.id is not None},
                         data["hosts"], problems.node)
    return hosts


def _check_allow_paths(data: Mapping[str, Any], problems: _Problems) -> list[str]:
    """The top-level ``allow_paths``: folders (relative to the spec's) paths may also use."""
    raw = data.get("allow_paths")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        problems.top("allow_paths", f"must be a list of folder paths (relative to the spec's "
                                    f"folder, or absolute), got {raw!r}")
        return []
    return list(raw)


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
    elif not is_kind(kind):  # imports that kind's module only (the message: every kind's)
        bad("kind", f"unknown kind {kind!r} (known: {', '.join(kind_names())})")
    else:
        d.kind = kind
    if "params" not in raw:
        bad("params", "missing required field")
    if "inputs" in raw:
        d.inputs, d.inputs_ok = _check_inputs(
            raw["inputs"], bad,
            kind_info(d.kind).default_policy if d.kind is not None else DEFAULT_POLICY)
    rule = kind_info(d.kind).inputs if d.kind is not None else "optional"
    if rule == "none" and raw.get("inputs") not in (None, []):
        bad("inputs", f"a {d.kind} node takes no inputs")
    elif rule == "required" and raw.get("inputs") in (None, []):
        bad("inputs", f"a {d.kind} node needs at least one input")
    _check_placement(raw, d, bad)
    return d


def _check_placement(raw: Mapping[str, Any], d: _Draft, bad: Callable[[str, str], None]
                     ) -> None:
    """Where and how a node runs: host, cpu, restart policy, endpoint."""
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
        if d.kind is not None and not publishes(d.kind):
            bad("endpoint", f"a {d.kind} node publishes nothing; remove 'endpoint'")
    if raw.get("limits") is not None:
        d.limits = _check_limits(raw["limits"], bad)
        if d.kind is not None and kind_info(d.kind).inputs == "none":
            bad("limits", f"a {d.kind} node takes no inputs: its limits bound nothing")
    if "shm_threshold" in raw:  # bytes from which arrays go through shared memory; 'off'
        value = raw["shm_threshold"]
        if value == "off":
            d.shm_threshold = 0
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            d.shm_threshold = value
        else:
            bad("shm_threshold", f"must be a number of bytes >= 1 or 'off', got {value!r}")


@params
class InputParams:
    """An input edge as written (``InputSpec`` is the checked model)."""

    node: Annotated[Str, Field(pattern=ID_PATTERN.pattern, description="a node id")]
    policy: Policy | None = None  # None: the kind's default
    maxlen: Annotated[Int, Field(ge=1)] = DEFAULT_MAXLEN
    # lossless edges only (None: the default, see InputSpec)
    on_stall: StallPolicy | None = None
    stall_after: Annotated[Float, Field(gt=0)] | None = None
    queue_bytes: Annotated[Int, Field(ge=1024)] | None = None
    retain_bytes: Annotated[Int, Field(ge=0)] | None = None
    retain_seconds: Annotated[Float, Field(ge=0)] | None = None


@params
class RestartParams:
    """A restart policy in the mapping form (``RestartPolicy`` is the checked model)."""

    policy: RestartName
    max_restarts: Annotated[Int, Field(ge=0)] = 5
    window: Annotated[Float, Field(gt=0)] = 60.0
    backoff: Annotated[Float, Field(ge=0)] = 0.5


Bytes = Annotated[Int, Field(ge=1024, description="a number of bytes >= 1024")]


@params
class LimitsParams:
    """A node's ``limits`` as written (``Limits`` is the checked model; defaults there)."""

    max_message_bytes: Bytes = Limits.max_message_bytes
    receive_queue_bytes: Bytes = Limits.receive_queue_bytes
    merge_buffer_bytes: Bytes = Limits.merge_buffer_bytes


def _check_limits(raw: Any, bad: Callable[[str, str], None]) -> Limits:
    value, problems = parse(LimitsParams, raw, "limits")
    for p in problems:
        bad(p.path, p.message)
    if value is None:
        return Limits()
    return Limits(value.max_message_bytes, value.receive_queue_bytes, value.merge_buffer_bytes)


Cores = Annotated[tuple[Annotated[Int, Field(ge=0, description="a core index >= 0")], ...],
                   Field(min_length=1, description="a non-empty list of core indices")]


def _check_inputs(raw: Any, bad: Callable[[str, str], None],
                  default_policy: str = DEFAULT_POLICY) -> tuple[list[InputSpec], bool]:
    """The valid input edges, and whether every entry was valid."""
    if raw is None:
        return [], True
    if not isinstance(raw, list):
        bad("inputs", f"must be a list of node ids or {{node, policy, maxlen}}, got {raw!r}")
        return [], False
    out: list[InputSpec] = []
    all_ok = True
    for i, item in enumerate(raw):
        where = f"inputs[{i}]"
        if not isinstance(item, (str, Mapping)):
            bad(where, f"must be a node id or {{node, policy, maxlen}}, got {item!r}")
            all_ok = False
            continue
        edge, problems = parse(InputParams, {"node": item} if isinstance(item, str) else item,
                               where)
        for p in problems:
            bad(p.path, p.message)
        if edge is not None and edge.node in {e.node for e in out}:
            bad(f"{where}.node", f"node '{edge.node}' is already an input")
            edge = None
        if edge is not None:
            policy = edge.policy or default_policy
            extra = {k: getattr(edge, k) for k in LOSSLESS_FIELDS if getattr(edge, k) is not None}
            if extra and policy != "lossless":
                bad(f"{where}.{next(iter(extra))}", f"only a lossless edge has it "
                    f"(this edge's policy is {policy})")
                edge = None
            else:
                out.append(InputSpec(edge.node, policy, edge.maxlen, **extra))
        all_ok = all_ok and edge is not None
    return out, all_ok


def _is_local(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1", socket.gethostname())


def _check_cpu(raw: Any, host: str, bad: Callable[[str, str], None]) -> tuple[int, ...] | None:
    if raw is None:
        return None
    cores, problems = parse(Cores, raw, "cpu")
    for p in problems:
        bad(p.path, p.message)
    if cores is None:
        return None
    import psutil  # here: only a spec pinning cores needs it (start-up time)

    count = psutil.cpu_count() if _is_local(host) else None  # another host: its own count
    ok = True
    for i, core in enumerate(cores):
        if count is not None and core >= count:
            bad(f"cpu[{i}]", f"core {core} does not exist: this machine has {count} logical "
                             f"CPUs (0-{count - 1})")
            ok = False
        elif core in cores[:i]:
            bad(f"cpu[{i}]", f"core {core} is listed twice")
            ok = False
    return cores if ok else None


def _check_restart(raw: Any, bad: Callable[[str, str], None]) -> RestartPolicy:
    if isinstance(raw, str) and raw in RESTART_POLICIES:
        return RestartPolicy(raw)  # type: ignore[arg-type]
    if not isinstance(raw, Mapping):
        mapping = f" or a mapping {{{', '.join(RESTART_KEYS)}}}" if not isinstance(raw, str) \
            else ""
        bad("restart", f"must be one of {', '.join(RESTART_POLICIES)}{mapping}, got {raw!r}")
        return RestartPolicy()
    value, problems = parse(RestartParams, raw, "restart")
    for p in problems:
        bad(p.path, p.message)
    if value is None:
        return RestartPolicy()
    return RestartPolicy(value.policy, value.max_restarts, float(value.window),
                         float(value.backoff))


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
            elif up.kind is not None and not publishes(up.kind):
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
                 spec_dir: Path | None, paths: PathPolicy, problems: _Problems
                 ) -> dict[str, dict[str, str]]:
    """Kind-specific params in topological order; returns each node's output streams.

    Each node's declared sample shapes (``KindContext.published_samples``) flow to the nodes
    downstream, whose checks may run their logic on zero frames of those shapes (a graph's
    dry run, ``nodes/dry_run.py``)."""
    outputs: dict[str, dict[str, str] | None] = {n: None for n in in_cycle}
    samples: dict[str, dict[str, Any]] = {}
    for d in order:
        outputs[d.id] = None  # type: ignore[index]
        if d.kind is None or not d.has_params:
            continue
        entry, d.params, found = select_kind(d.kind, d.params)
        if entry is None:
            problems.node_all(d.index, d.id, found)
            continue
        upstreams = tuple(Upstream(e.node, outputs.get(e.node), samples.get(e.node))
                          for e in d.inputs)
        if not d.inputs_ok or any(e.node not in ids for e in d.inputs) or (
                entry.inputs == "required" and not d.inputs):
            # A broken or unknown input: nothing to check streams against.
            upstreams += (Upstream("?", None),)
        ctx = KindContext(d.id, upstreams, spec_dir, paths=paths)  # type: ignore[arg-type]
        value, found = salvage(entry.params_class, d.params, context=ctx)
        streams = None
        if value is not None:  # what is valid is checked further, skipping what was reported
            more, streams = entry.check(value, ctx)
            found += unreported(more, found)
        problems.node_all(d.index, d.id, found)
        if not found:
            d.parsed, outputs[d.id] = value, streams  # type: ignore[index]
            if streams is not None and ctx.published_samples:
                samples[d.id] = dict(ctx.published_samples)  # type: ignore[index]
    return {k: v for k, v in outputs.items() if v is not None}
