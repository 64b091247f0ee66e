"""The Wave ring's wire protocol, byte by byte: golden frames written from the documented layout.

The goldens are packed here with ``struct`` at the offsets of ``shared/hardware/wave-protocol.md``
(never through the decoder's dtypes), so a wrong offset or size in ``protocol`` fails. Host
requests are compared with the bytes captured from the vendor's library.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from genki_signals.data_sources.registry import check_source_params as check
from genki_signals.data_sources.wave import protocol as p
from genki_signals.data_sources.wave.params import stream_names
from genki_signals.data_sources.wave.source import stream_shapes

pytestmark = pytest.mark.timeout(120)


def frame(kind: int, msg_id: int, payload: bytes, size: int | None = None) -> bytes:
    header = struct.pack("<BBH", kind, msg_id, len(payload) if size is None else size)
    return cobs.encode(header + payload) + b"\x00"


# ------------------------------------------------------------------ golden payloads
MOTION = dict(gyro=(10.5, -20.25, 0.0), acc=(0.0, 0.0, 1.0), mag=(0.0, 0.0, 0.0),
              raw_pose=(1.0, 0.0, 0.0, 0.0), current_pose=(0.5, 0.5, 0.5, 0.5),
              euler=(0.1, -0.2, 3.0), linacc=(0.25, 0.0, -0.5), peak=1,
              peak_norm_velocity=2.5, timestamp_us=29_420_000)


def motion_payload(m=MOTION) -> bytes:
    b = bytearray(105)
    struct.pack_into("<3f", b, 0, *m["gyro"])
    struct.pack_into("<3f", b, 12, *m["acc"])
    struct.pack_into("<3f", b, 24, *m["mag"])
    struct.pack_into("<4f", b, 36, *m["raw_pose"])
    struct.pack_into("<4f", b, 52, *m["current_pose"])
    struct.pack_into("<3f", b, 68, *m["euler"])
    struct.pack_into("<3f", b, 80, *m["linacc"])
    struct.pack_into("<B", b, 92, m["peak"])
    struct.pack_into("<f", b, 93, m["peak_norm_velocity"])  # unaligned
    struct.pack_into("<Q", b, 97, m["timestamp_us"])
    return bytes(b)


RAW = dict(gyro=(1.0, 2.0, 3.0), acc=(0.0, -1.0, 0.5), timestamp_us=2 ** 40 + 7)
RAW_PAYLOAD = struct.pack("<3f3fQ", *RAW["gyro"], *RAW["acc"], RAW["timestamp_us"])
BINS = np.arange(96, dtype=np.float32).reshape(6, 16) * 0.5
SPEC_PAYLOAD = BINS.astype("<f4").tobytes() + struct.pack("<Q", 123_456_789)
BUTTON_PAYLOAD = struct.pack("<BBxxf", 0, 4, 29.809)  # TOP, ExtraLong, device seconds
INFO_PAYLOAD = bytes([1, 7, 4]) + b"wave-v2\x00\x00" + bytes([0xf0, 0x01, 0, 0xab, 0xcd, 0xef]) \
    + b"SN12345\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
BATTERY_PAYLOAD = struct.pack("<ffB3x", 3.9, 81.5, 1)

GOLDEN = {
    "motion": frame(3, 1, motion_payload()),
    "raw": frame(3, 9, RAW_PAYLOAD),
    "spectrogram": frame(3, 10, SPEC_PAYLOAD),
    "button": frame(2, 4, BUTTON_PAYLOAD),
    "device_info": frame(2, 3, INFO_PAYLOAD),
    "battery": frame(2, 2, BATTERY_PAYLOAD),
}
STREAM = b"".join(GOLDEN.values())


def check_all(d: p.Decoded) -> None:
    """``d`` holds exactly one of each golden message, with the documented values."""
    assert len(d.motion) == 1 and len(d.raw) == 1 and len(d.spectrogram) == 1
    m = p.motion_fields(d.motion)
    for key in ("gyro", "acc", "mag", "raw_pose", "current_pose", "euler", "linacc"):
        np.testing.assert_array_equal(m[key][0], np.float32(MOTION[key]), err_msg=key)
    assert m["peak"].tolist() == [True] and m["peak"].dtype == bool
    assert m["peak_norm_velocity"].tolist() == [2.5]
    assert m["timestamp_us"].tolist() == [29_420_000] and m["timestamp_us"].dtype == np.int64
    r = p.raw_fields(d.raw)
    np.testing.assert_array_equal(r["gyro"][0], RAW["gyro"])
    np.testing.assert_array_equal(r["acc"][0], RAW["acc"])
    assert r["timestamp_us"].tolist() == [2 ** 40 + 7]
    s = p.spectrogram_fields(d.spectrogram)
    for i, name in enumerate(("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")):
        np.testing.assert_array_equal(s[name][0], BINS[i], err_msg=name)  # channel-major
        assert s[name].shape == (1, 16)
    assert s["timestamp_us"].tolist() == [123_456_789]
    (b,) = d.buttons
    assert (b.button_name, b.action_name) == ("top", "extra_long")
    assert b.timestamp == pytest.approx(29.809, abs=1e-5)
    (info,) = d.device_info
    assert info == p.DeviceInfo((1, 7, 4), "wave-v2", "f0:01:00:ab:cd:ef", "SN12345")
    (bat,) = d.battery
    assert (bat.voltage, bat.percentage, bat.charging) == pytest.approx((3.9, 81.5, True))


def merge(parts: list[p.Decoded]) -> p.Decoded:
    out = p.Decoded()
    out.motion = np.concatenate([x.motion for x in parts])
    out.raw = np.concatenate([x.raw for x in parts])
    out.spectrogram = np.concatenate([x.spectrogram for x in parts])
    for x in parts:
        out.buttons += x.buttons
        out.device_info += x.device_info
        out.battery += x.battery
    return out


# ------------------------------------------------------------------ host requests
def test_requests_are_the_bytes_the_vendor_library_writes():
    assert p.device_info_request() == bytes.fromhex("03 01 03 01 01 00")
    assert p.api_mode_request() == bytes.fromhex("04 01 05 01 02 67 00")
    assert p.config_request(p.Datastream.MOTION, False, 400.0) == bytes.fromhex(
        "04 01 0b 08 02 01 01 01 01 01 03 c8 43 00")
    assert p.config_request(p.Datastream.NONE, True, 2000.0) == bytes.fromhex(
        "04 01 0b 08 01 02 01 01 01 01 03 fa 44 00")
    assert p.recenter_request() == bytes.fromhex("03 01 07 01 01 00")  # type 1, id 7, size 0


def test_a_button_frame_cobs_encoded_by_hand():
    # raw: 02 04 08 00 | 00 06 00 00 | 1.5f = 00 00 c0 3f; each zero ends a block, whose
    # code byte is its length + 1: [02 04 08] [] [06] [] [] [] [c0 3f]
    golden = bytes.fromhex("04 02 04 08 01 02 06 01 01 01 03 c0 3f 00")
    assert p.encode_button(0, 6, 1.5) == golden
    (event,) = p.WaveDecoder().feed(golden).buttons
    assert (event.button, event.action, event.timestamp) == (0, 6, 1.5)


# ------------------------------------------------------------------ decoding goldens
def test_every_message_type_decodes_to_its_documented_values():
    decoder = p.WaveDecoder()
    check_all(decoder.feed(STREAM))
    assert decoder.frames == 6 and decoder.dropped == 0 and decoder.partial == 0


def test_the_encoder_writes_the_golden_frames():
    rec = np.zeros(1, p.MOTION_DTYPE)
    for key, value in MOTION.items():
        rec[key] = value
    assert p.encode_motion(rec) == GOLDEN["motion"]
    assert p.encode_motion({k: [v] for k, v in MOTION.items()}) == GOLDEN["motion"]
    assert p.encode_raw({k: [v] for k, v in RAW.items()}) == GOLDEN["raw"]
    assert p.encode_spectrogram({"bins": [BINS], "timestamp_us": [123_456_789]}) == \
        GOLDEN["spectrogram"]
    assert p.encode_button(0, 4, 29.809) == GOLDEN["button"]
    assert p.encode_device_info(p.DeviceInfo((1, 7, 4), "wave-v2", "f0:01:00:ab:cd:ef",
                                             "SN12345")) == GOLDEN["device_info"]
    assert p.encode_battery(p.BatteryStatus(3.9, 81.5, True)) == GOLDEN["battery"]


def test_the_golden_frames_contain_zero_bytes_in_their_payloads():
    for name, f in GOLDEN.items():
        assert f.count(0) == 1 and f.endswith(b"\x00"), name  # COBS removed them
        assert 0 in cobs.decode(f[:-1]), name


def test_the_stream_split_at_every_boundary_decodes_the_same():
    for cut in range(1, len(STREAM)):
        decoder = p.WaveDecoder()
        check_all(merge([decoder.feed(STREAM[:cut]), decoder.feed(STREAM[cut:])]))
        assert decoder.dropped == 0 and decoder.frames == 6, cut


def test_one_byte_notifications_and_empty_ones():
    decoder = p.WaveDecoder()
    parts = [decoder.feed(b"")] + [decoder.feed(STREAM[i:i + 1]) for i in range(len(STREAM))]
    check_all(merge(parts))
    assert decoder.dropped == 0


def test_a_partial_frame_at_connection_start_is_dropped_and_counted_as_partial():
    decoder = p.WaveDecoder()
    out = decoder.feed(GOLDEN["motion"][40:] + GOLDEN["button"])
    assert len(out.motion) == 0 and len(out.buttons) == 1
    assert decoder.partial == 1 and decoder.dropped == 0
    decoder.reset()  # a reconnect: the next leading fragment is partial again
    decoder.feed(GOLDEN["raw"][3:])
    assert decoder.partial == 2 and decoder.dropped == 0


def test_a_frame_completed_by_a_later_notification_names_its_id_as_carried():
    decoder = p.WaveDecoder()
    motion, button = GOLDEN["motion"], GOLDEN["button"]
    assert decoder.feed(motion[:50]).carried_id is None and decoder.pending == 50
    out = decoder.feed(motion[50:] + button[:4])
    assert out.carried_id == p.MsgId.DATASTREAM and len(out.motion) == 1
    assert decoder.pending == 4
    out = decoder.feed(button[4:] + motion)  # the button began earlier, the motion here
    assert out.carried_id == p.MsgId.BUTTON_EVENT and len(out.motion) == 1
    assert decoder.feed(motion).carried_id is None and decoder.pending == 0


def test_the_source_stamps_a_split_frame_with_the_arrival_of_its_first_bytes():
    """The sample existed when its frame's first byte arrived: that earlier arrival is the
    tighter bound the clock fit gets (later records of a notification get its own)."""
    from genki_signals.data_sources.wave.source import WaveDataSource

    rec = np.zeros(3, p.MOTION_DTYPE)
    rec["timestamp_us"] = [10, 20, 30]
    stream = b"".join(p.encode_motion(rec[i:i + 1]) for i in range(3))
    n = len(stream) // 3
    source = WaveDataSource("F0:00:00:00:00:01")
    now = [0.0]
    source.clock.now = lambda: now[0]
    for t, (a, b) in enumerate([(0, n - 30), (n - 30, n + 20), (n + 20, n + 30),
                                (n + 30, 3 * n)]):
        now[0] = float(t)
        source.handle_notification(None, stream[a:b])
    assert np.repeat(source._arrivals, source._counts).tolist() == [0.0, 1.0, 3.0]


BAD = {
    "truncated": frame(3, 1, motion_payload()[:100], size=105),
    "oversized": frame(3, 1, motion_payload() + b"\x01\x02\x03\x04\x05", size=105),
    "bad_size": frame(3, 1, motion_payload()[:100]),  # header and bytes agree, layout not
    "unknown_id": frame(3, 42, b"\x01\x02"),
    "bad_type": frame(9, 1, motion_payload()),
    "cobs": bytes([0x09, 0x01, 0x02, 0x00]),  # a code byte pointing past the frame's end
    "short": cobs.encode(b"\x03\x01") + b"\x00",  # fewer bytes than a header
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_malformed_frame_is_counted_and_skipped(name):
    decoder = p.WaveDecoder()
    decoder.feed(GOLDEN["battery"])  # in sync: what follows is not a connection-start fragment
    out = merge([decoder.feed(GOLDEN["button"] + BAD[name] + STREAM[:len(STREAM) // 2]),
                 decoder.feed(STREAM[len(STREAM) // 2:])])
    reason = "truncated" if name == "short" else name
    assert dict(decoder.errors) == {reason: 1}
    assert len(out.buttons) == 2 and len(out.motion) == 1  # the good frames around it survive
    check_all(merge([p.Decoded(buttons=out.buttons[1:], device_info=out.device_info,
                               battery=out.battery, motion=out.motion, raw=out.raw,
                               spectrogram=out.spectrogram)]))


def test_the_header_size_must_match_the_bytes_even_when_the_cobs_is_valid():
    with pytest.raises(p.FrameError, match="BUTTON_EVENT: 4 payload bytes, header says 8"):
        p.decode_message(frame(2, 4, BUTTON_PAYLOAD[:4], size=8)[:-1])
    with pytest.raises(p.FrameError, match="header says 6 bytes, the layout has 8"):
        p.decode_message(frame(2, 4, BUTTON_PAYLOAD[:6])[:-1])


def test_garbage_without_delimiters_is_dropped_and_the_decoder_recovers():
    decoder = p.WaveDecoder()
    decoder.feed(GOLDEN["battery"])
    for _ in range(30):
        decoder.feed(bytes(range(1, 101)))  # 3000 bytes, no delimiter
    assert decoder.errors["overflow"] >= 1
    check_all(decoder.feed(b"\x00" + STREAM))


# ------------------------------------------------------------------ round trip
f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def motion_records(draw):
    """Any bytes make a record (NaNs, any u8 flag): the round trip is byte-exact."""
    n = draw(st.integers(0, 12))
    blob = draw(st.binary(min_size=n * p.MOTION_DTYPE.itemsize,
                          max_size=n * p.MOTION_DTYPE.itemsize))
    return np.frombuffer(blob, p.MOTION_DTYPE)


@settings(max_examples=150, deadline=None)
@given(records=motion_records(),
       buttons=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), f32), max_size=4),
       cuts=st.lists(st.integers(0, 4000), max_size=30))
def test_round_trip_through_our_encoder_and_decoder_in_any_chunking(records, buttons, cuts):
    stream = p.encode_motion(records) + b"".join(p.encode_button(*b) for b in buttons)
    decoder = p.WaveDecoder()
    edges = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    out = merge([decoder.feed(stream[a:b]) for a, b in zip(edges, edges[1:])])
    assert decoder.dropped == 0 and decoder.partial == 0
    assert out.motion.tobytes() == records.tobytes()
    assert [(b.button, b.action) for b in out.buttons] == [(b, a) for b, a, _ in buttons]
    np.testing.assert_array_equal([b.timestamp for b in out.buttons],
                                  np.float32([t for _, _, t in buttons]))


# ------------------------------------------------------------------ host-computed fields
def test_gravity_and_global_frame_fields_against_scipy():
    rng = np.random.default_rng(3)
    n = 50
    rec = np.zeros(n, p.MOTION_DTYPE)
    rec["acc"] = rng.normal(size=(n, 3))
    rec["linacc"] = rng.normal(size=(n, 3))
    q = rng.normal(size=(n, 4)) * rng.uniform(0.2, 3.0, size=(n, 1))  # not normalised
    rec["current_pose"] = q
    m = p.motion_fields(rec)
    np.testing.assert_allclose(m["grav"], rec["acc"] - rec["linacc"], atol=1e-6)
    rot = Rotation.from_quat(np.asarray(rec["current_pose"], np.float64)[:, [1, 2, 3, 0]])
    np.testing.assert_allclose(m["acc_glob"], rot.apply(rec["acc"].astype(np.float64)),
                               atol=1e-5)
    np.testing.assert_allclose(m["linacc_glob"], rot.apply(rec["linacc"].astype(np.float64)),
                               atol=1e-5)
    for key in ("gyro", "acc", "mag", "euler", "linacc", "grav", "acc_glob", "linacc_glob"):
        assert m[key].shape == (n, 3), key
    assert m["raw_pose"].shape == m["current_pose"].shape == (n, 4)


def test_a_zero_quaternion_leaves_the_vector_unrotated_not_nan():
    rec = np.zeros(1, p.MOTION_DTYPE)
    rec["acc"] = (0.0, 0.0, 1.0)
    assert p.motion_fields(rec)["acc_glob"].tolist() == [[0.0, 0.0, 1.0]]


# ------------------------------------------------------------------ spec params
def test_wave_params_check_without_a_radio():
    assert check({"type": "wave"}) == ([], stream_names(False, False))
    problems, _ = check({"type": "wave", "ble_address": "nope", "raw": True,
                         "spectrogram": True, "sample_rate": -1, "colour": "red",
                         "stop_on_top_hold": "yes"})
    text = "\n".join(problems)
    for field in ("ble_address", "raw", "sample_rate", "colour", "stop_on_top_hold"):
        assert f"field 'params.{field}'" in text, text
    assert check({"type": "wave", "ble_address": "AA:BB:CC:DD:EE:0F", "raw": True})[0] == []


@pytest.mark.parametrize("mode", [dict(), dict(raw=True), dict(spectrogram=True)])
def test_spec_stream_names_are_the_source_streams(mode):
    assert stream_names(mode.get("spectrogram", False), mode.get("raw", False)) == \
        ["timestamp", *stream_shapes(**mode)]


@pytest.mark.process
def test_checking_a_wave_spec_imports_no_radio_library():
    code = ("import sys; from genki_signals.data_sources.registry import check_source_params;"
            "assert check_source_params({'type': 'wave', 'name': 'Wave'})[0] == [];"
            "bad = [m for m in ('bleak', 'bumble', 'cobs') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
