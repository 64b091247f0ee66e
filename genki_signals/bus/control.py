"""The control plane: how nodes and tools talk to the launcher.

The launcher binds one ROUTER socket (the topology's *address*). Each node connects a DEALER whose
routing id is its node id; tools (`genki topics`, `genki top`, remote plots) connect a DEALER with
a random id. Every message is one msgpack-encoded map with a ``type``; no pickle.

Node -> launcher
    ``register``  {node, pid, incarnation}       first message after connecting
    ``ready``     {node, topics: [str]}           sockets bound, first publish possible
    ``heartbeat`` {node, stats: {...}}            every ``heartbeat_interval`` seconds
    ``log``       {node, level, logger, message, time}
    ``bye``       {node, reason}                  about to exit normally ("eos", "stopped")
Launcher -> node
    ``stop``      {eos?}                          finish cleanly (flush, close) and exit 0;
                                                  ``eos: false``: send no end-of-stream (a
                                                  host share whose ssh session was lost)
Tool -> launcher -> tool
    ``directory`` {} -> {type: directory, topology, address, nodes: [...], topics: {...},
                         clock_origin, wall_anchor, clock: {leader, endpoint, origin, wall_anchor}}

Time probes (``time_probe {id}`` -> ``time_reply {id, t}``, same message format) do not use this
socket: the clock leader answers them on the topology's clock endpoint (``clock.endpoint`` in
the directory) from a dedicated thread; see ``genki_signals.clocksync.sync``.

Over non-loopback tcp the socket is a CURVE server (``genki_signals.bus.security``) admitting
the ``read`` and ``control`` roles; a ``read`` peer (a remote plot) may only ask ``directory``:
``READ_ONLY_TYPES``. The launcher reads each message's role with ``security.peer_role``.

Decoding is defensive: anything malformed becomes ``None`` and is counted by the caller.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import zmq

from genki_signals.bus.security import ClientKeys, secure_client

PROTOCOL_VERSION = 1
READ_ONLY_TYPES = frozenset({"directory"})  # what a ``read``-role peer may send
MAX_CONTROL_BYTES = 1 << 20


def pack(msg_type: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, "type": msg_type, **fields}, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any] | None:
    """A control message as a dict, or None when it is not a valid one."""
    if len(data) > MAX_CONTROL_BYTES:
        return None
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:  # msgpack raises several unrelated types on garbage
        return None
    if not isinstance(msg, dict) or msg.get("v") != PROTOCOL_VERSION \
            or not isinstance(msg.get("type"), str):
        return None
    return msg


def allowed(msg_type: str, role: str | None) -> bool:
    """May a peer of ``role`` (None: ipc/loopback, trusted) send a message of ``msg_type``?"""
    return role != "read" or msg_type in READ_ONLY_TYPES


def connect_dealer(context: zmq.Context, address: str, identity: str | None = None,
                   security: ClientKeys | None = None) -> zmq.Socket:
    """A DEALER connected to a launcher's control address (random identity for tools).

    ``security``: this peer's CURVE keys and the launcher's public key (tcp between hosts).
    """
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if security is not None:
        secure_client(sock, security)
    sock.setsockopt(zmq.ROUTING_ID, (identity or f"tool-{os.getpid()}-{os.urandom(4).hex()}")
                    .encode())
    sock.connect(address)
    return sock


def request(address: str, msg_type: str, timeout: float = 2.0, *,
            security: ClientKeys | None = None, **fields: Any) -> dict[str, Any]:
    """One request/reply round trip with the launcher (for tools); raises TimeoutError."""
    context = zmq.Context.instance()
    sock = connect_dealer(context, address, security=security)
    try:
        sock.send(pack(msg_type, **fields))
        if not sock.poll(int(timeout * 1000)):
            hint = " is the topology running?" if security is None else \
                " is the topology running, is this key on its allow-list, and is the server " \
                "key right?"
            raise TimeoutError(f"no answer from a launcher at {address} within {timeout:g} s "
                               f"({hint.strip()})")
        reply = unpack(sock.recv())
        if reply is None:
            raise TimeoutError(f"{address} answered with something that is not a control "
                               f"message")
        return reply
    finally:
        sock.close(linger=0)
