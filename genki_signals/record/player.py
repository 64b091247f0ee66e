"""Player: a recording's frames for one node, in order, paced or as fast as possible.

Shared by the ``replay`` node (``nodes.replay_node``) and the in-process ``ReplaySource``.

Pacing. A message is due ``(log_time - start) / speed`` seconds after ``begin(now)``, where
``log_time`` is when the recorder received it and ``start`` the recording's first log time
plus the start offset; ``speed=None`` means as fast as possible (everything is due). Pacing by
the recorded arrival times reproduces the original frame rhythm of every topic.

Looping. With ``loop=True`` the recording starts over at its end. Pass ``k`` goes out ``k``
recording-lengths later, and its ``timestamp`` fields (and ``K.timestamp`` companions) are
shifted by ``k`` times the recorded time span plus one sample interval, so time keeps
increasing downstream. Pass 0 is exactly the recording.

Frames keep their recorded timestamps, dtypes and bytes. ``eos`` messages are not replayed (the
replaying node sends its own at the end); ``event`` messages are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from genki_signals.bus.codec import Message
from genki_signals.frames import TIMESTAMP, Topic, is_companion
from genki_signals.record.format import RecordingError
from genki_signals.record.reader import RecordedMessage, Recording

__all__ = ["Player", "Played", "node_streams"]


@dataclass(slots=True)
class Played:
    """One frame to publish: the topic's timeline (``main``, ...), kind and frame."""

    topic: str
    timeline: str
    kind: str
    frame: dict[str, np.ndarray]


class Player:
    """Iterates the frames of ``node`` (topics ``<node>/...``; None: every topic)."""

    def __init__(self, recording: Recording, node: str | None, *, speed: float | None = None,
                 start: float = 0.0, loop: bool = False) -> None:
        if speed is not None and not speed > 0:
            raise RecordingError(f"speed must be > 0 (or None: as fast as possible), "
                                 f"got {speed!r}")
        if not start >= 0:
            raise RecordingError(f"start offset must be >= 0 s, got {start!r}")
        self.recording = recording
        self.node = node
        self.prefix = None if node is None else f"{node}/"
        self.speed = speed
        self.loop = loop
        span = recording.span()
        if span is None:
            raise RecordingError(f"{recording.path}: no readable data in the recording")
        self.first_ns, self.last_ns = span
        self.start_ns = self.first_ns + int(round(start * 1e9))
        self.t0: float | None = None
        self.pass_index = 0
        self.frames = 0  # frames handed out
        self.skipped = 0  # stored messages that could not be decoded
        self.done = False
        self.position = 0.0  # seconds into the recording of the last frame handed out
        self._iter: Iterator[tuple[RecordedMessage, Message]] | None = None
        self._next: tuple[RecordedMessage, Message] | None = None
        self._pass_frames = 0
        self._log_period = 0  # ns, one recording length (set at the end of pass 0)
        self._ts_period = 0.0  # seconds added to timestamps per pass
        self._ts_first: float | None = None
        self._ts_last = -np.inf
        self._ts_step = 0.0
        self._log_prev = self._log_last = None
        self.topics: set[str] = set()
        self._prime()

    @property
    def duration(self) -> float:
        """Seconds of recording from the start offset to the last message."""
        return max(0.0, (self.last_ns - self.start_ns) / 1e9)

    # ------------------------------------------------------------------ iteration
    def _open_pass(self) -> None:
        self._iter = self.recording.decoded(
            None if self.prefix is None else [self.prefix], start_ns=self.start_ns)
        self._pass_frames = 0

    def _prime(self) -> None:
        """Load the first frame now: a recording with nothing to play is an error up front."""
        self._open_pass()
        self._advance()
        if self._next is None:
            what = "any node" if self.node is None else f"node '{self.node}'"
            raise RecordingError(
                f"{self.recording.path}: nothing to replay for {what} after "
                f"{self.start_ns / 1e9 - self.first_ns / 1e9:g} s "
                f"({self.recording.report.describe()}; topics: "
                f"{', '.join(sorted(recorded_topics(self.recording))) or 'none'})")

    def _advance(self) -> None:
        """Set ``_next`` to the next replayable message, starting a new pass when looping."""
        while True:
            for stored, msg in self._iter:
                if msg.kind == "eos":
                    continue
                self._pass_frames += 1
                self._next = (stored, msg)
                return
            self.skipped += self.recording.report.bad_messages
            if not self.loop or self._pass_frames == 0:
                self._next = None
                return
            if self.pass_index == 0:
                self._end_first_pass()
            self.pass_index += 1
            self._open_pass()

    def _end_first_pass(self) -> None:
        step = self._ts_step
        self._ts_period = (self._ts_last - (self._ts_first or 0.0)) + step
        frame_gap = (self._log_last - self._log_prev) if self._log_prev is not None else 0
        self._log_period = (self._log_last - self.start_ns) + max(frame_gap, 1)

    def begin(self, now: float) -> None:
        """Start the replay clock (``now`` on the caller's clock)."""
        self.t0 = now

    def due(self, now: float, limit: int) -> list[Played]:
        """Up to ``limit`` frames due at ``now`` (all of them, up to ``limit``, at full speed)."""
        if self.t0 is None:
            self.begin(now)
        out: list[Played] = []
        while self._next is not None and len(out) < limit:
            stored, msg = self._next
            offset_ns = stored.log_time - self.start_ns + self.pass_index * self._log_period
            if self.speed is not None and self.t0 + offset_ns / 1e9 / self.speed > now:
                break
            out.append(self._play(stored, msg))
            self._advance()
        if self._next is None:
            self.done = True
        return out

    def _play(self, stored: RecordedMessage, msg: Message) -> Played:
        frame = msg.frame
        if self.pass_index == 0:
            self._observe(stored, frame)
        elif self._ts_period:
            shift = self.pass_index * self._ts_period
            frame = {k: (v + shift if k == TIMESTAMP or is_companion(k) else v)
                     for k, v in frame.items()}
        self.frames += 1
        self.position = (stored.log_time - self.start_ns) / 1e9
        self.topics.add(msg.topic)
        return Played(msg.topic, Topic.parse(msg.topic).timeline, msg.kind, frame)

    def _observe(self, stored: RecordedMessage, frame: dict[str, np.ndarray]) -> None:
        self._log_prev, self._log_last = self._log_last, stored.log_time
        ts = frame.get(TIMESTAMP)
        if ts is None or not len(ts):
            return
        if self._ts_first is None:
            self._ts_first = float(ts[0])
        if len(ts) >= 2:
            self._ts_step = float(ts[-1] - ts[-2])
        elif self._ts_last > -np.inf:
            self._ts_step = max(self._ts_step, float(ts[-1]) - self._ts_last)
        self._ts_last = max(self._ts_last, float(ts[-1]))


