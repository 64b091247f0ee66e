"""Shape operators: streaming contract against plain numpy indexing, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch

rng = np.random.default_rng(0)
N = 120


@pytest.mark.parametrize("shape, dim, expected", [
    ((N, 3), 1, lambda x: x[:, 1]),
    ((N, 3), -1, lambda x: x[:, 2]),
    ((N, 3), [0, 2], lambda x: np.stack([x[:, 0], x[:, 2]], axis=1)),
    ((N, 4, 2), 3, lambda x: x[:, 3, :]),
    ((N, 4, 2), [3, 3, 0], lambda x: np.stack([x[:, 3], x[:, 3], x[:, 0]], axis=1)),
])
def test_extract_dimension(shape, dim, expected):
    x = rng.normal(size=shape)
    assert_streams_like_batch(lambda: s.ExtractDimension("x", dim=dim), [x], expected(x))


def test_extract_dimension_errors():
    with pytest.raises(OperatorError, match=r"ExtractDimension 'e': input 'x' must have shape "
                                            r"at least 2 dimension\(s\), got \(5,\)"):
        s.ExtractDimension("x", "e", dim=0)(np.zeros(5))
    with pytest.raises(OperatorError, match=r"field 'dim' 3 is out of range for input 'x'"):
        s.ExtractDimension("x", "e", dim=3)(np.zeros((5, 3)))
    with pytest.raises(OperatorError, match=r"ExtractDimension 'e': field 'dim' must be an int"):
        s.ExtractDimension("x", "e", dim="y")
    with pytest.raises(OperatorError, match=r"field 'dim' must be an integer or a non-empty"):
        s.ExtractDimension("x", "e", dim=[])


def test_extract_dimension_tuple_is_rejected_not_read_as_channels():
    """The original library read ``dim=(0, 0)`` as the nested index ``x[:, 0, 0]``; a list picks
    channels. A tuple is an error that says both spellings, never a silent ``x[:, [0, 0]]``."""
    with pytest.raises(OperatorError, match=(
            r"ExtractDimension 'e': field 'dim' is a tuple \(0, 0\): the original library read "
            r"a tuple as one nested index \(x\[:, 0, 0\]\), not as a list of channels\. Write a "
            r"list, dim=\[0, 0\], to pick channels \(x\[:, \[0, 0\]\]\); for the nested element "
            r"chain ExtractDimension\(dim=0\) then ExtractDimension\(dim=0\)")):
        s.ExtractDimension("x", "e", dim=(0, 0))
    with pytest.raises(OperatorError, match=r"field 'dim' is a tuple \(1,\)"):
        s.ExtractDimension("x", "e", dim=(1,))
    # What the message offers instead computes what it says.
    x = rng.normal(size=(6, 2, 3))
    np.testing.assert_array_equal(s.ExtractDimension("x", dim=[0, 0])(x), x[:, [0, 0]])
    inner = s.ExtractDimension("x", dim=0)
    np.testing.assert_array_equal(s.ExtractDimension("y", dim=0)(inner(x)), x[:, 0, 0])
    # A spec (JSON) can only hold lists: the round trip stays a channel selection.
    op = s.Operator.from_dict({"type": "ExtractDimension", "input": "x", "dim": [0, 0]})
    assert op.to_dict()["dim"] == [0, 0]


def test_concatenate_mixes_scalars_and_vectors():
    a, b = rng.normal(size=N), rng.normal(size=(N, 3))
    expected = np.column_stack([a, b[:, 0], b[:, 1], b[:, 2]])
    assert_streams_like_batch(lambda: s.Concatenate(["a", "b"]), [a, b], expected)


def test_concatenate_seed_and_axes():
    linacc, gyro = rng.normal(size=(N, 3)), rng.normal(size=(N, 3))
    op = s.Concatenate(["linacc", "gyro"], name="model_input")
    assert op.inputs == ("linacc", "gyro") and op.to_dict()["inputs"] == ["linacc", "gyro"]
    assert_streams_like_batch(lambda: s.Concatenate(["linacc", "gyro"], name="model_input"),
                              [linacc, gyro], np.hstack([linacc, gyro]))
    a, b = rng.normal(size=(N, 2, 3)), rng.normal(size=(N, 1, 3))
    ref = np.array([np.vstack([a[i], b[i]]) for i in range(N)])
    assert_streams_like_batch(lambda: s.Concatenate(["a", "b"], axis=0), [a, b], ref)
    assert_streams_like_batch(lambda: s.Concatenate(["a", "b"], axis=-2), [a, b], ref)


def test_concatenate_errors():
    with pytest.raises(OperatorError, match=r"Concatenate 'c': field 'inputs' must be a "
                                            r"non-empty list of stream names, got 'ab'"):
        s.Concatenate("ab", name="c")
    op = s.Concatenate(["a", "b"], name="c")
    with pytest.raises(OperatorError, match=r"Concatenate 'c': input shapes a: \(4, 3, 2\), "
                                            r"b: \(4, 3, 3\) may only differ along axis 0"):
        s.Concatenate(["a", "b"], name="c", axis=0)(np.zeros((4, 3, 2)), np.zeros((4, 3, 3)))
    with pytest.raises(OperatorError, match=r"same number of dimensions"):
        op(np.zeros((4, 3)), np.zeros((4, 3, 1)))
    with pytest.raises(OperatorError, match=r"field 'axis' 1 is out of range"):
        s.Concatenate(["a", "b"], name="c", axis=1)(np.zeros((4, 3)), np.zeros((4, 3)))


@pytest.mark.parametrize("shape, axis", [((N,), -1), ((N,), 0), ((N, 3), -1), ((N, 3), 0),
                                         ((N, 2, 3), 1)])
def test_stack(shape, axis):
    xs = [rng.normal(size=shape) for _ in range(3)]
    per_sample_axis = axis if axis >= 0 else len(shape) + axis
    ref = np.array([np.stack([x[i] for x in xs], axis=per_sample_axis) for i in range(N)])
    assert_streams_like_batch(lambda: s.Stack(["a", "b", "c"], axis=axis), xs, ref)


def test_stack_errors():
    with pytest.raises(OperatorError, match=r"Stack 'st': inputs must have the same shape, "
                                            r"got a: \(2, 3\), b: \(2, 2\)"):
        s.Stack(["a", "b"], name="st")(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(OperatorError, match=r"Stack 'st': field 'axis' 2 is out of range"):
        s.Stack(["a", "b"], name="st", axis=2)(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("in_shape, shape, out_shape", [
    ((N, 6), [2, 3], (2, 3)), ((N, 6), [-1, 2], (3, 2)), ((N, 2, 3), [-1], (6,)),
    ((N, 1), [], ()), ((N,), [1, 1], (1, 1)), ((N, 4, 3), [2, -1, 3], (2, 2, 3)),
])
def test_reshape(in_shape, shape, out_shape):
    x = rng.normal(size=in_shape)
    flat = x.reshape(N, -1) if x.ndim > 1 else x[:, None]
    ref = np.array([flat[i].reshape(out_shape) for i in range(N)])  # row-major per sample
    out = assert_streams_like_batch(lambda: s.Reshape("x", shape=shape), [x], ref)
    assert out.shape == (N,) + out_shape
    assert s.Reshape("x", shape=shape)(x[:0]).shape == (0,) + out_shape


def test_reshape_errors():
    with pytest.raises(OperatorError, match=r"Reshape 'r': field 'shape' must hold sizes >= 0 "
                                            r"and at most one -1"):
        s.Reshape("x", "r", shape=[-1, -1])
    with pytest.raises(OperatorError, match=r"field 'shape' must be a list of integers"):
        s.Reshape("x", "r", shape=3)
    with pytest.raises(OperatorError, match=r"Reshape 'r': input 'x' with per-sample shape "
                                            r"\(5,\) cannot be reshaped to \[2, -1\]"):
        s.Reshape("x", "r", shape=[2, -1])(np.zeros((3, 5)))


@pytest.mark.parametrize("shape", [(N,), (N, 3), (N, 2, 3)])
@pytest.mark.parametrize("ord", [2, 1, 3.5, np.inf])
def test_norm(shape, ord):
    x = rng.normal(size=shape)
    axes = tuple(range(1, x.ndim))
    if ord == np.inf:
        ref = np.abs(x).max(axis=axes) if axes else np.abs(x)
    else:
        ref = (np.abs(x) ** ord).sum(axis=axes) ** (1 / ord)
    out = assert_streams_like_batch(lambda: s.Norm("x", ord=ord), [x], ref)
    assert out.shape == (N,)


def test_norm_errors():
    for bad in (0, -1, True, "2", float("nan")):
        with pytest.raises(OperatorError, match=r"Norm 'n': field 'ord' must be a number > 0"):
            s.Norm("x", "n", ord=bad)
