"""Event operators: turn a continuous stream into per-sample event or state flags, and events.

``ZeroCrossing`` and ``Threshold`` work elementwise on any ``(n, ...)`` input (each channel
independently); their outputs are float64 so they plot, sum and feed models like any other
stream. ``EventTrigger`` turns class scores into debounced events, raised through the operator
contract's ``pop_events()`` (see ``signals/base.py``). All of them carry their state across
chunks and are vectorised: the "last event so far" is found by forward filling event positions
with ``np.maximum.accumulate`` instead of a per-sample loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genki_signals.errors import OperatorError
from genki_signals.signals.base import Event, StatefulOperator

__all__ = ["ZeroCrossing", "Threshold", "EventTrigger"]


def _forward_fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Along axis 0, replace rows where ``known`` is False by the last known value.

    Row 0 counts as known everywhere: it holds the state carried in from the previous chunk.
    """
    pos = np.arange(values.shape[0]).reshape((-1,) + (1,) * (values.ndim - 1))
    last = np.maximum.accumulate(np.where(known, pos, 0), axis=0)
    return np.take_along_axis(values, last, axis=0)


class _Carrying(StatefulOperator, abstract=True):
    """An elementwise operator carrying one int8 value per channel (a sign or an on/off state,
    starting at 0); the channel shape is fixed by the first non-empty chunk."""

    input: str

    state_fields = ("_carry",)

    def reset(self) -> None:
        super().reset()
        self._carry: np.ndarray | None = None

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._carry = np.zeros(x.shape[1:], dtype=np.int8)

    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(x.shape)


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

    def _process(self, x: np.ndarray) -> np.ndarray:
        sign = np.empty((x.shape[0] + 1,) + x.shape[1:], dtype=np.int8)
        sign[0] = self._carry
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

    def _process(self, x: np.ndarray) -> np.ndarray:
        low = self.high if self.low is None else self.low
        # -1: keep the previous state; 1: turn on; 0: turn off. Row 0: the carried state.
        trig = np.empty((x.shape[0] + 1,) + x.shape[1:], dtype=np.int8)
        trig[0] = self._carry
        trig[1:] = np.where(x > self.high, 1, np.where(x < low, 0, -1))
        state = _forward_fill(trig, trig >= 0)
        self._carry = state[-1].copy()
        return state[1:].astype(float)


