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

Decoding is defensive: anything malformed becomes ``None`` and is counted by the caller.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import zmq

PROTOCOL_VERSION = 1
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


def connect_dealer(context: zmq.Context, address: str, identity: str | None = None
                   ) -> zmq.Socket:
    """A DEALER connected to a launcher's control address (random identity for tools)."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, (identity or f"tool-{os.getpid()}-{os.urandom(4).hex()}")
                    .encode())
    sock.connect(address)
    return sock


def request(address: str, msg_type: str, timeout: float = 2.0, **fields: Any
            ) -> dict[str, Any]:
    """One request/reply round trip with the launcher (for tools); raises TimeoutError."""
    context = zmq.Context.instance()
    sock = connect_dealer(context, address)
    try:
        sock.send(pack(msg_type, **fields))
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no answer from a launcher at {address} within {timeout:g} s "
                               f"(is the topology running?)")
        reply = unpack(sock.recv())
        if reply is None:
            raise TimeoutError(f"{address} answered with something that is not a control "
                               f"message")
        return reply
    finally:
        sock.close(linger=0)
