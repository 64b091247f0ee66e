"""The recording format: bus messages in an MCAP file, exactly as they crossed the bus.

A recording is an `MCAP <https://mcap.dev>`_ file (chunked, indexed, CRC-checked; written with
the ``mcap`` package; opened by Foxglove and the ``mcap`` CLI) with profile ``genki``:

* **Messages.** One MCAP message per bus message. Its channel is the bus topic, with message
  encoding ``genki-bus/1`` and no schema; its data holds every part of the ZeroMQ multipart
  message, the topic included (see ``genki_signals.bus.codec``), framed as::

      u32 n                 number of parts (>= 2: topic, msgpack header, buffers...)
      u32 len[n]            byte length of each part
      bytes part[0] ... part[n-1]

  all little-endian. So a message is self-describing (its topic does not depend on a channel
  record that a damaged chunk might have taken with it) and ``codec.decode`` reads it as is.
  ``sequence`` is the bus sequence number (mod 2**32), ``log_time`` the time the recorder
  received it and ``publish_time`` the header's publish time, both in nanoseconds since the
  Unix epoch (topology clock + the run's wall anchor), so viewers show real dates.
* **Metadata records** (string -> string maps) written first, before any chunk, so a crashed
  recording still has them:

  ``genki.recording``  format, wall_anchor_ns (the topology clock's 0 in Unix ns), topology
                       name, created (UTC ISO 8601), library versions, host, recorder kind
  ``genki.topology``   ``spec``: the topology spec (JSON), when the recorder knows it
  ``genki.nodes``      node id -> JSON ``{kind, version}``
  ``genki.user``       the user's metadata

  and, at a clean close only, ``genki.stats`` (frames, bytes, gaps, per topic counts).
* **Crash safety.** The recorder closes the open chunk at least every ``flush_interval``
  seconds (default 0.5 s) and hands it to the OS, and chunks are at most ``chunk_size`` bytes.
  A killed recorder leaves every complete chunk readable; only the chunk in progress (at most
  ``flush_interval`` of data) is lost. ``Recording`` reads such a file (no summary, a torn last
  record) and reports the torn tail instead of failing.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from genki_signals.errors import GenkiError

PROFILE = "genki"
MESSAGE_ENCODING = "genki-bus/1"
FORMAT = "genki-recording/1"

META_RECORDING = "genki.recording"
META_TOPOLOGY = "genki.topology"
META_NODES = "genki.nodes"
META_USER = "genki.user"
META_STATS = "genki.stats"
META_DEVICE = "genki.device."  # + node id: the device info a source reported (a ``device`` event)
DEVICE_STREAM = "device"  # the event stream a device source reports its identity on

MAX_PARTS = 1 + 1 + 4096  # topic, header, buffers (a frame has at most a few thousand fields)

_U32 = struct.Struct("<I")


class RecordingError(GenkiError, ValueError):
    """A file is not a recording, or holds nothing usable; the message says which and why."""


def part_bytes(part: Any) -> memoryview:
    """A flat byte view of one multipart part (bytes, memoryview, zmq.Frame, numpy array)."""
    buf = getattr(part, "buffer", None)  # zmq.Frame
    view = buf if isinstance(buf, memoryview) else memoryview(part)
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    return view


def pack_parts(parts: Sequence[Any]) -> bytes:
    """One MCAP message's data from the parts of a bus message (see the module docstring)."""
    views = [part_bytes(p) for p in parts]
    head = struct.pack(f"<I{len(views)}I", len(views), *(v.nbytes for v in views))
    return b"".join([head, *views])


def unpack_parts(data: bytes | memoryview) -> list[memoryview]:
    """The parts of a stored bus message; raises ``RecordingError`` when the framing is broken."""
    view = memoryview(data)
    size = view.nbytes
    if size < 4:
        raise RecordingError(f"message data of {size} bytes is too short")
    (n,) = _U32.unpack_from(view, 0)
    if not 2 <= n <= MAX_PARTS:
        raise RecordingError(f"message claims {n} parts")
    start = 4 + 4 * n
    if size < start:
        raise RecordingError("message part table is cut short")
    lengths = struct.unpack_from(f"<{n}I", view, 4)
    if start + sum(lengths) != size:
        raise RecordingError(f"message parts add up to {start + sum(lengths)} bytes, "
                             f"the record holds {size}")
    parts, pos = [], start
    for length in lengths:
        parts.append(view[pos:pos + length])
        pos += length
    return parts
