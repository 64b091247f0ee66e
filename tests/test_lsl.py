"""Lab Streaming Layer in and out: our inlet source against pylsl outlets, our outlet sink
against a plain pylsl inlet, in-process and as topology nodes.

Every LSL packet stays on this machine: ``lsl_helpers.configure()`` points ``LSLAPICFG`` at an
``lsl_api.cfg`` with machine resolve scope, IPv6 off, 127.0.0.1 as the only address and known
peer and a session id of its own (before liblsl is first used; node processes inherit it), and
``assert_loopback_only`` checks the test process's sockets after the exchanges.
"""

from __future__ import annotations

import json
import time

import lsl_helpers

lsl_helpers.configure()  # before pylsl first talks to liblsl

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

import pylsl  # noqa: E402 - the lsl extra (in the test extra)

from genki_signals.clock import Clock  # noqa: E402
from genki_signals.data_sources.lsl import LSLDataSource  # noqa: E402
from genki_signals.errors import SourceError  # noqa: E402
from genki_signals.launch.spec import TopologySpecError, parse_topology  # noqa: E402
from genki_signals.nodes.lsl_sink import LSLOutletSinkLogic, LSLSinkParams  # noqa: E402

pytestmark = pytest.mark.timeout(60)

_counter = iter(range(10_000))


def unique(name: str) -> str:
    """Stream names of their own per test: no test resolves another's outlet."""
    return f"{name}_{time.monotonic_ns()}_{next(_counter)}"


def read_until(source, count: int, timeout: float = 10.0) -> dict[str, np.ndarray]:
    """Read ``source`` until ``count`` samples arrived (fails with what it got)."""
    frames = []
    deadline = time.monotonic() + timeout
    got = 0
    while got < count and time.monotonic() < deadline:
        f = source.read()
        if f and len(f["timestamp"]):
            frames.append(f)
            got += len(f["timestamp"])
        time.sleep(0.02)
    assert got >= count, f"got {got} of {count} samples within {timeout} s"
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def make_outlet(name: str, channels: int = 3, rate: float = 100.0, fmt=None,
                source_id: str = "", stype: str = "EEG"):
    info = pylsl.StreamInfo(name, stype, channels, rate, fmt or pylsl.cf_float32, source_id)
    return pylsl.StreamOutlet(info)


# ====================================================================== the inlet source
def test_inlet_source_gets_samples_and_maps_their_lsl_timestamps_onto_the_topology_clock():
    name = unique("eeg")
    outlet = make_outlet(name, channels=3, source_id=name)
    clock = Clock()  # origin: this moment's CLOCK_MONOTONIC
    source = LSLDataSource(name=name, type="EEG", channels=["fp1", "fp2", "cz"], clock=clock)
    assert source.stream_names == ["fp1", "fp2", "cz", "lsl_timestamp"]
    with source:
        assert source.channel_count == 3 and source.dtype == np.float32
        assert source.sample_rate == 100.0
        rng = np.random.default_rng(0)
        sent = rng.normal(size=(200, 3)).astype(np.float32)
        t_first = pylsl.local_clock()
        stamps = t_first + np.arange(200) / 100.0  # explicit per-sample LSL stamps
        for i in range(0, 200, 20):
            outlet.push_chunk(sent[i:i + 20], stamps[i:i + 20].tolist())
        got = read_until(source, 200)
        assert lsl_helpers.assert_loopback_only() >= 1  # connected: to loopback only
    np.testing.assert_array_equal(np.stack([got["fp1"], got["fp2"], got["cz"]], axis=1), sent)
    assert got["fp1"].dtype == np.float32
    np.testing.assert_array_equal(got["lsl_timestamp"], stamps)
    # Independent reference: on Linux LSL's local_clock and our clock are both CLOCK_MONOTONIC,
    # so a sample stamped L by the outlet is at L - origin on the topology clock (the mapping
    # goes through time_correction and a bracketed offset reading: microseconds apart).
    expected = stamps - clock._t0
    assert np.max(np.abs(got["timestamp"] - expected)) < 1e-3
    assert np.all(np.diff(got["timestamp"]) > 0)


def test_inlet_source_takes_format_and_channel_count_from_the_stream_info():
    name = unique("ints")
    outlet = make_outlet(name, channels=5, rate=50, fmt=pylsl.cf_int16, stype="Mocap")
    source = LSLDataSource(type="Mocap", name=name, key="markers")
    with source:
        data = np.arange(40, dtype=np.int16).reshape(8, 5)
        outlet.push_chunk(data)
        got = read_until(source, 8)
    assert got["markers"].dtype == np.int16 and got["markers"].shape == (8, 5)
    np.testing.assert_array_equal(got["markers"], data)
    # an irregular string stream (event markers) gives bytes
    name = unique("markers")
    outlet = make_outlet(name, channels=1, rate=0, fmt=pylsl.cf_string, stype="Markers")
    source = LSLDataSource(name=name, channels=["label"])
    with source:
        assert source.sample_rate is None
        for word in ("left", "right", "stop"):
            outlet.push_sample([word])
        got = read_until(source, 3)
    assert got["label"].tolist() == [b"left", b"right", b"stop"]


