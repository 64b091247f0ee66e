"""Reading a recording's data frames in bulk, for a replay at full speed.

At full speed the replay node's cost was reading: walking records, decoding every message's
header and fields, joining 4-sample frames (about 80% of the per-frame work once coalesced).
But a run of messages of one topic from one publisher has one layout: the same record length,
topic, field names, dtypes and shapes, and the same header bytes except for the sequence number,
the times and the field bytes. So:

* ``decode_run`` decodes the first message of a run (``Recording.runs``) with the bus codec
  (the reference), re-encodes its header to learn where every variable byte lies (and requires
  the re-encoding to equal the stored bytes), checks every other message against that template
  with numpy (each fixed byte equal; the variable ones valid: finite times, a sequence number
  of the same encoding) and slices the field bytes of all of them at once. A run that does not
  fit is decoded message by message, so the result is always what decoding each message gives.
* ``BulkPlayer`` plays a node's frames as fast as possible, joined like ``record.coalesce``
  (same topic and layout, every field as long as ``timestamp``, within ``CoalesceLimits``,
  never across an event or another topic), for the replay node at ``speed: max``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

from genki_signals.bus.codec import DecodeError, Message, decode
from genki_signals.frames import TIMESTAMP, Topic
from genki_signals.record.coalesce import CoalesceLimits
from genki_signals.record.format import RecordingError, unpack_parts
from genki_signals.record.player import Played, recorded_topics
from genki_signals.record.reader import RecordedMessage, Recording, RecordRun

__all__ = ["Block", "BulkPlayer", "decode_run"]

_encode = msgspec.msgpack.Encoder().encode
_decode_header = msgspec.msgpack.Decoder().decode
_MSG_BASE = 9 + 22  # record header (op, length) + message header (channel, seq, times)
_LOG_TIME = slice(15, 23)  # u64 log time in a message record
_UINT_MARKERS = (0xCC, 0xCD, 0xCE, 0xCF)  # msgpack uint 8/16/32/64


@dataclass(slots=True)
class Block:
    """Consecutive data frames of one topic and layout, joined: ``rows[i]`` samples came from
    the ``i``-th message, logged at ``log_times[i]`` (Unix ns)."""

    topic: str
    layout: tuple
    frame: dict[str, np.ndarray]
    rows: np.ndarray
    log_times: np.ndarray


def layout_of(frame: dict[str, np.ndarray]) -> tuple | None:
    """Names, dtypes and per-sample shapes, when every field has as many rows (>= 1) as
    ``timestamp``; None when the frame cannot be joined (``record.coalesce``'s rule)."""
    ts = frame.get(TIMESTAMP)
    if ts is None or ts.ndim != 1 or not len(ts):
        return None
    n = len(ts)
    out = []
    for name, arr in frame.items():
        if arr.ndim == 0 or arr.shape[0] != n:
            return None
        out.append((name, arr.dtype.str, arr.shape[1:]))
    return tuple(out)


def decoded_one(stored: RecordedMessage, report) -> Message | None:
    """A stored message decoded, or None (counted as damaged, as ``Recording.decoded`` does)."""
    try:
        return stored.decode()
    except DecodeError:
        report.bad_messages += 1
        report.messages -= 1
        return None


# ====================================================================== one run at once
class _Template:
    """Where the variable bytes of a run's records lie, from its first record."""

    def __init__(self, row: np.ndarray) -> None:
        """Raises ``ValueError`` when the record is not one this module decodes in bulk."""
        self.size = row.size
        parts = unpack_parts(memoryview(row[_MSG_BASE:]))
        msg = decode(parts)
        self.message = msg
        self.layout = layout_of(msg.frame) if msg.kind == "data" else None
        if self.layout is None:
            raise ValueError("not a joinable data frame")
        n = len(parts)
        offsets = np.cumsum([_MSG_BASE + 4 + 4 * n] + [p.nbytes for p in parts])
        header_at = int(offsets[1])
        header = bytes(parts[1])
        var = np.zeros(self.size, bool)
        var[11:31] = True  # sequence, log time, publish time of the record
        self.checks: list[tuple[str, int]] = []  # ("fixint"| "finite", offset)
        self.fields: list[tuple[str, np.dtype, tuple[int, ...], int, int]] = []
        decoded = _decode_header(header)
        if type(decoded) is not dict or _encode(decoded) != header:
            raise ValueError("header is not in canonical msgpack")
        pos = len(header) - sum(len(_encode(k)) + len(_encode(v)) for k, v in decoded.items())
        for key, value in decoded.items():
            pos += len(_encode(key))
            enc = _encode(value)
            at = header_at + pos
            if key == "seq":
                if len(enc) == 1:
                    var[at] = True
                    self.checks.append(("fixint", at))
                elif enc[0] in _UINT_MARKERS:
                    var[at + 1:at + len(enc)] = True
                else:
                    raise ValueError("sequence number of an unexpected encoding")
            elif key in ("t", "acq"):
                if len(enc) != 9 or enc[0] != 0xCB:
                    raise ValueError(f"{key} is not a float64")
                var[at + 1:at + 9] = True
                self.checks.append(("finite", at + 1))
            elif key == "fields":
                p = at + len(enc) - sum(len(_encode(e)) for e in value)
                for name, dtype_str, shape, where in value:
                    entry = len(_encode([name, dtype_str, shape, where]))
                    if type(where) is bytes:
                        start, nbytes = p + entry - len(where), len(where)
                    else:  # a part of its own
                        start, nbytes = int(offsets[where + 2]), parts[where + 2].nbytes
                    var[start:start + nbytes] = True
                    arr = msg.frame[name]
                    if bytes(row[start:start + nbytes]) != arr.tobytes():
                        raise ValueError("field bytes not where the template says")
                    self.fields.append((name, arr.dtype, arr.shape, start, nbytes))
                    p += entry
            pos += len(enc)
        self.fixed = np.flatnonzero(~var)
        self.expected = row[self.fixed].copy()

    def decode(self, rows: np.ndarray) -> dict[str, np.ndarray] | None:
        """The frames of ``rows`` (records of this layout) joined; None if any does not fit."""
        if not np.array_equal(rows[:, self.fixed], np.broadcast_to(
                self.expected, (rows.shape[0], self.expected.size))):
            return None
        for what, at in self.checks:
            if what == "fixint":
                if not (rows[:, at] < 0x80).all():
                    return None
            elif not np.isfinite(np.ascontiguousarray(rows[:, at:at + 8]).view(">f8")).all():
                return None
        k = rows.shape[0]
        return {name: np.ascontiguousarray(rows[:, start:start + nbytes]).view(dtype).reshape(
                    (k * shape[0],) + shape[1:])
                for name, dtype, shape, start, nbytes in self.fields}


def _rows(run: RecordRun) -> np.ndarray:
    """The run's records as a (messages, size) uint8 array (a view when they are adjacent)."""
    body = np.frombuffer(run.body, np.uint8)
    starts = np.asarray(run.starts, dtype=np.int64)
    if (np.diff(starts) == run.size).all():
        return np.lib.stride_tricks.as_strided(body[starts[0]:], (len(starts), run.size),
                                               (run.size, 1), writeable=False)
    return body[starts[:, None] + np.arange(run.size)]


def decode_run(run: RecordRun) -> Block | None:
    """The run's messages as one ``Block``, or None when they do not decode in bulk (then
    ``run.messages()`` one by one). Messages logged before the run's ``start_ns`` are left out,
    as ``Recording.messages`` leaves them out."""
    rows = _rows(run)
    log_times = np.ascontiguousarray(rows[:, _LOG_TIME]).view("<u8").reshape(-1)
    if run.start_ns is not None:
        keep = log_times >= run.start_ns
        if not keep.any():
            return None
        if not keep.all():
            rows, log_times = rows[keep], log_times[keep]
    try:
        template = _Template(rows[0])
    except (ValueError, RecordingError, DecodeError):
        return None
    msg = template.message
    if msg.topic != run.topic or (run.prefixes is not None
                                  and not msg.topic.startswith(run.prefixes)):
        return None
    frame = template.decode(rows)
    if frame is None:
        return None
    run.report.messages += len(rows)
    n = len(msg.frame[TIMESTAMP])
    return Block(msg.topic, template.layout, frame, np.full(len(rows), n, np.int64),
                 log_times.astype(np.int64))


# ====================================================================== the player
class BulkPlayer:
    """The frames ``node`` published, as fast as possible, joined into frames within
    ``limits`` (the ``Player`` interface the replay node uses: ``due``, ``done``, ``frames``,
    ``position``, ``duration``, ``pass_index``, ``skipped``). No pacing, no looping."""

    def __init__(self, recording: Recording, node: str, *, start: float = 0.0,
                 limits: CoalesceLimits = CoalesceLimits()) -> None:
        if not start >= 0:
            raise RecordingError(f"start offset must be >= 0 s, got {start!r}")
        self.recording = recording
        self.node = node
        self.limits = limits
        self.speed = None
        self.loop = False
        span = recording.span()
        if span is None:
            raise RecordingError(f"{recording.path}: no readable data in the recording")
        self.first_ns, self.last_ns = span
        self.start_ns = self.first_ns + int(round(start * 1e9))
        self.pass_index = 0
        self.frames = 0  # recorded frames handed out
        self.skipped = 0
        self.done = False
        self.position = 0.0
        self.topics: set[str] = set()
        self._items = self._read()
        self._exhausted = False
        self._out: collections.deque[tuple[Played, int, int]] = collections.deque()
        self._pending: list[Block] = []
        self._pending_rows = 0
        self._key: tuple | None = None
        self._fill(1)
        if not self._out:
            raise RecordingError(
                f"{recording.path}: nothing to replay for node '{node}' after "
                f"{self.start_ns / 1e9 - self.first_ns / 1e9:g} s "
                f"({recording.report.describe()}; topics: "
                f"{', '.join(sorted(recorded_topics(recording))) or 'none'})")

    @property
    def duration(self) -> float:
        return max(0.0, (self.last_ns - self.start_ns) / 1e9)

    def due(self, now: float, limit: int) -> list[Played]:
        """Up to ``limit`` frames (all are due: full speed)."""
        self._fill(limit)
        out = []
        while self._out and len(out) < limit:
            played, frames, log_time = self._out.popleft()
            out.append(played)
            self.frames += frames
            self.position = (log_time - self.start_ns) / 1e9
            self.topics.add(played.topic)
        self.done = self._exhausted and not self._out
        return out

    # ------------------------------------------------------------------ reading
    def _read(self) -> Iterator[Block | tuple[Played, int]]:
        items = self.recording.runs([f"{self.node}/"], start_ns=self.start_ns)
        report = self.recording.report  # of this pass
        for item in items:
            if isinstance(item, RecordRun):
                block = decode_run(item)
                if block is not None:
                    yield block
                    continue
                stored_list = item.messages()
            else:
                stored_list = [item]
            for stored in stored_list:
                msg = decoded_one(stored, report)
                if msg is None or msg.kind == "eos":
                    continue
                layout = layout_of(msg.frame) if msg.kind == "data" else None
                if layout is None:
                    yield Played(msg.topic, Topic.parse(msg.topic).timeline, msg.kind,
                                 msg.frame), stored.log_time
                else:
                    yield Block(msg.topic, layout, dict(msg.frame),
                                np.array([len(msg.frame[TIMESTAMP])]),
                                np.array([stored.log_time], dtype=np.int64))
        self.skipped = report.bad_messages

    def _fill(self, limit: int) -> None:
        while len(self._out) < limit and not self._exhausted:
            item = next(self._items, None)
            if item is None:
                self._exhausted = True
                self._flush()
            elif isinstance(item, Block):
                key = (item.topic, item.layout)
                if key != self._key:
                    self._flush()
                    self._key = key
                self._pending.append(item)
                self._pending_rows += int(item.rows.sum())
                while self._pending_rows >= self.limits.max_samples:
                    self._cut()
            else:
                self._flush()
                played, log_time = item
                self._out.append((played, 1, log_time))

    def _flush(self) -> None:
        while self._pending_rows:
            self._cut()
        self._key = None

    def _cut(self) -> None:
        """Hand out one joined frame from the front of the pending blocks."""
        pending = self._pending
        if len(pending) > 1:
            first = pending[0]
            block = Block(first.topic, first.layout,
                          {k: np.concatenate([b.frame[k] for b in pending]) for k in first.frame},
                          np.concatenate([b.rows for b in pending]),
                          np.concatenate([b.log_times for b in pending]))
        else:
            block = pending[0]
        lim = self.limits
        cum = np.cumsum(block.rows)
        row_bytes = sum(a.nbytes // max(len(a), 1) for a in block.frame.values())
        ts = block.frame[TIMESTAMP]
        over = np.flatnonzero(ts[cum - 1] - ts[0] > lim.max_span)
        take = min(int(np.searchsorted(cum, lim.max_samples, "right")),
                   int(np.searchsorted(cum, lim.max_bytes // max(row_bytes, 1), "right")),
                   int(over[0]) if len(over) else len(cum))
        take = max(take, 1)
        rows = int(cum[take - 1])
        frame = {k: v[:rows] for k, v in block.frame.items()}
        self._out.append((Played(block.topic, Topic.parse(block.topic).timeline, "data", frame),
                          take, int(block.log_times[take - 1])))
        if take < len(cum):
            self._pending = [Block(block.topic, block.layout,
                                   {k: v[rows:] for k, v in block.frame.items()},
                                   block.rows[take:], block.log_times[take:])]
            self._pending_rows = int(cum[-1]) - rows
        else:
            self._pending = []
            self._pending_rows = 0
