"""Merging several inputs by timestamp, never by arrival order."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from genki_signals.frames import TIMESTAMP


class TimestampMerger:
    """Releases frames from several ordered inputs in timestamp order.

    Each input delivers frames in its own time order. A frame is released once no input can
    still deliver an earlier one: its last timestamp is at or below the *watermark*, the lowest
    "latest timestamp seen" over the inputs that have not ended. Live, an input that falls silent
    must not stall the others forever: a frame held longer than ``max_lag`` seconds (of arrival
    time) is released anyway and counted in ``late_releases``. ``max_lag=None`` waits forever,
    which is what a lossless replay wants: the release order then depends only on timestamps.
    """

    def __init__(self, inputs: Iterable[str], max_lag: float | None = 0.5) -> None:
        self.inputs = list(inputs)
        self.max_lag = max_lag
        self._latest = {name: -math.inf for name in self.inputs}
        self._ended: set[str] = set()
        self._heap: list[tuple[float, int, str, Any, float, Any]] = []
        self._order = itertools.count()
        self.late_releases = 0

    def push(self, input_name: str, frame: dict[str, np.ndarray], arrival: float = 0.0,
             tag: Any = None) -> None:
        """Queue a frame of ``input_name``; ``tag`` comes back with it (e.g. its topic)."""
        ts = frame.get(TIMESTAMP)
        if ts is None or len(ts) == 0:
            return
        last = float(ts[-1])
        self._latest[input_name] = max(self._latest[input_name], last)
        heapq.heappush(self._heap, (last, next(self._order), input_name, frame, arrival, tag))

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
            last, _, name, frame, arrival, tag = self._heap[0]
            if last <= mark:
                pass
            elif self.max_lag is not None and now - arrival > self.max_lag:
                self.late_releases += 1
            else:
                break
            heapq.heappop(self._heap)
            out.append((name, tag, frame))
        return out

    def __len__(self) -> int:
        return len(self._heap)
