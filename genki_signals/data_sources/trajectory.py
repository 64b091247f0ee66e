"""A scripted, mouse-like 2-D trajectory: rest, draw a shape, rest again, repeating.

Stands in for a user drawing gestures with the mouse, so gesture pipelines run (and are
tested) without a screen. A vectorised function of time like ``SineWave``: use it in a Sampler.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genki_signals.data_sources.base import SourceParameterError

__all__ = ["GestureScript"]

SHAPES = ("none", "circle", "square", "triangle")


def _polygon(corners: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points at fraction ``u`` (0..1) of the closed polygon's perimeter, from its first corner."""
    closed = np.vstack([corners, corners[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)]) / seg.sum()
    i = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(seg) - 1)
    frac = ((u - cum[i]) / (cum[i + 1] - cum[i]))[:, None]
    return closed[i] + frac * (closed[i + 1] - closed[i])


class GestureScript:
    """Position ``(2,)`` in pixels at time ``t``: every ``period`` seconds, rest for
    ``period - duration`` seconds at the shape's start point, then trace ``shape`` (of size
    ``size`` pixels around ``center``) at constant speed in ``duration`` seconds.

    ``shape="none"`` rests forever (the "still input" of tests). The path is continuous, so its
    derivative is a plausible mouse velocity.
    """

    vectorized = True

    def __init__(self, shape: str = "circle", period: float = 3.0, duration: float = 1.0,
                 size: float = 100.0, center: Sequence[float] = (400.0, 300.0)) -> None:
        if shape not in SHAPES:
            raise SourceParameterError(f"GestureScript: field 'shape' must be one of "
                                       f"{list(SHAPES)}, got {shape!r}")
        for field, value in (("period", period), ("duration", duration), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise SourceParameterError(f"GestureScript: field '{field}' must be a number "
                                           f"> 0, got {value!r}")
        if duration > period:
            raise SourceParameterError(f"GestureScript: field 'duration' ({duration}) must not "
                                       f"exceed 'period' ({period})")
        if len(center) != 2:
            raise SourceParameterError(f"GestureScript: field 'center' must be [x, y], "
                                       f"got {center!r}")
        self.shape, self.period, self.duration = shape, float(period), float(duration)
        self.size, self.center = float(size), np.asarray(center, dtype=float)

    def _path(self, u: np.ndarray) -> np.ndarray:
        r = self.size / 2
        if self.shape == "circle":
            angle = 2 * np.pi * u
            return self.center + r * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        if self.shape == "square":
            corners = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * r
        else:  # triangle
            angle = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
            corners = r * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        return self.center + _polygon(corners, u)

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        ts = np.atleast_1d(np.asarray(t, dtype=float))
        if self.shape == "none":
            out = np.broadcast_to(self.center, (len(ts), 2)).copy()
        else:
            phase = np.mod(ts, self.period) - (self.period - self.duration)
            u = np.clip(phase / self.duration, 0.0, 1.0)  # 0 while resting
            out = self._path(u)
        return out if np.ndim(t) else out[0]
