"""Calculus operators: integrals, derivatives, rates, averages and delays over time.

All of them are causal and carry what they need from one chunk to the next (the last sample, a
running integral, a short tail of samples, a filter state), so any chunking gives the one-shot
result. They work on every channel independently along time, for any ``(n, ...)`` input; the
per-sample shape is fixed by the first non-empty chunk and may not change afterwards.

Every computation is vectorised per chunk (``np.cumsum``, ``scipy.signal.lfilter``): there is no
per-sample Python loop, and small chunks cost a few microseconds per operator.
"""

from __future__ import annotations

import math

import numpy as np

from genki_signals.errors import OperatorError
from genki_signals.signals.base import StatefulOperator

__all__ = ["Integrate", "Differentiate", "SampleRate", "MovingAverage",
           "ExponentialMovingAverage", "Delay"]


class _Stateful(StatefulOperator, abstract=True):
    """A calculus operator over the stream ``input`` (the first input)."""

    input: str

    def _check_wrt(self, field: str, stream: str, t: np.ndarray) -> None:
        """A "with respect to" stream must be ``(n,)`` (shared by all channels) or shaped like
        the input (one per channel)."""
        if t.shape[1:] and t.shape[1:] != self._sample_shape:
            raise OperatorError(f"{self.describe()}: input '{stream}' ({field}) must have shape "
                                f"(n,) or the shape of input '{self.input}' "
                                f"{('n',) + (self._sample_shape or ())}, got {t.shape}")


def _pairwise(ufunc: np.ufunc, x: np.ndarray, last: np.ndarray | float) -> np.ndarray:
    """``d[i] = ufunc(x[i], x[i-1])`` (float64) with ``x[-1] = last``, the carried sample."""
    d = np.empty(x.shape)
    d[0] = ufunc(x[0], last)
    ufunc(x[1:], x[:-1], out=d[1:])
    return d


def _diff(x: np.ndarray, last: np.ndarray | float) -> np.ndarray:
    """``d[i] = x[i] - x[i-1]`` with ``x[-1] = last``."""
    return _pairwise(np.subtract, x, last)


def _last(x: np.ndarray) -> np.ndarray | float:
    """The last row of ``x``, owned by the operator (callers may reuse their arrays)."""
    return x[-1].copy() if x.ndim > 1 else x[-1]


