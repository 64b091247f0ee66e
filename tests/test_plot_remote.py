"""Remote plot subscribers on a running topology: RemoteBuffer and ``genki plot``.

A viewer attaches through the launcher's directory, is lossy by design, and never slows the
topology: suspended (SIGSTOP), it loses frames, counted as its drops and gaps, while the source
keeps its rate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from genki_signals.bus.sockets import Subscriber
from genki_signals.errors import GenkiError
from proc_helpers import LauncherProcess, env_with_tests_on_path

import bokeh  # noqa: E402,F401  (the test extra installs it)

from genki_signals.plot.remote import RemoteBuffer  # noqa: E402

RATE, UPDATE = 1000, 250  # 250 frames/s: a stopped viewer's queues fill within seconds
SPEC = f"""
name: plot_remote_test
nodes:
  - id: signals
    kind: source
    params:
      type: Sampler
      sample_rate: {RATE}
      update_rate: {UPDATE}
      sources:
        x: {{type: SineWave, frequency: 3, amplitude: 5}}
        xy: {{type: GestureScript, shape: circle, period: 1.0, duration: 1.0}}
  - id: derived
    kind: graph
    inputs: [signals]
    params:
      operators:
        - {{type: FourierTransform, input: x, name: spec, window_size: 128, window_overlap: 64,
           upsample: false}}
  - id: out
    kind: sink
    inputs: [derived]
    params: {{type: "null"}}
"""


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plot_remote")
    spec = tmp / "remote.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    lp = LauncherProcess(spec, tmp / "run")
    try:
        lp.wait_ready()
        lp.wait_for(lambda d: "derived/spec" in d["topics"], 15, "derived/spec published")
        yield lp
    finally:
        lp.kill_all()


def _nodes(lp: LauncherProcess) -> dict[str, tuple[int, int, str]]:
    d = lp.directory()
    return {n["id"]: (n["pid"], n["restarts"], n["state"]) for n in d["nodes"]}


@pytest.mark.process
@pytest.mark.timeout(60)
def test_remote_buffer_fills_from_the_bus_plots_and_detaches(topology) -> None:
    before = _nodes(topology)
    with pytest.raises(GenkiError, match="no topic starts with 'nope'.*signals/main"):
        RemoteBuffer(topology.address, ["nope"])
    with pytest.raises(GenkiError, match="policy must be 'drop_oldest' or 'latest'"):
        RemoteBuffer(topology.address, policy="lossless")
    buf = RemoteBuffer(topology.address, ["signals", "derived/spec"], maxlen=5000)
    try:
        assert buf.attached and buf.topology == "plot_remote_test"
        assert buf.wait_for(["x", "xy", "spec"], timeout=10), buf
        time.sleep(0.5)
        ts = buf.timestamps("x")
        steps = np.diff(ts) * RATE  # in order, on the source's grid; lossy, so maybe a gap
        assert np.all(steps > 0.5) and np.allclose(steps, np.round(steps), atol=1e-6)
        assert np.mean(np.round(steps) == 1) > 0.9
        assert buf.has_own_timeline("spec")  # the FFT's own (slower) timeline
        assert np.all(np.diff(buf.timestamps("spec")) > 0.05)
        fig = buf.plot("x", fps=30)
        spec_fig = buf.plot("spec", "spectrogram", sample_rate=RATE, window_size=128)
        trace = buf.plot("xy", "trace2D")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and spec_fig.marks[0].color.shape[1] < 3:
            time.sleep(0.05)
        assert len(fig.marks[0].x) > 100 and fig.live.updates >= 1
        assert spec_fig.marks[0].color.shape[0] == 65 and spec_fig.marks[0].y[-1] == 500.0
        assert len(trace.marks[0].x) > 100
        stats = buf.stats
        assert stats["frames"] > 50 and stats["decode_errors"] == 0
        for f in (fig, spec_fig, trace):
            f.close()
    finally:
        buf.close()
    assert not buf.attached
    frames = buf.stats["frames"]
    time.sleep(0.3)
    assert buf.stats["frames"] == frames  # detached: nothing more arrives
    assert _nodes(topology) == before  # the topology did not notice


@pytest.mark.process
@pytest.mark.timeout(90)
def test_a_suspended_genki_plot_viewer_does_not_slow_the_source(topology) -> None:
    d = topology.directory()
    before = _nodes(topology)
    viewer = subprocess.Popen(
        [sys.executable, "-m", "genki_signals.cli", "plot", topology.address, "signals"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env_with_tests_on_path(), start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(viewer.stdout), daemon=True)
    reader.start()
    monitor = Subscriber()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("http://" in ln for ln in lines):
            assert viewer.poll() is None, "".join(lines)
            time.sleep(0.05)
        url = re.search(r"(http://\S+/)", "".join(lines))[1]

        def stats() -> dict:
            with urllib.request.urlopen(url + "stats", timeout=5) as r:
                return json.loads(r.read())

        assert url.startswith("http://127.0.0.1:")
        monitor.connect(d["topics"]["signals/main"]["endpoint"], ["signals/"],
                        policy="drop_oldest", maxlen=5000)

        def source_rate(seconds: float) -> float:
            """Samples per second that reached a healthy reader (the monitor)."""
            n, t0 = 0, time.monotonic()
            while time.monotonic() - t0 < seconds:
                msg = monitor.recv(timeout=0.05)
                if msg is not None and msg.kind == "data":
                    n += len(msg.frame["timestamp"])
            return n / (time.monotonic() - t0)

        source_rate(1.0)  # the monitor's subscription settles
        running = source_rate(2.0)
        seen = stats()
        assert seen["frames"] > 0, seen
        # what the viewer lost before it was suspended: none on a quiet machine; a viewer
        # starved of CPU by other work is a slow viewer and may already have lost a few
        lost_before = seen["drops"] + seen["gaps"]
        os.kill(viewer.pid, signal.SIGSTOP)
        try:
            suspended = source_rate(7.0)
        finally:
            os.kill(viewer.pid, signal.SIGCONT)
        assert abs(suspended / RATE - 1) < 0.01, (suspended, running)
        assert abs(running / RATE - 1) < 0.01, running
        assert monitor.stats.gaps == 0 and monitor.stats.drops == 0  # nobody waited for it
        deadline = time.monotonic() + 10
        lost = 0
        while time.monotonic() < deadline:
            after = stats()
            lost = after["drops"] + after["gaps"]
            if lost - lost_before > 100:
                break
            time.sleep(0.2)
        assert lost - lost_before > 100, after  # the suspended viewer lost frames, and counted
        viewer.send_signal(signal.SIGINT)
        assert viewer.wait(timeout=20) == 0
        reader.join(timeout=5)
        out = "".join(lines)
        m = re.search(r"detached; frames (\d+), samples \d+, drops (\d+), gaps (\d+)", out)
        assert m and int(m[2]) + int(m[3]) >= lost, out
    finally:
        monitor.close()
        if viewer.poll() is None:
            os.killpg(viewer.pid, signal.SIGKILL)
            viewer.wait(timeout=10)
    assert _nodes(topology) == before  # attaching, stalling and detaching changed nothing
