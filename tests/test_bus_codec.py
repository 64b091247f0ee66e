"""Wire format: exact round trips, and decode raising only DecodeError on anything malformed."""

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genki_signals.bus import codec
from genki_signals.bus.codec import INLINE_MAX_BYTES, DecodeError, EncodeError, decode, encode, encode_eos
from genki_signals.errors import GenkiError

pytestmark = pytest.mark.timeout(60)

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.complex128]
SHAPES = [(0,), (5,), (4, 3, 2), (0, 3), ()]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _array(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=shape) * 100
    if np.dtype(dtype).kind == "c":
        return (raw + 1j * rng.normal(size=shape)).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return raw > 0
    return raw.astype(dtype)


def _assert_frames_equal(got, want):
    assert list(got) == list(want)
    for key, value in want.items():
        value = np.asarray(value)
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value)


def _roundtrip(frame, **kw):
    parts = encode("topic/x", frame, node_id="node-1", seq=7, publish_time=1.5, **kw)
    return parts, decode(parts)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_roundtrip_dtypes_and_shapes(dtype, shape):
    frame = {"timestamp": np.arange(3, dtype=np.float64), "x": _array(dtype, shape)}
    _, msg = _roundtrip(frame)
    assert (msg.topic, msg.node_id, msg.seq, msg.kind, msg.publish_time) == ("topic/x", "node-1", 7, "data", 1.5)
    _assert_frames_equal(msg.frame, frame)


@pytest.mark.parametrize("order", ["<", ">"])
def test_byte_order_is_kept(order):
    x = np.arange(10, dtype=order + "i4")
    _, msg = _roundtrip({"x": x})
    assert msg.frame["x"].dtype.str == x.dtype.str
    np.testing.assert_array_equal(msg.frame["x"], np.arange(10))


def test_non_contiguous_inputs():
    base = np.arange(600, dtype=np.float64).reshape(20, 30)
    frame = {"t": base[:, 0], "strided": base[::2, ::3], "fortran": np.asfortranarray(base), "T": base.T}
    _, msg = _roundtrip(frame)
    _assert_frames_equal(msg.frame, frame)


def test_small_arrays_inline_large_zero_copy():
    n_small = INLINE_MAX_BYTES // 8
    frame = {
        "small": np.ones(n_small, dtype=np.float64),  # exactly the threshold: inline
        "large": np.ones(n_small + 1, dtype=np.float64),
        "huge": np.arange(2**20, dtype=np.float32),
    }
    parts, msg = _roundtrip(frame)
    assert len(parts) == 4
    header = msgpack.unpackb(parts[1])
    where = {f[0]: f[3] for f in header["fields"]}
    assert isinstance(where["small"], bytes) and where["large"] == 0 and where["huge"] == 1
    # Zero-copy: the buffer part is a view of the caller's array, not a copy.
    assert np.shares_memory(parts[3], frame["huge"])
    _assert_frames_equal(msg.frame, frame)


def test_decoded_arrays_are_read_only_views_of_zmq_frames():
    frame = {"big": np.arange(100_000, dtype=np.float64), "small": np.arange(3)}
    parts = [zmq.Frame(memoryview(p).tobytes()) for p in encode("t", frame, node_id="n", seq=0)]
    msg = decode(parts)
    _assert_frames_equal(msg.frame, frame)
    assert not msg.frame["big"].flags.writeable and not msg.frame["small"].flags.writeable


@pytest.mark.parametrize("kind", ["event", "eos"])
def test_kinds(kind):
    parts = encode("ev", {"label": np.array([3])}, node_id="n", seq=1, kind=kind)
    assert decode(parts).kind == kind


def test_encode_eos_and_default_publish_time():
    msg = decode(encode_eos("a/b", node_id="rep", seq=2**64 - 1))
    assert (msg.kind, msg.frame, msg.seq) == ("eos", {}, 2**64 - 1)
    assert np.isfinite(msg.publish_time)


@pytest.mark.parametrize(
    "value, match",
    [
        (np.array(["a", "b"]), "dtype '<U1'"),
        (np.array([object()]), "dtype '\\|O'"),
        (np.zeros(2, dtype="V8"), "dtype '\\|V8'"),
        (np.zeros(2, dtype="datetime64[s]"), "dtype '<M8\\[s\\]'"),
    ],
)
def test_encode_rejects_non_numeric(value, match):
    with pytest.raises(EncodeError, match=match):
        encode("t", {"x": value}, node_id="n", seq=0)


def test_encode_rejects_bad_arguments():
    with pytest.raises(EncodeError, match="kind"):
        encode("t", {}, node_id="n", seq=0, kind="bogus")
    with pytest.raises(EncodeError, match="seq"):
        encode("t", {}, node_id="n", seq=-1)
    with pytest.raises(EncodeError, match="keys must be str"):
        encode("t", {1: np.zeros(1)}, node_id="n", seq=0)


