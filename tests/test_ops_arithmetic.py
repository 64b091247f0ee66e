"""Arithmetic operators against direct numpy expressions, plus their error messages."""

from __future__ import annotations

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch

SHAPES = [(300,), (300, 3), (250, 2, 2)]


def rand(shape, seed=0, low=-3.0, high=3.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


@pytest.mark.parametrize("shape", SHAPES)
def test_scale(shape):
    x = rand(shape)
    assert_streams_like_batch(lambda: s.Scale("x", factor=-2.5, offset=0.75), [x],
                              -2.5 * x + 0.75)
    out = s.Scale("x", factor=3)(np.arange(4))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0.0, 3.0, 6.0, 9.0])


@pytest.mark.parametrize("shape", SHAPES)
def test_sum_and_multiply(shape):
    a, b, c = rand(shape, 1), rand(shape, 2), rand(shape, 3)
    assert_streams_like_batch(lambda: s.Sum("a", "b"), [a, b], np.add(a, b))
    assert_streams_like_batch(lambda: s.Sum("a", "b", "c", name="abc"), [a, b, c], a + b + c)
    assert_streams_like_batch(lambda: s.Multiply("a", "b"), [a, b], a * b)
    assert_streams_like_batch(lambda: s.Multiply("a", "b", "c"), [a, b, c], a * b * c)


@pytest.mark.parametrize("shape", SHAPES)
def test_difference(shape):
    a, b = rand(shape, 1), rand(shape, 2)
    assert_streams_like_batch(lambda: s.Difference("a", "b", name="d"), [a, b], a - b)


def test_integer_inputs_give_float64():
    a = np.arange(1, 6)
    for op in (s.Sum("a", "b"), s.Multiply("a", "b"), s.Difference("a", "b")):
        assert op(a, a).dtype == np.float64
    for op in (s.Abs("a"), s.Pow("a"), s.Exp("a"), s.Log("a"), s.Clip("a", maximum=2)):
        assert op(a).dtype == np.float64


@pytest.mark.parametrize("shape", SHAPES)
def test_abs_exp(shape):
    x = rand(shape)
    assert_streams_like_batch(lambda: s.Abs("x"), [x], np.where(x < 0, -x, x))
    assert_streams_like_batch(lambda: s.Exp("x"), [x], np.e ** x)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("exponent", [2, 3.0, -1, 0.5])
def test_pow(shape, exponent):
    x = rand(shape, low=0.1, high=4.0)
    assert_streams_like_batch(lambda: s.Pow("x", exponent=exponent), [x],
                              np.exp(exponent * np.log(x)))


def test_pow_of_integers_to_negative_powers_is_float():
    np.testing.assert_allclose(s.Pow("x", exponent=-1)(np.array([1, 2, 4])), [1, 0.5, 0.25])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("base", [None, 2, 10, 3.5])
def test_log(shape, base):
    x = rand(shape, low=0.01, high=100.0)
    expected = np.log(x) if base is None else np.log(x) / np.log(base)
    assert_streams_like_batch(lambda: s.Log("x", base=base), [x], expected)


def test_log_of_exact_powers():
    np.testing.assert_array_equal(s.Log("x", base=10)(np.array([1.0, 10.0, 1e6])), [0, 1, 6])
    np.testing.assert_array_equal(s.Log("x", base=2)(np.array([1.0, 8.0])), [0, 3])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lo, hi", [(-1.0, 2.0), (None, 0.5), (-0.5, None), (1, 1)])
def test_clip(shape, lo, hi):
    x = rand(shape)
    expected = x.copy()
    if lo is not None:
        expected[expected < lo] = lo
    if hi is not None:
        expected[expected > hi] = hi
    assert_streams_like_batch(lambda: s.Clip("x", minimum=lo, maximum=hi), [x], expected)


def test_clip_keeps_nan():
    out = s.Clip("x", minimum=0, maximum=1)(np.array([np.nan, -1.0, 2.0]))
    np.testing.assert_array_equal(out, [np.nan, 0.0, 1.0])


# ------------------------------------------------------------------ errors
def test_mismatched_shapes_name_the_input():
    a, b = np.zeros((5, 3)), np.zeros((5, 2))
    with pytest.raises(OperatorError, match=r"Difference 'd': input 'b' must have the same "
                                            r"shape as input 'a'.*'b': \(5, 2\)"):
        s.Difference("a", "b", name="d")(a, b)
    with pytest.raises(OperatorError, match=r"Sum 'total': input 'c' must have the same shape"):
        s.Sum("a", "b", "c", name="total")(a, a, np.zeros(5))
    with pytest.raises(OperatorError, match=r"Multiply 'm': input 'b'.*no broadcasting"):
        s.Multiply("a", "b", name="m")(np.zeros(5), np.zeros((5, 1)))


def test_wrong_number_of_inputs():
    with pytest.raises(OperatorError, match=r"Sum 'x': field 'inputs' must name at least 2"):
        s.Sum("a", name="x")
    with pytest.raises(OperatorError, match=r"Multiply 'x': field 'inputs' must name at least"):
        s.Multiply(name="x")
    with pytest.raises(OperatorError, match=r"Sum 'sum_a_b': expected 2 input chunk\(s\)"):
        s.Sum("a", "b")(np.zeros(3))
    with pytest.raises(OperatorError, match=r"different numbers of samples \(a: 3, b: 4\)"):
        s.Sum("a", "b")(np.zeros(3), np.zeros(4))


def test_non_numeric_input():
    with pytest.raises(OperatorError, match=r"Abs 'y': inputs must be numbers.*'x': <U1"):
        s.Abs("x", name="y")(np.array(["a", "b"]))
    with pytest.raises(OperatorError, match=r"Sum 'z': inputs must be numbers"):
        s.Sum("a", "b", name="z")(np.array(["a"]), np.array(["b"]))


@pytest.mark.parametrize("make, message", [
    (lambda: s.Scale("x", name="y", factor="2"), r"Scale 'y': field 'factor' must be a finite"),
    (lambda: s.Scale("x", name="y", offset=np.nan), r"Scale 'y': field 'offset' must be a"),
    (lambda: s.Pow("x", name="y", exponent=None), r"Pow 'y': field 'exponent' must be a"),
    (lambda: s.Log("x", name="y", base=-2), r"Log 'y': field 'base' must be > 0"),
    (lambda: s.Log("x", name="y", base=1), r"Log 'y': field 'base' must not be 1"),
    (lambda: s.Clip("x", name="y"), r"Clip 'y': field 'minimum' or 'maximum' must be given"),
    (lambda: s.Clip("x", name="y", minimum=2, maximum=1),
     r"Clip 'y': field 'minimum' must be <= maximum \(1\), got 2"),
    (lambda: s.Clip("x", name="y", maximum=np.inf), r"Clip 'y': field 'maximum' must be a"),
    (lambda: s.Abs("x y"), r"Abs: input 0 must be a stream name"),
])
def test_bad_parameters(make, message):
    with pytest.raises(OperatorError, match=message):
        make()


def test_scalar_chunk_is_rejected():
    with pytest.raises(OperatorError, match=r"Exp 'e': input 'x' must be time-first"):
        s.Exp("x", name="e")(np.float64(1.0))


def test_round_trip_of_var_positional_inputs():
    op = s.Sum("a", "b", "c", name="abc")
    assert op.to_dict() == {"type": "Sum", "inputs": ["a", "b", "c"], "name": "abc"}
    assert s.Operator.from_dict(op.to_dict()).inputs == ("a", "b", "c")
