"""Filter operators: Butterworth low/high/band-pass and a causal Gaussian smoother.

Each filter is designed once, at construction, and run along time (axis 0) on every channel
of any ``(n, ...)`` input (``scipy.signal.sosfilt``; a correlation for the Gaussian FIR), the
filter state carried across chunks, so any chunking gives the one-shot result.

Steady-state start: a filter started from a zero state rings on its first samples (a low-pass
of a signal sitting at 9.81 would ramp up from 0). Instead, on the first non-empty chunk the
state is set to the steady state for a constant input equal to the first sample, per channel
(``sosfilt_zi(sos) * x[0]``): as if the signal had been at ``x[0]`` forever. A constant input
then gives a constant output from sample 0 (a low-pass passes it unchanged, a high-pass or
band-pass outputs 0).
"""

from __future__ import annotations

import numpy as np

from genki_signals.signals.base import StatefulOperator

__all__ = ["LowPass", "HighPass", "BandPass", "GaussianSmooth"]

# scipy.signal and scipy.ndimage are imported where a filter is designed or run, not here:
# importing scipy.signal costs over a second (it pulls in scipy.stats), and every spec check and
# node that lists the operators would pay it (tests/test_startup_imports.py).


class _SOSFilter(StatefulOperator, abstract=True):
    """A fixed filter in second-order sections with carried, steady-state-started state."""

    _sos: np.ndarray
    _zi_unit: np.ndarray  # (sections, 2): the steady state for a constant input of 1

    def _setup(self, input: str, name: str | None, sample_rate: float, order: int) -> None:
        """What every Butterworth filter validates and stores before its band edges."""
        super().__init__([input], name)
        self.input = input
        self.sample_rate = self.check_number("sample_rate", sample_rate, minimum=0,
                                             strict_min=True)
        self.order = self.check_int("order", order, minimum=1)

    def _design(self, btype: str, frequencies: float | list[float]) -> None:
        import scipy.signal

        self._sos = scipy.signal.butter(self.order, frequencies, btype=btype,
                                        fs=float(self.sample_rate), output="sos")
        self._zi_unit = scipy.signal.sosfilt_zi(self._sos)

    def _check_frequency(self, field: str, value: float) -> float:
        nyquist = self.sample_rate / 2
        value = self.check_number(field, value, minimum=0, strict_min=True)
        if value >= nyquist:
            raise self._fail(field, f"must be below the Nyquist frequency sample_rate/2 "
                                    f"({nyquist:g} Hz), got {value!r}")
        return value

    state_fields = ("_zi",)  # the second-order sections' delay values

    def reset(self) -> None:
        super().reset()
        self._zi: np.ndarray | None = None

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        # (sections, 2, 1, ...) * x[0]: every channel starts in its own steady state
        unit = self._zi_unit.reshape(self._zi_unit.shape + (1,) * (x.ndim - 1))
        self._zi = unit * np.asarray(x[0], dtype=np.float64)

    def _process(self, x: np.ndarray) -> np.ndarray:
        import scipy.signal  # already imported by _design: a dictionary lookup

        y, self._zi = scipy.signal.sosfilt(self._sos, x, axis=0, zi=self._zi)
        return y


class LowPass(_SOSFilter):
    """Butterworth low-pass: keeps frequencies below ``cutoff`` Hz, per channel along time.

    ``order``-th order (``scipy.signal.butter(order, cutoff, fs=sample_rate)``, -3 dB at
    ``cutoff``), causal, with steady-state start (see the module docstring). ``sample_rate`` is
    the stream's nominal rate in Hz; ``0 < cutoff < sample_rate / 2``.
    """

    def __init__(self, input: str, name: str | None = None, *, cutoff: float,
                 sample_rate: float, order: int = 4) -> None:
        self._setup(input, name, sample_rate, order)
        self.cutoff = self._check_frequency("cutoff", cutoff)
        self._design("lowpass", self.cutoff)
        self.reset()


