"""The order in which a node's logic sees its inputs: merged by timestamp, or as they arrive.

``TimestampMerger`` merges several inputs by timestamp, never by arrival order. The feeders
below turn received bus messages into *deliveries* for the runner's one dispatch, one feeder per
input mode of ``NodeLogic`` (``merged``, ``arrival``, ``raw``; a ``timed`` node reads no inputs).
A delivery is ``(what, topic, payload)``:

* ``("data" | "event", topic, frame)``: ``on_frame`` / ``on_event``;
* ``("eos", topic, None)``: ``on_eos``;
* ``("message", topic, message)``: ``on_message`` with the whole ``bus.codec.Message``;
* ``("tick", None, None)``: ``tick``.

Feeders are plain objects, no sockets: ``receive`` each message, then dispatch what ``ready``
returns; ``ended`` once every input sent end-of-stream and nothing is held back. ``consumed``
maps each input topic to the sequence number of the last message handed out for dispatch (held
frames not included): what a checkpoint taken after dispatching records (``nodes/checkpoint.py``).
A message whose
topic names a node that is not one of the inputs is counted in ``unexpected`` and ignored: an
``eos`` ends only an input the spec wires in (the runner's Subscriber already drops such
messages per edge; this holds for any other caller too).
A delivery
returned by ``receive`` comes from that message (its acquisition time is the message's,
``acquisition_of``); for one returned by ``ready``, ``origin(delivery)`` gives it (until the next
``ready`` call), None for ticks.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from genki_signals.frames import TIMESTAMP, Topic

DEFAULT_MERGE_BYTES = 64 * 1024 * 1024
"""Bytes of frames a ``TimestampMerger`` may hold back by default (spec: ``limits``)."""

Delivery = tuple[str, Topic | None, Any]
TICK: Delivery = ("tick", None, None)


def acquisition_of(message: Any) -> float | None:
    """Leader-clock acquisition time of the oldest sample of a received message: its header's
    ``acq``; for a publisher that did not send one, the frame's first timestamp; else None."""
    acq = message.acquired
    if acq is not None:
        return acq
    ts = message.frame.get(TIMESTAMP)
    return float(ts[0]) if ts is not None and len(ts) else None


class TimestampMerger:
    """Releases frames from several ordered inputs in timestamp order.

    Each input delivers frames in its own time order. A frame is released once no input can
    still deliver an earlier one: its last timestamp is at or below the *watermark*, the lowest
    "latest timestamp seen" over the inputs that have not ended. Live, an input that falls silent
    must not stall the others forever: a frame held longer than ``max_lag`` seconds (of arrival
    time) is released anyway and counted in ``late_releases``. ``max_lag=None`` waits forever,
    which is what a lossless replay wants: the release order then depends only on timestamps.

    Memory: the frames held back are bounded in bytes (``max_bytes``, the spec's
    ``limits.merge_buffer_bytes``): over it, the oldest held frames are released at once,
    before the watermark reaches them, and counted in ``overflows`` (an input that stays silent
    without ending, on an edge without ``max_lag``, would otherwise grow the buffer forever).
    """

    def __init__(self, inputs: Iterable[str], max_lag: float | None = 0.5,
                 max_bytes: int | None = DEFAULT_MERGE_BYTES) -> None:
        self.inputs = list(inputs)
        self.max_lag = max_lag
        self.max_bytes = max_bytes
        self._latest = {name: -math.inf for name in self.inputs}
        self._ended: set[str] = set()
        self._heap: list[tuple[float, int, str, Any, float, Any]] = []
        self._order = itertools.count()
        self.nbytes = 0
        self.late_releases = 0
        self.overflows = 0

    def push(self, input_name: str, frame: dict[str, np.ndarray], arrival: float = 0.0,
             tag: Any = None) -> None:
        """Queue a frame of ``input_name``; ``tag`` comes back with it (e.g. its topic)."""
        ts = frame.get(TIMESTAMP)
        if ts is None or len(ts) == 0:
            return
        last = float(ts[-1])
        self._latest[input_name] = max(self._latest[input_name], last)
        size = _frame_bytes(frame)
        self.nbytes += size
        heapq.heappush(self._heap, (last, next(self._order), input_name, frame, arrival, tag,
                                    size))

    def end(self, input_name: str) -> None:
        """The input sent end-of-stream: it no longer holds the watermark back."""
        self._ended.add(input_name)

    @property
    def all_ended(self) -> bool:
        return self._ended.issuperset(self.inputs)

    @property
    def watermark(self) -> float:
        live = [self._latest[n] for n in self.inputs if n not in self._ended]
        return min(live) if live else math.inf

    def pop_ready(self, now: float = 0.0) -> list[tuple[str, Any, dict[str, np.ndarray]]]:
        """``(input, tag, frame)`` for every frame that can be processed now, in time order."""
        out = []
        mark = self.watermark
        while self._heap:
            last, _, name, frame, arrival, tag, size = self._heap[0]
            if last <= mark:
                pass
            elif self.max_lag is not None and now - arrival > self.max_lag:
                self.late_releases += 1
            elif self.max_bytes is not None and self.nbytes > self.max_bytes:
                self.overflows += 1
            else:
                break
            heapq.heappop(self._heap)
            self.nbytes -= size
            out.append((name, tag, frame))
        return out

    def __len__(self) -> int:
        return len(self._heap)