class Integrate(_Stateful):
    """Running integral of ``input`` from the first sample of the stream to the current one.

    With ``with_respect_to`` (a stream name, typically ``"timestamp"``; ``(n,)`` shared by all
    channels, or shaped like the input) the steps are ``dt[i] = t[i] - t[i-1]``; with None the
    integral is per sample (``t[i] = i``, ``dt = 1``). The first sample of the stream has no
    predecessor, so ``dt[0] = 0`` and ``y[0] = 0`` with both methods:

    * ``"trapezoid"``: ``y[i] = y[i-1] + (x[i] + x[i-1]) / 2 * dt[i]``, exactly
      ``scipy.integrate.cumulative_trapezoid(x, t, axis=0, initial=0)``.
    * ``"rectangle"`` (right Riemann sum): ``y[i] = sum_{k<=i} x[k] * dt[k]``, i.e.
      ``np.cumsum(x * dt, axis=0)``. Per sample that is ``cumsum(x) - x[0]``.

    The running integral and the last sample are carried across chunks; the accumulation order
    is the same as one ``cumsum`` over the whole stream, so chunked and one-shot results agree
    to the last bit.
    """

    def __init__(self, input: str, name: str | None = None, *,
                 with_respect_to: str | None = None, method: str = "trapezoid") -> None:
        super().__init__([input] if with_respect_to is None else [input, with_respect_to], name)
        self.input = input
        self.with_respect_to = with_respect_to
        self.method = self.check_choice("method", method, ["trapezoid", "rectangle"])
        self._trapezoid = method == "trapezoid"
        self.reset()

    state_fields = ("_acc", "_last_x", "_last_t", "_first")

    def reset(self) -> None:
        super().reset()
        self._acc: np.ndarray | float = 0.0        # y of the last sample so far
        self._last_x: np.ndarray | float = 0.0
        self._last_t: np.ndarray | float = 0.0
        self._col: tuple[int, ...] = (-1,)        # reshapes (n,) steps to broadcast on channels
        self._first = False                       # the next sample is the stream's first

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._first = True
        self._col = (-1,) + (1,) * (x.ndim - 1)

    def _process(self, x: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
        first, self._first = self._first, False
        if t is None:
            dt: np.ndarray | float = 1.0
        else:
            if t.shape[1:]:
                self._check_wrt("with_respect_to", self.with_respect_to, t)
            dt = _diff(t, t[0] if first else self._last_t)
            self._last_t = _last(t)
            if t.ndim < x.ndim:
                dt = dt.reshape(self._col)
        if self._trapezoid:
            inc = _pairwise(np.add, x, self._last_x)  # x[i] + x[i-1]
            inc *= 0.5
            if t is not None:
                inc *= dt
        else:
            inc = np.multiply(x, dt, dtype=np.float64)
        if first:
            inc[0] = 0.0  # no predecessor: dt[0] = 0
        inc[0] += self._acc
        y = np.cumsum(inc, axis=0, out=inc)
        self._acc = _last(y)
        self._last_x = _last(x)
        return y


class Differentiate(_Stateful):
    """Finite-difference derivative of ``input`` with respect to the stream ``sig_b``.

    ``y[i] = (x[i] - x[i-1]) / (b[i] - b[i-1])`` with ``b = sig_b`` (typically ``"timestamp"``:
    velocity from position; ``(n,)`` shared by all channels, or shaped like the input), or the
    per-sample difference ``y[i] = x[i] - x[i-1]`` when ``sig_b`` is None. The first sample of
    the stream has no predecessor: its output is 0 (the signal is taken to start at rest rather
    than with a NaN that would poison downstream filters). The last samples are carried across
    chunks. Equal consecutive ``b`` values divide by zero (``inf``/NaN, as numpy does).
    """

    _kinds = "iuf"

    def __init__(self, input: str, name: str | None = None, *, sig_b: str | None = None) -> None:
        super().__init__([input] if sig_b is None else [input, sig_b], name)
        self.input = input
        self.sig_b = sig_b
        self.reset()

    state_fields = ("_last_x", "_last_b", "_first")

    def reset(self) -> None:
        super().reset()
        self._last_x: np.ndarray | float = 0.0
        self._last_b: np.ndarray | float = 0.0
        self._col: tuple[int, ...] = (-1,)
        self._first = False

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._first = True
        self._col = (-1,) + (1,) * (x.ndim - 1)

    def _process(self, x: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        first, self._first = self._first, False
        y = _diff(x, self._last_x)
        self._last_x = _last(x)
        if first:
            y[0] = 0.0  # no predecessor
        if b is not None:
            if b.shape[1:]:
                self._check_wrt("sig_b", self.sig_b, b)
            db = _diff(b, self._last_b)
            self._last_b = _last(b)
            if first:
                db[0] = 1.0  # keeps y[0] = 0 (and no 0/0 warning)
            y /= db if b.ndim == x.ndim else db.reshape(self._col)
        return y


class SampleRate(_Stateful):
    """Instantaneous sample rate of a timestamp stream: ``y[i] = 1 / (t[i] - t[i-1])``.

    In Hz when ``t`` is in seconds. The first sample of the stream has no predecessor: its
    output is NaN (smooth with ``MovingAverage``, which skips NaN). The last timestamp is carried
    across chunks. Repeated timestamps give ``inf``.
    """

    _kinds = "iuf"

    def __init__(self, input: str = "timestamp", name: str | None = None) -> None:
        super().__init__([input], name)
        self.input = input
        self.reset()

    state_fields = ("_last",)

    def reset(self) -> None:
        super().reset()
        self._last: np.ndarray | float = math.nan

    def _process(self, t: np.ndarray) -> np.ndarray:
        d = _diff(t, self._last)
        self._last = _last(t)
        return np.divide(1.0, d, out=d)


class MovingAverage(_Stateful):
    """Causal moving average: the mean of the last ``length`` samples, per channel.

    ``y[i] = mean(x[max(0, i-length+1) : i+1])``: until ``length`` samples have been seen, the
    mean of those available. NaN samples count as missing (the mean of the other samples in the
    window; NaN if the window holds none), so a single NaN, such as the first output of
    ``SampleRate``, does not blank the next ``length`` outputs; ``inf`` samples give ``inf``
    (NaN when the window holds both signs). This is ``pandas``'
    ``rolling(length, min_periods=1).mean()``.

    Bit for bit the same however the stream is cut into chunks (what coalesced replay relies
    on). The window sums come from prefix sums that restart at fixed *blocks* of ``length``
    samples counted from the stream's first sample: the window ending at sample ``i`` is
    ``(Q[end of the block before i's] - Q[i - length]) + Q[i]``, where ``Q`` is a prefix sum
    within a block (``np.cumsum``, which adds in order). Every term depends on the absolute
    sample index only, never on where a chunk starts, and rounding never accumulates beyond two
    blocks (a running sum over the whole stream would drift; the tail-plus-chunk cumulative sum
    this replaces rounded differently with each chunking, by ~1e-14). A chunk with a NaN or inf
    takes a careful path that sums the same blocks, so a window of finite samples gets the same
    bits on either path. The carried state is the stream from the start of the previous block:
    ``length`` to ``2 * length - 1`` samples (fewer than ``length`` during the warm-up, before
    which the stream is taken as a block of NaN, i.e. missing samples).
    """

    def __init__(self, input: str, name: str | None = None, *, length: int = 10) -> None:
        super().__init__([input], name)
        self.input = input
        self.length = self.check_int("length", length, minimum=1)
        self.reset()

    state_fields = ("_tail",)

    def reset(self) -> None:
        super().reset()
        # the stream from the start of the block before the current one (see the docstring)
        self._tail: np.ndarray | None = None

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._tail = np.empty((0,) + x.shape[1:])
        self._nan_block = np.full((self.length,) + x.shape[1:], np.nan)
        self._zeros = np.zeros((self.length,) + x.shape[1:])

    def _process(self, x: np.ndarray) -> np.ndarray:
        L, tail = self.length, self._tail
        n, m = x.shape[0], tail.shape[0]
        pad = L if m < L else 0  # warm-up: a block of missing samples before the stream
        head = pad + m  # position of x[0] in ext; ext[0] starts a block
        total = head + n
        blocks = -(-total // L)
        rest = self._zeros[:blocks * L - total]  # completes the last block; never read
        ext = np.concatenate((self._nan_block, tail, x, rest) if pad else (tail, x, rest))
        keep = max((total // L - 1) * L, pad)  # from the start of the block before the next
        self._tail = ext[keep:total] if blocks <= 8 else ext[keep:total].copy()
        if not np.isfinite(ext).all():  # NaN, inf, or the warm-up
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, handled
                return self._nan_mean(ext, head, total)
        y = self._block_sums(ext, head, total)
        y /= L
        return y

    def _window_sums(self, q: np.ndarray, head: int, total: int) -> np.ndarray:
        """The sums of the windows ending at ext positions ``head .. total-1`` from the block
        prefix sums ``q`` (blocks x length x channels; ``head >= length``): for offset ``r``
        in block ``j``, ``(q[j-1, L-1] - q[j-1, r]) + q[j, r]`` (the first term is 0 when the
        window is exactly block ``j``)."""
        L = self.length
        first = head // L  # the first block holding an output
        s = q[first - 1:-1, -1:] - q[first - 1:-1]
        s += q[first:]
        start = head - first * L
        return s.reshape((-1,) + q.shape[2:])[start:start + total - head]

    def _block_sums(self, values: np.ndarray, head: int, total: int) -> np.ndarray:
        """Window sums of ``values`` (ext positions ``head .. total-1``; see the docstring)."""
        q = values.reshape((-1, self.length) + values.shape[1:]).cumsum(axis=1)
        return self._window_sums(q, head, total)

    def _nan_mean(self, ext: np.ndarray, head: int, total: int) -> np.ndarray:
        """Window means skipping NaN; windows holding inf give inf of that sign (NaN if both).

        Sums of the finite samples use the same blocks as the fast path, so a window whose
        blocks hold finite samples only gets the same bits either way."""
        nan = np.isnan(ext)
        values = np.where(nan, 0.0, ext)
        inf = np.isinf(values)
        infinite = bool(inf.any())
        if infinite:  # sum the finite values, count each sign
            pos = self._block_sums((values == np.inf).astype(np.int64), head, total) > 0
            neg = self._block_sums((values == -np.inf).astype(np.int64), head, total) > 0
            values[inf] = 0.0
            nan |= inf
        sums = self._block_sums(values, head, total)
        counts = self._block_sums((~nan).astype(np.int64), head, total)
        y = np.full(sums.shape, np.nan)
        np.divide(sums, counts, out=y, where=counts > 0)
        if infinite:
            y[pos] = np.inf
            y[neg] = -np.inf
            y[pos & neg] = np.nan
        return y


class ExponentialMovingAverage(_Stateful):
    """Exponential moving average: ``y[0] = x[0]``, ``y[i] = alpha*x[i] + (1-alpha)*y[i-1]``.

    ``0 < alpha <= 1``: larger follows faster (``alpha = 1`` is the identity; the time constant
    is about ``1/alpha`` samples). Run as the first-order IIR filter ``b = [alpha]``,
    ``a = [1, alpha-1]`` with ``scipy.signal.lfilter`` along time, its state carried across
    chunks and started at ``(1-alpha) * x[0]`` so that ``y[0] = x[0]``. A NaN sample makes
    every later output NaN.
    """

    def __init__(self, input: str, name: str | None = None, *, alpha: float = 0.1) -> None:
        super().__init__([input], name)
        self.input = input
        self.alpha = self.check_number("alpha", alpha, minimum=0, maximum=1, strict_min=True)
        self._b = np.array([float(alpha)])
        self._a = np.array([1.0, float(alpha) - 1.0])
        import scipy.signal  # noqa: F401  (now, not at the first chunk; not at module import)
        self.reset()

    state_fields = ("_zi",)

    def reset(self) -> None:
        super().reset()
        self._zi: np.ndarray | None = None

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._zi = ((1.0 - self.alpha) * np.asarray(x[0], dtype=np.float64))[None]

    def _process(self, x: np.ndarray) -> np.ndarray:
        import scipy.signal  # imported by __init__: a dictionary lookup

        y, self._zi = scipy.signal.lfilter(self._b, self._a, x, axis=0, zi=self._zi)
        return y


class Delay(_Stateful):
    """Delay a stream by a whole number of samples: ``y[i] = x[i - samples]``.

    Before the stream has ``samples`` samples of history the output is ``fill``. The last
    ``samples`` samples are carried across chunks. ``samples = 0`` is a (float64) copy.
    Useful to line a stream up with a delayed one (a filter's group delay) or to build
    ``x[i] - x[i-k]`` with ``Difference``.
    """

    def __init__(self, input: str, name: str | None = None, *, samples: int = 1,
                 fill: float = 0.0) -> None:
        super().__init__([input], name)
        self.input = input
        self.samples = self.check_int("samples", samples, minimum=0)
        self.fill = self.check_number("fill", fill)
        self.reset()

    state_fields = ("_held",)

    def reset(self) -> None:
        super().reset()
        self._held: np.ndarray | None = None  # the last `samples` inputs (fill at first)

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._held = np.full((self.samples,) + x.shape[1:], float(self.fill))

    def _process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        ext = np.concatenate((self._held, x), dtype=np.float64)
        held = ext[n:]
        # Keep a copy when ext is large, so the state does not pin a big chunk in memory.
        self._held = held if ext.shape[0] <= 4 * self.samples + 64 else held.copy()
        return ext[:n]