# --- decode errors with their messages ---------------------------------------------------------

def _valid(frame=None, **kw):
    frame = {"timestamp": np.arange(4.0), "big": np.zeros(10_000)} if frame is None else frame
    return [memoryview(p).tobytes() for p in encode("t", frame, node_id="n", seq=3, **kw)]


def _with_header(parts, **changes):
    header = msgpack.unpackb(parts[1])
    for key, value in changes.items():
        if value is _DELETE:
            del header[key]
        else:
            header[key] = value
    return [parts[0], msgpack.packb(header), *parts[2:]]


_DELETE = object()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: _with_header(p, v=2), "unsupported wire format version 2 \\(this build reads 1\\)"),
        (lambda p: _with_header(p, kind="blob"), "unknown kind 'blob'"),
        (lambda p: _with_header(p, seq=-1), "sequence number must be a uint64"),
        (lambda p: _with_header(p, t="now"), "publish time"),
        (lambda p: _with_header(p, node=5), "node id"),
        (lambda p: _with_header(p, extra=1), "unexpected 'extra'"),
        (lambda p: _with_header(p, fields=_DELETE), "missing fields; unexpected none"),
        (lambda p: p[:1], "at least 2 parts"),
        (lambda p: p[:2], "refers to part 2, but the message has 2 parts"),
        (lambda p: [*p, b"x"], "parts \\[3\\] are not referenced"),
        (lambda p: [p[0], b"\xc1", *p[2:]], "header is not valid msgpack"),
        (lambda p: [p[0], msgpack.packb([1, 2]), *p[2:]], "header must be a map"),
        (lambda p: [b"\xff\xfe", *p[1:]], "topic is not valid UTF-8"),
        (lambda p: [*p[:2], p[2][:-8]], "field 'big': shape \\[10000\\] of <f8 needs 80000 bytes, got 79992"),
    ],
)
def test_decode_errors_say_what_is_wrong(mutate, match):
    with pytest.raises(DecodeError, match=match):
        decode(mutate(_valid()))


def _with_field(parts, index, entry):
    header = msgpack.unpackb(parts[1])
    header["fields"][index] = entry
    return [parts[0], msgpack.packb(header), *parts[2:]]


@pytest.mark.parametrize("dtype", ["|O", "|V8", "<U4", "|S0", "|S99999", "<S3", "<M8[s]", "<f16",
                                   "i8", "float64", "<f8,<i4", 3])
def test_decode_rejects_bad_dtypes(dtype):
    parts = _with_field(_valid({"x": np.zeros(2)}), 0, ["x", dtype, [2], b"\0" * 16])
    with pytest.raises(DecodeError, match="not allowed"):
        decode(parts)


def test_fixed_width_bytes_round_trip_for_event_labels():
    frame = {"timestamp": np.array([1.0, 2.0]), "class": np.array([b"circle", b"square"])}
    got = decode(_valid(frame)).frame
    assert got["class"].dtype == np.dtype("S6")
    assert got["class"].tolist() == [b"circle", b"square"]


def test_decode_rejects_shape_mismatch_and_bad_shapes():
    parts = _valid({"x": np.zeros(4)})
    with pytest.raises(DecodeError, match="shape \\[5\\] of <f8 needs 40 bytes, got 32"):
        decode(_with_field(parts, 0, ["x", "<f8", [5], b"\0" * 32]))
    with pytest.raises(DecodeError, match="non-negative ints"):
        decode(_with_field(parts, 0, ["x", "<f8", [-4], b"\0" * 32]))
    with pytest.raises(DecodeError, match="non-negative ints"):
        decode(_with_field(parts, 0, ["x", "<f8", [1] * 40, b"\0" * 8]))
    with pytest.raises(DecodeError, match="appears twice"):
        decode(_with_header(parts, fields=[["x", "<f8", [0], b""], ["x", "<f8", [0], b""]]))


def test_decode_rejects_duplicate_part_reference():
    parts = _valid({"a": np.zeros(10_000)})
    header = msgpack.unpackb(parts[1])
    header["fields"].append(["b", "<f8", [10_000], 0])
    with pytest.raises(DecodeError, match="part 2 is referenced twice"):
        decode([parts[0], msgpack.packb(header), parts[2]])


def test_oversized_messages_rejected_before_allocation():
    parts = _valid({"x": np.zeros(1000)})
    with pytest.raises(DecodeError, match="exceeds the limit of 1000 bytes"):
        decode(parts, max_bytes=1000)
    # A shape claiming 2**60 elements (or overflowing dims hidden behind a 0) fails by arithmetic.
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(_with_field(parts, 0, ["x", "<f8", [2**60], b""]))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(_with_field(parts, 0, ["x", "<f8", [0, 2**40, 2**40], b""]))


