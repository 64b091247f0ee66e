"""Recorder: writes bus messages to a crash-safe MCAP recording (see ``record.format``).

One class for every place that records: the ``recorder`` node (raw messages as they crossed
the bus), ``genki record`` attached to a running topology, and ``System(..., recorder=...)``
in a notebook (frames, encoded exactly as a node would publish them)::

    with Recorder("run.mcap", metadata={"subject": "s01"}) as rec:
        rec.record_frame("source/main", frame, node_id="source")

Crash safety: the chunk in progress is closed and handed to the OS at least every
``flush_interval`` seconds (a background thread does it when messages stop coming), so a
killed process loses at most that much; ``fsync=True`` also survives power loss, at a cost.

Losses are counted, never silent: ``stats()`` holds per topic the frames and bytes written, the
sequence gaps seen (messages lost before they reached the recorder), sequence resets, and how far
behind the publisher the recorder is (``lag``: receive time minus publish time).
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genki_signals.bus.codec import MAX_GAP, DecodeError, Message, decode, encode
from genki_signals.clock import Clock, default_clock
from genki_signals.record.format import (
    DEVICE_STREAM,
    FORMAT,
    MESSAGE_ENCODING,
    META_DEVICE,
    META_NODES,
    META_RECORDING,
    META_STATS,
    META_TOPOLOGY,
    META_USER,
    PROFILE,
    RecordingError,
    pack_parts,
)

__all__ = ["Recorder", "TopicStats", "COMPRESSIONS"]

COMPRESSIONS = ("zstd", "lz4", "none")
DEFAULT_FLUSH_INTERVAL = 0.5
DEFAULT_CHUNK_SIZE = 1 << 20


@dataclass
class TopicStats:
    """What the recorder wrote for one topic."""

    node: str
    frames: int = 0
    bytes: int = 0
    gaps: int = 0  # sequence numbers never received (lost upstream of the recorder)
    resets: int = 0  # sequence went backwards (publisher restarted)
    last_seq: int = -1


def _version() -> str:
    import genki_signals

    return genki_signals.__version__


class Recorder:
    """Writes bus messages to ``path`` (an MCAP file; overwritten if it exists). Thread-safe.

    ``clock`` gives the topology time of a message's arrival (``log_time``) and the wall
    anchor that turns topology seconds into Unix nanoseconds; ``wall_anchor`` overrides the
    clock's. ``topology`` (a spec as a dict), ``nodes`` (id -> kind) and ``metadata`` (the
    user's, str -> str) are stored in the file's head. ``topics``: only topics starting with
    one of these prefixes are recorded (None: all).
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None,
                 wall_anchor: float | None = None, topology: Mapping[str, Any] | None = None,
                 topology_name: str = "", nodes: Mapping[str, str] | None = None,
                 metadata: Mapping[str, Any] | None = None, recorder: str = "in-process",
                 topics: Iterable[str] | None = None,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, compression: str = "zstd",
                 fsync: bool = False) -> None:
        from mcap.writer import CompressionType, Writer

        if compression not in COMPRESSIONS:
            raise RecordingError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                                 f"got {compression!r}")
        if not (isinstance(flush_interval, (int, float)) and flush_interval > 0):
            raise RecordingError(f"flush_interval must be > 0 s, got {flush_interval!r}")
        if not (isinstance(chunk_size, int) and chunk_size >= 1024):
            raise RecordingError(f"chunk_size must be an integer >= 1024, got {chunk_size!r}")
        self.path = Path(path)
        self.clock = clock if clock is not None else default_clock()
        anchor = self.clock.wall_anchor if wall_anchor is None else wall_anchor
        self.wall_anchor_ns = int(round(anchor * 1e9))
        self.topics = None if topics is None else tuple(topics)
        self.flush_interval = float(flush_interval)
        self.fsync = fsync
        self.topic_stats: dict[str, TopicStats] = {}
        self.devices: dict[str, dict[str, str]] = {}  # node -> its last device info
        self.frames = 0
        self.bytes = 0
        self.flushes = 0
        self.max_lag = 0.0
        self.last_lag = math.nan
        self._seq: dict[str, int] = {}  # record_frame's own sequence numbers
        self._channels: dict[str, int] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._last_flush = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = self.path.open("wb")
        except OSError as exc:
            raise RecordingError(f"cannot write recording {str(self.path)!r}: {exc}") from None
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                "none": CompressionType.NONE}[compression]
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=kind)
        self._writer.start(profile=PROFILE, library=f"genki-signals/{_version()}")
        self._write_head(topology, topology_name, nodes or {}, metadata or {}, recorder,
                         compression)
        self._writer.flush()
        self._file.flush()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="genki-recorder-flush",
                                         daemon=True)
        self._flusher.start()

    # ------------------------------------------------------------------ head
    def _write_head(self, topology: Mapping[str, Any] | None, name: str,
                    nodes: Mapping[str, str], metadata: Mapping[str, Any], recorder: str,
                    compression: str) -> None:
        import mcap
        import msgpack
        import numpy

        if topology is not None and not name:
            name = str(topology.get("name", ""))
        info = {
            "format": FORMAT,
            "wall_anchor_ns": str(self.wall_anchor_ns),
            "topology": name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "recorder": recorder,
            "host": socket.gethostname(),
            "genki_signals": _version(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "msgpack": ".".join(map(str, msgpack.version)),
            "mcap": getattr(mcap, "__version__", "") or _mcap_version(),
            "message_encoding": MESSAGE_ENCODING,
            "compression": compression,
            "flush_interval": repr(self.flush_interval),
        }
        self._writer.add_metadata(META_RECORDING, info)
        if topology is not None:
            self._writer.add_metadata(META_TOPOLOGY, {"spec": json.dumps(topology)})
        if nodes:
            self._writer.add_metadata(META_NODES, {
                node: json.dumps({"kind": kind, "version": _version()})
                for node, kind in nodes.items()})
        self._writer.add_metadata(META_USER, {str(k): v if isinstance(v, str) else
                                              json.dumps(v) for k, v in metadata.items()})

    # ------------------------------------------------------------------ writing
    def accepts(self, topic: str) -> bool:
        return self.topics is None or any(topic.startswith(p) for p in self.topics)

    def record_message(self, msg: Message, log_time: float | None = None) -> bool:
        """Record a message received from the bus; its raw ``parts`` when it kept them.

        ``log_time``: topology seconds of its arrival (default: now). False when the topic is
        filtered out.
        """
        if not self.accepts(msg.topic):
            return False
        parts = msg.parts if msg.parts is not None else encode(
            msg.topic, msg.frame, node_id=msg.node_id, seq=msg.seq, kind=msg.kind,
            publish_time=msg.publish_time)
        self._write(msg.topic, msg.node_id, msg.seq, msg.publish_time, parts, log_time)
        self._note_device(msg.topic, msg.kind, msg.frame)
        return True

    def record_parts(self, parts: Sequence[Any], log_time: float | None = None) -> bool:
        """Record the parts of a bus message as they are (checked with ``codec.decode`` first)."""
        try:
            msg = decode(parts)
        except DecodeError as exc:
            raise RecordingError(f"not a bus message: {exc}") from None
        if not self.accepts(msg.topic):
            return False
        self._write(msg.topic, msg.node_id, msg.seq, msg.publish_time, parts, log_time)
        self._note_device(msg.topic, msg.kind, msg.frame)
        return True

    def record_frame(self, topic: str, frame: Mapping[str, Any], *, node_id: str,
                     kind: str = "data", publish_time: float | None = None,
                     log_time: float | None = None) -> bool:
        """Encode a frame as a node publishing on ``topic`` would, and record it."""
        if not self.accepts(topic):
            return False
        now = self.clock.now()
        t = now if publish_time is None else publish_time
        with self._lock:
            seq = self._seq.get(topic, 0)
            self._seq[topic] = seq + 1
        parts = encode(topic, frame, node_id=node_id, seq=seq, kind=kind, publish_time=t)
        self._write(topic, node_id, seq, t, parts, now if log_time is None else log_time)
        self._note_device(topic, kind, frame)
        return True

    def _note_device(self, topic: str, kind: str, frame: Mapping[str, Any]) -> None:
        """A source's ``device`` event (e.g. the Wave ring's firmware, board, MAC, serial,
        known only once it connects, after the head was written) also goes into the file's
        metadata, as ``genki.device.<node>``, whenever it changes."""
        node, _, stream = topic.rpartition("/")
        if kind != "event" or stream != DEVICE_STREAM or not node:
            return
        info: dict[str, str] = {}
        for key, values in frame.items():
            if key == "timestamp" or not len(values):
                continue
            value = values[-1]
            info[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) \
                else str(value.item() if hasattr(value, "item") else value)
        with self._lock:
            if self._closed or not info or self.devices.get(node) == info:
                return
            self.devices[node] = info
            self._writer.add_metadata(META_DEVICE + node, info)

    def _ns(self, t: float) -> int:
        return max(0, self.wall_anchor_ns + int(round(t * 1e9)))

    def _write(self, topic: str, node: str, seq: int, publish_time: float,
               parts: Sequence[Any], log_time: float | None) -> None:
        data = pack_parts(parts)
        if log_time is None:
            log_time = self.clock.now()
        with self._lock:
            if self._closed:
                raise RecordingError(f"recorder of {str(self.path)!r} is closed")
            channel = self._channels.get(topic)
            if channel is None:
                channel = self._channels[topic] = self._writer.register_channel(
                    topic, MESSAGE_ENCODING, 0, {"node": node})
            self._writer.add_message(channel, self._ns(log_time), data,
                                     self._ns(publish_time), seq & 0xFFFFFFFF)
            st = self.topic_stats.get(topic)
            if st is None:
                st = self.topic_stats[topic] = TopicStats(node=node)
            elif st.last_seq + 1 < seq <= st.last_seq + 1 + MAX_GAP:
                st.gaps += seq - st.last_seq - 1
            elif seq != st.last_seq + 1:  # backwards, or an implausible jump: one reset
                st.resets += 1
            st.last_seq = seq
            st.frames += 1
            st.bytes += len(data)
            self.frames += 1
            self.bytes += len(data)
            self.last_lag = log_time - publish_time
            self.max_lag = max(self.max_lag, self.last_lag)
            self._dirty = True
            if time.monotonic() - self._last_flush >= self.flush_interval:
                self._flush_locked()

    # ------------------------------------------------------------------ flushing
    def flush(self) -> None:
        """Close the chunk in progress and hand everything to the OS (fsync if asked)."""
        with self._lock:
            if not self._closed:
                self._flush_locked()

    def _flush_locked(self) -> None:
        self._writer.flush()
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._dirty = False
        self.flushes += 1
        self._last_flush = time.monotonic()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval / 2):
            with self._lock:
                if self._closed:
                    return
                if self._dirty and time.monotonic() - self._last_flush >= \
                        self.flush_interval / 2:
                    self._flush_locked()

    # ------------------------------------------------------------------ end
    @property
    def gaps(self) -> int:
        return sum(s.gaps for s in self.topic_stats.values())

    def stats(self) -> dict[str, Any]:
        """Counters for heartbeats and reports."""
        return {"recorded_frames": self.frames, "recorded_bytes": self.bytes,
                "record_gaps": self.gaps,
                "record_resets": sum(s.resets for s in self.topic_stats.values()),
                "record_lag": self.last_lag, "record_max_lag": self.max_lag,
                "record_topics": len(self.topic_stats)}

    def summary(self) -> str:
        """One line: what was written where, and what was lost."""
        try:  # what the file takes on disk (compressed), not the messages' own size
            size = f"{self.path.stat().st_size / 1e6:.2f} MB"
        except OSError:
            size = "? MB"
        return (f"recorded {self.frames} frames ({size} on disk, {self.bytes / 1e6:.2f} MB of "
                f"messages uncompressed) on "
                f"{len(self.topic_stats)} topics to {self.path}; {self.gaps} lost before "
                f"the recorder (sequence gaps), max lag {self.max_lag * 1000:.1f} ms")

    def close(self) -> None:
        """Write the statistics and the MCAP summary, close the file (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            try:
                self._writer.flush()  # the last chunk first: the stats come after the data
                self._writer.add_metadata(META_STATS, {
                    "frames": str(self.frames), "bytes": str(self.bytes),
                    "gaps": str(self.gaps), "max_lag": repr(self.max_lag),
                    "topics": json.dumps({t: {"node": s.node, "frames": s.frames,
                                              "bytes": s.bytes, "gaps": s.gaps,
                                              "resets": s.resets}
                                          for t, s in self.topic_stats.items()})})
                self._writer.finish()
                self._file.flush()
                if self.fsync:
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()
        if self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mcap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcap")
    except PackageNotFoundError:
        return ""