def test_a_channel_count_that_does_not_match_the_spec_is_a_clear_error():
    name = unique("three")
    outlet = make_outlet(name, channels=3)  # noqa: F841 - kept alive while resolving
    source = LSLDataSource(name=name, channels=["a", "b"])
    with pytest.raises(SourceError, match=r"has 3 channels but params.channels names 2"):
        source.start()
    source.stop()


def test_a_bad_stream_name_times_out_with_a_clear_error():
    other = unique("present")
    outlet = make_outlet(other)  # noqa: F841 - a stream that is there, named in the error
    source = LSLDataSource(name="no_such_stream", resolve_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(SourceError) as info:
        source.start()
    assert 1.0 <= time.monotonic() - start < 10
    message = str(info.value)
    assert "no LSL stream with name='no_such_stream' found within 1 s" in message
    assert repr(other) in message  # what it did see


@pytest.mark.parametrize("source_id", ["kept", ""], ids=["same-source-id", "no-source-id"])
def test_an_outlet_that_goes_away_and_comes_back_is_recovered(source_id):
    name = unique("flaky")
    sid = f"{name}-{source_id}" if source_id else ""
    outlet = make_outlet(name, channels=2, source_id=sid)
    source = LSLDataSource(name=name, channels=["a", "b"])
    with source:
        outlet.push_chunk(np.ones((10, 2), np.float32))
        before = read_until(source, 10)
        del outlet  # the device goes away...
        time.sleep(1.0)
        outlet = make_outlet(name, channels=2, source_id=sid)  # ...and comes back
        deadline = time.monotonic() + 20
        after = np.empty(0)
        while time.monotonic() < deadline and not (after == 2).any():
            outlet.push_chunk(np.full((5, 2), 2, np.float32))
            time.sleep(0.1)
            f = source.read()
            after = np.concatenate([after, f["a"]])
        assert source.is_active
    assert before["a"].tolist() == [1.0] * 10
    assert (after == 2).any(), "no sample from the outlet that came back within 20 s"
    if not source_id:  # lost for good: our reader resolved it again
        assert source.reconnects >= 1


# ====================================================================== the outlet sink
def test_outlet_sink_is_read_by_a_plain_pylsl_inlet():
    name = unique("genki_out")
    clock = Clock()
    sink = LSLOutletSinkLogic(LSLSinkParams(type="lsl", keys=("sine_0", "vec"), name=name,
                                            content_type="EEG"), clock=clock)
    sink.start()
    ts = clock.now() + np.arange(50) / 100.0
    frame = {"timestamp": ts, "sine_0": np.sin(ts).astype(np.float32),
             "vec": np.arange(100, dtype=np.float32).reshape(50, 2),
             "ignored": np.zeros(50)}
    sink.on_frame("signals/main", {k: v[:4] for k, v in frame.items()}, 0.0)  # makes the outlet
    found = pylsl.resolve_byprop("name", name, timeout=5)
    assert found, "our outlet was not resolved"
    inlet = pylsl.StreamInlet(found[0])
    info = inlet.info(timeout=5)
    assert info.channel_count() == 3
    assert info.channel_format() == pylsl.cf_float32
    assert info.nominal_srate() == pytest.approx(100.0)
    assert info.type() == "EEG"
    assert info.source_id().endswith("/signals/main")
    ch = info.desc().child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels == ["sine_0", "vec[0]", "vec[1]"]
    inlet.open_stream(timeout=5)
    time.sleep(0.3)
    sink.on_frame("signals/main", {k: v[4:] for k, v in frame.items()}, 0.0)
    samples, stamps = [], []
    deadline = time.monotonic() + 10
    while len(samples) < 46 and time.monotonic() < deadline:
        chunk, t = inlet.pull_chunk(timeout=0.2)
        samples += chunk
        stamps += t
    expected = np.column_stack([frame["sine_0"], frame["vec"]])[4:]
    np.testing.assert_array_equal(np.array(samples, dtype=np.float32), expected)
    # our stamps were moved onto the LSL clock: back on the topology clock they are the frame's
    assert np.max(np.abs(np.array(stamps) - clock._t0 - ts[4:])) < 1e-3
    assert lsl_helpers.assert_loopback_only() >= 1
    sink.close()


def test_events_become_an_lsl_marker_stream():
    name = unique("gestures")
    clock = Clock()
    sink = LSLOutletSinkLogic(LSLSinkParams(type="lsl", name=name), clock=clock)
    sink.start()

    def event(t: float, label: bytes, score: float) -> dict[str, np.ndarray]:
        return {"timestamp": np.array([t]), "label": np.array([label]),
                "score": np.array([score])}

    sink.on_event("inference/events", event(clock.now(), b"first", 0.5), 0.0)  # makes it
    found = pylsl.resolve_bypred(f"name='{name}/events' and type='Markers'", timeout=5)
    assert found, "no marker stream"
    inlet = pylsl.StreamInlet(found[0])
    info = inlet.info(timeout=5)
    assert (info.channel_count(), info.channel_format(), info.nominal_srate()) == \
        (1, pylsl.cf_string, 0.0)
    inlet.open_stream(timeout=5)
    time.sleep(0.3)
    t = clock.now()
    sink.on_event("inference/events", event(t, b"circle", 0.93), 0.0)
    sample, stamp = inlet.pull_sample(timeout=5)
    assert json.loads(sample[0]) == {"label": "circle", "score": 0.93}
    assert abs(stamp - clock._t0 - t) < 1e-3
    sink.close()


def test_lsl_source_and_sink_are_validated_in_specs():
    def spec(source_params, sink_params):
        return {"name": "lsl_spec", "nodes": [
            {"id": "eeg", "kind": "source", "params": {"type": "lsl", **source_params}},
            {"id": "out", "kind": "sink", "inputs": ["eeg"],
             "params": {"type": "lsl", **sink_params}}]}

    ok = parse_topology(spec({"name": "BioSemi", "channels": ["fp1", "fp2"]},
                             {"keys": ["fp1"], "nominal_rate": 256, "format": "float32"}))
    assert set(ok.streams["eeg"]) == {"timestamp", "fp1", "fp2", "lsl_timestamp"}
    with pytest.raises(TopologySpecError) as info:
        parse_topology(spec({"channels": ["fp1", "fp1"], "resolve_timeout": -1, "bogus": 1},
                            {"keys": ["nope"], "format": "float16", "nominal_rate": -3}))
    text = str(info.value)
    for expected in ("node 'eeg': field 'params.name': give at least one of name",
                     "node 'eeg': field 'params.channels': names must be unique",
                     "node 'eeg': field 'params.resolve_timeout': must be a number > 0",
                     "node 'eeg': field 'params.bogus': unknown field"):
        assert expected in text, text
    with pytest.raises(TopologySpecError) as info:
        parse_topology(spec({"name": "x"}, {"keys": ["nope"], "format": "float16",
                                            "nominal_rate": -3}))
    text = str(info.value)
    for expected in ("node 'out': field 'params.keys[0]': stream 'nope' is not published",
                     "node 'out': field 'params.format': must be one of float32",
                     "node 'out': field 'params.nominal_rate': must be a number >= 0"):
        assert expected in text, text


# ====================================================================== real processes
@pytest.mark.process
@pytest.mark.timeout(90)
def test_a_topology_reads_an_lsl_stream_and_republishes_it(tmp_path, launcher_factory):
    """test outlet -> [lsl source node -> lsl sink node] -> plain pylsl inlet in the test."""
    name_in, name_out = unique("device"), unique("relayed")
    outlet = make_outlet(name_in, channels=2, rate=100, fmt=pylsl.cf_double64,
                         source_id=name_in)
    spec = tmp_path / "lsl.yaml"
    spec.write_text(yaml.safe_dump({"name": "lsl_relay", "nodes": [
        {"id": "device", "kind": "source",
         "params": {"type": "lsl", "name": name_in, "channels": ["x", "y"]}},
        {"id": "relay", "kind": "sink", "inputs": ["device"],
         "params": {"type": "lsl", "keys": ["x", "y"], "name": name_out,
                    "nominal_rate": 100}}]}))
    lp = launcher_factory(spec)
    lp.wait_ready()
    sent = np.column_stack([np.arange(300.0), -np.arange(300.0)])
    outlet.push_chunk(sent[:10])  # the relay's outlet appears with its first frame
    found = pylsl.resolve_byprop("name", name_out, timeout=15)
    assert found, lp.output
    inlet = pylsl.StreamInlet(found[0])
    assert inlet.info(timeout=5).channel_format() == pylsl.cf_double64
    inlet.open_stream(timeout=5)
    time.sleep(0.5)
    for i in range(10, 300, 10):
        outlet.push_chunk(sent[i:i + 10])
        time.sleep(0.01)
    samples: list[list[float]] = []
    deadline = time.monotonic() + 20
    while (not samples or samples[-1][0] < 299) and time.monotonic() < deadline:
        chunk, _ = inlet.pull_chunk(timeout=0.2)
        samples += chunk
    got = np.array(samples)
    assert len(got) and got[-1, 0] == 299, lp.output
    first = int(got[0, 0])  # whatever was in flight before our inlet connected
    np.testing.assert_array_equal(got, sent[first:])
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
