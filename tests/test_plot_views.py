"""Plot views (pure numpy), panel specs, the topic mux and the plot sink's spec checks."""

from __future__ import annotations

import numpy as np
import pytest

from genki_signals.buffers import DataBuffer
from genki_signals.frames import Topic
from genki_signals.launch.spec import TopologySpecError, parse_topology
from genki_signals.plot.cli import spectrogram_hints
from genki_signals.plot.feed import TopicMux
from genki_signals.plot.views import (
    PanelSpec,
    PanelState,
    SpectrogramHistory,
    histogram_view,
    line_view,
    minmax_decimate,
    parse_panel_string,
    trace2d_view,
)
from genki_signals.signals import FourierTransform


def test_minmax_decimation_keeps_every_peak_and_bounds_the_points() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(100_000) / 1000.0
    y = rng.normal(size=t.size)
    y[[123, 50_000, 99_999]] = [40.0, -40.0, 30.0]  # spikes a stride would skip
    td, yd = minmax_decimate(t, y, 2000)
    assert len(yd) <= 2000 and len(td) == len(yd)
    assert {40.0, -40.0, 30.0} <= set(yd.tolist())
    assert np.all(np.diff(td) >= 0)  # still in time order
    assert td[-1] == t[-1]  # the newest sample is always drawn
    short_t, short_y = minmax_decimate(t[:50], y[:50], 2000)
    assert short_y is not y and np.array_equal(short_y, y[:50])


def test_minmax_decimation_with_nan_leaves_a_gap() -> None:
    y = np.ones(10_000)
    y[:5000] = np.nan
    _, yd = minmax_decimate(np.arange(10_000.0), y, 100)
    assert np.isnan(yd[:40]).all() and (yd[-40:] == 1).all()


def _buffer(n: int = 500, rate: float = 100.0) -> DataBuffer:
    t = np.arange(n) / rate
    buf = DataBuffer()
    buf.extend({"timestamp": t, "x": np.sin(t), "acc": np.stack([t, 2 * t, 3 * t], axis=1),
                "pos": np.stack([np.cos(t), np.sin(t)], axis=1),
                "probs": np.tile([0.1, 0.7, 0.2], (n, 1))})
    return buf


def test_line_view_windows_and_splits_components() -> None:
    buf = _buffer()
    one = line_view(buf, PanelSpec("x", window=1.0))
    assert one.labels == ["x"] and len(one.xs[0]) == 101  # samples within the last second
    assert one.xs[0][-1] == pytest.approx(4.99)
    three = line_view(buf, PanelSpec("acc"))
    assert three.labels == ["acc[0]", "acc[1]", "acc[2]"]
    np.testing.assert_allclose(three.ys[2], 3 * buf.timestamps("acc"))
    assert line_view(buf, PanelSpec("nope")) is None


def test_trace2d_and_histogram_views() -> None:
    buf = _buffer()
    tr = trace2d_view(buf, PanelSpec("pos", "trace2D", max_points=100))
    assert len(tr.x) <= 100 and tr.x[-1] == pytest.approx(np.cos(4.99))
    with pytest.raises(ValueError, match="needs a 2-D signal"):
        trace2d_view(buf, PanelSpec("x", "trace2D"))
    bars = histogram_view(buf, PanelSpec("probs", "histogram", class_names=["a", "b", "c"]))
    assert bars.names == ["a", "b", "c"] and bars.heights.tolist() == [0.1, 0.7, 0.2]
    unnamed = histogram_view(buf, PanelSpec("probs", "histogram", class_names=["a"]))
    assert unnamed.names == ["a", "1", "2"]
    dist = histogram_view(buf, PanelSpec("x", "histogram", bins=10))
    assert dist.numeric and dist.heights.sum() == 500 and len(dist.heights) == 10


def test_spectrogram_history_dedupes_upsampled_spectra_and_finds_the_peak() -> None:
    rate, n = 100.0, 1200
    t = np.arange(n) / rate
    x = 5 * np.sin(2 * np.pi * 7 * t)
    fft = FourierTransform("x", window_size=128, window_overlap=64)  # upsampled: repeats rows
    buf = DataBuffer(maxlen=300)  # shorter than the history the image keeps
    hist = SpectrogramHistory(PanelSpec("s", "spectrogram", sample_rate=rate, window_size=128,
                                        rows=50))
    for i in range(0, n, 40):  # streamed like a live buffer, read after every chunk
        buf.extend({"timestamp": t[i:i + 40], "s": fft(x[i:i + 40])})
        data = hist.update(buf)
    windows = 1 + (n - 128) // 64
    assert data.db.shape == (windows, 65)  # one row per completed window, none repeated
    assert np.all(np.diff(data.times) > 0)
    assert data.freqs[np.argmax(data.db[-1])] == pytest.approx(7.0, abs=rate / 128)
    assert data.freq_label == "Hz" and data.high - data.low == pytest.approx(80.0)


