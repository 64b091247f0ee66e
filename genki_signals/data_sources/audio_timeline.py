"""AudioTimeline: per-sample timestamps of an audio stream from its sample count.

An audio interface samples on its own crystal: sample ``k`` was taken at ``t0 + k / fs_true``.
Stamping each block with the host time its callback ran would put the callback's scheduling
jitter (milliseconds) into every timestamp; counting samples does not. So:

* **Anchored once.** At the first block, sample ``first`` is placed at ``arrival - latency -
  (n - 1) / fs``: the block's last sample was captured about one input latency (PortAudio's
  reported figure) before its callback ran. From then on sample ``k`` is at ``A + (k - k0) * P``
  with ``P = 1 / fs``: consecutive samples are exactly one period apart.
* **Drift-corrected.** The device's crystal and the topology clock disagree by tens of ppm
  (50 ppm is 3 ms a minute: enough to misalign a long recording). The blocks'
  ``(last sample index, arrival)`` pairs feed a ``DeviceClockFit`` (the lower envelope of
  arrivals: robust to late callbacks; only the earliest pair of every quarter second is given
  to it, the only one the envelope could use). Once it spans ``min_span`` seconds, its rate
  replaces ``P`` from the next sample on (continuously: the timeline is re-based at that
  sample, never moved back).
  A rate further than ``max_drift_ppm`` from nominal is not a drift but a device that does not
  run in real time (a file-backed virtual device) or a wrong nominal rate: it is not applied and
  ``realtime`` turns False (reported in stats).
* **Overflows re-anchor.** When the driver dropped samples (PortAudio's input-overflow flag) the
  count no longer matches time; the flagged block (the first after the loss) is anchored again
  like the first one (never earlier than the last timestamp given out), and the fit restarts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genki_signals.clocksync.device import DeviceClockFit

__all__ = ["AudioTimeline"]

FIT_EVERY = 0.25
"""Seconds of samples per point given to the fit (its buckets are 0.5 s)."""


class AudioTimeline:
    """Timestamps (topology-clock seconds) for consecutive blocks of an audio stream."""

    def __init__(self, sample_rate: float, latency: float = 0.0, *, min_span: float = 5.0,
                 max_drift_ppm: float = 1000.0, window: float = 60.0) -> None:
        if not (math.isfinite(sample_rate) and sample_rate > 0):
            raise ValueError(f"AudioTimeline: 'sample_rate' must be > 0, got {sample_rate!r}")
        self.sample_rate = float(sample_rate)
        self.latency = float(latency)
        self.min_span = float(min_span)
        self.max_drift_ppm = float(max_drift_ppm)
        self.window = float(window)
        self.period = 1.0 / self.sample_rate
        self.reanchors = 0
        self.realtime: bool | None = None  # unknown until the fit spans min_span
        self.measured_drift_ppm: float | None = None
        self._anchor: float | None = None  # time of sample _k0
        self._k0 = 0
        self._last = -math.inf  # the last timestamp given out
        self._best: tuple[int, float, float] | None = None  # (index, arrival, relative)
        self._batch_first = 0
        self._new_fit(0)

    def _new_fit(self, first: int) -> None:
        # max_rate_error far above any plausible drift, so a non-real-time device shows as one
        self._fit = DeviceClockFit(self.period, window=self.window, bucket=0.5,
                                   max_rate_error=0.5, reset_after=1.0)
        self._fit_first = first
        self._best, self._batch_first = None, first

    @property
    def drift_ppm(self) -> float:
        """The correction in use: ppm by which a sample period differs from ``1 / fs``."""
        return (self.period * self.sample_rate - 1.0) * 1e6

    def stamp(self, blocks: list[tuple[int, int, float, bool]]) -> np.ndarray:
        """Timestamps of consecutive blocks ``(first, n, arrival, reanchor)``, concatenated.

        A block holds samples ``first .. first + n - 1`` and its callback ran at ``arrival``;
        ``reanchor``: samples were lost before it (an input overflow). The fitted rate is
        updated every ``FIT_EVERY`` seconds of samples, and applies from the next sample on.
        """
        out = [self._block(first, n, arrival, reanchor) for first, n, arrival, reanchor in blocks]
        return np.concatenate(out) if out else np.zeros(0)

    def _block(self, first: int, n: int, arrival: float, reanchor: bool) -> np.ndarray:
        if self._anchor is None or reanchor:
            anchor = arrival - self.latency - (n - 1) * self.period
            if self._anchor is not None:
                self.reanchors += 1
                anchor = max(anchor, self._last + self.period)
                self._new_fit(first)
            self._anchor, self._k0 = anchor, first
        ts = self._anchor + (np.arange(first, first + n, dtype=np.float64) - self._k0) \
            * self.period
        if n:
            self._last = float(ts[-1])
            self._offer(first + n - 1, arrival)
        return ts

    def _offer(self, index: int, arrival: float) -> None:
        """Keep the earliest arrival (relative to the count) of each ``FIT_EVERY`` seconds of
        samples, and fit that one point: the lower envelope needs no other, and refitting
        twice a second instead of at every read keeps the fit's cost negligible."""
        rel = arrival - index / self.sample_rate
        if self._best is None or rel < self._best[2]:
            self._best = (index, arrival, rel)
        if (index - self._batch_first) / self.sample_rate >= FIT_EVERY:
            best_index, best_arrival, _ = self._best
            self._fit.update([best_index], [best_arrival])
            self._best, self._batch_first = None, index + 1
            self._correct(index + 1)

    def _correct(self, next_index: int) -> None:
        """Apply the fitted rate from sample ``next_index`` on, once it is trustworthy."""
        rate_ppm = self._fit.stats()["device_rate_ppm"]
        span = (next_index - self._fit_first) * (1.0 / self.sample_rate)
        if rate_ppm is None or span < self.min_span:
            return
        self.measured_drift_ppm = rate_ppm
        self.realtime = abs(rate_ppm) <= self.max_drift_ppm
        if not self.realtime:
            return
        # re-base at next_index so the change of period moves no sample already stamped
        self._anchor += (next_index - self._k0) * self.period
        self._k0 = next_index
        self.period = (1.0 + rate_ppm * 1e-6) / self.sample_rate

    def stats(self) -> dict[str, Any]:
        return {"clock_drift_ppm": round(self.drift_ppm, 3),
                "clock_realtime": self.realtime, "clock_reanchors": self.reanchors}
