"""Filter operators against scipy batch filtering, steady-state start and frequency response."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch

SHAPES = [(400,), (400, 3), (300, 2, 2)]
RATE = 100.0


def rand(shape, seed=0):
    """Noise around a per-channel offset (so the steady-state start matters)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) + rng.uniform(-5, 5, size=(1,) + tuple(shape[1:]))


def sosfilt_steady(sos, x):
    """One-shot scipy reference: sosfilt along time, started in the steady state of x[0]."""
    zi = scipy.signal.sosfilt_zi(sos).reshape(sos.shape[0], 2, *(1,) * (x.ndim - 1)) * x[0]
    return scipy.signal.sosfilt(sos, x, axis=0, zi=zi)[0]


def sine(freq, n=2000, rate=RATE):
    return np.sin(2 * np.pi * freq * np.arange(n) / rate)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("order", [1, 4])
def test_low_and_high_pass_match_scipy(shape, order):
    x = rand(shape)
    low = scipy.signal.butter(order, 8.0, btype="low", fs=RATE, output="sos")
    high = scipy.signal.butter(order, 8.0, btype="high", fs=RATE, output="sos")
    assert_streams_like_batch(
        lambda: s.LowPass("x", cutoff=8.0, sample_rate=RATE, order=order), [x],
        sosfilt_steady(low, x))
    assert_streams_like_batch(
        lambda: s.HighPass("x", cutoff=8.0, sample_rate=RATE, order=order), [x],
        sosfilt_steady(high, x))


@pytest.mark.parametrize("shape", SHAPES)
def test_band_pass_matches_scipy(shape):
    x = rand(shape)
    sos = scipy.signal.butter(3, [5.0, 15.0], btype="bandpass", fs=RATE, output="sos")
    assert_streams_like_batch(
        lambda: s.BandPass("x", low=5.0, high=15.0, sample_rate=RATE, order=3), [x],
        sosfilt_steady(sos, x))


