"""Record and replay: the MCAP container, bad input, exports, in-process replay, the spec kinds,
and real processes (a live run replayed bit for bit, a recorder killed with SIGKILL, attach).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from genki_signals.bus.codec import encode
from genki_signals.cli import main
from genki_signals.errors import GenkiError
from genki_signals.launch.replay import replay_topology
from genki_signals.launch.spec import TopologySpecError, load_topology, parse_topology
from genki_signals.record import (
    Recorder,
    Recording,
    RecordingError,
    export_csv,
    export_npz,
    inspect_recording,
    load_buffers,
    load_recording,
    read_frames,
)
from genki_signals.record.format import pack_parts, unpack_parts
from genki_signals.record.player import Player, node_streams
from proc_helpers import REPO, LauncherProcess, env_with_tests_on_path

pytestmark = pytest.mark.timeout(60)


# ====================================================================== helpers
def demo_frame(i: int, n: int = 4) -> dict[str, np.ndarray]:
    ts = (np.arange(n) + i * n) / 100.0
    return {"timestamp": ts, "sine_0": 5 * np.sin(2 * np.pi * 3 * ts),
            "sine_1": 2 * np.sin(2 * np.pi * 7 * ts), "noise": np.random.default_rng(i).normal(size=n)}


def write_demo_recording(path: Path, frames: int = 200, *, chunk_size: int = 4096,
                         compression: str = "zstd", big: bool = False) -> list[list[bytes]]:
    """A recording of ``signals/main`` (and ``derived/main`` with a large field when ``big``)
    written as a node's messages would be; returns the messages' parts as bytes."""
    sent = []
    with Recorder(path, chunk_size=chunk_size, compression=compression, wall_anchor=1.7e9,
                  topology={"name": "t", "nodes": []}, metadata={"subject": "s01"}) as rec:
        for i in range(frames):
            parts = encode("signals/main", demo_frame(i), node_id="signals", seq=i,
                           publish_time=i * 0.04)
            rec.record_parts(parts, log_time=i * 0.04 + 0.001)
            sent.append([bytes(memoryview(p)) for p in parts])
            if big and i % 10 == 0:
                frame = {"timestamp": np.array([i * 0.04]),
                         "image": np.full((1, 100, 100), i, dtype=np.float32),  # 40 KB: own part
                         "label": np.array([b"cat"], dtype="S8")}
                parts = encode("derived/main", frame, node_id="derived", seq=i // 10,
                               publish_time=i * 0.04)
                rec.record_parts(parts, log_time=i * 0.04 + 0.002)
                sent.append([bytes(memoryview(p)) for p in parts])
    return sent


def stored(path: Path, topics=None) -> list[list[bytes]]:
    with Recording(path) as rec:
        return [[bytes(p) for p in m.parts] for m in rec.messages(topics)]


def assert_frames_identical(a: list[dict], b: list[dict], what: str) -> None:
    assert len(a) == len(b), f"{what}: {len(a)} frames vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        assert list(x) == list(y), f"{what} frame {i}: keys {list(x)} vs {list(y)}"
        for key in x:
            assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, \
                f"{what} frame {i} '{key}'"
            assert x[key].tobytes() == y[key].tobytes(), f"{what} frame {i} '{key}' differs"


# ====================================================================== the container
def test_parts_framing_round_trips_and_rejects_damage():
    parts = [b"a/main", b"\x80header", np.arange(5, dtype=np.float64)]
    data = pack_parts(parts)
    back = unpack_parts(data)
    assert [bytes(p) for p in back] == [b"a/main", b"\x80header", parts[2].tobytes()]
    for bad in (b"", b"\x01\x00\x00\x00", data[:-1], data + b"x", b"\xff" * 12):
        with pytest.raises(RecordingError):
            unpack_parts(bad)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_recording_stores_messages_byte_for_byte(tmp_path, compression):
    path = tmp_path / "run.mcap"
    sent = write_demo_recording(path, compression=compression, big=True)
    assert stored(path) == sent  # every part, the zero-copy 40 KB one included
    with Recording(path) as rec:
        assert rec.profile == "genki" and rec.metadata["genki.user"] == {"subject": "s01"}
        assert rec.wall_anchor_ns == 1_700_000_000_000_000_000
        assert rec.topology() == {"name": "t", "nodes": []}
        msgs = list(rec.messages(["derived/"]))
        assert rec.report.complete and not rec.report.damaged
        assert [m.topic for m in msgs] == ["derived/main"] * 20
        assert msgs[1].log_time == 1_700_000_000_000_000_000 + 402_000_000
        assert rec.metadata["genki.stats"]["frames"] == "220"
    # the mcap package's own indexed reader opens it too (the summary was written at close)
    from mcap.reader import make_reader

    with path.open("rb") as f:
        reader = make_reader(f)
        assert reader.get_summary().statistics.message_count == len(sent)
        topics = {ch.topic for ch in reader.get_summary().channels.values()}
        assert topics == {"signals/main", "derived/main"}


def test_recorder_counts_gaps_and_filters_topics(tmp_path):
    path = tmp_path / "gaps.mcap"
    with Recorder(path, topics=["a/"]) as rec:
        for seq in (0, 1, 2, 5, 6, 0):  # 2 lost, then a restart
            rec.record_parts(encode("a/main", {"timestamp": np.zeros(1)}, node_id="a", seq=seq))
        assert not rec.record_parts(encode("b/main", {"timestamp": np.zeros(1)}, node_id="b",
                                           seq=0))
        assert rec.stats()["record_gaps"] == 2 and rec.stats()["record_resets"] == 1
        with pytest.raises(RecordingError, match="not a bus message"):
            rec.record_parts([b"a/main", b"garbage"])
    assert len(stored(path)) == 6
    with pytest.raises(RecordingError, match="closed"):
        rec.record_parts(encode("a/main", {"timestamp": np.zeros(1)}, node_id="a", seq=7))


def test_unclosed_recording_keeps_every_flushed_chunk(tmp_path):
    """What a killed recorder leaves: complete chunks, no summary, maybe a torn record."""
    path = tmp_path / "open.mcap"
    rec = Recorder(path, flush_interval=60)
    for i in range(50):
        rec.record_frame("s/main", demo_frame(i), node_id="s")
    rec.flush()
    for i in range(50, 60):  # in the open chunk: lost with the process
        rec.record_frame("s/main", demo_frame(i), node_id="s")
    copy = tmp_path / "crashed.mcap"
    shutil.copy(path, copy)
    rec.close()
    with Recording(copy) as r:
        frames = [m.decode().frame for m in r.messages()]
        assert not r.report.complete and not r.report.damaged
    assert len(frames) == 50
    np.testing.assert_array_equal(frames[-1]["timestamp"], demo_frame(49)["timestamp"])


def test_flush_thread_bounds_the_loss_when_messages_stop(tmp_path):
    path = tmp_path / "idle.mcap"
    rec = Recorder(path, flush_interval=0.2)
    try:
        rec.record_frame("s/main", demo_frame(0), node_id="s")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with Recording(path) as r:
                if list(r.messages()):
                    break
        else:
            pytest.fail("the frame never reached the file while the stream was idle")
    finally:
        rec.close()


# ====================================================================== bad input
def test_truncated_recordings_give_a_clean_prefix(tmp_path):
    path = tmp_path / "full.mcap"
    sent = write_demo_recording(path, frames=300, big=True)
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    for size in np.linspace(9, len(data) - 1, 60).astype(int):
        cut.write_bytes(data[:size])
        with Recording(cut) as rec:
            got = [[bytes(p) for p in m.parts] for m in rec.messages()]
            assert got == sent[:len(got)], f"cut at {size}: not a prefix"
            assert not rec.report.corrupt_chunks and not rec.report.bad_messages
        if size > len(data) // 2:
            assert len(got) > 0


def test_corrupted_bytes_skip_a_chunk_and_count_it(tmp_path):
    path = tmp_path / "full.mcap"
    sent = write_demo_recording(path, frames=300, chunk_size=4096)
    data = bytearray(path.read_bytes())
    # flip bytes in the middle of the file: inside one chunk's compressed data
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    with Recording(bad) as rec:
        got = [[bytes(p) for p in m.parts] for m in rec.messages()]
        report = rec.report
    assert report.corrupt_chunks + report.resyncs >= 1, report
    assert 0 < len(got) < len(sent)
    assert all(m in sent for m in got)  # nothing invented
    # later chunks were still read: the last message is there
    assert got[-1] == sent[-1]
    assert "skipped" in report.describe() or "corrupt" in report.describe()


def test_a_damaged_record_header_resynchronises_on_the_next_chunk(tmp_path):
    path = tmp_path / "full.mcap"
    sent = write_demo_recording(path, frames=300, chunk_size=4096)
    data = bytearray(path.read_bytes())
    second = data.find(b"\x06", data.find(b"\x06", 40) + 1)  # not robust alone: verify below
    with Recording(path) as rec:
        chunks = []
        pos = 8
        while pos < len(data):
            op, length = int(data[pos]), int.from_bytes(data[pos + 1:pos + 9], "little")
            if op == 6:
                chunks.append(pos)
            if op == 0x0F:
                break
            pos += 9 + length
    assert len(chunks) > 5, second
    target = chunks[3]
    data[target + 1:target + 9] = (2**62).to_bytes(8, "little")  # absurd length
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    with Recording(bad) as rec:
        got = [[bytes(p) for p in m.parts] for m in rec.messages()]
        assert rec.report.resyncs == 1 and rec.report.skipped_bytes > 0
    assert got[-1] == sent[-1] and len(got) < len(sent)
    assert all(m in sent for m in got)


def test_random_damage_never_raises_and_never_invents(tmp_path):
    path = tmp_path / "full.mcap"
    sent = write_demo_recording(path, frames=120, chunk_size=2048, big=True)
    original = path.read_bytes()
    known = {tuple(m) for m in sent}
    rng = np.random.default_rng(7)
    bad = tmp_path / "fuzz.mcap"
    for trial in range(150):
        data = bytearray(original)
        for _ in range(rng.integers(1, 6)):
            pos = int(rng.integers(8, len(data)))
            data[pos] = int(rng.integers(0, 256))
        if trial % 3 == 0:
            data = data[:int(rng.integers(9, len(data)))]
        bad.write_bytes(bytes(data))
        try:
            rec = Recording(bad)
        except RecordingError:
            continue  # e.g. the header now names another profile: a clear refusal
        with rec:
            for m in rec.messages():
                assert tuple(bytes(p) for p in m.parts) in known
            _ = rec.span()


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"timestamp,x\n0.0,1.0\n", "not an MCAP file"),
    (bytes(range(256)) * 4, "not an MCAP file"),
])
def test_files_that_are_not_recordings_are_refused_clearly(tmp_path, content, message, capsys):
    path = tmp_path / "thing.mcap"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        Recording(path)
    assert main(["inspect", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_other_mcap_files_and_missing_files_are_refused(tmp_path, capsys):
    from mcap.writer import Writer

    path = tmp_path / "ros.mcap"
    with path.open("wb") as f:
        w = Writer(f)
        w.start(profile="ros1", library="someone-else")
        ch = w.register_channel("/imu", "json", 0)
        w.add_message(ch, 1, b"{}", 1)
        w.finish()
    with pytest.raises(RecordingError, match="not a genki recording.*'ros1'"):
        Recording(path)
    with pytest.raises(RecordingError, match="no such file"):
        Recording(tmp_path / "missing.mcap")
    with pytest.raises(RecordingError, match="not a recording"):
        Recording(tmp_path)  # a directory
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"nodes": [
        {"id": "signals", "kind": "source", "params": {"type": "Sampler", "sample_rate": 10,
                                                         "sources": {"x": {"type": "SineWave"}}}},
        {"id": "out", "kind": "sink", "inputs": ["signals"], "params": {"type": "null"}}]}))
    assert main(["replay", str(path), str(spec), "--replace", "signals"]) == 1
    assert "not a genki recording" in capsys.readouterr().err


def test_a_recording_with_nothing_usable_is_an_error(tmp_path):
    path = tmp_path / "full.mcap"
    write_demo_recording(path, frames=50, chunk_size=2048)
    data = bytearray(path.read_bytes())
    pos = 8
    while pos < len(data):  # damage the compressed data of every chunk
        op, length = int(data[pos]), int.from_bytes(data[pos + 1:pos + 9], "little")
        if op == 0x0F:
            break
        if op == 6:
            data[pos + 9 + length - 5] ^= 0xFF
        pos += 9 + length
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))
    with Recording(bad) as rec:
        with pytest.raises(RecordingError, match="nothing to replay for node 'signals'.*"
                                                 "corrupt chunks skipped"):
            Player(rec, "signals")
    with Recording(tmp_path / "full.mcap") as rec:
        with pytest.raises(RecordingError, match="nothing to replay for node 'mic'"):
            Player(rec, "mic")


# ====================================================================== replay logic
def test_player_paces_by_recorded_arrival_and_loops_with_shifted_time(tmp_path):
    path = tmp_path / "run.mcap"
    write_demo_recording(path, frames=100)  # frames every 40 ms, 4 s
    with Recording(path) as rec:
        fast = Player(rec, "signals")
        frames = []
        while not fast.done:
            frames += fast.due(0.0, 64)
        assert len(frames) == 100 and fast.duration == pytest.approx(3.96)
        paced = Player(rec, "signals", speed=2.0, start=1.0)  # frames from 1.0 s on
        paced.begin(10.0)
        first = paced.due(10.0, 1000)
        assert len(first) == 1 and first[0].frame["timestamp"][0] == pytest.approx(1.0)
        assert len(paced.due(10.5, 1000)) == 25  # 1 s of recording in 0.5 s
        looped = Player(rec, "signals", loop=True)
        out = []
        while len(out) < 250:
            out += looped.due(0.0, 64)
        ts = np.concatenate([p.frame["timestamp"] for p in out])
        assert np.all(np.diff(ts) > 0) and looped.pass_index == 2
        np.testing.assert_allclose(ts[400:404], ts[:4] + 4.0)  # one pass: 3.99 s + 0.01 s
        streams = node_streams(rec, "signals")
        assert list(streams) == ["timestamp", "sine_0", "sine_1", "noise"]
        assert streams["sine_0"][0] == "main"


def test_system_records_and_a_replay_source_reproduces_it_bit_for_bit(tmp_path):
    from genki_signals.buffers import DataBuffer
    from genki_signals.data_sources import RandomNoise, Sampler, SineWave
    from genki_signals.data_sources.replay import ReplaySource
    from genki_signals.demo import seed_derived_signals
    from genki_signals.system import System

    source = Sampler({"sine_0": SineWave(frequency=3, amplitude=5),
                      "sine_1": SineWave(frequency=7, amplitude=2),
                      "noise": RandomNoise(seed=1)}, sample_rate=200)
    path = tmp_path / "system.mcap"
    live = DataBuffer()
    system = System(source, seed_derived_signals(), recorder=path)
    with system:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            time.sleep(0.02)
            live.extend(system.read())
    data = load_recording(path)
    assert set(data) == {"source/main", "derived/main"}
    np.testing.assert_array_equal(data["source/main"]["sine_0"], live["sine_0"])
    replayed = DataBuffer()
    again = System(ReplaySource(path), seed_derived_signals())
    assert again.data_source.stream_names == ["sine_0", "sine_1", "noise"]
    with again:
        while again.is_active:
            replayed.extend(again.read())
    assert len(replayed["timestamp"]) == len(live["timestamp"]) > 50
    for key in live.keys():
        assert replayed[key].tobytes() == live[key].tobytes(), key


def test_exports_to_arrays_buffers_npz_and_csv(tmp_path):
    path = tmp_path / "run.mcap"
    write_demo_recording(path, frames=30, big=True)
    data = load_recording(path)
    expected = np.concatenate([demo_frame(i)["sine_0"] for i in range(30)])
    np.testing.assert_array_equal(data["signals/main"]["sine_0"], expected)
    assert data["derived/main"]["image"].shape == (3, 100, 100)
    assert data["derived/main"]["label"].tolist() == [b"cat"] * 3
    assert len(read_frames(path, ["signals/"])["signals/main"]) == 30
    buffers = load_buffers(path)
    np.testing.assert_array_equal(buffers["signals/main"]["sine_0"], expected)
    npz = export_npz(path, tmp_path / "run.npz")
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["signals/main/sine_0"], expected)
        assert z["derived/main/image"].dtype == np.float32
    files = export_csv(path, tmp_path / "csv", ["signals/"])
    assert [f.name for f in files] == ["signals__main.csv"]
    rows = files[0].read_text().splitlines()
    assert rows[0] == "timestamp,sine_0,sine_1,noise" and len(rows) == 121
    assert float(rows[5].split(",")[1]) == expected[4]  # repr round-trips float64
    assert main(["export", str(path), "--npz", str(tmp_path / "cli.npz"), "--csv",
                 str(tmp_path / "cli_csv"), "--no-progress"]) == 0
    assert (tmp_path / "cli_csv" / "derived__main.csv").exists()


def test_inspect_reports_topics_rates_and_gaps(tmp_path, capsys):
    path = tmp_path / "run.mcap"
    with Recorder(path) as rec:
        for i in range(100):
            if 40 <= i < 45:
                continue  # 5 frames lost: a sequence gap and a time gap
            rec.record_parts(encode("signals/main", demo_frame(i), node_id="signals", seq=i,
                                    publish_time=i * 0.04), log_time=i * 0.04)
    s = inspect_recording(path)
    t = s.topics["signals/main"]
    assert (t.frames, t.samples, t.seq_gaps, t.time_gaps) == (95, 380, 5, 1)
    assert t.sample_rate == pytest.approx(100.0) and t.max_gap == pytest.approx(0.21)
    assert t.frame_rate == pytest.approx(94 / 3.96)
    assert main(["inspect", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "signals/main" in out and "seq gaps" in out and "sine_0: float64" in out
    assert main(["inspect", str(path), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["topics"]["signals/main"]["seq_gaps"] == 5


# ====================================================================== specs
def test_recorder_and_replay_kinds_are_validated(tmp_path):
    rec_path = tmp_path / "run.mcap"
    write_demo_recording(rec_path, frames=20)
    spec = parse_topology({"name": "r", "nodes": [
        {"id": "signals", "kind": "replay", "params": {"path": str(rec_path), "speed": "max"}},
        {"id": "sum", "kind": "graph", "inputs": ["signals"], "params": {"operators": [
            {"type": "Sum", "inputs": ["sine_0", "sine_1"], "name": "s"}]}},
        {"id": "rec", "kind": "recorder", "inputs": ["signals", "sum"],
         "params": {"path": "out.mcap", "topics": ["sum/"], "flush_interval": 0.25}}]},
        path=tmp_path / "spec.yaml")
    assert spec.output_streams("signals") == ["timestamp", "sine_0", "sine_1", "noise"]
    assert [e.policy for e in spec.node("rec").inputs] == ["lossless", "lossless"]
    assert parse_topology(spec.to_dict(), path=spec.path) == spec
    with pytest.raises(TopologySpecError) as err:
        parse_topology({"name": "bad", "nodes": [
            {"id": "signals", "kind": "replay",
             "params": {"path": str(rec_path), "node": "mic", "speed": 0}},
            {"id": "other", "kind": "replay", "params": {"path": str(tmp_path / "none.mcap")}},
            {"id": "rec", "kind": "recorder", "inputs": ["other"],
             "params": {"path": str(tmp_path), "topics": ["x/"], "compression": "rar",
                        "flush_interval": 0, "colour": 1}}]})
    problems = str(err.value)
    for text in ("node 'signals': field 'params.speed': must be a number > 0 or 'max'",
                 "node 'other': field 'params.path': ", "none.mcap' does not exist",
                 "node 'rec': field 'params.path': ", "is a directory",
                 "field 'params.compression': must be one of zstd, lz4, none",
                 "field 'params.flush_interval'", "field 'params.colour': unknown field"):
        assert text in problems, problems
    with pytest.raises(TopologySpecError, match=r"field 'params.topics\[0\]': 'x/' matches "
                                                r"no topic"):
        parse_topology({"nodes": [
            {"id": "other", "kind": "replay", "params": {"path": str(rec_path)}},
            {"id": "rec", "kind": "recorder", "inputs": ["other"],
             "params": {"path": str(tmp_path / "out.mcap"), "topics": ["x/"]}}]})
    with pytest.raises(TopologySpecError, match="holds no frames of node 'mic'.*recorded "
                                                "nodes: signals"):
        parse_topology({"nodes": [{"id": "x", "kind": "replay",
                                   "params": {"path": str(rec_path), "node": "mic"}}]})


def test_replace_rewrites_edges_and_guards_the_recording(tmp_path):
    rec_path = tmp_path / "live.mcap"
    write_demo_recording(rec_path, frames=20)
    spec_data = yaml.safe_load((REPO / "specs" / "demo.yaml").read_text())
    spec_data["nodes"].append({"id": "rec", "kind": "recorder", "inputs": ["signals"],
                               "params": {"path": "live.mcap"}})
    spec_path = tmp_path / "demo.yaml"
    spec_path.write_text(yaml.safe_dump(spec_data))
    spec = load_topology(spec_path)
    with pytest.raises(GenkiError, match="recorder 'rec' would write over"):
        replay_topology(spec, rec_path, ["signals"])
    spec_data["nodes"][-1]["params"]["path"] = "other.mcap"
    spec_path.write_text(yaml.safe_dump(spec_data))
    spec = load_topology(spec_path)
    with pytest.raises(GenkiError, match="has no node 'mic'"):
        replay_topology(spec, rec_path, ["mic"])
    with pytest.raises(GenkiError, match="is a sink and publishes nothing"):
        replay_topology(spec, rec_path, ["printer"])
    plan = replay_topology(spec, rec_path, ["signals"], record=tmp_path / "out.mcap")
    new = plan.spec
    assert new.name == "demo-replay" and new.node("signals").kind == "replay"
    assert new.node("printer").inputs[0].policy == "lossless"  # downstream at full speed
    assert plan.node_extra == {"derived": {"max_lag": None}, "printer": {"max_lag": None},
                               "rec": {"max_lag": None}}
    # full speed: the display node is left out, and the notes say so, unless asked for
    assert "dashboard" not in [n.id for n in new.nodes]
    assert any("display nodes left out at full speed: dashboard" in n for n in plan.notes)
    shown = replay_topology(spec, rec_path, ["signals"], with_display=True)
    assert shown.spec.node("dashboard").inputs[0].policy == "lossless"
    assert "dashboard" in shown.node_extra and not any("display" in n for n in shown.notes)
    assert {e.node for e in new.node("replay_recorder").inputs} == {"signals", "derived"}
    paced = replay_topology(spec, rec_path, ["signals"], speed=1.0)
    assert paced.spec.node("derived").inputs[0].policy == "lossless"  # fed by the replay
    assert paced.spec.node("printer").inputs[0].policy == "drop_oldest"  # as declared
    assert paced.node_extra == {}
    assert paced.spec.node("dashboard").kind == "sink"  # paced: kept
    out = tmp_path / "rewritten.yaml"
    assert main(["replay", str(rec_path), str(spec_path), "--replace", "signals",
                 "--write-spec", str(out), "--no-run"]) == 0
    assert load_topology(out).node("signals").params["speed"] == "max"


# ====================================================================== processes
def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "genki_signals.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env_with_tests_on_path(), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"genki {' '.join(args)} did not finish:\n{out}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def demo_with_recorder(tmp_path: Path, name: str = "demo_live") -> Path:
    spec = yaml.safe_load((REPO / "specs" / "demo.yaml").read_text())
    spec["name"] = name
    spec["nodes"].append({"id": "rec", "kind": "recorder", "inputs": ["signals", "derived"],
                          "params": {"path": "live.mcap", "metadata": {"subject": "s01"}}})
    path = tmp_path / "demo_live.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.process
@pytest.mark.timeout(120)
def test_replay_reproduces_the_live_derived_outputs_bit_for_bit(tmp_path, launcher_factory):
    live_spec = demo_with_recorder(tmp_path)
    lp = launcher_factory(live_spec, "--duration", "3")
    assert lp.wait_exit(timeout=60) == 0, lp.output
    live = read_frames(tmp_path / "live.mcap")
    n_raw, n_derived = len(live["signals/main"]), len(live["derived/main"])
    assert n_raw >= 50 and n_derived >= n_raw - 10, lp.output  # stopped with frames in flight
    with Recording(tmp_path / "live.mcap") as rec:
        assert rec.topology()["name"] == "demo_live"
        assert json.loads(rec.metadata["genki.nodes"]["derived"])["kind"] == "graph"
    # raw frames from sample 0: the recorder's lossless edge was in place before the first one
    assert live["signals/main"][0]["timestamp"][0] == pytest.approx(
        live["derived/main"][0]["timestamp"][0])
    # (two full-speed replays give the same outputs: test_replay_coalesce compares a paced and
    # a full-speed replay sample for sample; one replay here is enough)
    out = tmp_path / "replay.mcap"
    result = run_cli("replay", str(tmp_path / "live.mcap"), str(REPO / "specs" / "demo.yaml"),
                     "--replace", "signals", "--record", str(out), "--run-dir",
                     str(tmp_path / "replay_run"), "--no-progress",
                     "--coalesce", "0")  # the recorded frames, compared frame by frame
    assert result.returncode == 0, result.stdout
    assert "every node has finished" in result.stdout, result.stdout
    first = read_frames(out)
    assert_frames_identical(first["signals/main"], live["signals/main"], "replayed raw")
    assert len(first["derived/main"]) >= n_derived
    assert_frames_identical(first["derived/main"][:n_derived], live["derived/main"],
                            "replayed derived vs live")
    # paced, from an offset: 2 s of recording at 4x take about 0.5 s
    out = tmp_path / "paced.mcap"
    result = run_cli("replay", str(tmp_path / "live.mcap"), str(REPO / "specs" / "demo.yaml"),
                     "--replace", "signals", "--speed", "4", "--start", "1", "--record",
                     str(out), "--run-dir", str(tmp_path / "paced_run"), "--no-progress")
    assert result.returncode == 0, result.stdout
    with Recording(out) as rec:
        msgs = [m for m in rec.messages(["signals/"]) if m.decode().kind == "data"]
    span = (msgs[-1].log_time - msgs[0].log_time) / 1e9
    recorded_span = (len(live["signals/main"]) - 1) * 0.04 - 1.0
    assert recorded_span / 4 * 0.5 < span < recorded_span / 4 + 1.0, span  # not all at once
    t0 = live["signals/main"][0]["timestamp"][0]
    assert msgs[0].decode().frame["timestamp"][0] == pytest.approx(t0 + 1.0, abs=0.05)
    skipped = len(live["signals/main"]) - len(msgs)  # the recorded frames from the offset on
    assert_frames_identical([m.decode().frame for m in msgs], live["signals/main"][skipped:],
                            "paced replay from 1 s vs live")


@pytest.mark.process
@pytest.mark.timeout(90)
def test_a_recorder_killed_with_sigkill_leaves_a_readable_file(tmp_path, launcher_factory):
    spec = tmp_path / "crash.yaml"
    spec.write_text(yaml.safe_dump({"name": "crash_test", "nodes": [
        {"id": "signals", "kind": "source",
         "params": {"type": "Sampler", "sample_rate": 200, "update_rate": 50,
                    "sources": {"x": {"type": "SineWave", "frequency": 2}}}},
        {"id": "victim", "kind": "recorder", "inputs": ["signals"], "restart": "never",
         "params": {"path": "victim.mcap", "flush_interval": 0.5}},
        {"id": "witness", "kind": "recorder", "inputs": ["signals"],
         "params": {"path": "witness.mcap"}}]}))
    lp = launcher_factory(spec)
    d = lp.wait_ready()
    victim = next(n for n in d["nodes"] if n["id"] == "victim")
    time.sleep(2.5)
    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.monotonic() - d["clock_origin"]  # topology time of the kill
    time.sleep(1.0)
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 1, lp.output  # a node failed: the run says so
    assert "node 'victim' killed by signal SIGKILL" in lp.output
    with Recording(tmp_path / "victim.mcap") as rec:  # opens: no summary, maybe a torn tail
        anchor = rec.wall_anchor_ns
        got = list(rec.messages())
        assert not rec.report.complete
        assert not (rec.report.corrupt_chunks or rec.report.bad_messages)
    witness = stored(tmp_path / "witness.mcap")
    assert len(got) >= 50
    assert [[bytes(p) for p in m.parts] for m in got] == witness[:len(got)]  # no garbage
    seqs = [m.decode().seq for m in got]
    assert seqs == list(range(len(got)))
    last = (got[-1].log_time - anchor) / 1e9
    assert last >= killed_at - 1.0, f"lost {killed_at - last:.2f} s before the kill"
    assert main(["inspect", str(tmp_path / "victim.mcap"), "--no-progress"]) == 0


@pytest.mark.process
@pytest.mark.timeout(90)
def test_genki_record_attaches_to_a_running_topology(tmp_path, launcher_factory):
    lp = launcher_factory(REPO / "specs" / "demo.yaml")
    lp.wait_ready()
    lp.wait_for(lambda d: "derived/main" in d["topics"], 15, "derived/main published")
    out = tmp_path / "attached.mcap"
    result = run_cli("record", lp.address, "-o", str(out), "--duration", "1.5", "--meta",
                     "operator=test", "--no-progress")
    assert result.returncode == 0, result.stdout
    assert "signals (drop_oldest), derived (drop_oldest)" in result.stdout  # never stalls it
    assert "stopped: duration of 1.5 s reached" in result.stdout
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0
    summary = inspect_recording(out)
    assert set(summary.topics) == {"signals/main", "derived/main"}
    for t in summary.topics.values():
        assert t.frames >= 25 and t.seq_gaps == 0 and t.time_gaps == 0
        assert t.sample_rate == pytest.approx(100.0, rel=1e-3)
    assert summary.metadata["genki.user"] == {"operator": "test"}
    assert summary.metadata["genki.recording"]["recorder"] == "attach"
    with Recording(out) as rec:
        assert rec.topology()["name"] == "demo"

