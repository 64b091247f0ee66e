"""Event operators: turn a continuous stream into per-sample event or state flags.

Both operators work elementwise on any ``(n, ...)`` input (each channel independently), carry
their state across chunks, and are vectorised: the "last event so far" is found by forward
filling event positions with ``np.maximum.accumulate`` instead of a per-sample loop. Outputs
are float64 so they plot, sum and feed models like any other stream.
"""

from __future__ import annotations

import numpy as np

from genki_signals.errors import OperatorError
from genki_signals.signals.base import Operator

__all__ = ["ZeroCrossing", "Threshold"]


def _forward_fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Along axis 0, replace rows where ``known`` is False by the last known value.

    Row 0 counts as known everywhere: it holds the state carried in from the previous chunk.
    """
    pos = np.arange(values.shape[0]).reshape((-1,) + (1,) * (values.ndim - 1))
    last = np.maximum.accumulate(np.where(known, pos, 0), axis=0)
    return np.take_along_axis(values, last, axis=0)


class _Carrying(Operator, abstract=True):
    """An elementwise operator carrying one value per channel; the channel shape is fixed by
    the first non-empty chunk."""

    input: str

    def reset(self) -> None:
        super().reset()
        self._carry: np.ndarray | None = None

    def _carried(self, x: np.ndarray, initial: int) -> np.ndarray | None:
        """The carried row (shape ``x.shape[1:]``); None for an empty chunk before any data."""
        if self._carry is None:
            if x.shape[0] == 0:
                return None
            self._carry = np.full(x.shape[1:], initial, dtype=np.int8)
        elif self._carry.shape != x.shape[1:]:
            raise OperatorError(f"{self.describe()}: input '{self.input}' must keep the shape "
                                f"of its earlier chunks ((n, *{self._carry.shape})), "
                                f"got {x.shape}")
        return self._carry


class ZeroCrossing(_Carrying):
    """Flag the samples where the signal changes sign: ``+1`` rising, ``-1`` falling, else 0.

    Exact zeros (and NaN) have no sign: the sign carried forward is that of the last nonzero
    sample, across chunks too. A crossing is reported at sample ``i`` when ``x[i]`` is nonzero
    and its sign differs from the last nonzero sign before ``i``; so ``-1, 0, 0, 2`` has one
    rising crossing, at the ``2`` (where the new sign is established), and ``-1, 0, -1`` has
    none. The first nonzero sample of the stream is never a crossing. ``direction`` keeps
    ``"both"``, only ``"rising"`` (+1) or only ``"falling"`` (-1) crossings.
    """

    def __init__(self, input: str, name: str | None = None, *,
                 direction: str = "both") -> None:
        super().__init__([input], name)
        self.input = input
        self.direction = self.check_choice("direction", direction, ["both", "rising", "falling"])
        self.reset()

    def _step(self, x: np.ndarray) -> np.ndarray:
        carry = self._carried(x, initial=0)
        if carry is None:
            return np.zeros(x.shape)
        sign = np.empty((x.shape[0] + 1,) + x.shape[1:], dtype=np.int8)
        sign[0] = carry
        sign[1:] = x > 0
        sign[1:] -= x < 0                                      # NaN: neither, so 0
        held = _forward_fill(sign, sign != 0)                 # last nonzero sign up to each row
        new, before = sign[1:], held[:-1]
        crossing = (new != 0) & (before != 0) & (new != before)
        if self.direction == "rising":
            crossing &= new > 0
        elif self.direction == "falling":
            crossing &= new < 0
        self._carry = held[-1].copy()
        return np.where(crossing, new, 0).astype(float)


class Threshold(_Carrying):
    """On/off state with hysteresis: 1.0 while "on", 0.0 while "off" (float64).

    At each sample the state turns on when ``x > high``, off when ``x < low``, and otherwise
    (``low <= x <= high``, or NaN) keeps its previous value; the stream starts off and the
    state is carried across chunks. ``low`` defaults to ``high`` (no hysteresis: on above,
    off below, unchanged exactly at ``high``). A band ``low < high`` keeps a noisy signal near
    the threshold from chattering.
    """

    def __init__(self, input: str, name: str | None = None, *, high: float,
                 low: float | None = None) -> None:
        super().__init__([input], name)
        self.input = input
        self.high = self.check_number("high", high)
        if low is not None:
            self.check_number("low", low)
            if low > high:
                raise self._fail("low", f"must be <= high ({high!r}), got {low!r}")
        self.low = low
        self.reset()

    def _step(self, x: np.ndarray) -> np.ndarray:
        carry = self._carried(x, initial=0)
        if carry is None:
            return np.zeros(x.shape)
        low = self.high if self.low is None else self.low
        # -1: keep the previous state; 1: turn on; 0: turn off. Row 0: the carried state.
        trig = np.empty((x.shape[0] + 1,) + x.shape[1:], dtype=np.int8)
        trig[0] = carry
        trig[1:] = np.where(x > self.high, 1, np.where(x < low, 0, -1))
        state = _forward_fill(trig, trig >= 0)
        self._carry = state[-1].copy()
        return state[1:].astype(float)