class EventTrigger(StatefulOperator):
    """Debounced events from class scores: per sample, the index of the class that fired, or -1.

    Inputs: ``input``, class scores ``(n, C)`` (e.g. probabilities) or one score ``(n,)``
    (treated as ``C = 1``); and ``timestamp`` (``(n,)`` seconds), needed only for the refractory
    period. Output: ``(n,)`` int64, ``c`` at the sample where class ``c`` fired, else ``-1``.

    Per class, an on/off state with hysteresis (like ``Threshold``): it turns on when
    ``score > threshold``, off when ``score < release``, and holds otherwise (NaN holds too).
    ``release`` defaults to ``threshold``; a lower value makes one noisy gesture one event. It
    starts off, so a stream that begins above the threshold fires at its first sample. A class
    *fires* when its state turns on, unless

    * it is ignored (``ignore``: class names never reported; by default ``["background"]`` when
      ``classes`` contains it, else none), or
    * an event fired less than ``refractory`` seconds earlier (any class). A crossing suppressed
      this way is consumed: the class must fall below ``release`` and rise again to fire.

    When several classes turn on at the same sample, the one with the highest score fires. The
    states and the time of the last event are carried across chunks. Vectorised: the hysteresis
    states come from a forward fill; only the (rare) samples where some class turns on are
    visited in Python.

    ``timestamp=None`` drops the second input (a stream on a new timeline, e.g. a
    ``WindowedInference`` output, has no nameable timestamp stream); then ``refractory`` must
    be 0.

    Events: after each call, ``pop_events()`` returns one ``Event`` per firing sample of that
    call (``row``, ``class_name`` from ``classes`` or else the index as a string,
    ``class_index``, and ``score``, that class's score at the firing sample); a graph node
    publishes them on ``<node>/events``. ``trigger.events(fired, scores, timestamps)`` makes
    ``{"timestamp", "class", "class_index", "score"}`` dicts from an output chunk instead.
    """

    emits_events = True

    def __init__(self, input: str, timestamp: str | None = "timestamp", name: str | None = None,
                 *, threshold: float = 0.5, release: float | None = None,
                 refractory: float = 0.0, classes: list[str] | None = None,
                 ignore: list[str] | None = None) -> None:
        super().__init__([input] if timestamp is None else [input, timestamp],
                         name if name is not None else f"event_trigger_{input}")
        self.input, self.timestamp = input, timestamp
        self.threshold = self.check_number("threshold", threshold)
        if release is not None:
            self.check_number("release", release)
            if release > threshold:
                raise self._fail("release", f"must be <= threshold ({threshold!r}), "
                                            f"got {release!r}")
        self.release = release
        self.refractory = self.check_number("refractory", refractory, minimum=0)
        if timestamp is None and self.refractory > 0:
            raise self._fail("refractory", "needs a timestamp input (timestamp is null)")
        self.classes = self._check_classes(classes)
        self.ignore = self._check_ignore(ignore, self.classes)
        classes = self.classes
        ignored = self.ignore if self.ignore is not None else (
            ["background"] if classes and "background" in classes else [])
        self._ignored = [classes.index(c) for c in ignored] if classes else []
        self.reset()

    def _check_classes(self, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        if not isinstance(classes, (list, tuple)) or not classes or \
                not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
            raise self._fail("classes", f"must be a non-empty list of distinct class "
                                        f"names, got {classes!r}")
        return list(classes)

    def _check_ignore(self, ignore: list[str] | None, classes: list[str] | None
                      ) -> list[str] | None:
        if ignore is None:
            return None
        if not isinstance(ignore, (list, tuple)) or not all(isinstance(c, str) for c in ignore):
            raise self._fail("ignore", f"must be a list of class names, got {ignore!r}")
        unknown = [c for c in ignore if c not in (classes or [])]
        if unknown:
            raise self._fail("ignore", f"names {unknown!r} that are not in classes "
                                       f"({classes!r})")
        return list(ignore)

    state_fields = ("_on", "_last_time")  # events of the last call are not state

    def reset(self) -> None:
        super().reset()
        self._on: np.ndarray | None = None  # (C,) int8 hysteresis states; C fixed by 1st chunk
        self._last_time = -math.inf
        self._events: list[Event] = []      # raised by the most recent call

    def pop_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _check_input(self, scores: np.ndarray) -> None:
        # (n,) and (n, 1) are both one score: compare class counts, not per-sample shapes.
        count = scores.shape[1] if scores.ndim == 2 else 1 if scores.ndim == 1 else None
        want = len(self.classes) if self.classes is not None else (
            self._on.shape[0] if self._on is not None else None)
        if count is None or (want is not None and count != want):
            raise OperatorError(f"{self.describe()}: input '{self.input}' must have shape "
                                f"(n, {want or 'C'}) (class scores) or (n,) (one score), got "
                                f"{scores.shape}")
        if scores.dtype.kind not in "fiub":
            raise OperatorError(f"{self.describe()}: input '{self.input}' must be real numbers, "
                                f"got dtype {scores.dtype}")

    def _reset_for(self, scores: np.ndarray, *more: np.ndarray) -> None:
        self._on = np.zeros(1 if scores.ndim == 1 else scores.shape[1], dtype=np.int8)

    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        self._events = []
        return np.full(0, -1, dtype=np.int64)

    def _process(self, scores: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
        if t is not None and t.ndim != 1:
            raise OperatorError(f"{self.describe()}: input '{self.timestamp}' must have shape "
                                f"(n,), got {t.shape}")
        s = scores[:, None] if scores.ndim == 1 else scores
        n = s.shape[0]
        release = self.threshold if self.release is None else self.release
        # -1: hold; 1: on; 0: off. Row 0 is the state carried from the previous chunk.
        trig = np.empty((n + 1, s.shape[1]), dtype=np.int8)
        trig[0] = self._on
        trig[1:] = np.where(s > self.threshold, 1, np.where(s < release, 0, -1))
        state = _forward_fill(trig, trig >= 0)
        self._on = state[-1].copy()
        rising = (state[1:] == 1) & (state[:-1] == 0)
        if self._ignored:
            rising[:, self._ignored] = False
        out = np.full(n, -1, dtype=np.int64)
        events = []
        for i in np.flatnonzero(rising.any(axis=1)):   # rare: only where some class turns on
            if t is not None:
                if self.refractory > 0 and t[i] - self._last_time < self.refractory:
                    continue
                self._last_time = float(t[i])
            c = int(np.argmax(np.where(rising[i], s[i], -np.inf)))
            out[i] = c
            events.append(Event(int(i), self._class_name(c), c, float(s[i, c])))
        self._events = events
        return out

    def _class_name(self, index: int) -> str:
        return self.classes[index] if self.classes else str(index)

    def events(self, fired: np.ndarray, scores: np.ndarray,
               timestamps: np.ndarray) -> list[dict[str, Any]]:
        """The events in one chunk of output: ``{"timestamp", "class", "class_index", "score"}``.

        ``fired`` is this operator's output for the chunk, ``scores`` and ``timestamps`` its
        inputs (or the stream's timestamps) for the same samples.
        """
        s = np.asarray(scores)
        s = s[:, None] if s.ndim == 1 else s
        out = []
        for i in np.flatnonzero(np.asarray(fired) >= 0):
            c = int(fired[i])
            out.append({"timestamp": float(timestamps[i]), "class": self._class_name(c),
                        "class_index": c, "score": float(s[i, c])})
        return out
