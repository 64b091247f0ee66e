"""A node's CurveZMQ keys in a multi-host topology, from ``NodeConfig.extra["curve"]``.

The host share that starts the node (``genki_signals.launch.share``) writes, in the node's
config file (mode 0600): the path of its host's key pair (read here, on that host), the
topology's allow-list (public key -> role) and the public key of each other host the node
connects to (its cross-host upstreams, the clock leader's host). The node then binds its tcp
endpoints as CURVE servers and connects to other hosts as a CURVE client
(``genki_signals.bus.security``). No entry: one host, or loopback only: key-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genki_signals.bus.security import (
    ClientKeys,
    KeyPair,
    ServerKeys,
    is_loopback_or_local,
    load_keypair,
)

__all__ = ["NodeKeys"]


@dataclass(frozen=True)
class NodeKeys:
    """Keys of one node process: its host's key pair, the allow-list, the other hosts' keys."""

    keypair: KeyPair
    allow: Mapping[bytes, str]
    upstream: Mapping[str, bytes] = field(default_factory=dict)  # node id -> its host's key
    clock: bytes | None = None  # the clock leader host's key (tcp clock endpoint)

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> NodeKeys | None:
        curve = extra.get("curve")
        if not curve:
            return None
        return cls(load_keypair(curve["secret_file"]),
                   {k.encode(): role for k, role in curve["allow"].items()},
                   {n: k.encode() for n, k in curve.get("upstream", {}).items()},
                   curve["clock"].encode() if curve.get("clock") else None)

    def server(self) -> ServerKeys:
        """For the node's tcp endpoints and, on the clock leader, its time server."""
        return ServerKeys(self.keypair, self.allow)

    def client_for(self, node_id: str, endpoint: str) -> ClientKeys | None:
        """For the input edge from ``node_id`` at ``endpoint`` (None: ipc or loopback)."""
        if is_loopback_or_local(endpoint) or node_id not in self.upstream:
            return None
        return ClientKeys(self.keypair, self.upstream[node_id])

    def clock_client(self, endpoint: str | None) -> ClientKeys | None:
        if endpoint is None or self.clock is None or is_loopback_or_local(endpoint):
            return None
        return ClientKeys(self.keypair, self.clock)
