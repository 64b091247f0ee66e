"""Checkpoints of a node (``nodes/checkpoint.py``), without processes: the file, the schedule,
the graph node's state and the runner-side checkpointer.

The process-level test (kill -9 of a graph node, restart, recorded output equal to an uncrashed
run) is ``tests/test_crash_resume.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from genki_signals.bus.codec import decode, encode
from genki_signals.errors import GraphError
from genki_signals.frames import Topic
from genki_signals.nodes.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointParams,
    CheckpointSchedule,
    CheckpointStore,
    NodeCheckpointer,
    checkpoint_path,
    checkpoint_settings,
)
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.graph_node import GraphNodeLogic
from genki_signals.nodes.merge import feeder_for

RATE = 100.0


def chain_specs(gru_path) -> list[dict]:
    """Butterworth -> moving average -> GRU: the stateful chain of the crash acceptance test."""
    return [
        {"type": "LowPass", "input": "v", "cutoff": 10.0, "sample_rate": RATE, "order": 4,
         "name": "lp"},
        {"type": "MovingAverage", "input": "lp", "length": 8, "name": "ma"},
        {"type": "Inference", "input": "ma", "model": str(gru_path), "stateful": True,
         "name": "gru"},
    ]


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    from genki_signals.testing.onnx_builders import make_gru

    path = tmp_path_factory.mktemp("ckpt_models") / "gru.onnx"
    make_gru(path, features=2, hidden=8, classes=3, seed=5)
    return path


def signal_frames(n_frames: int, size: int = 10, seed: int = 0, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    v = np.cumsum(rng.normal(size=(n_frames * size, 2)), axis=0) * 0.1
    t = offset + np.arange(n_frames * size) / RATE
    return [{"timestamp": t[i:i + size], "v": v[i:i + size]}
            for i in range(0, n_frames * size, size)]


def outputs_of(logic, topic, frames):
    out = []
    for f in frames:
        out += [(o.timeline, {k: v.tobytes() for k, v in o.frame.items()})
                for o in logic.on_frame(Topic.parse(topic), f, now=0.0)]
    return out


# ------------------------------------------------------------------------- the file
def test_store_round_trips_and_replaces_atomically(tmp_path):
    store = CheckpointStore(checkpoint_path(tmp_path, "g"))
    assert store.load() is None
    ck = Checkpoint(node="g", consumed={"src/main": 41}, epochs={"src": 2**62},
                    lineage={"epoch": 5, "next_seq": {"g/main": 42}},
                    state={"w": np.arange(3.0)}, frames=42, written=1.5)
    nbytes = store.save(ck)
    assert nbytes == os.path.getsize(tmp_path / "g.checkpoint") and store.writes == 1
    back = store.load()
    assert back.consumed == {"src/main": 41} and back.epochs == {"src": 2**62}
    assert back.lineage == {"epoch": 5, "next_seq": {"g/main": 42}}
    assert back.state["w"].tobytes() == np.arange(3.0).tobytes() and back.frames == 42
    assert oct(os.stat(store.path).st_mode & 0o777) == "0o600"
    # a crash while writing the next one leaves a stray temporary file: the old one is read
    (tmp_path / "g.checkpoint.tmp").write_bytes(b"GENKI-CHECKPOINT 1\n\0\0")
    assert store.load().frames == 42
    store.save(Checkpoint(node="g", frames=43))
    assert store.load().frames == 43 and not (tmp_path / "g.checkpoint.tmp").exists()


def test_damaged_or_foreign_files_are_refused_naming_the_file(tmp_path):
    store = CheckpointStore(tmp_path / "g.checkpoint")
    store.save(Checkpoint(node="g", state={"x": np.zeros(100)}, frames=1))
    data = bytearray(store.path.read_bytes())
    data[-7] ^= 0x01  # one flipped bit in the body
    store.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checkpoint '.*g\.checkpoint': damaged \(CRC"):
        store.load()
    store.path.write_bytes(b'{"json": "not a checkpoint"}')
    with pytest.raises(CheckpointError, match=r"g\.checkpoint': not a genki checkpoint"):
        store.load()
    store.path.write_bytes(store.path.read_bytes()[:3])
    with pytest.raises(CheckpointError, match="bad magic"):
        store.load()


def test_schedule_every_frames_or_seconds_and_never_when_idle():
    sched = CheckpointSchedule(every_frames=3, every_seconds=10.0)
    assert not sched.due(1e9)  # nothing consumed: nothing to write
    sched.consumed(2)
    assert not sched.due(sched._last + 1.0)
    sched.consumed(1)
    assert sched.due(sched._last + 1.0)
    sched.done(100.0)
    sched.consumed(1)
    assert not sched.due(109.0) and sched.due(110.0)


def test_settings_default_to_lossless_inputs():
    from genki_signals.nodes.kinds.graph import GraphParams

    p = GraphParams(operators=({"type": "Abs", "input": "x"},))
    assert checkpoint_settings(p, lossless_inputs=False) is None
    assert checkpoint_settings(p, lossless_inputs=True) == {"every_frames": 50,
                                                            "every_seconds": 0.5}
    p = GraphParams(operators=(), checkpoint=CheckpointParams(enabled=True, every_frames=7))
    assert checkpoint_settings(p, lossless_inputs=False)["every_frames"] == 7
    assert checkpoint_settings(object(), lossless_inputs=True) is None


def test_spec_field_is_checked():
    from genki_signals.nodes.kinds.graph import GraphParams
    from genki_signals.params import parse

    _, problems = parse(GraphParams, {"operators": [], "checkpoint": {"every_frames": 0,
                                                                      "every_second": 1}},
                        "params")
    paths = {p.path for p in problems}
    assert "params.checkpoint.every_frames" in paths and any("every_second" in p.path or
                                                             "every_second" in p.message
                                                             for p in problems)


# ------------------------------------------------------------- the graph node's state
def test_graph_node_resumes_its_chain_bit_for_bit(gru, tmp_path):
    frames = signal_frames(30)
    whole = outputs_of(GraphNodeLogic(chain_specs(gru), {"src": ["timestamp", "v"]}),
                       "src/main", frames)
    first = GraphNodeLogic(chain_specs(gru), {"src": ["timestamp", "v"]})
    head = outputs_of(first, "src/main", frames[:13])
    store = CheckpointStore(tmp_path / "g.checkpoint")
    store.save(Checkpoint(node="g", state=first.state_dict()))
    resumed = GraphNodeLogic(chain_specs(gru), {"src": ["timestamp", "v"]})
    resumed.load_state_dict(store.load().state)
    tail = outputs_of(resumed, "src/main", frames[13:])
    assert head + tail == whole
    assert len(whole) == 30 and {t for t, _ in whole} == {"main"}


def test_graph_node_with_two_inputs_restores_each_sub_graph(tmp_path):
    ops = [{"type": "LowPass", "input": "a", "cutoff": 5.0, "sample_rate": RATE, "name": "la"},
           {"type": "Integrate", "input": "b", "name": "ib"}]
    up = {"p": ["timestamp", "a"], "q": ["timestamp", "b"]}
    fa = [{"timestamp": f["timestamp"], "a": f["v"]} for f in signal_frames(10, seed=1)]
    fb = [{"timestamp": f["timestamp"], "b": f["v"]} for f in signal_frames(10, seed=2)]

    def run(logic, pairs):
        return [o for topic, f in pairs for o in outputs_of(logic, topic, [f])]

    pairs = [(t, f) for i in range(10) for t, f in (("p/main", fa[i]), ("q/main", fb[i]))]
    whole = run(GraphNodeLogic(ops, up), pairs)
    first = GraphNodeLogic(ops, up)
    head = run(first, pairs[:7])  # p seen 4 times, q 3 times
    resumed = GraphNodeLogic(ops, up)
    resumed.load_state_dict(Checkpoint.from_bytes(
        Checkpoint(node="g", state=first.state_dict()).to_bytes()).state)
    assert head + run(resumed, pairs[7:]) == whole
    # only p seen: q's operator stays pending and is built fresh on q's first frame
    early = GraphNodeLogic(ops, up)
    run(early, pairs[:1])
    late = GraphNodeLogic(ops, up)
    late.load_state_dict(early.state_dict())
    assert run(late, pairs[1:]) == run(early, pairs[1:])


def test_graph_node_refuses_a_state_of_another_graph(gru):
    logic = GraphNodeLogic(chain_specs(gru), {"src": []})
    outputs_of(logic, "src/main", signal_frames(2))
    state = logic.state_dict()
    other = GraphNodeLogic([{"type": "Abs", "input": "v", "name": "lp"}], {"src": []})
    with pytest.raises(GraphError, match=r"names operator\(s\) this node does not have.*ma"):
        other.load_state_dict(state)
    with pytest.raises(GraphError, match="before its first frame"):
        logic.load_state_dict(state)


# ------------------------------------------------------------------ the runner's side
def _messages(topic, frames, first_seq=0):
    node = Topic.parse(topic).node
    return [decode(encode(topic, f, node_id=node, seq=first_seq + i))
            for i, f in enumerate(frames)]


def test_checkpointer_restores_and_records_what_a_resume_needs(gru, tmp_path):
    """What a runner does around a crash, step by step, with the real feeder and store: the
    upstream resends from the frame after the checkpoint (``resume_lineage``)."""
    from genki_signals.nodes.runner import resume_lineage

    cfg = NodeConfig(id="g", kind="graph", params={}, control_endpoint="ipc://x",
                     extra={"run_dir": str(tmp_path),
                            "checkpoint": {"every_frames": 5, "every_seconds": 60.0}})
    msgs = _messages("src/main", signal_frames(20))
    whole = outputs_of(GraphNodeLogic(chain_specs(gru), {"src": []}), "src/main",
                       [m.frame for m in msgs])

    def step(ckptr, feeder, logic, msg, out, first_out_seq):
        feeder.receive(Topic.parse(msg.topic), msg, 0.0)
        for what, topic, frame in feeder.ready(0.0):
            ckptr.consumed(1)
            out += outputs_of(logic, str(topic), [frame])
        lineage = {"epoch": 77, "next_seq": {"g/main": first_out_seq + len(out)}}
        return ckptr.after(feeder.consumed, lineage, {"src": 1234})

    logic = GraphNodeLogic(chain_specs(gru), {"src": []})
    ckptr = NodeCheckpointer.for_config(cfg, logic)
    assert ckptr.restore() is None
    feeder, out = feeder_for("merged", ["src"], max_lag=None), []
    written = [step(ckptr, feeder, logic, m, out, 0) for m in msgs[:13]]
    # one input: each frame is released at once (the watermark is its own last timestamp)
    assert [c.consumed for c in written if c] == [{"src/main": 4}, {"src/main": 9}]
    assert ckptr.store.load().lineage == {"epoch": 77, "next_seq": {"g/main": 10}}
    # crash here: frames 10..12 were computed (and published) after the last checkpoint
    logic2 = GraphNodeLogic(chain_specs(gru), {"src": []})
    ckptr2 = NodeCheckpointer.for_config(cfg, logic2)
    ck = ckptr2.restore()
    assert ck.consumed == {"src/main": 9} and ck.frames == 10 and ck.epochs == {"src": 1234}
    want = resume_lineage(ck, "src")
    assert (want.epoch, dict(want.next_seq)) == (1234, {"src/main": 10})
    assert resume_lineage(ck, "other") is None
    feeder2, out2 = feeder_for("merged", ["src"], max_lag=None), []
    for m in msgs[10:]:  # the upstream resends from seq 10
        step(ckptr2, feeder2, logic2, m, out2, 10)
    ckptr2.after(feeder2.consumed, None, {}, force=True)
    assert out[:10] + out2 == whole  # frames 10..12 computed again, identically
    assert out[10:13] == out2[:3]
    last = ckptr2.store.load()
    assert last.consumed == {"src/main": 19} and ckptr2.frames == 20
    assert last.epochs == {"src": 1234}  # kept from the restored checkpoint


def test_logic_without_state_is_not_checkpointed(tmp_path):
    from genki_signals.nodes.sinks import NullSinkLogic

    cfg = NodeConfig(id="n", kind="sink", params={}, control_endpoint="ipc://x",
                     extra={"run_dir": str(tmp_path), "checkpoint": {"every_frames": 1}})
    assert NodeCheckpointer.for_config(cfg, NullSinkLogic()) is None
