"""The compiled pyzmq socket calls that the bus's per-frame paths use.

``zmq.Socket.send`` is a Python wrapper (it handles the DRAFT ``routing_id``/``group``
arguments) around the compiled ``zmq.backend.Socket.send``; the wrapper costs more than the
call it wraps (``tools/bench_zmq_calls.py``; figures in docs/benchmarks.md, "Bus per-frame
path"). ``recv`` is not wrapped. Small parts are sent with ``copy=True``: ``copy=False`` makes
a ``zmq.Frame`` per part.

Other costs measured by the same tool that shape the per-frame code: ``getsockopt`` builds a
``SocketOption`` enum per call (``EVENTS`` also processes the socket's commands), a
``NOBLOCK`` recv that finds nothing raises, ``Poller.poll(0)`` costs about as much; a received
``zmq.Frame`` says ``more`` for free. Hence: no readiness check per message where a batch or a
blocking wait can do.
"""

from __future__ import annotations

import zmq
from zmq.backend import Socket as _CompiledSocket

if not issubclass(zmq.Socket, _CompiledSocket):  # pragma: no cover - a pyzmq layout change
    raise ImportError("zmq.Socket does not derive from zmq.backend.Socket")  # noqa: TRY004

send = _CompiledSocket.send
"""``send(sock, data, flags=0, copy=True)``: ``zmq.Socket.send`` without the wrapper."""

NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
COPY_MAX = 32 * 1024
"""Parts up to this many bytes are sent copied (pyzmq copies below 64 KiB even when asked not
to, after making a ``zmq.Frame``); larger ones zero-copy."""
