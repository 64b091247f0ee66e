"""GraphTransformer: the graph's features as a scikit-learn transformer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import genki_signals.signals as s
from genki_signals.errors import GraphError
from genki_signals.graph import SignalGraph
from genki_signals.sklearn import GraphTransformer


def graph() -> SignalGraph:
    return SignalGraph([s.LowPass("x", cutoff=5.0, sample_rate=100.0, name="low"),
                        s.Differentiate("v", name="dv"),
                        s.Norm("dv", name="dv_norm")])


def recording(seed: int, n: int = 300, offset: float | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    offset = seed if offset is None else offset
    return {"timestamp": np.arange(n) / 100.0, "x": rng.normal(size=n) + offset,
            "v": np.cumsum(rng.normal(size=(n, 3)), axis=0)}


def test_transform_is_the_graph_output_side_by_side():
    rec = recording(0)
    t = GraphTransformer(graph(), inputs=["x", "v"], outputs=["low", "dv"])
    feats = t.fit_transform(rec)
    ref = graph().process(rec)
    np.testing.assert_array_equal(feats, np.column_stack([ref["low"], ref["dv"]]))
    assert feats.shape == (300, 4)


def test_state_is_reset_per_recording_unless_asked_not_to():
    a, b = recording(0), recording(1)
    t = GraphTransformer(graph(), inputs=["x", "v"], outputs=["low", "dv_norm"])
    both = t.transform([a, b])
    np.testing.assert_array_equal(both, np.concatenate([t.transform(a), t.transform(b)]))
    carried = GraphTransformer(graph(), ["x", "v"], ["low", "dv_norm"],
                               reset_per_recording=False).transform([a, b])
    g = graph()
    g.process(a)
    np.testing.assert_array_equal(carried[300:, 0], g.process(b)["low"])
    assert not np.allclose(carried[300:], both[300:])


def test_in_a_pipeline_and_cloned():
    recs = [recording(i, offset=3.0 * (i % 2)) for i in range(4)]
    y = np.concatenate([np.full(300, i % 2) for i in range(4)])  # x's mean tells the class
    pipe = make_pipeline(GraphTransformer(graph(), ["x", "v"], ["low"]), LogisticRegression())
    pipe.fit(recs, y)
    assert pipe.score(recs, y) > 0.9
    copy = clone(pipe)
    np.testing.assert_array_equal(copy.fit(recs, y).predict(recs), pipe.predict(recs))


def test_bad_input_is_named():
    t = GraphTransformer(graph(), ["x", "v"], ["nope"])
    with pytest.raises(GraphError, match="output\\(s\\) nope are not operator outputs"):
        t.transform(recording(0))
    t = GraphTransformer(graph(), ["x", "w"], ["low"])
    with pytest.raises(GraphError, match="recording 0 has no stream\\(s\\) w"):
        t.transform(recording(0))
    fft = SignalGraph([s.FourierTransform("x", window_size=8, window_overlap=0,
                                          upsample=False, name="spec")])
    with pytest.raises(GraphError, match="new timeline"):
        GraphTransformer(fft, ["x"], ["spec"]).transform(recording(0))