def _frame_bytes(frame: Any) -> int:
    return sum(getattr(v, "nbytes", 0) for v in frame.values())


class MergedFeeder:
    """``merged``: data and event frames of every input, released in timestamp order."""

    def __init__(self, inputs: Iterable[str], max_lag: float | None = 0.5,
                 max_bytes: int | None = DEFAULT_MERGE_BYTES) -> None:
        self.merger = TimestampMerger(inputs, max_lag=max_lag, max_bytes=max_bytes)
        self.consumed: dict[str, int] = {}
        self._eos: dict[str, int] = {}  # end-of-stream seqs, consumed once nothing is held
        self.unexpected = 0
        self._origins: dict[int, float | None] = {}  # id(frame) -> acquisition, last ready()

    def receive(self, topic: Topic, message: Any, now: float) -> list[Delivery]:
        if topic.node not in self.merger.inputs:
            self.unexpected += 1
            return []
        if message.kind == "eos":
            self.merger.end(topic.node)
            self._eos[str(topic)] = message.seq
        else:
            # (an empty frame is dropped here and not counted as consumed: if it is sent
            # again after a restart, it is dropped again)
            self.merger.push(topic.node, message.frame, arrival=now,
                             tag=(message.kind, topic, message.seq, acquisition_of(message)))
        return []

    def ready(self, now: float) -> list[Delivery]:
        released = self.merger.pop_ready(now)
        out: list[Delivery] = []
        if released:
            self._origins = {}
        for _, (kind, topic, seq, acq), frame in released:
            self.consumed[str(topic)] = seq
            self._origins[id(frame)] = acq
            out.append((kind, topic, frame))
        if self._eos and len(self.merger) == 0:  # every frame before each eos is handed out
            self.consumed.update(self._eos)
            self._eos.clear()
        return out

    def origin(self, delivery: Delivery) -> float | None:
        """Acquisition time of a delivery of the last ``ready`` call."""
        return self._origins.get(id(delivery[2]))

    @property
    def ended(self) -> bool:
        return self.merger.all_ended and len(self.merger) == 0


class ArrivalFeeder:
    """``arrival``: every frame and end-of-stream as it arrives; a tick after each."""

    def __init__(self, inputs: Iterable[str]) -> None:
        self.inputs = frozenset(inputs)
        self._open = set(self.inputs)
        self.consumed: dict[str, int] = {}
        self.unexpected = 0

    def receive(self, topic: Topic, message: Any, now: float) -> list[Delivery]:
        if topic.node not in self.inputs:
            self.unexpected += 1
            return []
        self.consumed[str(topic)] = message.seq
        if message.kind == "eos":
            self._open.discard(topic.node)
            return [("eos", topic, None)]
        return [(message.kind, topic, message.frame)]

    def ready(self, now: float) -> list[Delivery]:
        return [TICK]

    def origin(self, delivery: Delivery) -> float | None:
        return None

    @property
    def ended(self) -> bool:
        return not self._open


class RawFeeder:
    """``raw``: every message itself (end-of-stream included), as it arrives."""

    def __init__(self, inputs: Iterable[str]) -> None:
        self.inputs = frozenset(inputs)
        self._open = set(self.inputs)
        self.consumed: dict[str, int] = {}
        self.unexpected = 0

    def receive(self, topic: Topic, message: Any, now: float) -> list[Delivery]:
        if topic.node not in self.inputs:
            self.unexpected += 1
            return []
        self.consumed[str(topic)] = message.seq
        if message.kind == "eos":
            self._open.discard(topic.node)
        return [("message", topic, message)]

    def ready(self, now: float) -> list[Delivery]:
        return []

    def origin(self, delivery: Delivery) -> float | None:
        return None

    @property
    def ended(self) -> bool:
        return not self._open


def feeder_for(mode: str, inputs: Iterable[str], max_lag: float | None = 0.5,
               max_bytes: int | None = DEFAULT_MERGE_BYTES
               ) -> MergedFeeder | ArrivalFeeder | RawFeeder:
    """The feeder of a non-timed input mode (``NodeLogic.input_mode``); ``max_bytes`` bounds
    what a ``merged`` feeder holds back."""
    if mode == "merged":
        return MergedFeeder(inputs, max_lag=max_lag, max_bytes=max_bytes)
    if mode == "arrival":
        return ArrivalFeeder(inputs)
    if mode == "raw":
        return RawFeeder(inputs)
    raise ValueError(f"no feeder for input mode {mode!r}")
