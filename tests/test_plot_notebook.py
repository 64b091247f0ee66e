"""Notebook plots: live bqplot figures of a DataBuffer.

The acceptance test runs the seed notebook's plotting cells as a real notebook (nbclient, an
ipykernel) against a running System and checks the data the figures carry. The others run the
same figures without a kernel (ipywidgets then uses a dummy comm): throttling, a producer that
is never held up, and a closed figure that stops and is released.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
import weakref

import numpy as np
import pytest

from genki_signals.buffers import DataBuffer
from proc_helpers import REPO

import bqplot  # noqa: E402  (the test extra installs it)

from genki_signals.plot.notebook import ANIMATOR  # noqa: E402


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _close_all(*figs) -> None:
    for f in figs:
        f.close()


# ---------------------------------------------------------------------- the seed notebook
SEED_CELLS = [
    # In [4]: a sine source filling the buffer from a thread (verbatim)
    """
import time
import numpy as np
from threading import Thread
from genki_signals.buffers import DataBuffer
from genki_signals.data_sources import Sampler, SineWave

buffer = DataBuffer(maxlen=400)
sine_wave = SineWave(frequency=3, amplitude=5, phase=0)
source = Sampler(sources={'sine': sine_wave}, sample_rate=100)

def run_source():
    source.start()
    while True:
        buffer.extend(source.read())
        time.sleep(1 / 25)
        if not source.is_active:
            return

t = Thread(target=run_source)
t.start()
checks = {}
""",
    # In [6]
    "buffer.plot(key='sine')",
    """
fig = _
time.sleep(1.0)
mark = fig.marks[0]
checks['sine'] = {'n': len(mark.x), 'y_is_data': bool(np.allclose(mark.y, buffer['sine'][:len(mark.y)]) or np.allclose(mark.y, buffer['sine'][-len(mark.y):])),
                  'labels': [a.label for a in fig.axes], 'updates': fig.live.updates}
source.stop(); t.join()
""",
    # In [29] + In [14] + In [15]: the derived signals on a System (verbatim)
    """
import genki_signals.signals as s
from genki_signals.system import System
from genki_signals.data_sources import RandomNoise

derived_signals = [
    s.Sum('sine_0', 'sine_1', name='composite_sine'),
    s.Sum('composite_sine', 'noise', name='wave_with_noise'),
    s.FourierTransform('wave_with_noise', name='wave_spectrum', window_size=256, window_overlap=128),
    s.SampleRate('timestamp', name='sample_rate'),
    s.MovingAverage('sample_rate', length=10, name='smooth_sample_rate'),
]
sine_1 = SineWave(frequency=3, amplitude=5,phase=0)
sine_2 = SineWave(frequency=7, amplitude=2, phase=0)
noise_source = RandomNoise()
data_source = Sampler({'sine_0': sine_1, 'sine_1': sine_2, 'noise': noise_source}, sample_rate=100)
buffer = DataBuffer(maxlen=400)
system = System(data_source=data_source, derived_signals=derived_signals)

def run_system():
    system.start()
    while True:
        buffer.extend(system.read())
        time.sleep(1 / 25)
        if not system.is_active:
            return

t = Thread(target=run_system)
t.start()
time.sleep(0.5)
""",
    # In [17]
    "buffer.plot('wave_with_noise')",
    "fig_wave = _",
    # In [20]
    "buffer.plot(key='wave_spectrum', plot_type='spectrogram', sample_rate=100, window_size=256)",
    """
fig_spec = _
time.sleep(3.5)  # two 256-sample windows at 100 Hz
heat = fig_spec.marks[0]
column = heat.color[:, -1]
peaks = sorted(float(heat.y[i]) for i in np.argsort(column)[-6:])
checks['wave'] = {'n': len(fig_wave.marks[0].y), 'updates': fig_wave.live.updates,
                  'last_x': float(fig_wave.marks[0].x[-1]),
                  'buffer_last_t': float(buffer['timestamp'][-1])}
checks['spectrogram'] = {'shape': list(heat.color.shape), 'freq_max': float(heat.y[-1]),
                         'peaks': peaks, 'labels': [a.label for a in fig_spec.axes]}
system.stop(); t.join()
""",
    # In [24]: the mouse, replaced by a scripted mouse-like source (no hardware in a test)
    """
