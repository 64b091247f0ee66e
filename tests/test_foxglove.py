"""Recordings that Foxglove decodes, and the live view over the Foxglove WebSocket protocol.

The export is read back with the ``mcap`` package (its indexed reader), every message is
validated against its channel's JSON Schema with ``jsonschema``, and the values are compared
with ``load_recording`` of the source. The live test speaks the Foxglove WebSocket protocol
itself (the ``websockets`` package: subprotocol, advertise, subscribe, binary message data) to
a ``foxglove`` sink node of a running topology.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from mcap.reader import make_reader

from genki_signals.cli import main
from genki_signals.record import Recorder, load_recording, read_frames
from genki_signals.record.foxglove import export_foxglove
from proc_helpers import env_with_tests_on_path

pytestmark = pytest.mark.timeout(60)

ANCHOR = 1.7e9  # the recording's wall anchor (Unix seconds at topology time 0)


def write_mixed_recording(path: Path) -> None:
    """Scalars (with a NaN), a spectrum (129 bins), a 3-vector, ints, and events with labels."""
    rng = np.random.default_rng(1)
    with Recorder(path, wall_anchor=ANCHOR, topology={"name": "fx", "nodes": []}) as rec:
        for i in range(30):
            ts = (np.arange(4) + 4 * i) / 100.0
            frame = {"timestamp": ts, "sine_0": np.sin(ts), "count": np.arange(4) + 4 * i,
                     "accel": rng.normal(size=(4, 3)).astype(np.float32)}
            if i == 3:
                frame["sine_0"] = frame["sine_0"].copy()
                frame["sine_0"][1] = np.nan
            rec.record_frame("signals/main", frame, node_id="signals", log_time=ts[-1] + 0.01)
            if i % 8 == 7:
                rec.record_frame("derived/wave_spectrum",
                                 {"timestamp": ts[-1:], "wave_spectrum": rng.random((1, 129))},
                                 node_id="derived", log_time=ts[-1] + 0.02)
            if i % 10 == 5:
                rec.record_frame("inference/events",
                                 {"timestamp": ts[:1], "label": np.array([b"circle"]),
                                  "score": np.array([0.9])},
                                 node_id="inference", kind="event", log_time=ts[0] + 0.03)


def read_export(path: Path) -> dict[str, list[tuple[int, dict]]]:
    """Per channel topic, (log_time, message) of every message, each validated."""
    out: dict[str, list[tuple[int, dict]]] = {}
    with path.open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None, "no summary: the indexed reader cannot open it"
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            assert channel.message_encoding == "json"
            assert schema.encoding == "jsonschema"
            value = json.loads(message.data)
            jsonschema.validate(value, json.loads(schema.data))
            assert message.log_time == message.publish_time
            out.setdefault(channel.topic, []).append((message.log_time, value))
    return out


def test_foxglove_export_is_json_with_schemas_one_message_per_sample(tmp_path):
    src, out = tmp_path / "run.mcap", tmp_path / "fox.mcap"
    write_mixed_recording(src)
    assert main(["export", str(src), "--foxglove", str(out), "--no-progress"]) == 0
    got = read_export(out)
    assert set(got) == {"/signals/main", "/derived/wave_spectrum", "/inference/events"}
    data = load_recording(src)
    for bus_topic in ("signals/main", "derived/wave_spectrum"):
        ref = data[bus_topic]
        messages = got["/" + bus_topic]
        assert len(messages) == len(ref["timestamp"])  # one message per sample
        times = np.array([t for t, _ in messages])
        # log time is the sample's topology timestamp, in Unix ns
        expected = np.round(ANCHOR * 1e9 + ref["timestamp"] * 1e9).astype(np.int64)
        assert np.max(np.abs(times - expected)) <= 256  # float64 ns near 1.7e18: ulp 256
        for key, column in ref.items():
            values = [m[key] for _, m in messages]
            if column.dtype.kind == "f":
                as_float = np.array([np.nan if v is None else v for v in values], dtype=float)
                np.testing.assert_array_equal(as_float, column.astype(np.float64))
            else:
                assert values == column.tolist(), key
    assert sum(m["sine_0"] is None for _, m in got["/signals/main"]) == 1  # NaN -> null
    assert isinstance(got["/signals/main"][0][1]["accel"], list)
    assert len(got["/derived/wave_spectrum"][0][1]["wave_spectrum"]) == 129
    events = [f for f in read_frames(src, kinds=("event",))["inference/events"]]
    assert [m for _, m in got["/inference/events"]] == [
        {"timestamp": float(e["timestamp"][0]), "label": "circle", "score": 0.9} for e in events]
    # the schema rejects what it should: a wrong type, a missing field, an extra field
    with out.open("rb") as f:
        schemas = {c.topic: json.loads(s.data) for s, c, _ in
                   make_reader(f).iter_messages(topics=["/signals/main"])}
    schema = schemas["/signals/main"]
    good = got["/signals/main"][0][1]
    for bad in ({**good, "sine_0": "x"}, {k: v for k, v in good.items() if k != "count"},
                {**good, "extra": 1}, {**good, "accel": [1.0, 2.0]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_a_frame_whose_fields_change_gets_a_channel_with_its_own_schema(tmp_path):
    src, out = tmp_path / "run.mcap", tmp_path / "fox.mcap"
    with Recorder(src, wall_anchor=ANCHOR) as rec:
        rec.record_frame("s/main", {"timestamp": np.array([0.0]), "a": np.array([1.0])},
                         node_id="s")
        rec.record_frame("s/main", {"timestamp": np.array([0.1]), "a": np.array([2.0]),
                                    "b": np.array([3], dtype=np.int32)}, node_id="s")
    result = export_foxglove(src, out, progress=False)
    assert (result.messages, result.channels) == (2, 2)
    got = read_export(out)
    assert [m for _, m in got["/s/main"]] == [{"timestamp": 0.0, "a": 1.0},
                                               {"timestamp": 0.1, "a": 2.0, "b": 3}]


def test_export_progress_is_shown_on_long_work(tmp_path, capsys):
    src = tmp_path / "run.mcap"
    write_mixed_recording(src)
    export_foxglove(src, tmp_path / "fox.mcap", progress=True)
    err = capsys.readouterr().err
    assert "exporting" in err and "100%" in err, err


# ====================================================================== live
def foxglove_client(url: str):
    from websockets.sync.client import connect

    return connect(url, subprotocols=["foxglove.sdk.v1"], open_timeout=5)


def wait_for_channels(ws, topics: set[str], timeout: float) -> dict[str, dict]:
    """Read control messages until every topic is advertised; topic -> channel."""
    channels: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while not topics <= set(channels):
        assert time.monotonic() < deadline, f"advertised only {sorted(channels)}"
        try:
            msg = ws.recv(timeout=0.5)
        except TimeoutError:
            continue
        if isinstance(msg, str):
            op = json.loads(msg)
            if op["op"] == "advertise":
                channels.update({c["topic"]: c for c in op["channels"]})
    return channels


def receive(ws, subscription: int, count: int, timeout: float) -> list[tuple[int, dict]]:
    """``count`` message-data frames (opcode 1) of ``subscription``: (log time, message)."""
    got: list[tuple[int, dict]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"got {len(got)} of {count} messages"
        try:
            msg = ws.recv(timeout=0.5)
        except TimeoutError:
            continue
        if isinstance(msg, bytes) and msg[0] == 0x01:
            sub_id, log_time = struct.unpack_from("<IQ", msg, 1)
            assert sub_id == subscription
            got.append((log_time, json.loads(msg[13:])))
    return got


@pytest.mark.process
@pytest.mark.timeout(90)
def test_live_foxglove_sink_serves_a_running_topology(tmp_path, launcher_factory):
    spec = tmp_path / "live.yaml"
    spec.write_text(yaml.safe_dump({"name": "fox_live", "nodes": [
        {"id": "signals", "kind": "source",
         "params": {"type": "Sampler", "sample_rate": 100,
                    "sources": {"ramp": {"type": "SineWave", "frequency": 1, "amplitude": 2}}}},
        {"id": "fox", "kind": "sink", "inputs": [{"node": "signals", "policy": "drop_oldest",
                                                  "maxlen": 50}],
         "params": {"type": "foxglove", "port": 0}}]}))
    lp = launcher_factory(spec)
    d = lp.wait_ready()
    url = lp.wait_for(lambda d: next((n["stats"].get("foxglove_url") for n in d["nodes"]
                                      if n["id"] == "fox" and n.get("stats")), None), 15,
                      "the foxglove sink's URL")
    assert url.startswith("ws://127.0.0.1:")  # loopback by default
    with foxglove_client(url) as ws:
        assert ws.subprotocol == "foxglove.sdk.v1"
        info = json.loads(ws.recv(timeout=5))
        assert info["op"] == "serverInfo"
        channel = wait_for_channels(ws, {"/signals/main"}, 15)["/signals/main"]
        assert channel["encoding"] == "json" and channel["schemaEncoding"] == "jsonschema"
        schema = json.loads(channel["schema"])
        ws.send(json.dumps({"op": "subscribe",
                            "subscriptions": [{"id": 3, "channelId": channel["id"]}]}))
        got = receive(ws, 3, 100, 20)
    for log_time, message in got:
        jsonschema.validate(message, schema)
        t = message["timestamp"]
        assert message["ramp"] == pytest.approx(2 * np.sin(2 * np.pi * t), abs=1e-9)
        # the run's wall anchor, as recordings use it (float64 at 1.8e18 ns: 256 ns steps)
        assert log_time == pytest.approx((d["wall_anchor"] + t) * 1e9, abs=2e3)
    ts = np.array([m["timestamp"] for _, m in got])
    np.testing.assert_allclose(np.diff(ts), 0.01, atol=1e-9)  # consecutive samples, none lost
    # the same from outside: genki foxglove ADDRESS TOPIC attaches through lossy edges
    proc = subprocess.Popen([sys.executable, "-m", "genki_signals.cli", "foxglove", lp.address,
                             "signals", "--port", "0", "--duration", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env_with_tests_on_path(), start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert "genki foxglove: topology 'fox_live' (signals/) at ws://127.0.0.1:" in line, line
        with foxglove_client(line.rsplit(" at ", 1)[1].strip()) as ws:
            channel = wait_for_channels(ws, {"/signals/main"}, 15)["/signals/main"]
            ws.send(json.dumps({"op": "subscribe",
                                "subscriptions": [{"id": 1, "channelId": channel["id"]}]}))
            attached = receive(ws, 1, 50, 20)
        for _, message in attached:
            assert message["ramp"] == pytest.approx(2 * np.sin(2 * np.pi * message["timestamp"]),
                                                    abs=1e-9)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
