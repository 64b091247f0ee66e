"""Offset and drift of a local clock to the leader clock, from time probes (no I/O here).

One probe is NTP's four readings: ``t0`` (local clock, just before the probe is sent),
``t_leader`` and ``t_leader_out`` (the leader's clock when the probe arrived and when the reply
left) and ``t3`` (local clock, just after the reply arrived). Its round trip is the time on the
wire, ``rtt = (t3 - t0) - (t_leader_out - t_leader)``, and, assuming the two paths took equally
long, the offset ``leader - local`` at local time ``(t0 + t3) / 2`` is
``(t_leader + t_leader_out) / 2 - (t0 + t3) / 2``. Whatever the path delays really were, the true
offset lies within ``rtt / 2`` of that value. (With one leader reading, the leader's own time to
answer, tens of microseconds of Python and more when a thread holds the GIL, sat on the return
path only: every offset came out low by half of it.)

The method builds on Lab Streaming Layer's: probes go in *bursts* (e.g. 8 in a row), bursts repeat
every few seconds, and the probes of a sliding window (the last ``window`` bursts) are fitted with
a straight line, ``offset(x) = a + b * (x - x_ref)``: ``a`` is the offset at the newest probe,
``b`` the drift (rate error of the local clock, e.g. 2e-4 for 200 ppm). Queueing, scheduling and
GIL delays only ever lengthen a round trip, and the error of a probe's offset is at most half of
what its round trip has beyond the shortest one, so each probe is weighted by
``1 / (rtt - rtt_min + rtt_noise)**2`` (``rtt_min``: the window's shortest round trip;
``rtt_noise``: the path asymmetry that remains even then, tens of microseconds). LSL keeps only the
fastest probe of a burst; every probe of the burst, so weighted, halved the worst error across two
network namespaces (docs/decisions.md, "Clock sync: every probe, NTP's four timestamps"). Points
far off the first fit (more than ``outlier_factor`` times a robust spread, and more than their own
half round trip) are dropped and the line refitted.

Uncertainty of ``to_leader(x)``: half the shortest round trip, plus the largest fit residual of the
probes that carry the fit (round trip within ``4 * rtt_noise`` of the shortest; the true offset at
such a probe is within its half round trip of its reading), plus the drift's standard error times
the distance to the fitted points (extrapolation). It is a bound in practice, not a standard
deviation: on loopback the true error is typically a few microseconds and well inside it.
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
    """One answered time probe (seconds; ``t0``/``t3`` local, ``t_leader``/``t_leader_out`` on
    the leader; ``t_leader_out`` defaults to ``t_leader``: a leader that answers instantly)."""

    t0: float
    t_leader: float
    t3: float
    t_leader_out: float | None = None

    @property
    def leader_hold(self) -> float:
        """How long the leader held the probe before answering."""
        return 0.0 if self.t_leader_out is None else self.t_leader_out - self.t_leader

    @property
    def rtt(self) -> float:
        return self.t3 - self.t0 - self.leader_hold

    @property
    def mid(self) -> float:
        return 0.5 * (self.t0 + self.t3)

    @property
    def offset(self) -> float:
        return self.t_leader + 0.5 * self.leader_hold - self.mid


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

    ``add_burst(probes)`` adds the burst's probes and refits; ``map`` is the current ``ClockMap``
    (None before the first burst). ``max_drift`` bounds the fitted drift (a real quartz is within
    +-100 ppm, 1000 ppm leaves room for cheap ones).
    """

    def __init__(self, window: int = 20, max_drift: float = 1e-3, outlier_factor: float = 4.0,
                 min_points_for_drift: int = 3, rtt_noise: float = 50e-6) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.max_drift = float(max_drift)
        self.outlier_factor = float(outlier_factor)
        self.min_points_for_drift = int(min_points_for_drift)
        self.rtt_noise = float(rtt_noise)
        self._bursts: deque[list[tuple[float, float, float]]] = deque(maxlen=self.window)
        self.map: ClockMap | None = None
        self.bursts = 0
        self.probes = 0
        self.outliers = 0

    def reset(self) -> None:
        self._bursts.clear()
        self.map = None
        self.bursts = self.probes = self.outliers = 0

    def add_burst(self, probes: Iterable[Probe]) -> ClockMap | None:
        """Fold one burst in; returns the new map (unchanged when the burst was empty)."""
        probes = sorted((p for p in probes
                         if p.rtt >= 0 and p.leader_hold >= 0 and math.isfinite(p.offset)),
                        key=lambda p: p.mid)
        if not probes:
            return self.map
        self.bursts += 1
        self.probes += len(probes)
        if self._bursts and probes[0].mid <= self._bursts[-1][-1][0]:
            return self.map  # local clock went backwards (a restart of the clock?): ignore
        self._bursts.append([(p.mid, p.offset, p.rtt) for p in probes])
        self.map = self._fit(len(probes))
        return self.map

    # ------------------------------------------------------------------ fitting
    def _fit(self, newest: int) -> ClockMap:
        pts = np.array([p for burst in self._bursts for p in burst], dtype=np.float64)
        x, y, rtt = pts[:, 0], pts[:, 1], pts[:, 2]
        x_ref = float(x[-1])
        w = 1.0 / (rtt - rtt.min() + self.rtt_noise) ** 2
        keep = np.ones(len(x), dtype=bool)
        a, b, b_se = self._line(x - x_ref, y, rtt, w, keep)
        if keep.sum() >= 4:
            res = y - (a + b * (x - x_ref))
            spread = 1.4826 * float(np.median(np.abs(res - np.median(res))))
            bad = (np.abs(res) > self.outlier_factor * max(spread, 1e-7)) & \
                  (np.abs(res) > 0.5 * rtt)
            if bad.any() and (~bad).sum() >= 2:
                self.outliers += int(bad[-newest:].sum())  # each point once, when it arrives
                keep = ~bad
                a, b, b_se = self._line(x - x_ref, y, rtt, w, keep)
        rtt_min = float(rtt[keep].min())
        carry = keep & (rtt <= rtt_min + 4 * self.rtt_noise)
        res = np.abs(y[carry] - (a + b * (x[carry] - x_ref)))
        xs = x[keep]
        return ClockMap(a=a, b=b, x_ref=x_ref, u0=float(0.5 * rtt_min + res.max()),
                        b_se=b_se, x_mid=float(0.5 * (xs.min() + xs.max())),
                        span=float(xs.max() - xs.min()), rtt=rtt_min,
                        residual=float(res.max()), points=int(keep.sum()))

    def _line(self, x: np.ndarray, y: np.ndarray, rtt: np.ndarray, w: np.ndarray,
              keep: np.ndarray) -> tuple[float, float, float]:
        """Weighted least squares ``y = a + b x`` over ``keep``: (a, b, standard error of b)."""
        x, y, rtt, w = x[keep], y[keep], rtt[keep], w[keep]
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
        # standard error of the slope, with the residual scale of the (weighted) fit; at least
        # what the round trips alone allow
        sigma2 = float(np.sum(w * res ** 2) / max(len(x) - 2, 1))
        b_se = math.sqrt(max(sigma2, 0.0) / sxx) if sxx > 0 else 0.0
        rtt_se = 0.5 * float(rtt.min()) / max(float(x.max() - x.min()), 1e-9)
        return a, b, max(b_se, rtt_se)
