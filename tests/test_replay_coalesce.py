"""Full-speed replay coalesces frames and still gives the outputs of a paced replay bit for bit.

``record.coalesce`` joins consecutive frames of one topic (never across an event, a topic change
or a change of fields); the replay node does it at ``speed: max``. The process test replays one
recording through a stateful graph into a recorder twice, paced (frames as recorded) and as fast
as possible (coalesced), and compares every output sample.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from proc_helpers import REPO
from test_ops_registry import models  # noqa: F401 (the ONNX models fixture)
from test_record_replay import demo_frame, run_cli, write_demo_recording

from genki_signals.frames import Topic
from genki_signals.launch.spec import load_topology
from genki_signals.nodes.graph_node import GraphNodeLogic
from genki_signals.record import Recording, read_frames
from genki_signals.record.coalesce import CoalesceLimits, coalesce
from genki_signals.record.player import Played
from genki_signals.testing.streaming import assert_same_bits, random_splits, run_chunked

pytestmark = pytest.mark.timeout(60)


def played(topic: str, i: int, kind: str = "data") -> Played:
    return Played(topic, Topic.parse(topic).timeline, kind, demo_frame(i))


def concatenated(frames: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def assert_same_samples(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    assert list(a) == list(b), f"{what}: fields {list(a)} vs {list(b)}"
    for k, x in a.items():
        y = b[k]
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what} '{k}'"
        assert x.tobytes() == y.tobytes(), f"{what} '{k}' differs"


# ====================================================================== coalesce alone
def test_coalesce_joins_runs_of_one_topic_and_never_crosses_an_event_or_a_topic():
    seq = [played("s/main", i) for i in range(5)] + [played("s/events", 5, "event")] + \
        [played("s/main", i) for i in range(6, 8)] + [played("s/other", 8)] + \
        [played("s/main", 9)]
    out = coalesce(seq)
    assert [(p.topic, p.kind, len(p.frame["timestamp"])) for p in out] == [
        ("s/main", "data", 20), ("s/events", "event", 4), ("s/main", "data", 8),
        ("s/other", "data", 4), ("s/main", "data", 4)]
    assert_same_samples(out[0].frame, concatenated([p.frame for p in seq[:5]]), "joined")
    assert out[1] is seq[5] and out[3] is seq[8]


def test_coalesce_keeps_to_its_bounds_and_to_one_layout():
    seq = [played("s/main", i) for i in range(10)]
    sizes = [len(p.frame["timestamp"]) for p in coalesce(seq, CoalesceLimits(max_samples=12))]
    assert sizes == [12, 12, 12, 4]
    nbytes = sum(a.nbytes for a in seq[0].frame.values())  # one frame's bytes
    sizes = [len(p.frame["timestamp"]) for p in coalesce(seq, CoalesceLimits(
        max_bytes=2 * nbytes))]
    assert sizes == [8] * 5
    sizes = [len(p.frame["timestamp"]) for p in coalesce(seq, CoalesceLimits(max_span=0.1))]
    assert sizes == [8] * 5  # 4 samples at 100 Hz per frame: 8 samples span 0.07 s
    odd = played("s/main", 3)
    odd.frame["noise"] = odd.frame["noise"].astype(np.float32)  # another dtype
    ragged = played("s/main", 4)
    ragged.frame["x.timestamp"] = np.zeros(1)  # a companion timeline of another length
    out = coalesce([seq[0], seq[1], odd, seq[2], ragged, seq[5]])
    assert [len(p.frame["timestamp"]) for p in out] == [8, 4, 4, 4, 4]
    assert out[3] is ragged


def test_the_demo_graph_is_bit_exact_under_coalescing():
    """The demo graph on 4-sample frames and on coalesced frames: the same samples bit for bit
    (``MovingAverage`` included: its window sums do not depend on the chunking)."""
    ops = load_topology(REPO / "specs" / "demo.yaml").node("derived").params["operators"]
    frames = [demo_frame(i) for i in range(300)]
    joined = [p.frame for p in coalesce(
        [Played("signals/main", "main", "data", f) for f in frames],
        CoalesceLimits(max_samples=4 * 37))]
    assert len(joined) == 9

    def run(chunks):
        logic = GraphNodeLogic(ops, upstreams={"signals": []})
        outs: dict[str, list] = {}
        for frame in chunks:
            for out in logic.on_frame(Topic.parse("signals/main"), frame, 0.0):
                outs.setdefault(out.timeline, []).append(out.frame)
        return {t: concatenated(f) for t, f in outs.items()}

    small, big = run(frames), run(joined)
    assert set(small) == set(big) == {"main"}  # the spectrum is upsampled onto main
    assert "smooth_sample_rate" in small["main"]
    for t in small:
        assert_same_samples(small[t], big[t], f"coalesced vs 4-sample frames, {t}")


# ====================================================================== through processes
GRAPH = [
    {"type": "Sum", "inputs": ["sine_0", "sine_1"], "name": "composite"},
    {"type": "Sum", "inputs": ["composite", "noise"], "name": "wave"},
    {"type": "FourierTransform", "input": "wave", "name": "spectrum", "window_size": 32,
     "window_overlap": 16},
    {"type": "SampleRate", "input": "timestamp", "name": "rate"},
    {"type": "Differentiate", "input": "wave", "name": "slope"},
]


@pytest.mark.process
@pytest.mark.timeout(180)
def test_full_speed_coalesced_replay_equals_a_paced_replay_bit_for_bit(tmp_path):
    recording = tmp_path / "live.mcap"
    write_demo_recording(recording, frames=100)  # 4 s of 4-sample frames at 25 frames/s
    spec = {"name": "coalesce_check", "nodes": [
        {"id": "signals", "kind": "source", "params": {
            "type": "Sampler", "sample_rate": 100, "update_rate": 25,
            "sources": {"sine_0": {"type": "SineWave"}, "sine_1": {"type": "SineWave"},
                        "noise": {"type": "RandomNoise", "seed": 1}}}},
        {"id": "derived", "kind": "graph", "inputs": [{"node": "signals", "policy": "lossless"}],
         "params": {"operators": GRAPH}},
        {"id": "dashboard", "kind": "sink", "inputs": ["derived"],
         "params": {"type": "plot", "port": 0, "panels": ["wave"]}}]}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    runs = {}
    for label, speed in (("paced", "4"), ("max", "max")):  # paced: 4 s of recording in 1 s
        out = tmp_path / f"{label}.mcap"
        result = run_cli("replay", str(recording), str(spec_path), "--replace", "signals",
                         "--speed", speed, "--record", str(out), "--run-dir",
                         str(tmp_path / f"run_{label}"), "--no-progress", timeout=90)
        assert result.returncode == 0, result.stdout
        assert "every node has finished" in result.stdout, result.stdout
        left_out = "display nodes left out at full speed: dashboard"
        assert (left_out in result.stdout) == (speed == "max"), result.stdout
        runs[label] = read_frames(out)
    paced, fast = runs["paced"], runs["max"]
    # paced: the recorded 4-sample frames; full speed: fewer, larger frames
    assert {len(f["timestamp"]) for f in paced["signals/main"]} == {4}
    assert len(fast["signals/main"]) < len(paced["signals/main"]) / 10
    assert set(paced) == set(fast) and {"signals/main", "derived/main"} <= set(paced)
    for topic in paced:
        assert_same_samples(concatenated(paced[topic]), concatenated(fast[topic]),
                            f"paced vs full-speed replay, {topic}")
    with Recording(recording) as rec:  # and the raw samples are the recording's
        original = [m.decode().frame for m in rec.messages(["signals/"])]
    assert_same_samples(concatenated(original), concatenated(fast["signals/main"]),
                        "full-speed replay vs recording")


# ====================================================================== the operators
def coalescing_splits(n: int, rng: np.random.Generator) -> list[list[int]]:
    """Chunkings as a replay makes them: recorded frames of a few samples, then runs of them
    joined into frames of up to a limit (random here), and a few irregular ones."""
    splits = random_splits(n, rng, count=4)
    for _ in range(3):
        frame = int(rng.integers(1, 9))
        join = frame * int(rng.integers(2, 40))
        cuts = list(range(0, n, join)) + [n]
        splits.append([b - a for a, b in zip(cuts, cuts[1:])])
    return splits


def test_every_operator_is_bit_exact_across_chunkings(models):
    """Coalescing relies on chunking independence bit for bit, not only to the 1e-9 of
    ``assert_streams_like_batch``'s reference check: every registry case (the ONNX model
    operators included) on its input and on two random perturbations of it, in one batch and in
    random and replay-like chunkings, gives the same bytes (``np.array_equal`` and the bytes:
    NaN payloads and the sign of zero too)."""
    import functools

    from test_ops_registry import CASES

    rng = np.random.default_rng(16)
    checked = set()
    for name, cases in sorted(CASES.items()):
        for case in cases:
            make = functools.partial(case.make, models)
            base = case.inputs()
            for trial in range(3):
                # a random signal of the same kind: the case's input, randomly scaled
                inputs = base if trial == 0 else [
                    x * rng.uniform(0.5, 2.0) if x.dtype.kind == "f" and name not in KEEP_INPUT
                    else x for x in base]
                batch, batch_idx = run_chunked(make(), inputs, [len(inputs[0])])
                for lengths in coalescing_splits(len(inputs[0]), rng):
                    out, idx = run_chunked(make(), inputs, lengths)
                    assert np.array_equal(out, batch, equal_nan=out.dtype.kind in "fc"), \
                        f"{name}: chunking {lengths[:10]}... differs from one batch"
                    assert_same_bits(out, batch, f"{name}: chunking {lengths[:10]}...")
                    if batch_idx is not None:
                        assert np.array_equal(idx, batch_idx), f"{name}: emitted indices"
            checked.add(name)
    assert checked == set(CASES)


# inputs with a domain (unit quaternions, positive values, class probabilities): kept as they are
KEEP_INPUT = {"QuaternionToEuler", "GravityFromQuaternion", "Rotate", "Log", "EventTrigger"}
