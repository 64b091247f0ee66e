"""Shared checks for the operator contract: chunked streaming equals the one-shot result.

Used by every operator test module::

    from genki_signals.testing.streaming import assert_streams_like_batch
    assert_streams_like_batch(lambda: s.MovingAverage("x", length=5), [x], expected)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from genki_signals.signals.base import Operator


def random_splits(n: int, rng: np.random.Generator, count: int = 6) -> list[list[int]]:
    """Several chunkings of ``n`` samples as lists of chunk lengths.

    Always includes: one batch, one-sample chunks, and random chunkings that contain empty
    chunks, one-sample chunks and large ones.
    """
    splits = [[n], [1] * n]
    for _ in range(count - 2):
        lengths: list[int] = []
        left = n
        while left > 0:
            k = int(rng.choice([0, 1, 2, 3, 7, 16, 40, 100]))
            k = min(k, left)
            lengths.append(k)
            left -= k
        lengths.insert(int(rng.integers(0, len(lengths) + 1)), 0)
        splits.append(lengths)
    return splits


def run_chunked(op: Operator, inputs: Sequence[np.ndarray], lengths: Sequence[int]):
    """Feed ``inputs`` to ``op`` in chunks; return (concatenated output, global emitted indices).

    For operators on the input's timeline the emitted indices are ``None``.
    """
    outs, emitted = [], []
    start = 0
    for k in lengths:
        chunk = [np.asarray(x)[start:start + k] for x in inputs]
        y = np.asarray(op(*chunk))
        if op.new_timeline:
            assert len(op.emitted) == len(y), f"{op.describe()}: emitted/rows mismatch"
            emitted.append(np.asarray(op.emitted) + start)
        else:
            assert y.shape[0] == k, f"{op.describe()}: {y.shape[0]} rows out for {k} in"
        outs.append(y)
        start += k
    out = np.concatenate(outs) if outs else np.empty(0)
    idx = np.concatenate(emitted).astype(int) if op.new_timeline else None
    return out, idx


def assert_same_bits(out: np.ndarray, want: np.ndarray, what: str) -> None:
    """``out`` is ``want`` bit for bit: dtype, shape and bytes (NaN payloads and the sign of
    zero included), beyond ``np.array_equal``."""
    assert out.dtype == want.dtype and out.shape == want.shape, \
        f"{what}: {out.dtype}{out.shape} vs {want.dtype}{want.shape}"
    if out.tobytes() != want.tobytes():
        diff = ~((out == want) | (np.isnan(out) & np.isnan(want))) \
            if out.dtype.kind in "fc" else out != want
        where = np.argwhere(diff)
        raise AssertionError(f"{what}: differs bit for bit at {len(where)} element(s), the "
                             f"first at {tuple(map(int, where[0])) if len(where) else '(sign of zero)'}")


def assert_streams_like_batch(make_op: Callable[[], Operator], inputs: Sequence[np.ndarray],
                              expected: np.ndarray | None = None, *,
                              expected_emitted: np.ndarray | None = None,
                              rtol: float = 1e-9, atol: float = 1e-9, seed: int = 0) -> np.ndarray:
    """Check the streaming contract for one operator and return the one-shot output.

    * every chunking (empty and 1-sample chunks included) equals the one-shot output bit for
      bit (``assert_same_bits``: a full-speed replay joins frames and relies on it),
    * ``reset()`` then a replay gives the same output again, bit for bit,
    * the operator survives a JSON round trip of ``to_dict`` and the copy computes the same,
    * the one-shot output equals ``expected`` (the independent numpy/scipy reference) within
      ``rtol``/``atol``.
    """
    rng = np.random.default_rng(seed)
    n = len(inputs[0])
    op = make_op()
    batch, batch_idx = run_chunked(op, inputs, [n])
    for lengths in random_splits(n, rng):
        fresh = make_op()
        out, idx = run_chunked(fresh, inputs, lengths)
        assert_same_bits(out, batch, f"chunking {lengths[:12]}... vs one batch")
        if batch_idx is not None:
            np.testing.assert_array_equal(idx, batch_idx)
        fresh.reset()
        again, _ = run_chunked(fresh, inputs, lengths[::-1])
        assert_same_bits(again, batch, "output after reset() vs before")
    spec = json.loads(json.dumps(op.to_dict()))
    clone = Operator.from_dict(spec)
    assert clone.to_dict() == op.to_dict()
    clone_out, _ = run_chunked(clone, inputs, [n])
    assert_same_bits(clone_out, batch, "a copy from to_dict() vs the original")
    if expected is not None:
        np.testing.assert_allclose(batch, expected, rtol=max(rtol, 1e-7), atol=max(atol, 1e-9),
                                   err_msg="one-shot output differs from the reference")
    if expected_emitted is not None:
        np.testing.assert_array_equal(batch_idx, expected_emitted)
    return batch
