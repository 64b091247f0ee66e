"""Synthetic signals: vectorised functions of time to sample with a ``Sampler``.

``SineWave``, ``SquareWave`` and ``TriangleWave`` are ``A * wave(theta(t) + phase)`` where wave
has period 2*pi and is in step with sine (0 at theta = 0, rising; square is +1 on [0, pi)).
Parameters are plain attributes that may be changed while a sampler runs (validated on
assignment).

Continuous frequency changes. ``theta`` is a phase accumulator, not ``2*pi*frequency*t``: when
``frequency`` changes, the new frequency applies from the last time the wave was evaluated, with
the phase carried over, so the waveform does not jump (``2*pi*f*t`` with a new ``f`` at t = 100 s
would shift the phase by 2*pi*df*100). While the frequency is constant the wave is the pure
function ``A * wave(2*pi*frequency*t + phase)`` (phase continuity is relative to the previous
call, so a frequency change assumes calls in increasing time, as a sampler makes them).
``amplitude`` and ``phase`` changes apply immediately.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from genki_signals.data_sources.base import SourceParameterError

__all__ = ["SineWave", "SquareWave", "TriangleWave", "RandomNoise"]

TWO_PI = 2.0 * math.pi


def _import_scipy_signal() -> Any:
    """``scipy.signal``, imported by the waves that use it when they are made: importing it
    costs over a second, which a spec or a node that only has sine waves should not pay."""
    import scipy.signal

    return scipy.signal


def _number(owner: str, field: str, value: Any, minimum: float | None = None) -> float:
    """``value`` as a finite float (>= minimum), else SourceParameterError naming the field."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x) or (minimum is not None and x < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise SourceParameterError(f"{owner}: '{field}' must be a finite number{bound}, "
                                   f"got {value!r}")
    return x


class _LiveParams:
    """Live parameters that announce a change before it happens.

    A ``Sampler`` whose every source is such a function of time samples when it is read, not
    on a timer (no thread waking per tick). A listener added here is called (from the thread
    making the change) just before a parameter changes, so the sampler first samples every tick
    already due with the old value: each sample has the value that was set at its tick time.
    """

    def add_change_listener(self, listener: Any) -> None:
        self.__dict__.setdefault("_change_listeners", []).append(listener)

    def remove_change_listener(self, listener: Any) -> None:
        listeners = self.__dict__.get("_change_listeners", [])
        if listener in listeners:
            listeners.remove(listener)

    def _changing(self) -> None:
        for listener in list(self.__dict__.get("_change_listeners", ())):
            listener()


class _Periodic(_LiveParams):
    """A periodic wave of time with live-changeable frequency, amplitude and phase."""

    vectorized = True

    def __init__(self, frequency: float = 1.0, amplitude: float = 1.0, phase: float = 0.0):
        self._lock = threading.Lock()
        self.frequency = frequency
        self.amplitude = amplitude
        self.phase = phase
        # Phase accumulator: theta(t) = theta_anchor + 2*pi*f_anchor*(t - t_anchor).
        self._t_anchor = 0.0
        self._theta_anchor = 0.0
        self._f_anchor = self._frequency
        self._last_t: float | None = None

    @property
    def frequency(self) -> float:
        """Cycles per second (>= 0)."""
        return self._frequency

    @frequency.setter
    def frequency(self, value: float) -> None:
        self._changing()
        self._frequency = _number(type(self).__name__, "frequency", value, minimum=0.0)

    @property
    def amplitude(self) -> float:
        """Peak value (>= 0)."""
        return self._amplitude

    @amplitude.setter
    def amplitude(self, value: float) -> None:
        self._changing()
        self._amplitude = _number(type(self).__name__, "amplitude", value, minimum=0.0)

    @property
    def phase(self) -> float:
        """Phase offset in radians."""
        return self._phase

    @phase.setter
    def phase(self, value: float) -> None:
        self._changing()
        self._phase = _number(type(self).__name__, "phase", value)

    def _theta(self, t: np.ndarray) -> np.ndarray:
        with self._lock:
            f = self._frequency
            if f != self._f_anchor:
                if self._last_t is not None:  # carry the phase over at the last evaluated time
                    theta = self._theta_anchor + TWO_PI * self._f_anchor * (
                        self._last_t - self._t_anchor)
                    self._theta_anchor = math.fmod(theta, TWO_PI)
                    self._t_anchor = self._last_t
                self._f_anchor = f
            if t.size:
                self._last_t = float(t.max())
            return self._theta_anchor + TWO_PI * f * (t - self._t_anchor)

    def __call__(self, t: Any) -> Any:
        """Wave values at time(s) ``t`` (seconds): a float for a scalar, else an array."""
        ts = np.asarray(t, dtype=np.float64)
        y = self._amplitude * self._wave(self._theta(ts) + self._phase)
        return float(y) if np.ndim(t) == 0 else y

    @staticmethod
    def _wave(x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(frequency={self._frequency!r}, "
                f"amplitude={self._amplitude!r}, phase={self._phase!r})")


class SineWave(_Periodic):
    """``amplitude * sin(2*pi*frequency*t + phase)`` (phase-continuous frequency changes)."""

    @staticmethod
    def _wave(x: np.ndarray) -> np.ndarray:
        return np.sin(x)


class SquareWave(_Periodic):
    """Square wave of +-amplitude, in step with ``SineWave`` (``scipy.signal.square``)."""

    def __init__(self, frequency: float = 1.0, amplitude: float = 1.0, phase: float = 0.0):
        super().__init__(frequency, amplitude, phase)
        _import_scipy_signal()  # now, not at the first sample (nor at this module's import)

    @staticmethod
    def _wave(x: np.ndarray) -> np.ndarray:
        return _import_scipy_signal().square(x)


class TriangleWave(_Periodic):
    """Triangle wave between +-amplitude, in step with ``SineWave`` (peaks where sine peaks)."""

    def __init__(self, frequency: float = 1.0, amplitude: float = 1.0, phase: float = 0.0):
        super().__init__(frequency, amplitude, phase)
        _import_scipy_signal()

    @staticmethod
    def _wave(x: np.ndarray) -> np.ndarray:
        return _import_scipy_signal().sawtooth(x + math.pi / 2, width=0.5)


class RandomNoise(_LiveParams):
    """Gaussian white noise with standard deviation ``amplitude``, one draw per time.

    With ``seed`` the sequence of draws is reproducible (a ``numpy.random.Generator``); the
    values depend only on how many samples were drawn, not on the times or the chunking.
    """

    vectorized = True

    def __init__(self, amplitude: float = 1.0, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise SourceParameterError(
                f"RandomNoise: 'seed' must be a non-negative int or None, got {seed!r}")
        self.amplitude = amplitude
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def amplitude(self) -> float:
        """Standard deviation (>= 0)."""
        return self._amplitude

    @amplitude.setter
    def amplitude(self, value: float) -> None:
        self._changing()
        self._amplitude = _number("RandomNoise", "amplitude", value, minimum=0.0)

    def __call__(self, t: Any) -> Any:
        """Noise at time(s) ``t``: a float for a scalar, else an array shaped like ``t``."""
        shape = np.shape(t)
        with self._lock:
            draws = self._rng.standard_normal(shape)
        y = self._amplitude * draws
        return float(y) if shape == () else y

    def __repr__(self) -> str:
        return f"RandomNoise(amplitude={self._amplitude!r}, seed={self.seed!r})"
