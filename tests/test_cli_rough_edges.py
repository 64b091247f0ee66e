"""The CLI rough edges of issue 17, one test each: record's size, the spectrogram's time span,
sinks' rate in ``genki top``, a closed dashboard tab, ``make_models`` leftovers, ``genki demo``'s
sample count, progress on long work."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from genki_signals.buffers import DataBuffer
from genki_signals.launch.tools import format_top
from proc_helpers import REPO

pytestmark = pytest.mark.timeout(90)


def sampler_spec(tmp_path: Path, name: str, sink: dict, rate: int = 200) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "nodes": [
        {"id": "signals", "kind": "source",
         "params": {"type": "Sampler", "sample_rate": rate, "update_rate": 20,
                    "sources": {"x": {"type": "SineWave", "frequency": 2},
                                "z": {"type": "SineWave", "frequency": 0.0001}}}},
        {"id": "out", "kind": "sink", "inputs": ["signals"], "params": sink}]}))
    return spec


@pytest.mark.process
def test_genki_record_reports_the_compressed_file_size_and_shows_progress(
        tmp_path, launcher_factory, capsys):
    from genki_signals.record.attach import record_topology

    lp = launcher_factory(sampler_spec(tmp_path, "rec_size", {"type": "null"}, rate=5000))
    lp.wait_ready()
    out = tmp_path / "run.mcap"
    stream = io.StringIO()
    result = record_topology(lp.address, out, duration=4.0, progress=True, stream=stream)
    assert result.frames > 60
    line = stream.getvalue().splitlines()[-1]
    m = re.search(r"\(([\d.]+) MB on disk, ([\d.]+) MB of messages uncompressed\)", line)
    assert m, line
    on_disk, uncompressed = float(m[1]), float(m[2])
    assert on_disk == pytest.approx(out.stat().st_size / 1e6, abs=0.006)  # printed to 0.01
    assert uncompressed == pytest.approx(result.bytes / 1e6, abs=0.006)
    assert out.stat().st_size < result.bytes  # zstd: the old report overstated the file
    err = capsys.readouterr().err
    assert "recording" in err and "frames" in err  # the tqdm bar
    lp.interrupt()
    lp.wait_exit(timeout=30)


@pytest.mark.process
def test_top_shows_what_a_sink_receives(tmp_path, launcher_factory):
    lp = launcher_factory(sampler_spec(tmp_path, "top_rate", {"type": "null"}))
    lp.wait_ready()
    d = lp.wait_for(lambda d: d if all((n.get("stats") or {}).get("rate_in", 0) >= 10 for n in
                                       d["nodes"] if n["kind"] == "sink") else None, 20,
                    "a heartbeat with the sink's received rate")
    table = format_top(d)
    row = next(line for line in table.splitlines() if line.startswith("out "))
    rate = float(row.split()[4])  # frames/s: for a sink, frames received
    assert 10 <= rate <= 30, table  # the source publishes 20 frames/s
    assert "in/s" in table.splitlines()[1]
    assert "age in ms" in table.splitlines()[1]
    p50, p99 = (float(v) for v in row.split()[7].split("/"))  # age of what the sink receives
    assert 0 <= p50 <= p99 < 1000, table  # ms: sampled, published, one hop
    lp.interrupt()
    lp.wait_exit(timeout=30)


def test_the_spectrogram_spans_the_same_seconds_as_the_line_panels():
    from genki_signals.plot.dashboard import Dashboard, _BokehPanel
    from genki_signals.signals import FourierTransform

    rate, seconds = 100, 60
    ts = np.arange(rate * seconds) / rate
    x = np.sin(2 * np.pi * 7 * ts)
    ft = FourierTransform("x", name="spec", window_size=256, window_overlap=128)
    buffer = DataBuffer()
    buffer.extend({"timestamp": ts, "x": x, "spec": ft(x)})
    dashboard = Dashboard(buffer, ["x", "spec:spectrogram:sample_rate=100,window_size=256"])
    line_spec, spec_spec = dashboard.panels
    assert line_spec.window == spec_spec.window == dashboard.window == 5.0
    line, spectrogram = (_BokehPanel(s, 400, 200) for s in dashboard.panels)
    assert line.refresh(buffer) and spectrogram.refresh(buffer)
    xs = np.concatenate(line.source.data["xs"])
    shown = (spectrogram.figure.x_range.start, spectrogram.figure.x_range.end)
    assert shown == pytest.approx((xs.min(), xs.max()), abs=0.011)  # one sample
    image_start = spectrogram.source.data["x"][0]
    image_end = image_start + spectrogram.source.data["dw"][0]
    assert shown[0] - 1.28 <= image_start and image_end <= shown[1] + 1e-9  # hop: 1.28 s


@pytest.mark.browser
def test_closing_a_dashboard_tab_logs_no_closed_connection_warnings(caplog):
    from genki_signals.plot.dashboard import Dashboard
    from genki_signals.testing.headless import Chromium, find_chromium

    assert find_chromium(), "needs Chromium: apt-get install chromium"
    buffer = DataBuffer(maxlen=2000)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            t = np.arange(4) / 100 + i * 0.04
            buffer.extend({"timestamp": t, "a": np.sin(t), "b": np.cos(t), "c": t,
                           "d": -t})
            i += 1
            time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    caplog.set_level(logging.WARNING)
    try:
        with Dashboard(buffer, ["a", "b", "c", "d"], port=0, fps=60) as dashboard:
            browser = Chromium().start()
            try:
                browser.open(dashboard.url)
                browser.wait_for("window.genki && window.genki.frames > 20", timeout=30)
            finally:
                browser.close()  # the tab goes away without a goodbye
            updates = dashboard.updates
            time.sleep(2.0)
            assert dashboard.sessions == 1  # bokeh keeps the session a while...
            assert dashboard.updates == updates  # ...but draws nothing for it
    finally:
        stop.set()
        feeder.join(timeout=5)
    closed = [r for r in caplog.records if "connection was closed" in r.getMessage()]
    assert not closed, [r.getMessage() for r in closed]


@pytest.mark.process
def test_make_models_leaves_only_the_tracked_models_behind(tmp_path):
    tracked = subprocess.run(["git", "ls-files", "specs/models"], cwd=REPO, text=True,
                             capture_output=True, check=True).stdout.split()
    out = tmp_path / "models"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_models.py"), str(out)],
                   check=True, capture_output=True, timeout=60)
    written = sorted(f"specs/models/{p.name}" for p in out.iterdir())
    assert written == sorted(tracked)  # nothing untracked left in specs/models
    for path in tracked:  # and byte-identical to what is shipped
        assert (out / Path(path).name).read_bytes() == (REPO / path).read_bytes(), path
    subprocess.run([sys.executable, str(REPO / "tools" / "make_models.py"), str(out), "--all"],
                   check=True, capture_output=True, timeout=60)
    assert {p.name for p in out.iterdir()} >= {"gru.onnx", "cnn.onnx", "mlp.onnx"}


def test_demo_sample_count_keeps_growing_once_the_buffer_is_full(capsys):
    from genki_signals.demo import run_demo

    run_demo(duration=2.0, maxlen=50)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("t=")]
    counts = [int(re.search(r"samples=\s*(\d+)", ln)[1]) for ln in lines]
    assert len(counts) >= 3 and all(b > a for a, b in zip(counts, counts[1:])), lines
    assert all("(buffer 50/50)" in ln for ln in lines[1:]), lines
