"""Node logic classes without any process or socket: set inputs, call, check outputs."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.bus.codec import decode, encode, encode_eos
from genki_signals.data_sources import Sampler, SineWave
from genki_signals.errors import GraphError
from genki_signals.frames import Topic
from genki_signals.graph import SignalGraph
from genki_signals.nodes.aligner_node import AlignerNodeLogic
from genki_signals.nodes.config import topic_for
from genki_signals.nodes.graph_node import GraphNodeLogic
from genki_signals.nodes.logic import NodeLogic, check_input_mode
from genki_signals.nodes.merge import TimestampMerger, feeder_for
from genki_signals.nodes.recorder_node import RecorderNodeLogic
from genki_signals.nodes.replay_node import ReplayNodeLogic
from genki_signals.nodes.sinks import BufferSinkLogic, CsvSinkLogic, NullSinkLogic, \
    PrinterSinkLogic
from genki_signals.nodes.source_node import SourceNodeLogic
from genki_signals.testing.frames import frames
from genki_signals.plot.node import PlotSinkLogic


def test_merger_releases_in_timestamp_order_whatever_the_arrival_order():
    a = frames(20, t0=0.0, seed=1)
    b = frames(20, t0=0.013, seed=2)
    expected = sorted([("a", f) for f in a] + [("b", f) for f in b],
                      key=lambda x: x[1]["timestamp"][-1])
    for seed in range(5):
        rng = np.random.default_rng(seed)
        # arrival: each input in its own order, interleaved at random
        queue_a, queue_b, released = list(a), list(b), []
        merger = TimestampMerger(["a", "b"], max_lag=None)
        while queue_a or queue_b:
            take_a = queue_a and (not queue_b or rng.random() < 0.5)
            name, q = ("a", queue_a) if take_a else ("b", queue_b)
            merger.push(name, q.pop(0))
            released += [(n, f) for n, _, f in merger.pop_ready()]
        merger.end("a")
        merger.end("b")
        released += [(n, f) for n, _, f in merger.pop_ready()]
        assert [(n, f["timestamp"][-1]) for n, f in released] == \
            [(n, f["timestamp"][-1]) for n, f in expected]


def test_merger_live_releases_a_silent_input_after_max_lag_and_counts_it():
    merger = TimestampMerger(["a", "b"], max_lag=0.5)
    merger.push("a", frames(1)[0], arrival=10.0)
    assert merger.pop_ready(now=10.2) == []  # b might still deliver something earlier
    assert len(merger.pop_ready(now=10.6)) == 1
    assert merger.late_releases == 1


def test_source_logic_publishes_what_the_source_produced():
    logic = SourceNodeLogic(Sampler({"x": SineWave(frequency=2)}, sample_rate=200),
                            update_rate=50)
    logic.start()
    try:
        import time
        time.sleep(0.1)
        outs = logic.poll(now=0.0)
    finally:
        logic.close()
    assert len(outs) == 1 and outs[0].timeline == "main"
    f = outs[0].frame
    assert len(f["timestamp"]) >= 10
    np.testing.assert_allclose(f["x"], np.sin(2 * np.pi * 2 * f["timestamp"]), atol=1e-12)
    assert not logic.finished  # a live sampler never ends


def test_graph_logic_equals_signal_graph_and_publishes_derived_streams_only():
    ops = [s.Sum("x", "y", name="xy"), s.MovingAverage("xy", length=3, name="smooth"),
           s.FourierTransform("x", name="spec", window_size=8, window_overlap=4,
                              upsample=False)]
    logic = GraphNodeLogic([op.to_dict() for op in ops], upstreams={"src": ["timestamp", "x",
                                                                              "y"]})
    reference = SignalGraph([type(op).from_dict(op.to_dict()) for op in ops])
    got_main, got_spec = [], []
    for f in frames(10, keys=("x", "y")):
        expected = reference.process(f)
        for out in logic.on_frame(Topic("src"), f, now=0.0):
            (got_main if out.timeline == "main" else got_spec).append((out, expected))
    for out, expected in got_main:
        assert set(out.frame) == {"timestamp", "xy", "smooth"}
        np.testing.assert_array_equal(out.frame["smooth"], expected["smooth"])
    assert got_spec and all(o.timeline == "spec" for o, _ in got_spec)
    for out, expected in got_spec:
        np.testing.assert_array_equal(out.frame["timestamp"], expected["spec.timestamp"])


def test_graph_logic_rejects_operators_mixing_two_inputs():
    with pytest.raises(GraphError, match="Sum 'ab' reads a, b"):
        GraphNodeLogic([s.Sum("x", "y", name="ab").to_dict()],
                       upstreams={"a": ["timestamp", "x"], "b": ["timestamp", "y"]})


def test_graph_logic_with_two_inputs_runs_each_operator_on_its_input():
    logic = GraphNodeLogic([s.Abs("x", name="ax").to_dict(), s.Abs("y", name="ay").to_dict()],
                           upstreams={"a": ["timestamp", "x"], "b": ["timestamp", "y"]})
    fa, fb = frames(1, keys=("x",))[0], frames(1, keys=("y",), seed=3)[0]
    out_a = logic.on_frame(Topic("a"), fa, now=0.0)
    out_b = logic.on_frame(Topic("b"), fb, now=0.0)
    assert [o.timeline for o in out_a] == ["a"] and [o.timeline for o in out_b] == ["b"]
    np.testing.assert_array_equal(out_a[0].frame["ax"], np.abs(fa["x"]))
    np.testing.assert_array_equal(out_b[0].frame["ay"], np.abs(fb["y"]))


def test_printer_prints_every_nth_frame():
    buf = io.StringIO()
    logic = PrinterSinkLogic(keys=["x"], every=3, stream=buf)
    for f in frames(7):
        logic.on_frame(Topic("src"), f, now=0.0)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and all(ln.startswith("src/main t=") and "x=" in ln for ln in lines)


def test_csv_sink_writes_every_sample_with_nd_columns(tmp_path):
    logic = CsvSinkLogic(tmp_path / "out.csv")
    logic.start()
    fs = frames(3, keys=("x",))
    for f in fs:
        f["v"] = np.stack([f["x"], -f["x"]], axis=1)
        logic.on_frame(Topic("src"), f, now=0.0)
    logic.close()
    rows = list(csv.reader((tmp_path / "out.csv").open()))
    assert rows[0] == ["topic", "timestamp", "x", "v[0]", "v[1]"]
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_array_equal(values[:, 0], np.concatenate([f["timestamp"] for f in fs]))
    np.testing.assert_array_equal(values[:, 3], -values[:, 2])


def test_null_and_buffer_sinks_count_and_keep():
    null, buf = NullSinkLogic(), BufferSinkLogic(maxlen=6)
    for f in frames(3):
        null.on_frame(Topic("src"), f, now=0.0)
        buf.on_frame(Topic("src"), f, now=0.0)
    assert null.stats() == {"samples": 12}
    assert len(buf.buffers["src/main"]) == 6


# ------------------------------------------------------------------ input modes and topics
class _Mode(NodeLogic):
    def __init__(self, mode, rate=None):
        self.input_mode, self.update_rate = mode, rate


@pytest.mark.parametrize("logic, message", [
    (_Mode("sometimes"), "test_nodes_logic._Mode declares input_mode 'sometimes'; expected one "
                         "of 'timed', 'merged', 'arrival', 'raw'"),
    (_Mode(None), "_Mode declares input_mode None"),
    (_Mode("timed"), "_Mode has input_mode 'timed' and needs update_rate > 0 (polls per "
                     "second), got None"),
    (_Mode("timed", 0), "needs update_rate > 0 (polls per second), got 0"),
    (_Mode("timed", True), "got True"),
    (_Mode("merged", 25.0), "_Mode sets update_rate but declares input_mode 'merged': a node "
                            "polled at update_rate declares input_mode = 'timed'"),
])
def test_a_bad_input_mode_is_refused_naming_the_class(logic, message):
    with pytest.raises(ValueError) as err:
        check_input_mode(logic)
    assert message in str(err.value)


def test_the_replaced_flags_and_a_reactive_node_without_inputs_are_refused():
    class OldStyle(NodeLogic):
        merge_inputs = False

    with pytest.raises(ValueError, match="OldStyle sets merge_inputs, which NodeLogic no longer "
                                         "reads: declare input_mode = 'arrival'"):
        check_input_mode(OldStyle())
    with pytest.raises(ValueError, match="input_mode 'merged' but the node has no inputs"):
        check_input_mode(NodeLogic(), has_inputs=False)


def test_every_shipped_logic_declares_its_mode():
    src = SourceNodeLogic(Sampler({"x": SineWave()}, sample_rate=10), update_rate=5)
    graph = GraphNodeLogic([s.Abs("x", name="ax").to_dict()], upstreams={"src": []})
    for logic, mode in [(src, "timed"), (graph, "merged"), (PrinterSinkLogic(), "merged"),
                        (NullSinkLogic(), "merged"), (BufferSinkLogic(), "merged"),
                        (CsvSinkLogic("x.csv"), "merged"), (PlotSinkLogic(), "arrival"),
                        (RecorderNodeLogic("x.mcap"), "raw"),
                        (ReplayNodeLogic("x.mcap", "n"), "timed"),
                        (AlignerNodeLogic("a", {"b": {}}, None), "arrival")]:
        check_input_mode(logic)
        assert logic.input_mode == mode, type(logic)


def test_topic_parses_and_formats_in_one_place():
    assert Topic.parse("derived/spec") == Topic("derived", "spec")
    assert Topic.parse("derived/") == Topic.parse("derived") == Topic("derived", "") \
        == Topic("derived", "main")
    assert str(Topic("derived")) == "derived/main" == topic_for("derived", "")
    assert Topic.parse("a/b/c").timeline == "b/c"  # a node id has no '/'; the rest is timeline
    with pytest.raises(ValueError, match="cannot contain '/'"):
        Topic("a/b")


def _messages(*sent):
    """Real bus messages (encoded, then decoded) for ``(topic, first timestamp | None)``."""
    out = []
    for i, (topic, t0) in enumerate(sent):
        node = Topic.parse(topic).node
        parts = (encode_eos(topic, node_id=node, seq=i) if t0 is None else
                 encode(topic, {"timestamp": t0 + np.arange(2) / 100}, node_id=node, seq=i))
        out.append(decode(parts))
    return out


ARRIVALS = [("b/main", 1.0), ("a/main", 0.0), ("b/main", 1.5), ("a/main", 0.5),
            ("a/main", None), ("b/main", None)]


def _feed(feeder, messages):
    got = []
    for msg in messages:
        got += feeder.receive(Topic.parse(msg.topic), msg, now=0.0)
        got += feeder.ready(now=0.0)
    return got


def test_merged_feeder_delivers_in_timestamp_order_and_ends_empty():
    feeder = feeder_for("merged", ["a", "b"], max_lag=None)
    got = _feed(feeder, _messages(*ARRIVALS))
    assert [(w, str(t), f["timestamp"][0]) for w, t, f in got] == [
        ("data", "a/main", 0.0), ("data", "a/main", 0.5), ("data", "b/main", 1.0),
        ("data", "b/main", 1.5)]
    assert feeder.ended


def test_arrival_feeder_delivers_as_received_with_eos_and_ticks():
    feeder = feeder_for("arrival", ["a", "b"])
    got = _feed(feeder, _messages(*ARRIVALS))
    assert [(w, str(t), None if f is None else f["timestamp"][0])
            for w, t, f in got if w != "tick"] == [
        ("data", "b/main", 1.0), ("data", "a/main", 0.0), ("data", "b/main", 1.5),
        ("data", "a/main", 0.5), ("eos", "a/main", None), ("eos", "b/main", None)]
    assert [w for w, _, _ in got].count("tick") == len(ARRIVALS)
    assert feeder.ended


def test_raw_feeder_hands_over_every_message_itself():
    feeder = feeder_for("raw", ["a", "b"])
    messages = _messages(*ARRIVALS)
    got = _feed(feeder, messages[:-1])
    assert [d[2] for d in got] == messages[:-1] and {d[0] for d in got} == {"message"}
    assert not feeder.ended  # b has not ended yet
    _feed(feeder, messages[-1:])
    assert feeder.ended


def test_merged_feeder_hands_each_frame_its_own_acquisition_time():
    """Frames held back for the watermark keep their own acquisition time (header ``acq``),
    whatever order they are released in; a frame without ``acq`` falls back to its first
    timestamp."""
    feeder = feeder_for("merged", ["a", "b"], max_lag=None)
    sent = [("b/main", 1.0, 0.9), ("a/main", 0.0, -0.2), ("b/main", 1.5, None),
            ("a/main", 0.5, 0.3), ("a/main", None, None), ("b/main", None, None)]
    origins = {}
    for i, (topic, t0, acq) in enumerate(sent):
        node = Topic.parse(topic).node
        parts = (encode_eos(topic, node_id=node, seq=i) if t0 is None else
                 encode(topic, {"timestamp": t0 + np.arange(2) / 100}, node_id=node, seq=i,
                        acquired=acq))
        msg = decode(parts)
        assert feeder.receive(Topic.parse(topic), msg, now=0.0) == []
        for delivery in feeder.ready(now=0.0):
            origins[float(delivery[2]["timestamp"][0])] = feeder.origin(delivery)
    assert origins == {0.0: -0.2, 0.5: 0.3, 1.0: 0.9, 1.5: 1.5}
