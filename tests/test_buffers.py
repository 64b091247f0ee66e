"""DataBuffer: circular storage per timeline, multi-rate and late keys, errors, amortised cost."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from genki_signals.buffers import BufferShapeError, DataBuffer
from genki_signals.errors import GenkiError
from genki_signals.testing.streaming import random_splits


def _frames(n: int, lengths: list[int], rng: np.random.Generator):
    """Reference arrays of n samples and the frames that chunk them by ``lengths``."""
    ref = {
        "timestamp": np.arange(n) / 100.0,
        "x": rng.standard_normal(n),
        "acc": rng.standard_normal((n, 3)),
        "flag": rng.integers(0, 2, n).astype(bool),
    }
    frames, start = [], 0
    for k in lengths:
        frames.append({key: v[start:start + k] for key, v in ref.items()})
        start += k
    return ref, frames


def _storage(buf: DataBuffer, key: str):
    col = buf._streams[key].data
    return col, col._arr


# ------------------------------------------------------------------ circular behaviour
@pytest.mark.parametrize("maxlen", [None, 1, 7, 50, 300])
def test_matches_reference_for_random_chunkings(maxlen):
    rng = np.random.default_rng(0)
    n = 400
    for lengths in random_splits(n, rng, count=8):
        ref, frames = _frames(n, lengths, rng)
        buf = DataBuffer(maxlen=maxlen)
        seen = 0
        for frame in frames:
            buf.extend(frame)
            seen += len(frame["timestamp"])
            lo = 0 if maxlen is None else max(0, seen - maxlen)
            # Reference: everything so far, then the last maxlen rows.
            for key, full in ref.items():
                np.testing.assert_array_equal(buf[key], full[lo:seen], err_msg=key)
            assert len(buf) == seen - lo
        assert list(buf.keys()) == ["timestamp", "x", "acc", "flag"]
        assert buf["flag"].dtype == bool and buf["acc"].shape[1:] == (3,)


def test_chunk_larger_than_maxlen_keeps_its_tail():
    buf = DataBuffer(maxlen=5)
    buf.extend({"timestamp": np.arange(3.0), "x": np.arange(3)})
    buf.extend({"timestamp": np.arange(3.0, 20.0), "x": np.arange(3, 20)})
    np.testing.assert_array_equal(buf["x"], np.arange(15, 20))
    np.testing.assert_array_equal(buf.timestamps("x"), np.arange(15.0, 20.0))


def test_bad_maxlen_rejected():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="maxlen"):
            DataBuffer(maxlen=bad)


# ------------------------------------------------------------------ multi-rate frames
def _multirate_frames():
    """Main timeline at 100 Hz; 'spec' (shape (4,)) at one row per 10 main samples."""
    frames = []
    for c in range(12):
        ts = (np.arange(25) + 25 * c) / 100.0
        spec_idx = [i for i in range(25 * c, 25 * c + 25) if i % 10 == 9]
        frames.append({
            "timestamp": ts,
            "x": ts * 2,
            "spec": np.array([[i, i, i, i] for i in spec_idx], dtype=float).reshape(-1, 4),
            "spec.timestamp": np.array(spec_idx, dtype=float) / 100.0,
        })
    return frames


@pytest.mark.parametrize("maxlen", [None, 8, 40])
def test_multirate_keys_keep_their_own_timestamps(maxlen):
    buf = DataBuffer(maxlen=maxlen)
    frames = _multirate_frames()
    for f in frames:
        buf.extend(f)
    all_spec = np.concatenate([f["spec"] for f in frames])
    all_spec_ts = np.concatenate([f["spec.timestamp"] for f in frames])
    all_ts = np.concatenate([f["timestamp"] for f in frames])
    cut = slice(None) if maxlen is None else slice(-maxlen, None)
    np.testing.assert_array_equal(buf["spec"], all_spec[cut])
    np.testing.assert_array_equal(buf.timestamps("spec"), all_spec_ts[cut])
    np.testing.assert_array_equal(buf.timestamps("x"), all_ts[cut])
    np.testing.assert_array_equal(buf["x"], 2 * all_ts[cut])
    # Rows of spec are i = 100 * its timestamp: data and timestamps trimmed together.
    np.testing.assert_allclose(buf["spec"][:, 0], buf.timestamps("spec") * 100)
    assert "spec.timestamp" not in buf.keys() and "spec.timestamp" not in buf
    assert buf.has_own_timeline("spec") and not buf.has_own_timeline("x")
    assert len(buf) == len(all_ts[cut])


def test_to_dict_round_trips_with_companions():
    buf = DataBuffer(maxlen=30)
    for f in _multirate_frames():
        buf.extend(f)
    d = buf.to_dict()
    assert set(d) == {"timestamp", "x", "spec", "spec.timestamp"}
    assert all(type(v) is np.ndarray and v.flags.writeable for v in d.values())
    again = DataBuffer.from_dict(d, maxlen=30)
    for key in ("timestamp", "x", "spec"):
        np.testing.assert_array_equal(again[key], buf[key])
        np.testing.assert_array_equal(again.timestamps(key), buf.timestamps(key))
    # to_dict returns copies: mutating them does not touch the buffer.
    d["x"][:] = -1
    assert not np.any(buf["x"] == -1)


def test_companion_key_is_not_an_item():
    buf = DataBuffer()
    buf.extend(_multirate_frames()[0])
    with pytest.raises(KeyError, match="timestamps"):
        buf["spec.timestamp"]


# ------------------------------------------------------------------ late and missing keys
@pytest.mark.parametrize("maxlen", [None, 6, 1000])
def test_late_key_keeps_its_own_timestamps(maxlen):
    buf = DataBuffer(maxlen=maxlen)
    buf.extend({"timestamp": np.arange(10.0), "a": np.arange(10.0)})
    buf.extend({"timestamp": np.arange(10.0, 14.0), "a": np.arange(10.0, 14.0),
                "late": np.arange(4) * 10})
    buf.extend({"timestamp": np.arange(14.0, 16.0), "a": np.arange(14.0, 16.0),
                "late": np.arange(4, 6) * 10})
    late_ts = np.arange(10.0, 16.0)
    cut = slice(None) if maxlen is None else slice(-maxlen, None)
    assert buf.has_own_timeline("late")
    np.testing.assert_array_equal(buf.timestamps("late"), late_ts[cut])
    np.testing.assert_array_equal(buf["late"], (np.arange(6) * 10)[cut])
    np.testing.assert_array_equal(buf["a"], np.arange(16.0)[cut])
    assert list(buf.keys()) == ["timestamp", "a", "late"]
    d = buf.to_dict()
    np.testing.assert_array_equal(d["late.timestamp"], late_ts[cut])
    back = DataBuffer.from_dict(d)
    np.testing.assert_array_equal(back.timestamps("late"), late_ts[cut])
    np.testing.assert_array_equal(back["late"], buf["late"])


def test_key_in_first_frame_shares_main_timeline():
    buf = DataBuffer()
    buf.extend({"timestamp": np.zeros(0), "a": np.zeros(0)})  # empty first frame
    buf.extend({"timestamp": np.arange(3.0), "a": np.ones(3)})
    assert not buf.has_own_timeline("a")
    assert "a.timestamp" not in buf.to_dict()


def test_key_missing_from_a_frame_moves_to_its_own_timeline():
    buf = DataBuffer(maxlen=8)
    buf.extend({"timestamp": np.arange(5.0), "a": np.arange(5.0), "b": -np.arange(5.0)})
    buf.extend({"timestamp": np.arange(5.0, 7.0), "a": np.arange(5.0, 7.0)})  # b absent
    buf.extend({"timestamp": np.arange(7.0, 10.0), "a": np.arange(7.0, 10.0),
                "b": -np.arange(7.0, 10.0)})
    assert buf.has_own_timeline("b") and not buf.has_own_timeline("a")
    b_ts = np.array([0, 1, 2, 3, 4, 7, 8, 9], dtype=float)
    np.testing.assert_array_equal(buf.timestamps("b"), b_ts)
    np.testing.assert_array_equal(buf["b"], -b_ts)  # values still match their timestamps
    np.testing.assert_array_equal(buf["a"], np.arange(2.0, 10.0))


def test_zero_length_frame_does_not_detach_keys():
    buf = DataBuffer()
    buf.extend({"timestamp": np.arange(3.0), "a": np.arange(3.0)})
    buf.extend({"timestamp": np.zeros(0)})
    assert not buf.has_own_timeline("a")


# ------------------------------------------------------------------ errors
def test_shape_change_names_the_key_and_leaves_buffer_unchanged():
    buf = DataBuffer()
    buf.extend({"timestamp": np.arange(3.0), "acc": np.zeros((3, 3)), "x": np.zeros(3)})
    with pytest.raises(BufferShapeError, match="'acc'.*shape"):
        buf.extend({"timestamp": np.arange(3.0, 5.0), "x": np.zeros(2), "acc": np.zeros((2, 4))})
    assert len(buf) == 3 and len(buf["x"]) == 3  # nothing of the rejected frame was kept


def test_dtype_change_names_the_key():
    buf = DataBuffer()
    buf.extend({"timestamp": np.arange(3.0), "n": np.arange(3)})
    with pytest.raises(BufferShapeError, match="'n'.*dtype"):
        buf.extend({"timestamp": np.arange(3.0, 5.0), "n": np.zeros(2)})
    assert isinstance(BufferShapeError("x"), GenkiError)


def test_empty_chunks_do_not_fix_shape_or_dtype():
    buf = DataBuffer()
    buf.extend({"timestamp": np.zeros(0), "spec": np.zeros(0)})
    buf.extend({"timestamp": np.arange(2.0), "spec": np.ones((2, 5), dtype=np.float32)})
    buf.extend({"timestamp": np.zeros(0), "spec": np.zeros(0)})  # empty: not checked
    assert buf["spec"].shape == (2, 5) and buf["spec"].dtype == np.float32


def test_invalid_frames_are_rejected():
    buf = DataBuffer()
    with pytest.raises(GenkiError, match="missing 'timestamp'"):
        buf.extend({"x": np.zeros(3)})
    with pytest.raises(GenkiError, match="'x' has 2 samples"):
        buf.extend({"timestamp": np.arange(3.0), "x": np.zeros(2)})
    with pytest.raises(GenkiError, match="'s.timestamp' has no stream"):
        buf.extend({"timestamp": np.arange(3.0), "s.timestamp": np.zeros(1)})
    assert len(buf) == 0 and list(buf.keys()) == []


def test_empty_dict_is_a_noop_and_basic_protocol():
    buf = DataBuffer()
    buf.extend({})
    assert len(buf) == 0 and list(buf.keys()) == [] and buf.to_dict() == {}
    assert "timestamp" not in buf
    buf.extend({"timestamp": np.arange(2.0), "x": np.ones(2)})
    assert "x" in buf and "timestamp" in buf and "y" not in buf
    assert list(buf) == ["timestamp", "x"]
    with pytest.raises(KeyError, match="'y'"):
        buf["y"]
    buf.clear()
    assert len(buf) == 0 and list(buf.keys()) == []
    buf.extend({"timestamp": np.arange(2.0), "z": np.ones((2, 2))})
    assert list(buf.keys()) == ["timestamp", "z"]


# ------------------------------------------------------------------ views
@pytest.mark.parametrize("maxlen", [None, 10])
def test_views_are_read_only_and_stay_valid(maxlen):
    buf = DataBuffer(maxlen=maxlen)
    buf.extend({"timestamp": np.arange(8.0), "x": np.arange(8.0)})
    for i in range(8, 40):  # warm up: storage at full size, so the next appends compact
        buf.extend({"timestamp": np.array([float(i)]), "x": np.array([float(i)])})
    view, ts_view = buf["x"], buf.timestamps("x")
    part = buf["x"][2:5]  # a view of a view refers to the storage too
    before, part_before = view.copy(), part.copy()
    with pytest.raises(ValueError):
        view[0] = 1
    for i in range(100):  # growth (unbounded) and many compactions (maxlen)
        buf.extend({"timestamp": np.array([40.0 + i]), "x": np.array([40.0 + i])})
    np.testing.assert_array_equal(view, before)
    np.testing.assert_array_equal(ts_view, before)
    np.testing.assert_array_equal(part, part_before)
    buf.clear()
    np.testing.assert_array_equal(view, before)


# ------------------------------------------------------------------ amortised cost
def test_unbounded_extend_reallocates_logarithmically():
    buf = DataBuffer()
    pointers = []
    n = 1000
    for i in range(n):
        buf.extend({"timestamp": np.array([float(i)]), "x": np.array([[i, i]])})
        col, arr = _storage(buf, "x")
        pointers.append(arr.__array_interface__["data"][0])
        del arr
    col, _ = _storage(buf, "x")
    changes = sum(a != b for a, b in zip(pointers, pointers[1:])) + 1
    bound = math.ceil(math.log2(n)) + 1
    # An implementation that reallocates per extend (np.concatenate) makes ~n allocations.
    assert col.allocations <= bound, col.allocations
    assert changes <= bound, changes
    assert buf._ts.allocations <= bound
    np.testing.assert_array_equal(buf["x"][:, 0], np.arange(n))


@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_circular_extend_does_not_reallocate_after_warm_up(chunk):
    maxlen = 64
    buf = DataBuffer(maxlen=maxlen)
    warm = 4 * maxlen
    i = 0
    while i < warm:  # grow to full size and wrap a few times
        buf.extend({"timestamp": np.arange(i, i + chunk, dtype=float), "x": np.ones(chunk)})
        i += chunk
    col, arr = _storage(buf, "x")
    allocations, pointer, capacity = col.allocations, arr.__array_interface__["data"][0], len(arr)
    del arr
    assert capacity == 2 * maxlen
    for _ in range(1000):
        buf.extend({"timestamp": np.arange(i, i + chunk, dtype=float), "x": np.ones(chunk)})
        i += chunk
        col, arr = _storage(buf, "x")
        assert arr.__array_interface__["data"][0] == pointer
        del arr
    assert col.allocations == allocations
    assert buf._ts.allocations <= math.ceil(math.log2(2 * maxlen)) + 1
    np.testing.assert_array_equal(buf.timestamps("x"), np.arange(i - maxlen, i, dtype=float))


def test_circular_compaction_is_rare_even_with_live_views():
    # A live view forces compaction into a fresh array, but still only once per ~maxlen rows.
    maxlen, n = 50, 2000
    buf = DataBuffer(maxlen=maxlen)
    held = []
    for i in range(n):
        buf.extend({"timestamp": np.array([float(i)]), "x": np.array([float(i)])})
        held = [buf["x"]]
    col, _ = _storage(buf, "x")
    assert col.allocations <= n / maxlen + math.log2(2 * maxlen) + 2
    np.testing.assert_array_equal(held[0], np.arange(n - maxlen, n, dtype=float))


@pytest.mark.timeout(30)
def test_concurrent_extend_and_read():
    buf = DataBuffer(maxlen=100)
    stop = threading.Event()
    errors = []

    def writer():
        i = 1
        while not stop.is_set():
            buf.extend({"timestamp": np.arange(i, i + 3, dtype=float),
                        "x": np.arange(i, i + 3, dtype=float)})
            i += 3

    buf.extend({"timestamp": np.zeros(1), "x": np.zeros(1)})
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        for _ in range(2000):
            x, ts = buf["x"], buf.timestamps("x")
            d = buf.to_dict()
            if not np.array_equal(d["x"], d["timestamp"]) or len(x) > 100 or len(ts) > 100:
                errors.append((x, ts))
    finally:
        stop.set()
        t.join()
    assert not errors
