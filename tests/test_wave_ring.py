"""WaveDataSource with the real ``bleak.BleakClient`` against a virtual ring on bumble's radio.

Nothing is mocked: the ring is a bumble ``Device`` serving the ring's GATT service on a bumble
``LocalLink``; the source's ``BleakClient`` runs on ``BumbleClientBackend`` over HCI (loopback
TCP) to the central's virtual controller. The ring sends frames made by our encoder from a
known trajectory, split into notifications of random sizes (20-244 B), on a clock we control
(jitter, skew), and records every write it receives.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from genki_signals.clock import Clock
from genki_signals.data_sources.wave import protocol as p
from genki_signals.data_sources.wave.source import WaveDataSource
from genki_signals.data_sources.wave.virtual import VirtualRing, wave_motion
from genki_signals.errors import SourceError

pytestmark = pytest.mark.timeout(60)

MOTION_KEYS = ("gyro", "acc", "mag", "raw_pose", "current_pose", "euler", "linacc")


@pytest.fixture
def rings():
    """Start virtual rings; every one is closed at teardown (after the sources using it)."""
    started: list[VirtualRing] = []
    sources: list[WaveDataSource] = []

    def make(source_kwargs=None, **ring_kwargs):
        clock = Clock()
        ring = VirtualRing(clock=clock.now, **ring_kwargs).start()
        started.append(ring)
        kwargs = dict(ble_address=ring.address, transport=ring.transport, clock=clock,
                      connect_timeout=15.0)
        kwargs.update(source_kwargs or {})
        source = WaveDataSource(**kwargs)
        sources.append(source)
        return ring, source

    yield make
    for source in sources:
        source.stop()
    for ring in started:
        ring.close()


def collect(source: WaveDataSource, seconds: float) -> list[dict]:
    """Read like a source node does (25 times a second) for ``seconds``."""
    frames, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.04)
        frames.append(source.read())
    return frames


def joined(frames: list[dict]) -> dict[str, np.ndarray]:
    frames = [f for f in frames if len(f.get("timestamp", ()))]
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def drain(ring: VirtualRing, source: WaveDataSource, frames: list[dict]) -> None:
    """Silence the ring and read what is still in flight, so every sent sample is counted."""
    ring.silence()
    frames += collect(source, 0.3)


def timestamp_errors(ring: VirtualRing, data: dict[str, np.ndarray]) -> np.ndarray:
    truth = dict(ring.sent)
    return data["timestamp"] - np.array([truth[int(u)] for u in data["timestamp_us"]])


WAVE_TIMESTAMP_BOUND = 1e-3
"""Seconds: issue 14's bound on the mapped timestamps' error (the 99th percentile after the
first 4 s). ``tools/measure_wave_timestamps.py`` and docs/benchmarks.md give the measured
figures; what is left is the link's asymmetry (half a round trip is not the one-way latency of
a motion notification) and the wander of the transport's minimum delay on a busy machine: with
other agents' jobs on the 2 cores (load average 3-9) 3 of 8 cases ended at 1.0-1.15 ms; with
the process given priority, p99 <= 0.83 ms in every measured run."""
WAVE_TIMESTAMP_WORST = 1.5e-3
"""Seconds: the largest error allowed after the first 4 s (a single read of a reader thread
starved on a busy 2-core machine may land past the bound)."""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("skew_ppm", [100.0, -100.0])
def test_motion_stream_writes_values_no_loss_and_device_timestamps(rings, skew_ppm):
    ring, source = rings(jitter=0.005, skew_ppm=skew_ppm, seed=int(skew_ppm))
    source.start()
    frames = collect(source, 12.0)
    drain(ring, source, frames)
    data = joined(frames)

    # the writes: device info request, API mode, the default motion config, as the vendor's;
    # then the battery requests that measure the link's latency (the probes)
    assert ring.raw_writes[3:] == [p.battery_request()] * (len(ring.raw_writes) - 3)
    assert source.stats()["wave_link_probes"] >= 20
    assert ring.raw_writes[:3] == [bytes.fromhex("03 01 03 01 01 00"),
                               bytes.fromhex("04 01 05 01 02 67 00"),
                               bytes.fromhex("04 01 0b 08 02 01 01 01 01 01 03 c8 43 00")]
    # notifications of random sizes within 20-244 B, frames (111 B) cut inside
    sizes = np.array(ring.notifications)
    assert sizes.min() >= 20 and sizes.max() <= 244 and len(set(sizes)) > 20
    assert len(sizes) > 1.3 * len(ring.sent)

    # 0 lost: every sample the ring sent, in order, once
    sent_us = [us for us, _ in ring.sent]
    assert data["timestamp_us"].tolist() == sent_us
    assert len(sent_us) >= 600  # 12 s at 100 Hz (fewer when the machine is starved)
    assert source.stats()["wave_dropped_frames"] == 0

    # values: what the trajectory gave at each sample's device time, bit for bit in float32
    for i in range(0, len(sent_us), 7):
        expected = wave_motion(sent_us[i] * 1e-6)
        for key in MOTION_KEYS:
            np.testing.assert_array_equal(data[key][i], np.float32(expected[key]), err_msg=key)
    assert data["gyro"].shape == (len(sent_us), 3) and data["current_pose"].shape[1:] == (4,)
    np.testing.assert_allclose(data["grav"], data["acc"] - data["linacc"], atol=1e-6)

    # timestamps: the ring's clock mapped onto ours, not the jittered arrivals. The mapping is
    # causal (a read maps with the pairs seen so far, and the rate is only as good as the span
    # of device time behind it): judged after the first 4 s.
    # The link's fixed latency is not calibrated here: the source measures it (half the
    # smallest battery request-reply round trip), as it would with a real ring.
    err = timestamp_errors(ring, data)
    settled = np.abs(err[data["timestamp"] > data["timestamp"][0] + 4.0])
    assert np.percentile(settled, 99) < WAVE_TIMESTAMP_BOUND, (np.min(err), np.max(err))
    assert np.max(settled) < WAVE_TIMESTAMP_WORST, (np.min(err), np.max(err))
    assert np.max(np.abs(err)) < 0.02  # even the first reads: within the injected jitter
    assert np.all(np.diff(data["timestamp"]) > 0)
    stats = source.stats()
    # the reported uncertainty is honest (the truth lies inside) and still says something
    assert np.percentile(settled, 99) <= stats["wave_clock_uncertainty_ms"] * 1e-3, stats
    assert stats["wave_clock_uncertainty_ms"] < 4.0, stats  # below the injected jitter
    # leader s per device s: the skew is estimated (an unestimated one would be 100 ppm off)
    assert abs(stats["wave_device_rate_ppm"] + skew_ppm) < 70, stats


def test_spectrogram_mode_frames_span_notifications(rings):
    ring, source = rings(dict(spectrogram=True), spectrogram_every=4)
    source.start()
    frames = collect(source, 1.5)
    drain(ring, source, frames)
    data = joined(frames)
    assert ring.raw_writes[2] == bytes.fromhex("04 01 0b 08 01 02 01 01 01 01 03 fa 44 00")
    assert max(ring.notifications) <= 244  # a 397-byte frame always spans notifications
    assert data["timestamp_us"].tolist() == [us for us, _ in ring.sent] and len(ring.sent) >= 8
    assert sorted(data) == sorted(["timestamp", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y",
                                   "gyro_z", "timestamp_us"])
    base = np.arange(96, dtype=np.float32).reshape(6, 16)
    offsets = data["acc_x"][:, 0]  # the ring adds its tick number to every bin
    for i, name in enumerate(("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")):
        np.testing.assert_array_equal(data[name], base[i] + offsets[:, None])


def test_raw_mode(rings):
    ring, source = rings(dict(raw=True))
    source.start()
    frames = collect(source, 0.6)
    drain(ring, source, frames)
    data = joined(frames)
    assert ring.config == (p.Datastream.RAW, False, 400.0)
    assert sorted(data) == ["acc", "gyro", "timestamp", "timestamp_us"]
    us = data["timestamp_us"][0]
    np.testing.assert_array_equal(data["gyro"][0], np.float32(wave_motion(us * 1e-6)["gyro"]))


def test_a_disconnect_mid_stream_is_reconnected_with_nothing_sent_lost(rings, caplog):
    ring, source = rings(dict(backoff=(0.2, 1.0)))
    source.start()
    frames = collect(source, 0.8)
    with caplog.at_level(logging.INFO, "genki_signals.data_sources.wave.source"):
        ring.drop()
        deadline = time.monotonic() + 10
        while source.stats()["wave_reconnects"] < 1 and time.monotonic() < deadline:
            frames += collect(source, 0.1)
        frames += collect(source, 0.8)
    drain(ring, source, frames)
    data = joined(frames)
    stats = source.stats()
    assert stats["wave_disconnects"] == 1 and stats["wave_reconnects"] == 1
    setup = [w for w in ring.raw_writes if w != p.battery_request()]  # without the probes
    assert ring.connections == 2 and setup[3:6] == setup[0:3]
    assert "disconnected unexpectedly" in caplog.text and "reconnected" in caplog.text
    sent = [us for us, _ in ring.sent]
    got = data["timestamp_us"].tolist()
    # at most the frame being sent when the link went down and one queued behind a probe reply
    assert got == sent or (len(sent) - len(got) <= 2 and set(got) <= set(sent)), \
        (len(sent), len(got))
    gap = np.diff(data["timestamp_us"]).max() * 1e-6
    assert 0.15 < gap < 5.0  # the outage, then samples again


def test_stop_returns_within_a_second_when_silent_gone_or_mid_connect(rings):
    ring, source = rings()
    source.start()
    ring.silence()
    time.sleep(0.5)
    t0 = time.monotonic()
    source.stop()
    assert time.monotonic() - t0 < 1.0
    assert not source.is_active

    ring2, source2 = rings()
    source2.start()
    ring2.close()  # the radio is gone
    t0 = time.monotonic()
    source2.stop()
    assert time.monotonic() - t0 < 1.0

    # mid-connect: an address nobody answers; stop from another thread while start() waits
    ring3, source3 = rings(dict(ble_address="F0:00:00:00:00:99", connect_timeout=30.0))
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        try:
            source3.start()
        except SourceError as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    source3.stop()
    assert time.monotonic() - t0 < 1.0
    thread.join(5)
    assert not thread.is_alive() and errors


def test_buttons_device_info_recenter_and_corrupt_frames(rings, caplog):
    old = p.DeviceInfo((1, 6, 9), "wave-v1", "f0:f0:f0:f0:f0:02", "OLD")
    ring, source = rings(info=old)
    with caplog.at_level(logging.INFO, "genki_signals.data_sources.wave.source"):
        source.start()
        collect(source, 0.3)
    assert "firmware 1.6.9" in caplog.text and "older than 1.7.3" in caplog.text  # a warning
    stats = source.stats()
    assert (stats["wave_firmware"], stats["wave_serial"], stats["wave_mac"]) == \
        ("1.6.9", "OLD", "f0:f0:f0:f0:f0:02")
    events = dict(source.read_events())
    assert events["device"]["firmware"].tolist() == [b"1.6.9"]

    ring.press(p.Button.TOP, p.ButtonAction.EXTRA_LONG)  # held: ignored unless asked
    ring.inject(p.encode_message(3, 1, b"\x01" * 50, size=105) + p.encode_message(3, 77, b""))
    ring.press(p.Button.MIDDLE, p.ButtonAction.CLICK)
    frames = collect(source, 0.5)
    events = dict(source.read_events())
    assert events["buttons"]["button"].tolist() == [b"top", b"middle"]
    assert events["buttons"]["action"].tolist() == [b"extra_long", b"click"]
    now = source.clock.now()
    assert np.all(np.abs(events["buttons"]["timestamp"] - (now - 0.4)) < 0.4)
    assert source.is_active and source.connected
    stats = source.stats()
    assert {k: v for k, v in stats.items() if k.startswith("wave_dropped")} == {
        "wave_dropped_frames": 2, "wave_dropped_truncated": 1, "wave_dropped_unknown_id": 1}
    assert joined(frames)["timestamp"].size > 20  # streaming went on

    source.recenter()
    deadline = time.monotonic() + 5
    while (1, p.MsgId.RECENTER, b"") not in ring.writes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (1, p.MsgId.RECENTER, b"") in ring.writes


def test_holding_the_top_button_stops_the_source_only_when_asked(rings):
    ring, source = rings(dict(stop_on_top_hold=True))
    source.start()
    assert source.finite
    ring.press(p.Button.TOP, p.ButtonAction.EXTRA_LONG)
    deadline = time.monotonic() + 5
    while source.is_active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not source.is_active
    source.stop()


def test_discovery_by_name_and_a_clear_error_when_nothing_is_found(rings):
    ring, source = rings(dict(ble_address=None, name="Wave"))
    source.start()
    assert source.connected
    _, missing = rings(dict(ble_address=None, name="NoSuchRing", connect_timeout=3.0),
                       name="Wave other")
    missing.scan_timeout = 1.0
    with pytest.raises(SourceError, match="no BLE device whose name contains 'NoSuchRing'"):
        missing.start()
    assert not missing.is_active


def test_a_source_node_publishes_data_buttons_and_device_info_and_reports_stats(rings):
    from genki_signals.bus.codec import decode, encode
    from genki_signals.nodes.source_node import SourceNodeLogic

    ring, source = rings()
    logic = SourceNodeLogic(source)
    logic.start()
    try:
        outputs = []
        for _ in range(10):
            time.sleep(0.04)
            outputs += logic.poll(0.0)
        ring.press(p.Button.BOTTOM, p.ButtonAction.DOUBLE_CLICK)
        deadline = time.monotonic() + 5
        while not any(o.timeline == "buttons" for o in outputs) and time.monotonic() < deadline:
            time.sleep(0.04)
            outputs += logic.poll(0.0)
        stats = logic.stats()
    finally:
        logic.close()
    assert not source.is_active
    by = {(o.timeline, o.kind): o.frame for o in outputs}
    assert {("main", "data"), ("device", "event"), ("buttons", "event")} <= set(by)
    assert by[("buttons", "event")]["action"].tolist() == [b"double_click"]
    assert stats["wave_firmware"] == "1.7.4" and stats["wave_serial"] == "VIRTUAL0001"
    for (timeline, kind), frame in by.items():  # every frame crosses the bus codec intact
        message = decode(encode(f"ring/{timeline}", frame, node_id="ring", seq=1, kind=kind))
        assert sorted(message.frame) == sorted(frame)
        assert message.frame["timestamp"].tolist() == frame["timestamp"].tolist()