def test_decode_error_is_a_genki_error():
    assert issubclass(DecodeError, GenkiError)


# --- property-based: nothing but DecodeError escapes -------------------------------------------

def _decode_or_decode_error(parts):
    try:
        msg = decode(parts)
    except DecodeError as exc:
        assert str(exc)
        return None
    assert isinstance(msg, codec.Message)
    return msg


@FAST
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_random_multipart_lists(parts):
    _decode_or_decode_error(parts)


@FAST
@given(st.binary(max_size=2000))
def test_random_header_bytes(header):
    _decode_or_decode_error([b"topic", header])


@FAST
@given(st.one_of(st.none(), st.integers(), st.text(), st.just([b"a", 3]), st.just(b"ab"), st.just([object()])))
def test_non_list_inputs(parts):
    _decode_or_decode_error(parts)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats() | st.text(max_size=8) | st.binary(max_size=64)
    | st.sampled_from(["<f8", "|b1", "|O", "data", "eos", "<c16", "|V4"]),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


def _mutated_parts(data) -> list[bytes]:
    """A valid message's parts, then one random mutation of them (Hypothesis draws)."""
    frame = {
        "timestamp": np.arange(5.0),
        "acc": np.ones((5, 3), dtype=np.float32),
        "big": np.arange(3000, dtype=np.int16),  # zero-copy part
        "flag": np.array([True, False, True, True, False]),
    }
    parts = [memoryview(p).tobytes() for p in encode("imu", frame, node_id="n", seq=1, inline_max=4096)]
    op = data.draw(st.sampled_from(["flip", "truncate", "drop", "duplicate", "swap", "tamper", "field"]))
    if op == "flip":
        i = data.draw(st.integers(0, len(parts) - 1))
        b = bytearray(parts[i])
        if b:
            for _ in range(data.draw(st.integers(1, 4))):
                j = data.draw(st.integers(0, len(b) - 1))
                b[j] ^= data.draw(st.integers(1, 255))
        parts[i] = bytes(b)
    elif op == "truncate":
        i = data.draw(st.integers(0, len(parts) - 1))
        parts[i] = parts[i][: data.draw(st.integers(0, max(0, len(parts[i]) - 1)))]
    elif op == "drop":
        del parts[data.draw(st.integers(0, len(parts) - 1))]
    elif op == "duplicate":
        i = data.draw(st.integers(0, len(parts) - 1))
        parts.insert(data.draw(st.integers(0, len(parts))), parts[i])
    elif op == "swap":
        parts = data.draw(st.permutations(parts))
    else:
        header = msgpack.unpackb(parts[1])
        if op == "tamper":
            key = data.draw(st.sampled_from(sorted(header) + ["extra"]))
            if data.draw(st.booleans()) and key in header:
                del header[key]
            else:
                header[key] = data.draw(msgpack_values)
        else:
            entry = header["fields"][data.draw(st.integers(0, len(header["fields"]) - 1))]
            entry[data.draw(st.integers(0, 3))] = data.draw(msgpack_values)
        parts[1] = msgpack.packb(header)
    return parts


@FAST
@given(st.data())
def test_mutated_valid_messages(data):
    _decode_or_decode_error(_mutated_parts(data))


def _assert_fast_agrees_with_careful(parts) -> bool:
    """Whenever the fast decoder accepts bytes, the careful decoder gives the same message.

    The fast path may give up (None) or raise on anything odd: ``decode`` then takes the careful
    path, so only a message it *returns* must agree.
    """
    try:
        fast = codec._decode_fast(parts, codec.DEFAULT_MAX_BYTES)
    except Exception:
        return False
    if fast is None:
        return False
    careful = codec._decode(parts, codec.DEFAULT_MAX_BYTES)
    assert (fast.topic, fast.node_id, fast.seq, fast.kind, fast.publish_time) == (
        careful.topic, careful.node_id, careful.seq, careful.kind, careful.publish_time)
    assert list(fast.frame) == list(careful.frame)
    for key, value in careful.frame.items():
        assert fast.frame[key].dtype == value.dtype and fast.frame[key].shape == value.shape, key
        assert fast.frame[key].tobytes() == value.tobytes(), key
    return True


@FAST
@given(st.data())
def test_fast_decoder_agrees_with_the_careful_one_on_mutated_bytes(data):
    parts = _mutated_parts(data)
    try:
        _assert_fast_agrees_with_careful(parts)
    except DecodeError:
        raise AssertionError("the fast decoder accepted a message the careful one rejects")


