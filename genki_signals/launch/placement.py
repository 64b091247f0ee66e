"""Endpoints of a multi-host topology, resolved per host and per edge from the spec alone.

Every host computes the same answers (no negotiation at run time), so a share started by hand
(``genki launch SPEC --host NAME``) finds the others:

* a publishing node binds ``ipc://`` in its host's run directory for readers on its host, and
  ``tcp://<its host's bind address>:<port>`` for readers on other hosts and for tools attaching
  from another machine (ports: ``launch.hosts``);
* a reader connects per edge: ``ipc://`` when the upstream is on its host, else the upstream
  host's ``tcp://<address>:<port>`` (lossless edges likewise, on the lossless endpoints);
* the clock: when the launcher leads, its host's nodes probe its ``ipc://`` time server and the
  other hosts' nodes probe a second one on ``tcp://<leader host>:<ports + 1>``; when a node
  leads, it binds that tcp endpoint and every node probes it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genki_signals.bus.directory import default_run_dir
from genki_signals.bus.endpoints import ipc_endpoint
from genki_signals.launch.hosts import HostSpec, local_host
from genki_signals.launch.spec import TopologySpec, publishes

__all__ = ["NodeEndpoints", "Placement", "share_run_dir"]


def share_run_dir(spec: TopologySpec, host: str) -> Path:
    """A host share's run directory: the topology's own on the local host (so ``genki top
    NAME`` works there), ``<name>@<host>`` elsewhere (hosts may share a file system)."""
    local = local_host(spec.hosts)
    if local is None or host == local.name:
        return default_run_dir(spec.name)
    return default_run_dir(f"{spec.name}@{host}")


@dataclass(frozen=True)
class NodeEndpoints:
    """Where one node publishes: ipc on its host, tcp for the others (bind and reach forms)."""

    ipc: str | None = None
    ipc_lossless: str | None = None
    tcp_bind: str | None = None
    tcp_reach: str | None = None
    tcp_lossless_bind: str | None = None
    tcp_lossless_reach: str | None = None


class Placement:
    """The endpoint answers for a spec with a ``hosts:`` section (see the module docstring)."""

    def __init__(self, spec: TopologySpec, run_dirs: dict[str, Path] | None = None) -> None:
        if not spec.hosts:
            raise ValueError(f"topology '{spec.name}' declares no hosts")
        self.spec = spec
        self.local = local_host(spec.hosts)
        self.run_dirs = {h: share_run_dir(spec, h) for h in spec.hosts}
        self.run_dirs.update(run_dirs or {})
        self.endpoints: dict[str, NodeEndpoints] = {}
        lossless_sources = {e.node for n in spec.nodes for e in n.inputs
                            if e.policy == "lossless"}
        index: dict[str, int] = {}
        for node in spec.nodes:
            host = spec.hosts[node.host]
            k = index.get(node.host, 0)
            index[node.host] = k + 1
            if not (spec.downstream(node.id) or publishes(node.kind)):
                continue
            lossy_port, lossless_port = host.node_ports(k)
            run_dir = self.run_dirs[node.host]
            lossless = node.id in lossless_sources
            self.endpoints[node.id] = NodeEndpoints(
                ipc=node.endpoint or ipc_endpoint(run_dir, node.id),
                ipc_lossless=ipc_endpoint(run_dir, f"{node.id}-lossless") if lossless else None,
                tcp_bind=host.bind_endpoint(lossy_port),
                tcp_reach=host.reach_endpoint(lossy_port),
                tcp_lossless_bind=host.bind_endpoint(lossless_port) if lossless else None,
                tcp_lossless_reach=host.reach_endpoint(lossless_port) if lossless else None)

    def host_of(self, node_id: str) -> HostSpec:
        return self.spec.hosts[self.spec.node(node_id).host]

    def input_endpoint(self, reader: str, upstream: str, lossless: bool) -> str:
        """What ``reader`` connects to for its edge from ``upstream``: ipc on one host, tcp
        across hosts."""
        ep = self.endpoints[upstream]
        same_host = self.spec.node(reader).host == self.spec.node(upstream).host
        if lossless:
            return ep.ipc_lossless if same_host else ep.tcp_lossless_reach  # type: ignore
        return ep.ipc if same_host else ep.tcp_reach  # type: ignore[return-value]

    def clock_endpoints(self, host: str, ipc_clock: str) -> tuple[str, str | None]:
        """(endpoint the nodes of ``host`` probe, tcp endpoint a leader binds or None).

        ``ipc_clock``: the launcher's ipc time server on the local host."""
        leader = self.spec.clock_leader
        if leader in (None, "launcher"):
            assert self.local is not None
            if host == self.local.name:
                return ipc_clock, self.local.bind_endpoint(self.local.clock_port)
            return self.local.reach_endpoint(self.local.clock_port), None
        leader_host = self.host_of(leader)
        return (leader_host.reach_endpoint(leader_host.clock_port),
                leader_host.bind_endpoint(leader_host.clock_port))