def recorded_topics(recording: Recording, horizon: float | None = None) -> set[str]:
    """Topics of the recording (of its first ``horizon`` seconds when given)."""
    topics: set[str] = set()
    stop = None
    for stored in recording.messages():
        if stop is None and horizon is not None:
            stop = stored.log_time + int(horizon * 1e9)
        if stop is not None and stored.log_time > stop:
            break
        topics.add(stored.topic)
    return topics


def node_streams(recording: Recording, node: str, horizon: float = 10.0
                 ) -> dict[str, tuple[str, np.dtype, tuple[int, ...]]]:
    """The streams ``node`` published: name -> (timeline, dtype, per-sample shape).

    Read from the first data frame of each of its topics within ``horizon`` seconds of its
    first frame (the whole file when needed to find the first one).
    """
    out: dict[str, tuple[str, np.dtype, tuple[int, ...]]] = {}
    seen: set[str] = set()
    stop = None
    for stored, msg in recording.decoded([f"{node}/"]):
        if stop is not None and stored.log_time > stop:
            break
        if stop is None:
            stop = stored.log_time + int(horizon * 1e9)
        if msg.kind != "data" or msg.topic in seen:
            continue
        seen.add(msg.topic)
        timeline = Topic.parse(msg.topic).timeline
        for name, arr in msg.frame.items():
            if is_companion(name):
                continue
            if name == TIMESTAMP:
                out.setdefault(TIMESTAMP, ("main", arr.dtype, ()))
                continue
            out.setdefault(name, (timeline, arr.dtype, tuple(arr.shape[1:])))
    if TIMESTAMP in out:  # timestamp first, like every node's outputs
        out = {TIMESTAMP: out.pop(TIMESTAMP), **out}
    return out