@FAST
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 6), max_size=3).map(tuple),
    inline_max=st.sampled_from([-1, 0, 64, INLINE_MAX_BYTES]),
    kind=st.sampled_from(["data", "event"]),
)
def test_fast_decoder_agrees_with_the_careful_one_on_valid_messages(dtype, shape, inline_max,
                                                                     kind):
    frame = {"timestamp": np.arange(3.0), "x": _array(dtype, (3, *shape), seed=len(shape))}
    parts = [memoryview(p).tobytes() for p in
             encode("p/main", frame, node_id="n", seq=7, kind=kind, inline_max=inline_max)]
    took_fast = _assert_fast_agrees_with_careful(parts)
    if frame["x"].size and dtype is not np.float16:  # the common case must take the fast path
        assert took_fast


@FAST
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 6), max_size=3).map(tuple),
    inline_max=st.sampled_from([-1, 0, 64, INLINE_MAX_BYTES]),
)
def test_roundtrip_property(dtype, shape, inline_max):
    frame = {"x": _array(dtype, shape, seed=len(shape))}
    msg = decode(encode("p", frame, node_id="n", seq=0, inline_max=inline_max))
    _assert_frames_equal(msg.frame, frame)


# ------------------------------------------------------------ acquisition time (header "acq")
# A message as version 1 wrote it before "acq" existed (bytes fixed here, not made by encode):
# topic "a/main", node "a", seq 7, kind data, t 1.5, one inline float64 field "x" = [1.0, 2.0].
OLD_MESSAGE = [b"a/main", msgpack.packb(
    {"v": 1, "node": "a", "seq": 7, "kind": "data", "t": 1.5,
     "fields": [["x", "<f8", [2], np.array([1.0, 2.0]).tobytes()]]}, use_bin_type=True)]


def test_acquisition_time_round_trips_and_is_absent_unless_given():
    frame = {"x": np.arange(3.0)}
    with_acq = decode(encode("a/main", frame, node_id="a", seq=0, publish_time=2.0,
                             acquired=1.25))
    assert with_acq.acquired == 1.25 and with_acq.publish_time == 2.0
    _assert_frames_equal(with_acq.frame, frame)
    parts = encode("a/main", frame, node_id="a", seq=0, publish_time=2.0)
    assert "acq" not in msgpack.unpackb(parts[1])  # old readers still accept what we send
    assert decode(parts).acquired is None


def test_messages_written_before_acq_decode_as_before():
    for decoder in (decode, lambda p: codec._decode(p, codec.DEFAULT_MAX_BYTES)):
        msg = decoder(OLD_MESSAGE)
        assert (msg.topic, msg.node_id, msg.seq, msg.kind, msg.publish_time) == \
            ("a/main", "a", 7, "data", 1.5)
        assert msg.acquired is None
        np.testing.assert_array_equal(msg.frame["x"], [1.0, 2.0])


@pytest.mark.parametrize("acq, match", [
    (float("nan"), "acquisition time must be a finite number"),
    ("yesterday", "acquisition time must be a finite number"),
    (True, "acquisition time must be a finite number"),
])
def test_bad_acquisition_time_is_named(acq, match):
    header = msgpack.unpackb(OLD_MESSAGE[1])
    header["acq"] = acq
    with pytest.raises(DecodeError, match=match):
        decode([OLD_MESSAGE[0], msgpack.packb(header, use_bin_type=True)])


def test_an_unknown_seventh_key_is_still_refused():
    header = msgpack.unpackb(OLD_MESSAGE[1])
    header["acquired"] = 1.0
    with pytest.raises(DecodeError, match="unexpected 'acquired'"):
        decode([OLD_MESSAGE[0], msgpack.packb(header, use_bin_type=True)])


def test_encode_refuses_a_non_finite_acquisition_time():
    with pytest.raises(EncodeError, match="acquired must be a finite number"):
        encode("a/main", {}, node_id="a", seq=0, acquired=float("inf"))


# ------------------------------------------------------------ msgspec writes msgpack's bytes
@FAST
@given(
    names=st.lists(st.text(max_size=300), min_size=0, max_size=4, unique=True),
    dtype=st.sampled_from(DTYPES),
    n=st.integers(0, 70_000),
    seq=st.integers(0, 2**64 - 1),
    t=st.floats(allow_nan=False, allow_infinity=False),
    acq=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    node=st.text(max_size=256),
)
def test_headers_are_byte_for_byte_what_msgpack_writes(names, dtype, n, seq, t, acq, node):
    """The header encoder (msgspec) writes exactly msgpack-python's bytes, so recordings and
    peers see the same wire format whichever library wrote it."""
    frame = {name: np.zeros(n // (i + 1), dtype=dtype) for i, name in enumerate(names)}
    parts = encode("p/main", frame, node_id=node, seq=seq, publish_time=t, acquired=acq)
    header = msgpack.unpackb(parts[1], raw=False)
    assert msgpack.packb(header, use_bin_type=True) == bytes(parts[1])
    assert codec._unpack_header(parts[1]) == header  # and reads back what msgpack reads