from genki_signals.data_sources import GestureScript
mouse_source = Sampler({'mouse_position': GestureScript(shape='circle', period=1.0, duration=1.0, size=100.0)}, sample_rate=100)
mouse_system = System(mouse_source)
buffer = DataBuffer(maxlen=400)

def run_system():
    mouse_system.start()
    while True:
        buffer.extend(mouse_system.read())
        time.sleep(1 / 50)
        if not mouse_system.is_active:
            return

t = Thread(target=run_system)
t.start()
""",
    # In [25]
    'buffer.plot(key=\'mouse_position\', plot_type="trace2D")',
    """
fig_trace = _
time.sleep(1.2)
mouse_system.stop(); t.join()
time.sleep(0.3)  # the last update after the buffer stopped changing
path = fig_trace.marks[0]
radius = np.hypot(np.asarray(path.x) - 400, np.asarray(path.y) - 300)
checks['trace2D'] = {'n': len(path.x), 'radius_min': float(radius.min()), 'radius_max': float(radius.max()),
                     'head': [float(fig_trace.marks[1].x[0]), float(fig_trace.marks[1].y[0])],
                     'last': [float(v) for v in buffer['mouse_position'][-1]]}
""",
    # In [32]: the RNN on mouse motion: the project's hand-made motion GRU (specs/models)
    """
derived = [
    s.Differentiate("mouse_position", sig_b="timestamp", name="mouse_velocity"),
    s.Norm("mouse_velocity", name="speed"),
    s.Reshape("speed", shape=[1], name="speed_feature"),
    s.Inference("speed_feature", "specs/models/motion_gru.onnx", stateful=True, name="rnn_model_inference"),
]
mouse_source = Sampler({'mouse_position': GestureScript(shape='circle', period=1.0, duration=1.0, size=100.0)}, sample_rate=100)
system = System(mouse_source, derived_signals=derived)
buffer = DataBuffer(maxlen=400)

def run_system():
    system.start()
    while True:
        buffer.extend(system.read())
        time.sleep(1 / 50)
        if not system.is_active:
            return

t = Thread(target=run_system)
t.start()
time.sleep(0.3)
""",
    # In [33] (two classes: the project's model detects motion, not four shapes)
    "buffer.plot('rnn_model_inference', plot_type='histogram', class_names=['background', 'motion'])",
    """
fig_hist = _
time.sleep(1.0)
bars = fig_hist.marks[0]
checks['histogram'] = {'x': list(bars.x), 'heights': [float(v) for v in bars.y],
                       'labels': [a.label for a in fig_hist.axes]}