def test_constant_input_gives_constant_output_from_sample_zero():
    x = np.full((50, 3), [9.81, -2.0, 0.5])
    np.testing.assert_allclose(s.LowPass("x", cutoff=5.0, sample_rate=RATE)(x), x,
                               rtol=1e-12)
    np.testing.assert_allclose(s.HighPass("x", cutoff=5.0, sample_rate=RATE)(x), 0.0,
                               atol=1e-12)
    np.testing.assert_allclose(
        s.BandPass("x", low=2.0, high=8.0, sample_rate=RATE)(x), 0.0, atol=1e-12)
    np.testing.assert_allclose(s.GaussianSmooth("x", sigma=3.0)(x), x, rtol=1e-12)
    # one sample at a time too
    op = s.LowPass("x", cutoff=5.0, sample_rate=RATE)
    out = np.concatenate([op(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(out, x, rtol=1e-12)


def amplitude(y):
    """Amplitude (RMS * sqrt 2) of the second half of a filtered sine, after the transient."""
    tail = y[len(y) // 2:]
    return np.sqrt(2 * np.mean(tail ** 2))


def test_frequency_response():
    lp = lambda: s.LowPass("x", cutoff=10.0, sample_rate=RATE, order=4)  # noqa: E731
    hp = lambda: s.HighPass("x", cutoff=10.0, sample_rate=RATE, order=4)  # noqa: E731
    bp = lambda: s.BandPass("x", low=8.0, high=12.0, sample_rate=RATE)  # noqa: E731
    assert amplitude(lp()(sine(1.0))) == pytest.approx(1.0, abs=0.01)
    assert amplitude(lp()(sine(10.0))) == pytest.approx(2 ** -0.5, abs=0.01)  # -3 dB
    assert amplitude(lp()(sine(30.0))) < 0.01
    assert amplitude(hp()(sine(1.0))) < 0.01
    assert amplitude(hp()(sine(30.0))) == pytest.approx(1.0, abs=0.01)
    assert amplitude(bp()(sine(10.0))) == pytest.approx(1.0, abs=0.02)
    assert amplitude(bp()(sine(2.0))) < 0.01 and amplitude(bp()(sine(30.0))) < 0.01


def gaussian_reference(x, sigma, truncate):
    """Causal convolution with the normalised kernel, the past padded with x[0]."""
    radius = max(1, int(truncate * sigma + 0.5))
    k = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (k / sigma) ** 2)
    w /= w.sum()
    flat = x.reshape(len(x), -1)
    padded = np.concatenate([np.repeat(flat[:1], 2 * radius, axis=0), flat])
    out = np.stack([np.convolve(padded[:, c], w, mode="valid")
                    for c in range(flat.shape[1])], axis=1)
    return out.reshape(x.shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sigma, truncate", [(2.0, 4.0), (0.7, 3.0), (0.1, 4.0)])
def test_gaussian_smooth(shape, sigma, truncate):
    x = rand(shape)
    assert_streams_like_batch(lambda: s.GaussianSmooth("x", sigma=sigma, truncate=truncate),
                              [x], gaussian_reference(x, sigma, truncate))


def test_gaussian_smooth_delay_is_half_the_kernel():
    op = s.GaussianSmooth("x", sigma=2.0, truncate=4.0)
    assert op.delay == 8
    x = np.zeros(40)
    x[10] = 1.0  # an impulse comes out centred `delay` samples later
    y = op(x)
    assert np.argmax(y) == 10 + op.delay
    np.testing.assert_allclose(y.sum(), 1.0)


def test_gaussian_smooth_is_a_true_fir():
    op = s.GaussianSmooth("x", sigma=1.0, truncate=2.0)  # radius 2: 5 taps
    x = np.arange(30)                                     # integers come out as float64
    x_nan = x.astype(float)
    x_nan[10] = np.nan
    y = op(x_nan)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(y)), np.arange(10, 15))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("make, message", [
    (lambda: s.LowPass("x", name="lp", cutoff=60.0, sample_rate=100.0),
     r"LowPass 'lp': field 'cutoff' must be below the Nyquist frequency sample_rate/2 "
     r"\(50 Hz\), got 60.0"),
    (lambda: s.HighPass("x", name="hp", cutoff=50, sample_rate=100),
     r"HighPass 'hp': field 'cutoff' must be below the Nyquist"),
    (lambda: s.LowPass("x", name="lp", cutoff=0, sample_rate=100.0),
     r"LowPass 'lp': field 'cutoff' must be > 0, got 0"),
    (lambda: s.LowPass("x", name="lp", cutoff=10, sample_rate=-1),
     r"LowPass 'lp': field 'sample_rate' must be > 0, got -1"),
    (lambda: s.LowPass("x", name="lp", cutoff=10, sample_rate=100, order=0),
     r"LowPass 'lp': field 'order' must be >= 1, got 0"),
    (lambda: s.LowPass("x", name="lp", cutoff=10, sample_rate=100, order=2.0),
     r"LowPass 'lp': field 'order' must be an integer"),
    (lambda: s.BandPass("x", name="bp", low=20, high=10, sample_rate=100),
     r"BandPass 'bp': field 'low' must be below high \(10\), got 20"),
    (lambda: s.BandPass("x", name="bp", low=20, high=70, sample_rate=100),
     r"BandPass 'bp': field 'high' must be below the Nyquist"),
    (lambda: s.GaussianSmooth("x", name="g", sigma=0),
     r"GaussianSmooth 'g': field 'sigma' must be > 0, got 0"),
    (lambda: s.GaussianSmooth("x", name="g", truncate=-1.0),
     r"GaussianSmooth 'g': field 'truncate' must be > 0"),
])
def test_bad_parameters(make, message):
    with pytest.raises(OperatorError, match=message):
        make()


def test_missing_required_parameters_through_json():
    with pytest.raises(OperatorError, match=r"LowPass 'lp': missing required field 'cutoff'"):
        s.Operator.from_dict({"type": "LowPass", "input": "x", "name": "lp",
                              "sample_rate": 100.0})


@pytest.mark.parametrize("make", [
    lambda: s.LowPass("x", name="op", cutoff=10.0, sample_rate=RATE),
    lambda: s.BandPass("x", name="op", low=1.0, high=10.0, sample_rate=RATE),
    lambda: s.GaussianSmooth("x", name="op"),
])
def test_per_sample_shape_may_not_change(make):
    op = make()
    op(np.zeros((3, 3)))
    with pytest.raises(OperatorError, match=r"'op': input 'x' must keep the shape of its "
                                            r"earlier chunks \(n, 3\), got \(2,\)"):
        op(np.zeros(2))


def test_non_numeric_input():
    with pytest.raises(OperatorError, match=r"LowPass 'lp': input 'x' must be real numbers"):
        s.LowPass("x", name="lp", cutoff=10.0, sample_rate=RATE)(np.array(["a"]))
