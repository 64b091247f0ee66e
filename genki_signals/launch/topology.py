"""The validated topology model: what ``launch.spec.parse_topology`` returns.

Frozen dataclasses: ``TopologySpec`` (nodes in file order, the streams each node publishes),
``NodeSpec`` (one node: one OS process), ``InputSpec`` (one input edge and its queue policy),
``RestartPolicy``, ``Limits`` (a node's byte bounds); and ``TopologySpecError``. ``to_dict`` of
each gives plain data that ``parse_topology`` turns back into an equal object.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from genki_signals.bus.lossless import (DEFAULT_RETAIN_BYTES, DEFAULT_RETAIN_SECONDS,
                                        DEFAULT_STALL_AFTER, DEFAULT_STALL_POLICY,
                                        DEFAULT_WINDOW_BYTES)
from genki_signals.bus.codec import DEFAULT_MAX_BYTES
from genki_signals.bus.sockets import DEFAULT_QUEUE_BYTES
from genki_signals.nodes.merge import DEFAULT_MERGE_BYTES
from genki_signals.specfile import SpecError

__all__ = ["TopologySpec", "NodeSpec", "InputSpec", "RestartPolicy", "Limits",
           "TopologySpecError",
           "Policy", "RestartName", "DEFAULT_POLICY", "DEFAULT_MAXLEN", "DEFAULT_HOST"]

DEFAULT_POLICY = "drop_oldest"
DEFAULT_MAXLEN = 1000
DEFAULT_HOST = "localhost"

Policy = Literal["latest", "drop_oldest", "lossless"]
StallPolicy = Literal["block", "degrade", "fail"]
RestartName = Literal["never", "on-failure", "always"]


@dataclass(frozen=True)
class InputSpec:
    """One input edge: the upstream node and the queue policy on this edge."""

    node: str
    policy: Policy = DEFAULT_POLICY
    maxlen: int = DEFAULT_MAXLEN  # the bound of a drop_oldest queue
    # lossless edges only (bus.lossless, docs/supervision.md)
    on_stall: StallPolicy = DEFAULT_STALL_POLICY  # when this reader has had no room ...
    stall_after: float = DEFAULT_STALL_AFTER  # ... for this many seconds
    queue_bytes: int = DEFAULT_WINDOW_BYTES  # bytes sent to this reader and not yet read
    retain_bytes: int = DEFAULT_RETAIN_BYTES  # the upstream keeps unacknowledged frames ...
    retain_seconds: float = DEFAULT_RETAIN_SECONDS  # ... up to these bounds (max over readers)

    def to_dict(self) -> dict[str, Any]:
        out = {"node": self.node, "policy": self.policy, "maxlen": self.maxlen}
        for name in LOSSLESS_FIELDS:
            value = getattr(self, name)
            if value != getattr(InputSpec, name):
                out[name] = value
        return out


LOSSLESS_FIELDS = ("on_stall", "stall_after", "queue_bytes", "retain_bytes", "retain_seconds")


@dataclass(frozen=True)
class Limits:
    """A node's byte bounds on what it receives (docs/supervision.md has the table of every
    queue, its default, its field and what overflow does)."""

    max_message_bytes: int = DEFAULT_MAX_BYTES
    """The largest message accepted on any input; a bigger one is counted (``oversized`` or
    ``reconnects``) and skipped, the connection stays usable."""
    receive_queue_bytes: int = DEFAULT_QUEUE_BYTES
    """Bytes queued per input edge for the node's logic; overflow follows the edge's policy
    (``drop_oldest`` drops the oldest, ``lossless`` stops reading: backpressure)."""
    merge_buffer_bytes: int = DEFAULT_MERGE_BYTES
    """Bytes of frames a node merging several inputs by timestamp may hold back; over it the
    oldest are released early, counted in ``merge_overflows``."""

    def to_dict(self) -> dict[str, int]:
        """Only the fields that differ from the defaults."""
        return {k: v for k, v in asdict(self).items() if v != getattr(Limits, k)}


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
    limits: Limits = Limits()
    shm_threshold: int | None = None  # bytes; 0: off; None: bus.shm.DEFAULT_THRESHOLD
    parsed: Any = field(default=None, compare=False, hash=False, repr=False)
    """``params`` parsed by the kind's params class (what the launcher hands the node)."""

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
        if self.limits.to_dict():
            out["limits"] = self.limits.to_dict()
        if self.shm_threshold is not None:
            out["shm_threshold"] = self.shm_threshold or "off"
        return out


@dataclass(frozen=True)
class TopologySpec:
    """A validated topology: nodes in file order, plus what validation learned about streams."""

    name: str
    nodes: tuple[NodeSpec, ...]
    path: Path | None = None
    clock_leader: str | None = None  # a node id or 'launcher' (None: the launcher leads)
    allow_paths: tuple[str, ...] = ()  # folders the spec's paths may use besides its own
    streams: Mapping[str, Mapping[str, str]] = field(
        default_factory=dict, compare=False, hash=False, repr=False)
    """Per node: each output stream -> its timeline (``main`` or the root operator's name)."""
    hosts: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """The ``hosts:`` section (name -> ``launch.hosts.HostSpec``); empty: one machine."""
    access: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    """The ``access:`` section: role -> public keys (docs/multihost.md)."""

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
        if self.allow_paths:
            out["allow_paths"] = list(self.allow_paths)
        if self.hosts:
            out["hosts"] = {name: h.to_dict() for name, h in self.hosts.items()}
        if self.access:
            out["access"] = {role: list(keys) for role, keys in self.access.items()}
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
