"""Operator state as data: every stateful operator continues exactly from its ``state_dict``.

For every case of the operator registry (``tests/test_ops_registry.py`` builds one or more per
shipped operator), a run is interrupted at several points: the state is taken, encoded to bytes
(msgpack, ``signals.state``), decoded, and loaded into a *fresh* operator built from the same
parameters, which runs the rest of the input. Its output (values, dtype, shape, the new-timeline
rows and the events) must equal the uninterrupted run bit for bit. Independent references
(scipy's ``sosfilt``, a numpy moving mean, onnxruntime on the whole sequence) check that the
resumed runs are also right, not merely consistent.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.signal
from test_ops_registry import CASES, models, shipped_operators, walk  # noqa: F401 (fixture)

import genki_signals.signals as s
from genki_signals.errors import GraphError, OperatorError
from genki_signals.graph import SignalGraph
from genki_signals.signals.base import OPERATORS, StatefulOperator
from genki_signals.signals.state import (
    StateError,
    copy_state,
    decode_state,
    encode_state,
)

MODEL_TYPES = ("Inference", "WindowedInference")


def run(op, inputs, lengths, start=0):
    """Feed ``op`` consecutive chunks of ``inputs`` from ``start``; outputs, emitted, events."""
    outs, emitted, events = [], [], []
    for k in lengths:
        y = op(*[x[start:start + k] for x in inputs])
        outs.append(y)
        if op.new_timeline:
            emitted.append(op.emitted + start)
        events += [(start + e.row, e.class_name, e.class_index, e.score)
                   for e in op.pop_events()]
        start += k
    return outs, emitted, events


def chunkings(n: int, rng: np.random.Generator) -> list[list[int]]:
    out = [[1] * n, [n // 2, n - n // 2]]
    for _ in range(2):
        lengths, left = [], n
        while left:
            k = min(int(rng.choice([0, 1, 3, 7, 16, 40])), left)
            lengths.append(k)
            left -= k
        out.append(lengths)
    return out


def assert_same(a, b, label):
    assert len(a) == len(b), label
    for i, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, \
            f"{label}, chunk {i}: {x.dtype}{x.shape} != {y.dtype}{y.shape}"
        # bit for bit: compare the bytes (NaN == NaN, -0.0 != 0.0)
        assert x.tobytes() == y.tobytes(), f"{label}, chunk {i}: values differ"


def cases_of(type_name, request):
    needs_models = type_name in MODEL_TYPES
    m = request.getfixturevalue("models") if needs_models else {}
    return [(functools.partial(case.make, m), case.inputs()) for case in CASES[type_name]]


@pytest.mark.parametrize("type_name", sorted(CASES))
def test_resumes_bit_for_bit_from_encoded_state(type_name, request):
    rng = np.random.default_rng(12)
    for make, inputs in cases_of(type_name, request):
        n = len(inputs[0])
        for lengths in chunkings(n, rng):
            whole = run(make(), inputs, lengths)
            for cut in sorted({0, 1, len(lengths) // 3, len(lengths) // 2, len(lengths) - 1}):
                first = make()
                done = sum(lengths[:cut])
                head = run(first, inputs, lengths[:cut])
                state = first.state_dict()
                data = encode_state(state)
                run(first, inputs, lengths[cut:], done)  # the snapshot must not follow on
                assert encode_state(state) == data, f"{first.describe()}: state is a view"
                fresh = make()
                fresh.load_state_dict(decode_state(data))
                assert encode_state(fresh.state_dict()) == data, \
                    f"{fresh.describe()}: state_dict after load_state_dict differs"
                tail = run(fresh, inputs, lengths[cut:], done)
                label = f"{fresh.describe()} resumed after chunk {cut} of {lengths[:8]}..."
                assert_same(head[0] + tail[0], whole[0], label)
                assert_same(head[1] + tail[1], whole[1], label + " (emitted rows)")
                assert head[2] + tail[2] == whole[2], label + " (events)"


@pytest.mark.parametrize("type_name", sorted(shipped_operators()))
def test_every_stateful_operator_declares_its_state(type_name):
    cls = OPERATORS[type_name]
    if issubclass(cls, StatefulOperator):
        assert cls.state_fields or cls._state_keys is not StatefulOperator._state_keys, \
            f"{type_name} carries state but lists no state_fields"


def test_stateless_operators_have_empty_state():
    op = s.Scale("x", factor=2.0)
    assert op.state_dict() == {}
    op.load_state_dict({})
    with pytest.raises(OperatorError, match=r"Scale 'scale_x': has no carried state, got "
                                            r"field\(s\) 'zi'"):
        op.load_state_dict({"zi": np.zeros(2)})


def test_state_before_the_first_sample_is_just_the_signature():
    op = s.LowPass("x", cutoff=5.0, sample_rate=100.0)
    assert op.state_dict() == {"sample_shape": None, "input_dtype": None}
    op(np.zeros((3, 2)))
    op.load_state_dict(decode_state(encode_state({"sample_shape": None, "input_dtype": None})))
    assert op.sample_shape is None  # loaded "not started": a new stream


# -------------------------------------------------------------- independent references
def test_butterworth_resumed_equals_scipy():
    x = walk(3, seed=21, n=500)
    op = s.LowPass("x", cutoff=8.0, sample_rate=100.0, order=4)
    head = op(x[:237])
    fresh = s.LowPass("x", cutoff=8.0, sample_rate=100.0, order=4)
    fresh.load_state_dict(decode_state(encode_state(op.state_dict())))
    got = np.concatenate([head, fresh(x[237:])])
    sos = scipy.signal.butter(4, 8.0, btype="lowpass", fs=100.0, output="sos")
    zi = scipy.signal.sosfilt_zi(sos)[:, :, None] * x[0]
    want, _ = scipy.signal.sosfilt(sos, x, axis=0, zi=zi)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_moving_average_resumed_equals_numpy():
    x = walk(2, seed=22, n=300)
    L = 9
    op = s.MovingAverage("x", length=L)
    head = op(x[:100])
    fresh = s.MovingAverage("x", length=L)
    fresh.load_state_dict(decode_state(encode_state(op.state_dict())))
    got = np.concatenate([head, fresh(x[100:150]), fresh(x[150:])])
    want = np.stack([x[max(0, i - L + 1):i + 1].mean(axis=0) for i in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_gru_resumed_equals_onnxruntime_on_the_whole_sequence(models):  # noqa: F811
    import onnxruntime as ort

    x = walk(2, seed=23, n=120).astype(np.float32)
    op = s.Inference("v", str(models["gru"]), stateful=True)
    head = op(x[:50])
    fresh = s.Inference("v", str(models["gru"]), stateful=True)
    fresh.load_state_dict(decode_state(encode_state(op.state_dict())))
    got = np.concatenate([head, fresh(x[50:])])
    sess = ort.InferenceSession(str(models["gru"]), providers=["CPUExecutionProvider"])
    feed = {a.name: np.zeros([1 if not isinstance(d, int) else d for d in a.shape], np.float32)
            for a in sess.get_inputs()[1:]}
    want = sess.run(None, {sess.get_inputs()[0].name: x[None], **feed})[0][0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(op.state[0], 0), "the GRU carries no state: a vacuous test"


# -------------------------------------------------------------------------- the graph
def chain():
    return SignalGraph([s.LowPass("x", cutoff=10.0, sample_rate=100.0, name="lp"),
                        s.MovingAverage("lp", length=5, name="ma"),
                        s.Scale("ma", factor=2.0, name="twice")])


def test_graph_state_is_keyed_by_operator_and_resumes():
    x = walk(3, seed=24, n=200)
    ts = np.arange(200) / 100.0
    g, whole = chain(), chain()
    ref = np.concatenate([whole.process({"timestamp": ts[:80], "x": x[:80]})["twice"],
                          whole.process({"timestamp": ts[80:], "x": x[80:]})["twice"]])
    head = g.process({"timestamp": ts[:80], "x": x[:80]})["twice"]
    state = g.state_dict()
    assert set(state) == {"lp", "ma", "twice"} and state["twice"] == {}
    fresh = chain()
    fresh.load_state_dict(decode_state(encode_state(state)))
    tail = fresh.process({"timestamp": ts[80:], "x": x[80:]})["twice"]
    assert np.concatenate([head, tail]).tobytes() == ref.tobytes()


def test_graph_state_that_does_not_fit_names_the_operator():
    g = chain()
    g.process({"timestamp": np.arange(4.0), "x": np.zeros((4, 3))})
    state = g.state_dict()
    with pytest.raises(GraphError, match=r"no state for operator\(s\) ma; state for unknown "
                                         r"operator\(s\) other"):
        chain().load_state_dict({**{k: v for k, v in state.items() if k != "ma"}, "other": {}})
    bad = copy_state(state)
    bad["ma"]["tail"] = np.zeros((3, 7))
    fresh = chain()
    with pytest.raises(GraphError, match=r"operator 'ma'.*MovingAverage 'ma': state field "
                                         r"'tail' must be an array shaped like \(0, 3\)"):
        fresh.load_state_dict(bad)
    assert all(op.sample_shape is None for op in fresh.operators
               if isinstance(op, StatefulOperator)), "a failed load left partial state"
    bad = copy_state(state)
    del bad["lp"]["zi"]
    with pytest.raises(GraphError, match=r"LowPass 'lp': state does not fit this operator; "
                                         r"missing field\(s\) 'zi'"):
        chain().load_state_dict(bad)


# -------------------------------------------------------------------------- the codec
def test_codec_keeps_dtypes_scalars_and_bits():
    tree = {"a": np.array([np.nan, -0.0, np.inf], dtype=np.float64),
            "b": np.arange(6, dtype=">i2").reshape(2, 3), "c": np.float32(1.5),
            "d": [np.int8(-3), 2, 2.5, True, None, "txt"], "e": {"f": np.zeros((0, 4), "f4")},
            "g": np.complex128(1 - 2j)}
    back = decode_state(encode_state(tree))
    for k in ("a", "b"):
        assert back[k].dtype == tree[k].dtype and back[k].tobytes() == tree[k].tobytes()
        assert back[k].flags.writeable
    assert type(back["c"]) is np.float32 and back["c"] == 1.5
    assert type(back["d"][0]) is np.int8 and back["d"][1:] == [2, 2.5, True, None, "txt"]
    assert type(back["d"][2]) is float
    assert back["e"]["f"].shape == (0, 4) and back["g"] == 1 - 2j


@pytest.mark.parametrize("value, message", [
    (np.array(["a"]), r"dtype <U1 cannot be stored"),
    (np.array([object()]), r"dtype object cannot be stored"),
    (object(), r"cannot store a value of type object"),
])
def test_codec_refuses_what_is_not_plain_data(value, message):
    with pytest.raises(StateError, match=message):
        encode_state({"x": value})


def test_codec_refuses_damaged_bytes():
    import msgpack

    good = encode_state({"x": np.arange(4.0)})
    with pytest.raises(StateError, match="cannot be decoded"):
        decode_state(good[:-3])
    forged = msgpack.packb({"x": msgpack.ExtType(1, msgpack.packb(["<f8", [5], b"\0" * 32]))})
    with pytest.raises(StateError, match=r"shape \[5\] of float64 needs 40 bytes, got 32"):
        decode_state(forged)
    forged = msgpack.packb({"x": msgpack.ExtType(1, msgpack.packb(["|O", [1], b"\0" * 8]))})
    with pytest.raises(StateError, match="dtype object cannot be stored"):
        decode_state(forged)
    with pytest.raises(StateError, match="unknown extension type 9"):
        decode_state(msgpack.packb({"x": msgpack.ExtType(9, b"")}))
    with pytest.raises(StateError, match="not a mapping"):
        decode_state(msgpack.packb([1, 2]))


# -------------------------------------------------------------------------- the aligner
def test_aligner_resumes_from_encoded_state_bit_for_bit():
    """Interrupt an aligner anywhere in an interleaving of chunked inputs (leader samples held
    for followers, follower samples kept for later): the resumed one gives the same frames."""
    from test_align import FOLLOWERS, chunks, interleave, stream

    from genki_signals.signals.align import AlignError, Aligner

    rng = np.random.default_rng(31)
    lead = stream(rng, 90.0, 2.0, jitter=0.3)
    fol = {n: stream(rng, r, 2.1, start=0.05, jitter=0.5, dims=(3,))
           for n, r in zip("abc", (40.0, 250.0, 17.0))}
    per_input = {"L": chunks(rng, lead, 7), **{n: chunks(rng, f, 23) for n, f in fol.items()}}
    arrivals = interleave(rng, per_input)

    def feed(al, items, start):
        out = []
        for i, (name, frame) in enumerate(items):
            al.push(name, frame, arrival=float(start + i))
            out.append(al.pop(now=float(start + i)))
        return out

    whole_al = Aligner("L", FOLLOWERS)
    whole = feed(whole_al, arrivals, 0) + [whole_al.finish()]
    for cut in (0, 1, len(arrivals) // 3, len(arrivals) // 2, len(arrivals) - 1):
        first = Aligner("L", FOLLOWERS)
        head = feed(first, arrivals[:cut], 0)
        data = encode_state(first.state_dict())
        fresh = Aligner("L", FOLLOWERS)
        fresh.load_state_dict(decode_state(data))
        got = head + feed(fresh, arrivals[cut:], cut) + [fresh.finish()]
        assert len(got) == len(whole)
        for i, (x, y) in enumerate(zip(got, whole)):
            assert list(x) == list(y), f"cut {cut}, pop {i}"
            for k in x:
                assert x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes(), \
                    f"cut {cut}, pop {i}, {k}"
        assert (fresh.emitted, fresh.late) == (whole_al.emitted, whole_al.late)
    with pytest.raises(AlignError, match=r"state has followers \['a', 'b', 'c'\], this "
                                         r"aligner \['a'\]"):
        Aligner("L", ["a"]).load_state_dict(decode_state(data))