class HighPass(_SOSFilter):
    """Butterworth high-pass: removes frequencies below ``cutoff`` Hz (drift, gravity, DC).

    Same design and conventions as ``LowPass``; a constant input gives 0 from sample 0.
    """

    def __init__(self, input: str, name: str | None = None, *, cutoff: float,
                 sample_rate: float, order: int = 4) -> None:
        self._setup(input, name, sample_rate, order)
        self.cutoff = self._check_frequency("cutoff", cutoff)
        self._design("highpass", self.cutoff)
        self.reset()


class BandPass(_SOSFilter):
    """Butterworth band-pass: keeps frequencies between ``low`` and ``high`` Hz.

    ``scipy.signal.butter(order, [low, high], btype="bandpass", fs=sample_rate)`` (so
    ``2 * order`` poles), ``0 < low < high < sample_rate / 2``; otherwise as ``LowPass``.
    """

    def __init__(self, input: str, name: str | None = None, *, low: float, high: float,
                 sample_rate: float, order: int = 4) -> None:
        self._setup(input, name, sample_rate, order)
        self.low = self._check_frequency("low", low)
        self.high = self._check_frequency("high", high)
        if self.low >= self.high:
            raise self._fail("low", f"must be below high ({high!r}), got {low!r}")
        self._design("bandpass", [self.low, self.high])
        self.reset()


class GaussianSmooth(StatefulOperator):
    """Causal Gaussian smoothing: a normalised Gaussian FIR kernel run along time.

    The kernel is ``w = scipy.signal.windows.gaussian(2*r + 1, std=sigma)`` divided by its sum,
    with radius ``r = max(1, int(truncate * sigma + 0.5))`` samples (as ``scipy.ndimage``
    truncates). Being causal, ``y[i] = sum_k w[k] * x[i-k]`` is the centred Gaussian smoothing
    of the signal *delayed by r samples* (``delay``, half the kernel length): the price of not
    looking ahead. Steady-state start: the samples before the stream are taken equal to
    ``x[0]``, so a constant input gives a constant output. A NaN sample spoils exactly the
    ``2r + 1`` outputs whose window holds it.

    The state is the last ``2r`` input samples (what ``lfilter_zi`` encodes for an FIR); each
    chunk is filtered with ``scipy.ndimage.correlate1d`` over that tail plus the chunk, in C
    for every channel at once. (``scipy.signal.lfilter`` with a pure FIR kernel loops over the
    channels in Python, about 5x slower on small chunks.)
    """

    def __init__(self, input: str, name: str | None = None, *, sigma: float = 2.0,
                 truncate: float = 4.0) -> None:
        super().__init__([input], name)
        self.input = input
        self.sigma = self.check_number("sigma", sigma, minimum=0, strict_min=True)
        self.truncate = self.check_number("truncate", truncate, minimum=0, strict_min=True)
        radius = max(1, int(truncate * sigma + 0.5))
        if radius > 100_000:
            raise self._fail("sigma", f"gives a kernel of {2 * radius + 1} samples "
                                      f"(sigma * truncate must be <= 100000)")
        import scipy.ndimage  # now, not at the first chunk: _process uses it
        import scipy.signal

        kernel = scipy.signal.windows.gaussian(2 * radius + 1, std=float(sigma))
        self._w = kernel / kernel.sum()  # symmetric: correlation = convolution
        self._radius = radius
        self.reset()

    @property
    def delay(self) -> int:
        """The delay of the smoothed signal, in samples: the kernel radius ``r``."""
        return self._radius

    state_fields = ("_tail",)

    def reset(self) -> None:
        super().reset()
        self._tail: np.ndarray | None = None  # the last 2r inputs, float64

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        self._tail = np.repeat(np.asarray(x[:1], dtype=np.float64), 2 * self._radius, axis=0)

    def _process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        r = self._radius
        ext = np.concatenate((self._tail, x), dtype=np.float64)
        # ext[j] = x[j - 2r], so y[i] = sum_k w[k] x[i-k] is the correlation centred on ext[i+r]
        import scipy.ndimage  # imported by __init__: a dictionary lookup

        y = scipy.ndimage.correlate1d(ext, self._w, axis=0, mode="constant")[r:r + n]
        tail = ext[n:]
        self._tail = tail if n <= 64 else tail.copy()
        return y
