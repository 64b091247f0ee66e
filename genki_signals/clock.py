"""Clock: the time base of every timestamp in genki_signals.

Timestamps are float64 seconds on a monotonic clock (``time.monotonic``, CLOCK_MONOTONIC: one
clock for every process of the host) counted from the clock's ``start()``, or from an ``anchor()``
given by a launcher so that every node of a topology counts from the same origin. Monotonic, so timestamps never jump back when the wall clock is adjusted;
``wall_anchor`` (UTC epoch seconds read at ``start()``) converts them to wall time when needed.
``DEFAULT_CLOCK`` is started at import and shared by every source that is not given a clock, so
timestamps from different sources in one process are comparable.

In a topology node the default clock *follows* the node's estimate of the clock leader's time
(``follow``, set up by ``genki_signals.clocksync``): every source of the process then stamps its
samples in leader time without knowing about clock synchronisation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "DEFAULT_CLOCK", "default_clock"]


class Clock:
    """Monotonic seconds since ``start()``; a new clock is started on construction."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self.wall_anchor = 0.0
        self._source: Callable[[], float] | None = None
        self.start()

    def start(self) -> Clock:
        """(Re)anchor the clock: ``now()`` restarts from 0. Call before anyone reads it."""
        self._t0 = time.monotonic()
        self.wall_anchor = time.time()
        return self

    def anchor(self, origin: float, wall_anchor: float | None = None) -> Clock:
        """Count from ``origin`` (a ``time.monotonic()`` reading, e.g. the launcher's start)."""
        self._t0 = origin
        self.wall_anchor = wall_anchor if wall_anchor is not None else \
            time.time() - (time.monotonic() - origin)
        return self

    def follow(self, source: Callable[[], float] | None) -> Clock:
        """Read ``now()`` from ``source`` (e.g. a leader-time estimate); None: back to local."""
        self._source = source
        return self

    def now(self) -> float:
        """Seconds since ``start()``, monotonic (or what the followed source says)."""
        source = self._source
        if source is not None:
            return source()
        return time.monotonic() - self._t0

    def to_wall(self, t: float) -> float:
        """UTC epoch seconds of clock time ``t``."""
        return self.wall_anchor + t

    def __repr__(self) -> str:
        return f"Clock(now={self.now():.6f}, wall_anchor={self.wall_anchor:.6f})"


DEFAULT_CLOCK = Clock()


def default_clock() -> Clock:
    """The process-wide clock used when a source is given none."""
    return DEFAULT_CLOCK
