"""SignalGraph: validation before running, timelines, live edits, JSON round trip."""

import json

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.errors import GraphError, OperatorError
from genki_signals.graph import SignalGraph
from genki_signals.signals.base import Operator


def frame(n=50, t0=0.0, rate=100.0, seed=0):
    rng = np.random.default_rng(seed)
    ts = t0 + np.arange(n) / rate
    return {"timestamp": ts, "a": rng.normal(size=n), "b": rng.normal(size=(n,))}


def test_orders_operators_topologically_whatever_the_list_order():
    g = SignalGraph([s.MovingAverage("ab", length=3, name="smooth"),
                     s.Sum("a", "b", name="ab")])
    assert g.outputs == ["ab", "smooth"]
    out = g.process(frame())
    np.testing.assert_allclose(out["ab"], out["a"] + out["b"])


def test_missing_input_names_operator_and_input_and_lists_all_problems():
    with pytest.raises(GraphError) as err:
        SignalGraph([s.Sum("a", "nope", name="x"), s.Abs("ghost", name="y")],
                    source_keys=["timestamp", "a"])
    msg = str(err.value)
    assert "Sum 'x': input 1 'nope' is neither a source key nor an operator output" in msg
    assert "Abs 'y': input 0 'ghost'" in msg


def test_missing_input_is_found_on_first_frame_when_source_keys_unknown():
    g = SignalGraph([s.Sum("a", "zzz", name="x")])
    with pytest.raises(GraphError, match="input 1 'zzz'"):
        g.process(frame())


def test_cycle_is_rejected_naming_the_operators():
    with pytest.raises(GraphError, match=r"cycle: .*Abs 'x'.*Abs 'y'|cycle: .*Abs 'y'.*Abs 'x'"):
        SignalGraph([s.Abs("y", name="x"), s.Abs("x", name="y")])


def test_duplicate_names_are_rejected():
    with pytest.raises(GraphError, match="duplicate name 'x'"):
        SignalGraph([s.Abs("a", name="x"), s.Exp("a", name="x")])
    with pytest.raises(GraphError, match="output name 'a' clashes with a source key"):
        SignalGraph([s.Abs("b", name="a")], source_keys=["timestamp", "a", "b"])


def test_add_and_remove_while_running():
    g = SignalGraph([s.Sum("a", "b", name="ab")])
    g.process(frame())
    g.add(s.Scale("ab", factor=2.0, name="double"))
    out = g.process(frame(seed=1))
    np.testing.assert_allclose(out["double"], 2 * (out["a"] + out["b"]))
    with pytest.raises(GraphError, match="cannot remove 'ab': used by Scale 'double'"):
        g.remove("ab")
    g.remove("double")
    assert "double" not in g.process(frame(seed=2))
    with pytest.raises(GraphError, match="input 0 'missing'"):
        g.add(s.Abs("missing", name="m"))
    assert "m" not in g  # a rejected add leaves the graph as it was


def test_new_timeline_outputs_carry_their_own_timestamps_and_chain():
    g = SignalGraph([
        s.FourierTransform("a", name="spec", window_size=16, window_overlap=8, upsample=False),
        s.MovingAverage("spec", length=2, name="spec_smooth"),
    ])
    f = frame(n=64)
    out = g.process(f)
    # windows end at samples 15, 23, ..., 63 -> stamped with those samples' times
    np.testing.assert_array_equal(out["spec.timestamp"], f["timestamp"][15::8])
    np.testing.assert_array_equal(out["spec_smooth.timestamp"], out["spec.timestamp"])
    assert out["spec"].shape == (len(out["spec.timestamp"]), 9)


def test_joining_timelines_by_accident_is_rejected():
    with pytest.raises(GraphError, match="inputs are on different timelines"):
        SignalGraph([
            s.FourierTransform("a", name="spec", window_size=16, window_overlap=8,
                               upsample=False),
            s.FourierTransform("b", name="spec_b", window_size=16, window_overlap=8,
                               upsample=True),
            s.Sum("spec", "spec_b", name="bad"),
        ])


def test_operator_failure_names_the_operator():
    g = SignalGraph([s.Difference("a", "c", name="d")])
    f = frame()
    f["c"] = np.zeros((len(f["a"]), 3, 5))
    with pytest.raises(OperatorError, match="Difference 'd'"):
        g.process(f)


def test_json_round_trip_is_exact_and_computes_the_same():
    g = SignalGraph([
        s.Sum("a", "b", name="ab"),
        s.FourierTransform("ab", name="spec", window_size=16, window_overlap=8),
        s.SampleRate("timestamp", name="rate"),
        s.MovingAverage("rate", length=10, name="smooth_rate"),
        s.LowPass("ab", cutoff=10.0, sample_rate=100.0, name="lp"),
        s.Combine([s.Abs("a", name="abs_a"), s.Scale("abs_a", factor=3.0, name="triple")],
                  inputs=["a"], name="combined"),
    ])
    text = g.to_json()
    g2 = SignalGraph.from_json(text)
    assert g2.to_dict() == json.loads(text)
    f = frame(n=100)
    a, b = g.process(f), g2.process(f)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_bad_graph_spec_reports_every_operator_problem():
    spec = {"operators": [
        {"type": "NoSuchOp", "name": "x"},
        {"type": "MovingAverage", "input": "a", "name": "m", "length": -1},
        {"type": "Abs", "input": "a", "name": "ok", "colour": "red"},
    ]}
    with pytest.raises(GraphError) as err:
        SignalGraph.from_dict(spec)
    msg = str(err.value)
    assert "operators[0]: unknown operator type 'NoSuchOp'" in msg
    assert "operators[1]: MovingAverage 'm': field 'length'" in msg
    assert "operators[2]: Abs 'ok': unknown field(s) 'colour'" in msg


def test_every_registered_operator_type_rejects_unknown_keys():
    for type_name in s.OPERATORS:
        with pytest.raises(OperatorError, match="unknown field"):
            Operator.from_dict({"type": type_name, "name": "x", "bogus_field": 1})


def test_combine_hides_inner_names_and_validates():
    c = s.Combine([s.Sum("a", "b", name="ab"), s.Scale("ab", factor=0.5, name="mean")],
                  inputs=["a", "b"], name="mean_ab")
    f = frame()
    out = SignalGraph([c]).process(f)
    np.testing.assert_allclose(out["mean_ab"], (f["a"] + f["b"]) / 2)
    assert "ab" not in out and "mean" not in out
    with pytest.raises(OperatorError, match=r"(?s)Combine 'bad': field 'operators'.*input 1 'zz'"):
        s.Combine([s.Sum("a", "zz", name="ab")], inputs=["a"], name="bad")
    with pytest.raises(OperatorError, match="field 'output' names no inner operator"):
        s.Combine([s.Abs("a", name="x")], inputs=["a"], output="y", name="bad")


def test_an_operator_can_read_a_new_timelines_own_timestamps():
    g = SignalGraph([
        s.FourierTransform("a", name="spec", window_size=8, window_overlap=4, upsample=False),
        s.SampleRate("spec.timestamp", name="spec_rate"),
    ])
    out = g.process(frame(n=40))
    np.testing.assert_allclose(out["spec_rate"][1:], 25.0)  # one spectrum every 4 samples
    np.testing.assert_array_equal(out["spec_rate.timestamp"], out["spec.timestamp"])
    with pytest.raises(OperatorError, match="input 0 must be a stream name"):
        s.Abs("spec.other", name="x")
