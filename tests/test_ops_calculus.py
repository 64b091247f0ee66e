"""Calculus operators against scipy/numpy batch references and per-sample loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch

SHAPES = [(300,), (300, 3), (250, 2, 2)]


def rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def timestamps(n, seed=1, rate=100.0):
    """Increasing, jittered timestamps (a real clock is never exactly regular)."""
    steps = np.random.default_rng(seed).uniform(0.5, 1.5, size=n) / rate
    return 12.5 + np.cumsum(steps)


def col(t, ndim):
    """``(n,)`` -> ``(n, 1, ...)`` to broadcast over the channels of an ``ndim`` array."""
    return t.reshape((-1,) + (1,) * (ndim - 1))


# ------------------------------------------------------------------ Integrate
@pytest.mark.parametrize("shape", SHAPES)
def test_integrate_trapezoid_matches_cumulative_trapezoid(shape):
    x, t = rand(shape), timestamps(shape[0])
    assert_streams_like_batch(
        lambda: s.Integrate("x", with_respect_to="timestamp"), [x, t],
        scipy.integrate.cumulative_trapezoid(x, t, axis=0, initial=0))
    assert_streams_like_batch(
        lambda: s.Integrate("x"), [x],
        scipy.integrate.cumulative_trapezoid(x, dx=1.0, axis=0, initial=0))


@pytest.mark.parametrize("shape", SHAPES)
def test_integrate_rectangle_is_a_cumsum_with_dt0_zero(shape):
    x, t = rand(shape), timestamps(shape[0])
    dt = np.diff(t, prepend=t[0])
    assert_streams_like_batch(
        lambda: s.Integrate("x", with_respect_to="timestamp", method="rectangle"), [x, t],
        np.cumsum(x * col(dt, x.ndim), axis=0))
    per_sample = np.cumsum(x, axis=0) - x[0]
    assert_streams_like_batch(lambda: s.Integrate("x", method="rectangle"), [x], per_sample)


def test_integrate_with_respect_to_a_per_channel_stream():
    x, b = rand((200, 3)), np.cumsum(np.abs(rand((200, 3), seed=4)), axis=0)
    assert_streams_like_batch(
        lambda: s.Integrate("x", with_respect_to="b"), [x, b],
        scipy.integrate.cumulative_trapezoid(x, b, axis=0, initial=0))


def test_integrate_chunked_is_bit_exact_and_carries_state():
    x, t = rand(500), timestamps(500)
    batch = s.Integrate("x", with_respect_to="t")(x, t)
    op = s.Integrate("x", with_respect_to="t")
    chunked = np.concatenate([op(x[i:i + 3], t[i:i + 3]) for i in range(0, 500, 3)])
    np.testing.assert_array_equal(chunked, batch)
    # a constant velocity of 2 integrates to 2 * elapsed time
    op = s.Integrate("v", with_respect_to="t")
    np.testing.assert_allclose(op(np.full(1, 2.0), np.array([1.0])), [0.0])
    np.testing.assert_allclose(op(np.full(2, 2.0), np.array([1.5, 3.0])), [1.0, 4.0])


# -------------------------------------------------------------- Differentiate
def difference_quotient(x, b=None):
    out = np.zeros(x.shape)
    dx = x[1:] - x[:-1]
    out[1:] = dx if b is None else dx / col(b[1:] - b[:-1], x.ndim) if b.ndim == 1 \
        else dx / (b[1:] - b[:-1])
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_differentiate(shape):
    x, t = rand(shape), timestamps(shape[0])
    assert_streams_like_batch(lambda: s.Differentiate("x", sig_b="timestamp"), [x, t],
                              difference_quotient(x, t))
    assert_streams_like_batch(lambda: s.Differentiate("x"), [x], difference_quotient(x))


def test_differentiate_as_in_the_seed_notebook():
    t = timestamps(300)
    position = np.stack([np.sin(t), t ** 2], axis=1)
    def make():
        return s.Differentiate("mouse_position", sig_b="timestamp", name="mouse_velocity")

    v = assert_streams_like_batch(make, [position, t], difference_quotient(position, t))
    # the difference quotient of t**2 is exactly t[i] + t[i-1]
    np.testing.assert_allclose(v[1:, 1], t[1:] + t[:-1], rtol=1e-9)
    np.testing.assert_allclose(v[1:, 0], np.cos(t[1:]), atol=0.01)
    assert make().to_dict() == {"type": "Differentiate", "input": "mouse_position",
                                "name": "mouse_velocity", "sig_b": "timestamp"}


def test_differentiate_per_channel_b_and_first_sample_convention():
    x, b = rand((200, 3)), np.cumsum(np.abs(rand((200, 3), seed=5)) + 0.1, axis=0)
    assert_streams_like_batch(lambda: s.Differentiate("x", sig_b="b"), [x, b],
                              difference_quotient(x, b))
    op = s.Differentiate("x")
    np.testing.assert_array_equal(op(np.array([5.0])), [0.0])  # first sample ever: 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 on the first sample
        np.testing.assert_array_equal(
            s.Differentiate("x", sig_b="t")(np.array([1.0, 3.0]), np.array([0.0, 0.5])),
            [0.0, 4.0])
    np.testing.assert_array_equal(op(np.array([7.0, 4.0])), [2.0, -3.0])  # carried


# ----------------------------------------------------------------- SampleRate
def test_sample_rate():
    t = timestamps(400)
    expected = np.concatenate([[np.nan], 1.0 / np.diff(t)])
    out = assert_streams_like_batch(lambda: s.SampleRate(), [t], expected)
    assert np.isnan(out[0]) and np.all((out[1:] > 66) & (out[1:] < 200))
    op = s.SampleRate("timestamp", name="rate")
    assert op.inputs == ("timestamp",)
    op(np.array([0.0]))
    np.testing.assert_allclose(op(np.array([0.01, 0.03])), [100.0, 50.0])


def test_sample_rate_of_per_channel_clocks():
    t = np.stack([timestamps(200, seed=2), timestamps(200, seed=3)], axis=1)
    expected = np.concatenate([np.full((1, 2), np.nan), 1.0 / np.diff(t, axis=0)])
    assert_streams_like_batch(lambda: s.SampleRate("clocks"), [t], expected)


# -------------------------------------------------------------- MovingAverage
def moving_average_reference(x, length):
    out = np.empty(x.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        for i in range(len(x)):
            out[i] = np.nanmean(x[max(0, i - length + 1):i + 1], axis=0)
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("length", [1, 2, 10, 37])
def test_moving_average(shape, length):
    x = rand(shape) + 5.0
    assert_streams_like_batch(lambda: s.MovingAverage("x", length=length), [x],
                              moving_average_reference(x, length))


@pytest.mark.parametrize("shape", [(300,), (300, 3)])
@pytest.mark.parametrize("length", [1, 4, 10])
def test_moving_average_skips_nan_and_handles_inf(shape, length):
    x = rand(shape)
    x[0] = np.nan                 # what SampleRate produces first
    x[50:50 + length + 2] = np.nan  # a window with nothing but NaN
    x[100] = np.inf
    x[120] = np.inf
    x[123] = -np.inf              # windows holding both signs: NaN
    x[200] = -np.inf
    assert_streams_like_batch(lambda: s.MovingAverage("x", length=length), [x],
                              moving_average_reference(x, length))


def test_moving_average_of_sample_rate_is_finite_after_the_first_sample():
    t = timestamps(100)
    rate = s.SampleRate()(t)
    smooth = s.MovingAverage("rate", length=10)(rate)
    assert np.isnan(smooth[0]) and np.all(np.isfinite(smooth[1:]))
    np.testing.assert_allclose(smooth[10], np.mean(rate[1:11]))


def test_moving_average_does_not_drift_on_long_streams():
    op = s.MovingAverage("x", length=5)
    x = np.full(4000, 1e8) + np.arange(4000) % 2  # large values: a running sum would drift
    out = np.concatenate([op(x[i:i + 4]) for i in range(0, 4000, 4)])
    np.testing.assert_allclose(out[-2:], [1e8 + 0.4, 1e8 + 0.6], rtol=0, atol=1e-7)


# ----------------------------------------------------- ExponentialMovingAverage
def ema_reference(x, alpha):
    out = np.empty(x.shape)
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = alpha * x[i] + (1 - alpha) * out[i - 1]
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [0.05, 0.5, 1])
def test_exponential_moving_average(shape, alpha):
    x = rand(shape) + 3.0
    assert_streams_like_batch(lambda: s.ExponentialMovingAverage("x", alpha=alpha), [x],
                              ema_reference(x, alpha))


# ---------------------------------------------------------------------- Delay
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("samples", [0, 1, 5, 120])
def test_delay(shape, samples):
    x = rand(shape)
    expected = np.concatenate([np.full((samples,) + shape[1:], -1.5), x[:len(x) - samples]])
    assert_streams_like_batch(lambda: s.Delay("x", samples=samples, fill=-1.5), [x], expected)


def test_delay_longer_than_the_stream():
    out = s.Delay("x", samples=10)(np.arange(4))
    np.testing.assert_array_equal(out, np.zeros(4))
    assert out.dtype == np.float64


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("make, message", [
    (lambda: s.MovingAverage("x", name="m", length=-1),
     r"MovingAverage 'm': field 'length' must be >= 1, got -1"),
    (lambda: s.MovingAverage("x", name="m", length=2.5),
     r"MovingAverage 'm': field 'length' must be an integer"),
    (lambda: s.ExponentialMovingAverage("x", name="e", alpha=0),
     r"ExponentialMovingAverage 'e': field 'alpha' must be > 0, got 0"),
    (lambda: s.ExponentialMovingAverage("x", name="e", alpha=1.5),
     r"ExponentialMovingAverage 'e': field 'alpha' must be <= 1, got 1.5"),
    (lambda: s.Integrate("x", name="i", method="simpson"),
     r"Integrate 'i': field 'method' must be one of \['trapezoid', 'rectangle'\]"),
    (lambda: s.Integrate("x", with_respect_to="time stamp"),
     r"Integrate: input 1 must be a stream name"),
    (lambda: s.Differentiate("x", sig_b=3), r"Differentiate: input 1 must be a stream name"),
    (lambda: s.Delay("x", name="d", samples=-2), r"Delay 'd': field 'samples' must be >= 0"),
    (lambda: s.Delay("x", name="d", fill="zero"), r"Delay 'd': field 'fill' must be a finite"),
])
def test_bad_parameters(make, message):
    with pytest.raises(OperatorError, match=message):
        make()


@pytest.mark.parametrize("make", [
    lambda: s.Integrate("x", name="op"), lambda: s.Differentiate("x", name="op"),
    lambda: s.SampleRate("x", name="op"), lambda: s.MovingAverage("x", name="op"),
    lambda: s.ExponentialMovingAverage("x", name="op"), lambda: s.Delay("x", name="op"),
])
def test_per_sample_shape_may_not_change(make):
    def ramp(*shape):  # increasing along time, so SampleRate never divides by zero
        return np.arange(1.0, np.prod(shape) + 1).reshape(shape)

    op = make()
    op(np.zeros(0))           # empty chunks before any data fix nothing
    op(ramp(4, 3))
    op(np.zeros((0, 3)))
    with pytest.raises(OperatorError, match=r"'op': input 'x' must keep the shape of its "
                                            r"earlier chunks \(n, 3\), got \(2, 2\)"):
        op(ramp(2, 2))
    op.reset()                # reset forgets the shape
    assert op(ramp(2, 2)).shape == (2, 2)


def test_with_respect_to_streams_must_fit_the_input():
    with pytest.raises(OperatorError, match=r"Differentiate 'v': input 't' \(sig_b\) must have "
                                            r"shape \(n,\) or the shape of input 'x'"):
        s.Differentiate("x", name="v", sig_b="t")(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(OperatorError, match=r"Integrate 'i': input 't' \(with_respect_to\)"):
        s.Integrate("x", name="i", with_respect_to="t")(np.zeros(4), np.zeros((4, 3)))
    with pytest.raises(OperatorError, match=r"Differentiate 'v': expected 2 input chunk"):
        s.Differentiate("x", name="v", sig_b="t")(np.zeros(4))


def test_non_numeric_input():
    with pytest.raises(OperatorError, match=r"SampleRate 'r': input 't' must be real numbers"):
        s.SampleRate("t", name="r")(np.array(["a", "b"]))
    with pytest.raises(OperatorError, match=r"MovingAverage 'm': input 'x' must be real"):
        s.MovingAverage("x", name="m")(np.array([1j, 2j]))
