"""Offset and drift of a local clock to the leader clock, from time probes (no I/O here).

One probe is three readings: ``t0`` (local clock, just before the probe is sent), ``t_leader``
(the leader's clock when it answered) and ``t3`` (local clock, just after the reply arrived).
Its round trip is ``rtt = t3 - t0`` and, assuming the leader answered half-way, the offset
``leader - local`` at local time ``(t0 + t3) / 2`` is ``t_leader - (t0 + t3) / 2``. Whatever the
path delays really were, the true offset lies within ``rtt / 2`` of that value.

The method is Lab Streaming Layer's: probes go in *bursts* (e.g. 8 in a row); only the probe of a
burst with the lowest round trip is kept (queueing, scheduling and GIL delays only ever lengthen a
round trip, so the shortest one is the least distorted). Bursts repeat every few seconds and the
kept points of a sliding window (the last ``window`` bursts) are fitted with a straight line,
``offset(x) = a + b * (x - x_ref)``: ``a`` is the offset at the newest point, ``b`` the drift (rate
error of the local clock, e.g. 2e-4 for 200 ppm). Points are weighted by ``1 / rtt**2``; points
far off the first fit (more than ``outlier_factor`` times a robust spread, and more than their own
half round trip) are dropped and the line refitted.

Uncertainty of ``to_leader(x)``: the mean half round trip of the points used (the offset of a
point is only known to +-rtt/2), plus the largest fit residual, plus the drift's standard error
times the distance to the fitted points (extrapolation). It is a bound in practice, not a
standard deviation: on loopback the true error is typically a few microseconds and well inside it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Probe", "ClockMap", "OffsetEstimator"]


@dataclass(frozen=True)
class Probe:
    """One answered time probe (seconds; ``t0``/``t3`` local, ``t_leader`` on the leader)."""

    t0: float
    t_leader: float
    t3: float

    @property
    def rtt(self) -> float:
        return self.t3 - self.t0

    @property
    def mid(self) -> float:
        return 0.5 * (self.t0 + self.t3)

    @property
    def offset(self) -> float:
        return self.t_leader - self.mid


@dataclass(frozen=True)
class ClockMap:
    """An immutable local -> leader mapping: ``leader = x + a + b * (x - x_ref)``.

    ``u0`` (constant part of the uncertainty) and ``b_se`` (standard error of ``b``) give
    ``uncertainty(x) = u0 + b_se * max(0, |x - x_mid| - span / 2)``: zero extrapolation term
    inside the fitted span, growing linearly outside it.
    """

    a: float = 0.0
    b: float = 0.0
    x_ref: float = 0.0
    u0: float = math.inf
    b_se: float = 0.0
    x_mid: float = 0.0
    span: float = 0.0
    rtt: float = math.nan  # best round trip of the window
    residual: float = math.nan  # largest |residual| of the fit
    points: int = 0

    def to_leader(self, x: float) -> float:
        return x + self.a + self.b * (x - self.x_ref)

    def offset(self, x: float) -> float:
        """``leader - local`` at local time ``x``."""
        return self.a + self.b * (x - self.x_ref)

    def uncertainty(self, x: float) -> float:
        return self.u0 + self.b_se * max(0.0, abs(x - self.x_mid) - 0.5 * self.span)


IDENTITY = ClockMap(u0=0.0, points=0)
"""The mapping of the leader itself: its local clock *is* leader time."""


class OffsetEstimator:
    """Sliding-window fit of the offset of a local clock to the leader (see module docstring).

    ``add_burst(probes)`` keeps the burst's lowest-round-trip probe and refits; ``map`` is the
    current ``ClockMap`` (None before the first burst). ``max_drift`` bounds the fitted drift (a
    real quartz is within +-100 ppm, 1000 ppm leaves room for cheap ones).
    """

    def __init__(self, window: int = 20, max_drift: float = 1e-3, outlier_factor: float = 4.0,
                 min_points_for_drift: int = 3, rtt_floor: float = 5e-6) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.max_drift = float(max_drift)
        self.outlier_factor = float(outlier_factor)
        self.min_points_for_drift = int(min_points_for_drift)
        self.rtt_floor = float(rtt_floor)
        self._points: deque[tuple[float, float, float]] = deque(maxlen=self.window)
        self.map: ClockMap | None = None
        self.bursts = 0
        self.probes = 0
        self.outliers = 0

    def reset(self) -> None:
        self._points.clear()
        self.map = None
        self.bursts = self.probes = self.outliers = 0

    def add_burst(self, probes: Iterable[Probe]) -> ClockMap | None:
        """Fold one burst in; returns the new map (unchanged when the burst was empty)."""
        probes = [p for p in probes if p.rtt >= 0 and math.isfinite(p.t_leader)]
        if not probes:
            return self.map
        self.bursts += 1
        self.probes += len(probes)
        best = min(probes, key=lambda p: p.rtt)
        if self._points and best.mid <= self._points[-1][0]:
            return self.map  # local clock went backwards (a restart of the clock?): ignore
        self._points.append((best.mid, best.offset, best.rtt))
        self.map = self._fit()
        return self.map

    # ------------------------------------------------------------------ fitting
    def _fit(self) -> ClockMap:
        pts = np.array(self._points, dtype=np.float64)
        x, y, rtt = pts[:, 0], pts[:, 1], pts[:, 2]
        x_ref = float(x[-1])
        keep = np.ones(len(x), dtype=bool)
        a, b, b_se = self._line(x - x_ref, y, rtt, keep)
        if keep.sum() >= 4:
            res = y - (a + b * (x - x_ref))
            spread = 1.4826 * float(np.median(np.abs(res - np.median(res))))
            bad = (np.abs(res) > self.outlier_factor * max(spread, 1e-7)) & \
                  (np.abs(res) > 0.5 * rtt)
            if bad.any() and (~bad).sum() >= 2:
                self.outliers += int(bad[-1])  # count each point once, when it arrives
                keep = ~bad
                a, b, b_se = self._line(x - x_ref, y, rtt, keep)
        res = y[keep] - (a + b * (x[keep] - x_ref))
        xs = x[keep]
        return ClockMap(a=a, b=b, x_ref=x_ref,
                        u0=float(0.5 * rtt[keep].mean() + np.abs(res).max()),
                        b_se=b_se, x_mid=float(0.5 * (xs.min() + xs.max())),
                        span=float(xs.max() - xs.min()), rtt=float(rtt[keep].min()),
                        residual=float(np.abs(res).max()), points=int(keep.sum()))

    def _line(self, x: np.ndarray, y: np.ndarray, rtt: np.ndarray, keep: np.ndarray
              ) -> tuple[float, float, float]:
        """Weighted least squares ``y = a + b x`` over ``keep``: (a, b, standard error of b)."""
        x, y, rtt = x[keep], y[keep], rtt[keep]
        w = 1.0 / np.maximum(rtt, self.rtt_floor) ** 2
        if len(x) < self.min_points_for_drift or float(x.max() - x.min()) <= 0:
            b = self.map.b if self.map is not None else 0.0  # too few points: keep the drift
            a = float(np.sum(w * (y - b * x)) / np.sum(w))
            return a, b, (self.map.b_se if self.map is not None else 0.0)
        sw = w.sum()
        xm = float(np.sum(w * x) / sw)
        ym = float(np.sum(w * y) / sw)
        sxx = float(np.sum(w * (x - xm) ** 2))
        b = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
        b = min(max(b, -self.max_drift), self.max_drift)
        a = ym - b * xm
        res = y - (a + b * x)
        n = len(x)
        # standard error of the slope, with the residual scale of the (weighted) fit; at least
        # what the round trips alone allow
        sigma2 = float(np.sum(w * res ** 2) / max(n - 2, 1))
        b_se = math.sqrt(max(sigma2, 0.0) / sxx) if sxx > 0 else 0.0
        rtt_se = 0.5 * float(rtt.mean()) / max(float(x.max() - x.min()), 1e-9)
        return a, b, max(b_se, rtt_se)
