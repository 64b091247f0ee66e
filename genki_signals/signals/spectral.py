"""Spectral operators: short-time Fourier magnitude spectra of a stream."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from genki_signals.errors import OperatorError
from genki_signals.signals.base import StatefulOperator

__all__ = ["FourierTransform"]

_NO_ROWS = np.empty(0, dtype=np.intp)


def periodic_hann(size: int) -> np.ndarray:
    """``scipy.signal.get_window("hann", size)`` bit for bit, without importing scipy.signal.

    scipy computes the periodic window as the symmetric one of ``size + 1`` points, last point
    dropped: ``0.5 * cos(0 * fac) + 0.5 * cos(fac)`` summed into zeros, with ``fac =
    linspace(-pi, pi, size + 1)`` (``general_cosine``); the same operations in the same order
    give the same bits (tests/test_startup_imports.py). Importing scipy.signal costs over a
    second, which the demo's graph (hann is the default window) need not pay.
    """
    if size <= 1:
        return np.ones(size)
    fac = np.linspace(-np.pi, np.pi, size + 1, dtype=np.float64)
    w = np.zeros(size + 1, dtype=np.float64)
    for k, a in enumerate((0.5, 0.5)):
        w += a * np.cos(k * fac)
    return w[:-1]


def get_window(window: Any, size: int) -> np.ndarray:
    """``scipy.signal.get_window(window, size)``: the plain ``"hann"`` in numpy (the same
    bits), every other window from scipy, imported only then."""
    if isinstance(window, str) and window == "hann":
        return periodic_hann(size)
    import scipy.signal

    return scipy.signal.get_window(window, size)


class FourierTransform(StatefulOperator):
    """Magnitude spectrum of the most recent ``window_size`` samples, every hop.

    With ``W = window_size`` and ``hop = W - window_overlap``, a window ends at every input
    sample with global index ``e = W - 1 + m * hop`` (m = 0, 1, ...), i.e. once the first full
    window exists and then every ``hop`` samples. Its spectrum is::

        frame = x[e - W + 1 : e + 1]                          # (W, ...) time-first
        frame = scipy.signal.detrend(frame, axis=0, type=detrend)   # if detrend (closed form)
        spectrum = abs(np.fft.rfft(frame * w[:, None...], axis=0))  # (W // 2 + 1, ...)

    where ``w = scipy.signal.get_window(window, W)`` (scipy's default *periodic* window, the
    right choice for spectral analysis). No scaling is applied. Trailing axes are transformed
    independently: an ``(n, 3)`` input gives rows of shape ``(W // 2 + 1, 3)``. Use
    ``frequencies(sample_rate)`` for the frequency of each bin.

    ``upsample=True`` (default) keeps the input's timeline: every input sample gets the most
    recent completed spectrum, and **zeros** before the first window completes (so the output
    is defined at every sample and has a fixed shape). ``upsample=False`` puts the output on a
    new timeline (``new_timeline = True``): each call returns only the spectra completed in that
    chunk, and ``emitted`` holds the index in the chunk of each window's last sample, so the
    graph stamps a spectrum with the time of the window's last sample.

    Streaming: only the last ``W - 1`` samples (plus at most one hop) and the hop phase are
    carried. A chunk that completes no window costs one buffer write; chunks that complete
    windows transform all of them in one batched ``rfft``.

    ``window`` is a ``get_window`` name (``"hann"``, ``"hamming"``, ``"boxcar"``, ...) or a
    list ``[name, *params]`` such as ``["kaiser", 8.0]``.
    """

    def __init__(self, input: str, name: str | None = None, *, window_size: int = 256,
                 window_overlap: int = 128, window: str | list[Any] = "hann",
                 detrend: str | None = None, upsample: bool = True) -> None:
        super().__init__([input], name)
        self.input = input
        self.window_size = self.check_int("window_size", window_size, minimum=2)
        self.window_overlap = self.check_int("window_overlap", window_overlap, minimum=0)
        if self.window_overlap >= self.window_size:
            raise self._fail("window_overlap", f"must be < window_size ({self.window_size}), "
                                               f"got {window_overlap!r}")
        self.window = self._check_window(window)
        self.detrend = self.check_choice("detrend", detrend, [None, "constant", "linear"])
        self.upsample = self.check_bool("upsample", upsample)
        self.new_timeline = not self.upsample

        W = self.window_size
        self.hop: int = W - self.window_overlap
        self.n_bins: int = W // 2 + 1
        # Centred time axis for the linear detrend: least squares on an orthogonal basis.
        t = np.arange(W, dtype=float) - (W - 1) / 2
        self._t, self._tt = t, float(t @ t)
        self.reset()

    def _check_window(self, window: Any) -> str | list[Any]:
        if isinstance(window, (list, tuple)) and window and isinstance(window[0], str):
            value: str | list[Any] = list(window)
            spec: Any = tuple(window)
        elif isinstance(window, str):
            value = spec = window
        else:
            raise self._fail("window", "must be a scipy.signal.get_window name or a list "
                                       f"[name, *params], got {window!r}")
        try:
            fn = get_window(spec, self.window_size)
        except (ValueError, TypeError) as exc:
            raise self._fail("window", f"is not a valid scipy.signal.get_window window "
                                       f"({exc}), got {window!r}") from None
        self._win = np.asarray(fn, dtype=float)
        return value

    def frequencies(self, sample_rate: float) -> np.ndarray:
        """Frequency in Hz of each output bin: ``np.fft.rfftfreq(window_size, 1 / sample_rate)``."""
        sample_rate = self.check_number("sample_rate", sample_rate, minimum=0, strict_min=True)
        return np.fft.rfftfreq(self.window_size, 1.0 / sample_rate)

    def reset(self) -> None:
        super().reset()
        self._buf: np.ndarray | None = None          # carried samples live in _buf[:_fill]
        self._fill = 0
        self._next = self.window_size               # samples still needed to complete a window
        self._last: np.ndarray | None = None        # (1, F, *trail): latest spectrum (upsample)
        self._empty: np.ndarray | None = None

    # -------------------------------------------------------------------- state
    def _state_keys(self) -> tuple[str, ...]:
        return ("carried", "next", "last")

    def _export_state(self) -> dict[str, Any]:
        """The carried samples (not the buffer's spare room), the hop phase, the last spectrum."""
        return {"carried": self._buf[:self._fill], "next": self._next, "last": self._last}

    def _import_state(self, state: dict[str, Any]) -> None:
        carried, last = state["carried"], state["last"]
        if not isinstance(carried, np.ndarray) or carried.shape[1:] != self._buf.shape[1:] \
                or len(carried) > len(self._buf) or not isinstance(last, np.ndarray) \
                or last.shape != self._last.shape:
            raise OperatorError(f"{self.describe()}: state fields 'carried'/'last' do not fit "
                                f"samples of shape {self._buf.shape[1:]}")
        nxt = state["next"]
        if isinstance(nxt, bool) or not isinstance(nxt, int) or not 0 < nxt <= self.window_size:
            raise OperatorError(f"{self.describe()}: state field 'next' must be an integer in "
                                f"1..{self.window_size}, got {nxt!r}")
        self._buf[:len(carried)] = carried
        self._fill, self._next, self._last = len(carried), nxt, last

    # ------------------------------------------------------------------ running
    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        trail = x.shape[1:]
        # W-1 carried samples + up to a hop arriving before the next window completes (the
        # fast path never overflows), plus slack so moderate chunks need no concatenation.
        slack = min(1024, 65536 // max(1, math.prod(trail)))
        self._capacity = self.window_size - 1 + self.hop + slack
        self._buf = np.empty((self._capacity,) + trail)
        self._last = np.zeros((1, self.n_bins) + trail)
        self._empty = np.empty((0, self.n_bins) + trail)
        # Window and detrend time axis shaped to broadcast over frames (k, W, *trail).
        col = (self.window_size,) + (1,) * len(trail)
        self._win_b = self._win.reshape(col)
        self._t_b = self._t.reshape(col)

    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        self.emitted = _NO_ROWS
        if self._empty is None:  # before the shape is known
            return np.empty((0, self.n_bins) + x.shape[1:])
        return self._empty

    def _process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if n < self._next:  # fast path: no window completes, just remember the samples
            fill = self._fill
            self._buf[fill:fill + n] = x
            self._fill = fill + n
            self._next -= n
            if self.upsample:
                return self._last.repeat(n, axis=0)
            self.emitted = _NO_ROWS
            return self._empty
        return self._complete_windows(x)

    def _complete_windows(self, x: np.ndarray) -> np.ndarray:
        W, hop, buf, fill = self.window_size, self.hop, self._buf, self._fill
        n = x.shape[0]
        L = fill + n
        if L <= self._capacity:
            buf[fill:L] = x
            data = buf[:L]
        else:
            data = np.concatenate([buf[:fill], x.astype(float, copy=False)])
        first_end = fill + self._next - 1             # index in data of the next window's end
        k = (L - 1 - first_end) // hop + 1            # windows completed by this chunk
        last_end = first_end + (k - 1) * hop
        start = first_end - W + 1
        if k == 1:                                    # the usual streaming case: plain slice
            frames = data[start:start + W][None]
        else:
            frames = np.moveaxis(
                sliding_window_view(data, W, axis=0)[start:start + (k - 1) * hop + 1:hop], -1, 1)
        spec = self._spectra(frames)                  # (k, F, *trail)
        # Carry the last W-1 samples (all a future window can need) and the hop phase.
        self._next = last_end + hop - (L - 1)
        buf[:W - 1] = data[L - W + 1:L]
        self._fill = W - 1
        first, last = first_end - fill, last_end - fill  # indices within the chunk
        if not self.upsample:
            self.emitted = np.arange(first, last + 1, hop, dtype=np.intp)
            return spec
        out = np.empty((n,) + spec.shape[1:])
        out[:first] = self._last[0]
        if k == 1:
            out[first:] = spec[0]
        else:  # spectrum j covers rows from its window's end up to the next window's end
            out[first:] = np.repeat(spec, [hop] * (k - 1) + [n - last], axis=0)
        self._last = spec[-1:].copy()
        return out

    def _spectra(self, frames: np.ndarray) -> np.ndarray:
        """Frames (k, W, *trail) -> magnitude spectra (k, F, *trail), transformed along axis 1."""
        if self.detrend == "constant":
            frames = frames - frames.mean(axis=1, keepdims=True)
        elif self.detrend == "linear":
            t = self._t_b
            slope = (frames * t).sum(axis=1, keepdims=True) / self._tt
            frames = frames - frames.mean(axis=1, keepdims=True) - slope * t
        return np.abs(np.fft.rfft(frames * self._win_b, axis=1))
