"""Event operators against straightforward per-sample reference loops."""

from __future__ import annotations

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch


def signal(shape, seed=0):
    """Small integers (many exact zeros) with a few NaNs, to hit every convention."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=shape).astype(float)
    x[rng.random(shape) < 0.05] = np.nan
    return x


def zero_crossing_reference(x, direction):
    flat = x.reshape(len(x), -1)
    out = np.zeros(flat.shape)
    for c in range(flat.shape[1]):
        last = 0  # last nonzero sign seen
        for i, v in enumerate(flat[:, c]):
            sign = 1 if v > 0 else -1 if v < 0 else 0
            if sign and last and sign != last:
                if direction == "both" or (direction == "rising") == (sign > 0):
                    out[i, c] = sign
            if sign:
                last = sign
    return out.reshape(x.shape)


def threshold_reference(x, high, low):
    flat = x.reshape(len(x), -1)
    out = np.zeros(flat.shape)
    for c in range(flat.shape[1]):
        state = 0.0
        for i, v in enumerate(flat[:, c]):
            if v > high:
                state = 1.0
            elif v < low:
                state = 0.0
            out[i, c] = state
    return out.reshape(x.shape)


@pytest.mark.parametrize("shape", [(300,), (300, 3), (300, 2, 2)])
@pytest.mark.parametrize("direction", ["both", "rising", "falling"])
def test_zero_crossing(shape, direction):
    x = signal(shape)
    out = assert_streams_like_batch(lambda: s.ZeroCrossing("x", direction=direction), [x],
                                    zero_crossing_reference(x, direction))
    assert out.dtype == np.float64


def test_zero_crossing_conventions():
    op = s.ZeroCrossing("x")
    # Zeros carry the previous sign: the crossing is at the first sample with the new sign.
    np.testing.assert_array_equal(op(np.array([-1.0, 0, 0, 2, 0, -1, 0, -3])),
                                  [0, 0, 0, 1, 0, -1, 0, 0])
    np.testing.assert_array_equal(op(np.array([0.0, 5.0])), [0, 1])  # carried across chunks
    op.reset()
    np.testing.assert_array_equal(op(np.array([5.0])), [0])  # first sign is not a crossing


@pytest.mark.parametrize("shape", [(300,), (300, 3), (300, 2, 2)])
@pytest.mark.parametrize("high, low", [(0.5, None), (1, -1), (0, 0), (1.5, 0.5)])
def test_threshold(shape, high, low):
    x = signal(shape, seed=1) + np.random.default_rng(2).normal(scale=0.3, size=shape)
    x[::17] = high  # exactly at the threshold: keeps the state
    out = assert_streams_like_batch(lambda: s.Threshold("x", high=high, low=low), [x],
                                    threshold_reference(x, high, high if low is None else low))
    assert out.dtype == np.float64 and set(np.unique(out)) <= {0.0, 1.0}


def test_threshold_hysteresis_and_carry():
    op = s.Threshold("x", high=1, low=-1)
    np.testing.assert_array_equal(op(np.array([0.0, 2, 0, -0.5])), [0, 1, 1, 1])
    np.testing.assert_array_equal(op(np.array([0.9, -2, 0.5])), [1, 0, 0])
    op.reset()
    np.testing.assert_array_equal(op(np.array([0.9])), [0])  # starts off


def test_empty_first_chunk_and_bad_input():
    op = s.ZeroCrossing("x", "zc")
    assert op(np.empty((0, 3))).shape == (0, 3)
    op(np.ones((2, 3)))
    with pytest.raises(OperatorError, match=r"ZeroCrossing 'zc': input 'x' must keep the shape "
                                            r"of its earlier chunks"):
        op(np.ones((2, 4)))
    with pytest.raises(OperatorError, match=r"ZeroCrossing 'zc': field 'direction' must be one "
                                            r"of \['both', 'rising', 'falling'\], got 'up'"):
        s.ZeroCrossing("x", "zc", direction="up")
    with pytest.raises(OperatorError, match=r"Threshold 't': field 'low' must be <= high "
                                            r"\(1\), got 2"):
        s.Threshold("x", "t", high=1, low=2)
    with pytest.raises(OperatorError, match=r"Threshold 't': field 'high' must be a finite"):
        s.Threshold("x", "t", high=None)
    with pytest.raises(OperatorError, match=r"Threshold 't': field 'low' must be a finite"):
        s.Threshold("x", "t", high=1, low="0")
    with pytest.raises(OperatorError, match=r"missing required field 'high'"):
        s.Operator.from_dict({"type": "Threshold", "input": "x", "name": "t"})
