"""Device clocks mapped to leader time: an online lower-envelope linear fit.

A sensor that stamps its own samples (the Wave ring's ``timestamp_us``, an audio card's sample
counter) has a clock with its own offset and rate. The host only knows when each packet
*arrived*, and an arrival is always *later* than the sample by a transport delay that jitters by
milliseconds (radio retries, USB polling, the OS scheduler) but is never negative. So the pairs
``(device time u, arrival y)`` lie on or above the line ``y = a + b * u + d_min`` and the right
fit is the *lower envelope*, not least squares (which would be biased by the mean delay and
pulled by every late packet). This is the convex-hull method of clock-skew estimation (Moon,
Skelly and Towsley, 1999): among the lines below every point, take the one closest to the points
on average, i.e. the lower-convex-hull edge spanning the mean device time.

Online and bounded: device time is cut into ``bucket``-second buckets, and each bucket keeps only
its earliest-arriving point (relative to the current rate); the hull is rebuilt over the buckets
of the last ``window`` seconds when one of them changes. Gaps cost nothing (buckets are simply
missing; with a single bucket left the last known rate is kept). A device clock that restarts
(time going backwards outside a counter wrap, or a jump making arrivals precede the fit by more
than ``reset_after`` seconds) restarts the fit, counted in ``resets``. Counters that wrap
(``wrap``: the period in device units, e.g. ``2**32`` for a uint32 microsecond counter) are
unwrapped.

Mapped times are the earliest possible arrival times of the samples; subtract a known minimum
transport latency with ``latency`` (seconds) when it is known (e.g. from a loopback measurement).
``genki_signals.data_sources.device_clock.DeviceClocked`` wraps a ``Source`` whose frames carry
the device stamps: it replaces ``timestamp`` (the host's arrival stamps, in leader time) with the
mapped device times and keeps the raw device stamps as their own field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["DeviceClockFit"]


class DeviceClockFit:
    """Online fit ``leader = a + b * device_seconds`` robust to arrival jitter and gaps.

    ``scale``: seconds per device unit (1e-6 for microseconds, ``1 / fs`` for a sample counter).
    ``max_rate_error``: the fitted rate ``b`` stays within ``1 +- max_rate_error``.
    ``rate_prior``: when the device's crystal tolerance is known (e.g. ``100e-6``), the rate is
    the least-squares line through the lower hull's vertices, regularised toward the nominal
    rate 1 as a Gaussian prior of this standard deviation: with few buckets the prior dominates,
    with many the data do. None: the slope of the hull edge at the mean device time (no prior).
    """

    def __init__(self, scale: float = 1.0, *, window: float = 60.0, bucket: float = 0.5,
                 wrap: float | None = None, reset_after: float = 1.0, latency: float = 0.0,
                 max_rate_error: float = 0.01, rate_prior: float | None = None) -> None:
        for name, value in (("scale", scale), ("window", window), ("bucket", bucket),
                            ("reset_after", reset_after)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DeviceClockFit: '{name}' must be a number > 0, got {value!r}")
        if wrap is not None and not (math.isfinite(wrap) and wrap > 0):
            raise ValueError(f"DeviceClockFit: 'wrap' must be > 0 or None, got {wrap!r}")
        self.scale = float(scale)
        self.window = float(window)
        self.bucket = float(bucket)
        self.wrap = None if wrap is None else float(wrap)
        self.reset_after = float(reset_after)
        self.latency = float(latency)
        self.max_rate_error = float(max_rate_error)
        if rate_prior is not None and not (math.isfinite(rate_prior) and rate_prior > 0):
            raise ValueError(f"DeviceClockFit: 'rate_prior' must be > 0 or None, got "
                             f"{rate_prior!r}")
        self.rate_prior = None if rate_prior is None else float(rate_prior)
        self.resets = 0
        self.samples = 0
        self._clear()

    def _clear(self) -> None:
        self._x0: float | None = None  # device seconds at the first sample (keeps u small)
        self._unwrap = 0.0  # device units added by counter wraps
        self._last_raw: float | None = None
        self._last_u = -math.inf
        self._buckets: dict[int, tuple[float, float]] = {}  # bucket -> (u, y) earliest arrival
        self._a = math.nan
        self._b = 1.0
        self._rate_known = False

    @property
    def ready(self) -> bool:
        """True once a first point is in (the rate is 1 until two buckets are)."""
        return not math.isnan(self._a)

    @property
    def rate(self) -> float:
        """Leader seconds per device second (1 + drift)."""
        return self._b

    @property
    def drift_ppm(self) -> float:
        return (self._b - 1.0) * 1e6

    # ------------------------------------------------------------------ update
    def update(self, device: Any, arrival: Any) -> np.ndarray:
        """Add samples: device stamps (device units) and their host arrival times (leader s).

        Returns the samples' leader times under the fit that includes them (NaN where a stamp
        or an arrival is not finite).
        """
        dev = np.asarray(device, dtype=np.float64).reshape(-1)
        y = np.asarray(arrival, dtype=np.float64).reshape(-1)
        if dev.shape != y.shape:
            raise ValueError(f"DeviceClockFit.update: {dev.size} device stamps but "
                             f"{y.size} arrival times")
        out = np.full(dev.shape, np.nan)
        good = np.flatnonzero(np.isfinite(dev) & np.isfinite(y))
        dev, y = dev[good], y[good]
        mapped = np.empty(dev.shape)
        i = 0
        while i < dev.size:
            units = self._unwrapped(dev[i:])
            if self._x0 is None:
                self._x0 = float(units[0]) * self.scale
            u = units * self.scale - self._x0
            bad = np.diff(np.concatenate(([self._last_u], u))) < 0  # device clock went back
            if self.ready:  # or jumped: arrivals long before the fit says they can be
                bad |= (y[i:] - (self._a + self._b * u)) < -self.reset_after
            hits = np.flatnonzero(bad)
            cut = int(hits[0]) if hits.size else u.size
            if cut:
                self._accept(u[:cut], y[i:i + cut], float(dev[i + cut - 1]),
                             float(units[cut - 1]))
                mapped[i:i + cut] = self._a + self._b * u[:cut] - self.latency
                i += cut
            if i < dev.size:
                self._restart()
        out[good] = mapped
        return out

    def _unwrapped(self, dev: np.ndarray) -> np.ndarray:
        """Device units with counter wraps undone, continuing from the last accepted stamp."""
        if self.wrap is None:
            return dev
        prev = dev[0] if self._last_raw is None else self._last_raw
        steps = np.diff(np.concatenate(([prev], dev)))
        return dev + self._unwrap + np.cumsum(np.where(steps < -0.5 * self.wrap, self.wrap, 0.0))

    def _restart(self) -> None:
        self.resets += 1
        resets, samples = self.resets, self.samples
        self._clear()
        self.resets, self.samples = resets, samples

    def _accept(self, u: np.ndarray, y: np.ndarray, last_raw: float, last_units: float
                ) -> None:
        self._last_raw, self._unwrap = last_raw, last_units - last_raw
        self._last_u = float(u[-1])
        self.samples += u.size
        b = self._b
        keys = np.floor(u / self.bucket).astype(np.int64)
        rel = y - b * u
        order = np.lexsort((rel, keys))  # by bucket, then earliest relative arrival first
        first = np.concatenate(([True], keys[order][1:] != keys[order][:-1]))
        changed = False
        for i in order[first]:
            k = int(keys[i])
            old = self._buckets.get(k)
            if old is None or rel[i] < old[1] - b * old[0]:
                self._buckets[k] = (float(u[i]), float(y[i]))
                changed = True
        oldest = int(keys.max()) - int(math.ceil(self.window / self.bucket))
        for k in [k for k in self._buckets if k < oldest]:
            del self._buckets[k]
            changed = True
        if changed:
            self._refit()

    def _refit(self) -> None:
        pts = [self._buckets[k] for k in sorted(self._buckets)]
        u = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        # The rate comes from complete buckets: the newest is still filling, and its earliest
        # arrival so far (of a few samples) can sit far above the envelope and tilt the hull's
        # last edge. It still counts for the offset (the line stays under every point).
        ud, yd = u[:-1], y[:-1]
        if len(ud) >= 2 and ud[-1] - ud[0] >= self.bucket:
            if self.rate_prior is None:
                b = _envelope_slope(ud, yd, float(ud.mean()))
            else:
                b = _hull_slope_with_prior(ud, yd, self.rate_prior)
            lo, hi = 1.0 - self.max_rate_error, 1.0 + self.max_rate_error
            self._b = min(max(b, lo), hi)
            self._rate_known = True
        self._a = float(np.min(y - self._b * u))  # the line touches the lowest point

    # ------------------------------------------------------------------ mapping
    def map(self, device: Any) -> np.ndarray:
        """Leader times of device stamps under the current fit (NaN before the first point)."""
        dev = np.asarray(device, dtype=np.float64)
        if not self.ready:
            return np.full(dev.shape, np.nan)
        units = dev
        if self.wrap is not None and self._last_raw is not None:
            # a counter value means the period nearest to the last accepted stamp
            last = self._last_raw + self._unwrap
            units = dev + self._unwrap
            units = units - self.wrap * np.round((units - last) / self.wrap)
        return self._a + self._b * (units * self.scale - self._x0) - self.latency

    def spread(self, quantile: float = 0.5) -> float | None:
        """Height (s) of the buckets' earliest arrivals above the fitted line: the median, or
        the given ``quantile`` (0-1) of the complete buckets' heights.

        An uncertainty of the mapping: the line touches the lowest point, and the other
        complete buckets' fastest packets sit this far above it. ~0 when the minimum
        transport delay is steady; None until the rate is fitted (two buckets).
        """
        if not self._rate_known:
            return None
        done = [self._buckets[k] for k in sorted(self._buckets)][:-1]  # the newest is filling
        u = np.array([p[0] for p in done])
        y = np.array([p[1] for p in done])
        return float(np.quantile(y - (self._a + self._b * u), quantile))

    def stats(self) -> dict[str, Any]:
        return {"device_rate_ppm": self.drift_ppm if self._rate_known else None,
                "device_points": len(self._buckets), "device_resets": self.resets,
                "device_samples": self.samples}


def _envelope_slope(u: np.ndarray, y: np.ndarray, at: float) -> float:
    """Slope of the lower convex hull of the points (sorted by u) at ``u = at``."""
    hull: list[int] = []
    for i in range(len(u)):
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            # keep k only if it lies strictly below the segment j -> i
            if (y[k] - y[j]) * (u[i] - u[j]) >= (y[i] - y[j]) * (u[k] - u[j]):
                hull.pop()
            else:
                break
        hull.append(i)
    if len(hull) == 1:
        return 1.0
    for j, k in zip(hull, hull[1:]):
        if u[k] >= at:
            return float((y[k] - y[j]) / (u[k] - u[j]))
    j, k = hull[-2], hull[-1]
    return float((y[k] - y[j]) / (u[k] - u[j]))


def _lower_hull(u: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of the points (sorted by u)."""
    hull: list[int] = []
    for i in range(len(u)):
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            if (y[k] - y[j]) * (u[i] - u[j]) >= (y[i] - y[j]) * (u[k] - u[j]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def _hull_slope_with_prior(u: np.ndarray, y: np.ndarray, prior: float) -> float:
    """Least-squares slope through the points on the floor, shrunk toward 1.

    The floor: the points within twice the noise of the lower envelope, where the envelope is
    the lower-hull edge spanning the mean device time (the hull's own first and last points are
    vertices however high they sit, so they are not taken as floor by default). The noise is
    the robust spread (MAD) of the lower half of the residuals above that edge, at least 0.1 ms.
    A Gaussian prior ``N(1, prior**2)`` on the slope against that noise keeps a short span of
    device time from producing a wild rate; every floor point counts, so one lucky low bucket
    tilts the rate less than a two-point edge would.
    """
    edge = _envelope_slope(u, y, float(u.mean()))
    r = y - edge * u
    r = r - r.min()
    low = r[r <= np.median(r)]
    noise = max(1.4826 * float(np.median(np.abs(low - np.median(low)))), 1e-4)
    floor = r <= 2.0 * noise
    if np.count_nonzero(floor) < 2:
        floor = np.zeros(len(u), dtype=bool)
        floor[_lower_hull(u, y)] = True
    uf, yf = u[floor], y[floor]
    uc, yc = uf - uf.mean(), yf - yf.mean()
    lam = (noise / prior) ** 2
    return float((np.dot(uc, yc) + lam) / (np.dot(uc, uc) + lam))