def test_spectrogram_estimates_the_rate_when_not_given() -> None:
    buf = _buffer()
    spectra = np.abs(np.random.default_rng(1).normal(size=(500, 33)))
    buf.extend({"timestamp": np.array([5.0]), "x": np.zeros(1), "acc": np.zeros((1, 3)),
                "pos": np.zeros((1, 2)), "probs": np.zeros((1, 3))})
    buf2 = DataBuffer()
    buf2.extend({"timestamp": np.arange(500) / 50.0, "s": spectra})
    data = PanelState(PanelSpec("s", "spectrogram")).view(buf2)
    assert data.freqs[-1] == pytest.approx(25.0)  # 50 Hz main timeline, window 2 * 32


def test_panel_strings_and_checks() -> None:
    assert parse_panel_string("s:spectrogram:sample_rate=100,window_size=256") == {
        "key": "s", "type": "spectrogram", "sample_rate": 100, "window_size": 256}
    spec = PanelSpec.parse("p:histogram:class_names=a|b")
    assert spec.class_names == ["a", "b"] and spec.label == "p"
    assert PanelSpec.parse({"key": "x", "unit": "Hz"}).label == "x (Hz)"
    with pytest.raises(ValueError, match="field 'type': must be one of"):
        PanelSpec("x", "pie")
    with pytest.raises(ValueError, match="field 'colour': unknown field"):
        PanelSpec.parse({"key": "x", "colour": "red"})


def test_topic_mux_keeps_each_topic_on_its_own_timeline() -> None:
    buf = DataBuffer(maxlen=100)
    mux = TopicMux(buf)
    mux.extend(Topic("derived", "spec"), {"timestamp": np.array([0.1]), "s": np.ones((1, 4))})
    for i in range(3):
        mux.extend(Topic("signals"), {"timestamp": np.array([i, i + 0.5]),
                                    "x": np.array([1.0, 2.0])})
        mux.extend(Topic("derived"), {"timestamp": np.array([i + 0.25]), "y": np.array([3.0]),
                                    "x": np.array([9.0])})
    assert buf.timestamps("x").tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    assert buf.timestamps("y").tolist() == [0.25, 1.25, 2.25]
    assert buf["derived/x"].tolist() == [9.0] * 3  # same name, other node: prefixed
    # the first main topic is the main timeline, even when another topic came first
    assert buf.timestamps().tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    assert buf.has_own_timeline("s") and not buf.has_own_timeline("x")
    assert mux.primary == Topic("signals") and mux.frames == 7 and mux.samples == 10


SPEC = {"name": "p", "nodes": [
    {"id": "src", "kind": "source",
     "params": {"type": "Sampler", "sample_rate": 100, "sources": {"x": {"type": "SineWave"}}}},
    {"id": "g", "kind": "graph", "inputs": ["src"], "params": {"operators": [
        {"type": "FourierTransform", "input": "x", "name": "spec", "window_size": 64,
         "window_overlap": 32}]}},
    {"id": "dash", "kind": "sink", "inputs": ["src", "g"], "params": {"type": "plot"}}]}


def _with_plot_params(**params) -> dict:
    spec = {**SPEC, "nodes": [dict(n) for n in SPEC["nodes"]]}
    spec["nodes"][2]["params"] = {"type": "plot", **params}
    return spec


def test_plot_sink_specs_are_validated() -> None:
    parse_topology(_with_plot_params(panels=["x", {"key": "spec", "type": "spectrogram"}],
                                     port=0, host="127.0.0.1", fps=30, history=500))
    with pytest.raises(TopologySpecError) as info:
        parse_topology(_with_plot_params(
            panels=["nope", {"key": "x", "type": "pie"}, {"type": "line"}], port=70000,
            host="example.com", fps=0, history=2, title=3))
    problems = info.value.problems
    expected = [
        "field 'params.panels[0].key': stream 'nope' is not published upstream",
        "field 'params.panels[1].type': must be one of line, spectrogram, trace2D, histogram",
        "field 'params.panels[2].key': missing required field",
        "field 'params.port': must be a port number",
        "field 'params.host': must be an IP address",
        "field 'params.fps'", "field 'params.history'", "field 'params.title'"]
    for text in expected:
        assert any(text in p and "node 'dash'" in p for p in problems), (text, problems)
    assert len(problems) == len(expected)


def test_spectrogram_hints_from_the_directory_spec() -> None:
    hints = spectrogram_hints(SPEC)
    assert hints["spec"].type == "spectrogram"
    assert (hints["spec"].sample_rate, hints["spec"].window_size) == (100.0, 64)
    assert spectrogram_hints(None) == {}