system.stop(); t.join()
print('CHECKS ' + json.dumps(checks))
""",
]


@pytest.mark.timeout(120)
def test_seed_notebook_plot_cells_run_in_a_real_kernel() -> None:
    import nbformat
    import nbclient
    import ipykernel  # noqa: F401
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import json")] + \
        [nbformat.v4.new_code_cell(c.strip()) for c in SEED_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()
    # every plot cell displayed a widget (a live Figure), not text
    for cell in nb.cells:
        if ".plot(" in cell.source:
            data = cell.outputs[0]["data"]
            assert "application/vnd.jupyter.widget-view+json" in data, cell.source
            assert data["text/plain"].startswith("Figure(")
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    checks = json.loads(out.split("CHECKS ", 1)[1])

    sine = checks["sine"]
    assert sine["n"] >= 50 and sine["y_is_data"] and sine["updates"] >= 2
    assert sine["labels"] == ["t (s)", "sine"]
    wave = checks["wave"]
    assert wave["n"] >= 300 and wave["updates"] >= 10
    assert wave["last_x"] >= wave["buffer_last_t"] - 0.2  # it kept up with the buffer
    spec = checks["spectrogram"]
    assert spec["shape"][0] == 129 and spec["shape"][1] >= 2  # bins x spectra, dB
    assert spec["freq_max"] == pytest.approx(50.0)
    assert any(abs(p - 3) < 0.5 for p in spec["peaks"]) and any(abs(p - 7) < 0.5
                                                               for p in spec["peaks"])
    assert spec["labels"] == ["t (s)", "Hz", "dB"]
    trace = checks["trace2D"]
    assert trace["n"] >= 50
    assert 49 < trace["radius_min"] <= trace["radius_max"] < 51  # the drawn circle
    assert trace["head"] == pytest.approx(trace["last"], abs=1e-9)
    hist = checks["histogram"]
    assert hist["x"] == ["background", "motion"] and len(hist["heights"]) == 2
    assert sum(hist["heights"]) == pytest.approx(1.0, abs=1e-3)  # class probabilities
    assert hist["labels"][1] == "Probability"


# ---------------------------------------------------------------------- without a kernel
def _feed(buffer: DataBuffer, seconds: float, rate: float = 1000.0, chunk: int = 10,
          period: float = 0.01) -> list[float]:
    """Extend ``buffer`` with 3 channels in real time; the duration of every extend."""
    durations = []
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        t = (i + np.arange(chunk)) / rate
        frame = {"timestamp": t, "x": np.sin(2 * np.pi * 5 * t),
                 "xyz": np.stack([t, np.cos(t), np.sin(t)], axis=1),
                 "probs": np.tile([0.2, 0.8], (chunk, 1))}
        start = time.perf_counter()
        buffer.extend(frame)
        durations.append(time.perf_counter() - start)
        i += chunk
        time.sleep(period)
    return durations


@pytest.mark.timeout(30)
def test_updates_are_throttled_to_the_display_rate_and_never_block_the_producer() -> None:
    buffer = DataBuffer(maxlen=5000)
    figs = [buffer.plot("x", fps=10), buffer.plot("xyz", fps=10),
            buffer.plot("probs", "histogram", fps=10, class_names=["a", "b"])]
    try:
        durations = _feed(buffer, 1.5, period=0.002)  # ~500 extends a second
        line, multi, hist = figs
        # at most fps x time (+ the first draw), however often the buffer changed
        for f in figs:
            assert 5 <= f.live.updates <= 10 * 1.5 + 3, f.live.updates
            assert f.live.errors == 0, f.live.last_error
        assert len(durations) > 100
        assert np.percentile(durations, 99) < 0.02  # the producer is never held up
        assert multi.marks[0].y.shape[0] == 3 and multi.marks[0].labels == [
            "xyz[0]", "xyz[1]", "xyz[2]"]
        _wait(lambda: line.marks[0].x[-1] == buffer["timestamp"][-1], 2, "last draw")
        assert list(hist.marks[0].x) == ["a", "b"] and list(hist.marks[0].y) == [0.2, 0.8]
    finally:
        _close_all(*figs)


@pytest.mark.timeout(30)
def test_a_closed_figure_stops_updating_and_is_released() -> None:
    buffer = DataBuffer(maxlen=1000)
    feeder = threading.Thread(target=_feed, args=(buffer, 1.5), daemon=True)
    feeder.start()
    fig = buffer.plot("x", fps=30)
    other = buffer.plot("x", fps=30)
    _wait(lambda: fig.live.updates >= 3, 5, "updates")
    live, mark = fig.live, weakref.ref(fig.marks[0])
    ref = weakref.ref(fig)
    fig.close()
    assert live.closed and live.buffer is None
    updates = live.updates
    time.sleep(0.3)
    assert live.updates == updates  # no update after close
    assert live not in ANIMATOR.plots and other.live in ANIMATOR.plots
    del fig, live
    gc.collect()
    assert ref() is None and mark() is None  # the figure and its marks are released
    other.close()
    _wait(lambda: not ANIMATOR.running, 3, "the animator thread to exit")
    feeder.join()


def test_plot_errors_are_clear() -> None:
    buffer = DataBuffer()
    buffer.extend({"timestamp": np.arange(3.0), "x": np.arange(3.0)})
    with pytest.raises(ValueError, match="field 'type': must be one of line, spectrogram"):
        buffer.plot("x", plot_type="pie")
    with pytest.raises(ValueError, match="needs a 2-D signal"):
        buffer.plot("x", plot_type="trace2D")
    late = buffer.plot("y", plot_type="trace2D")  # a key not there yet: drawn once it is
    buffer.extend({"timestamp": np.arange(3.0, 5.0), "x": np.zeros(2), "y": np.ones((2, 2))})
    _wait(lambda: late.live.updates >= 1, 2, "the late key")
    buffer.extend({"timestamp": np.arange(5.0, 6.0), "x": np.zeros(1), "y": np.ones((1, 2))})
    assert late.live.errors == 0
    late.close()


def test_missing_plot_extra_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bqplot", None)
    buffer = DataBuffer()
    with pytest.raises(ImportError, match=r"pip install 'genki-signals\[plot\]'"):
        buffer.plot("x")
