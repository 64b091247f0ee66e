"""The browser dashboard: served from the package (no CDN), loopback by default, and, end to end,
the demo spec's dashboard in headless Chromium (the sine panel is drawn and moves)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from genki_signals.buffers import DataBuffer
from proc_helpers import REPO

import bokeh  # noqa: E402,F401  (the test extra installs it)

from genki_signals.plot.dashboard import Dashboard  # noqa: E402
from genki_signals.testing.headless import Chromium, find_chromium, panel_box  # noqa: E402

LINE_BLUE = np.array([0x1F, 0x77, 0xB4])  # the dashboard's first line colour


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read(), r.headers.get("Content-Type", "")


class _Feeder:
    """Extends a buffer with a 1 kHz sine (and a spectrum-like vector) from a thread."""

    def __init__(self, buffer: DataBuffer) -> None:
        self.buffer, self.stop = buffer, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            t = (i + np.arange(20)) / 1000.0
            self.buffer.extend({"timestamp": t, "x": np.sin(2 * np.pi * 3 * t),
                                "spectrum": np.abs(np.sin(np.outer(t, np.arange(40))))})
            i += 20
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.timeout(60)
def test_dashboard_serves_bokehjs_itself_on_loopback_with_auto_panels() -> None:
    buffer = DataBuffer(maxlen=5000)
    feeder = _Feeder(buffer)
    dash = Dashboard(buffer, fps=20, feed_stats=lambda: {"frames": 1, "drops": 0})
    try:
        url = dash.start()
        assert url == f"http://127.0.0.1:{dash.port}/"
        listening = [c for c in psutil.Process().net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == dash.port]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
        status, body, _ = _get(url)  # also opens a session: its panels are made
        html = body.decode()
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
        assert scripts and all(s.startswith("/static/") for s in scripts), scripts
        assert "cdn." not in html and "https://" not in html
        status, js, _ = _get(url.rstrip("/") + scripts[0])
        assert status == 200 and len(js) > 100_000  # BokehJS, from the bokeh package
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and dash.stats()["updates"] < 10:
            time.sleep(0.05)
        status, body, ctype = _get(url + "stats")
        stats = json.loads(body)
        assert ctype.startswith("application/json")
        assert stats["url"] == url and stats["frames"] == 1 and stats["updates"] >= 10
        assert stats["panels"] == ["x", "spectrum"]  # one per key; spectrum as a spectrogram
        assert stats["errors"] == 0
    finally:
        dash.stop()
        feeder.close()


def test_a_busy_port_falls_back_to_a_free_one_unless_told_not_to() -> None:
    buffer = DataBuffer()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dash = Dashboard(buffer, ["x"], port=port)
        try:
            assert dash.start() != f"http://127.0.0.1:{port}/" and dash.port != port
        finally:
            dash.stop()
        strict = Dashboard(buffer, ["x"], port=port, port_fallback=False)
        with pytest.raises(OSError):
            strict.start()
        strict.stop()


# ---------------------------------------------------------------------- end to end
def _trace_mask(png: bytes, box: dict) -> np.ndarray:
    """Pixels of the panel's plotting frame that are close to the line colour."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    x0, y0 = int(box["x"]) + 2, int(box["y"]) + 2
    x1, y1 = int(box["x"] + box["width"]) - 2, int(box["y"] + box["height"]) - 2
    frame = img[y0:y1, x0:x1]
    return np.abs(frame - LINE_BLUE).sum(axis=2) < 90


@pytest.mark.process
@pytest.mark.browser
@pytest.mark.timeout(90)
def test_demo_spec_dashboard_in_headless_chromium(tmp_path, launcher_factory):
    if find_chromium() is None:
        pytest.fail("no Chromium on this machine: run `tools/install-test-deps.sh` as root "
                    "(or `apt-get install chromium`)")
    lp = launcher_factory(REPO / "specs" / "demo.yaml")
    lp.wait_ready()
    url = lp.wait_for(lambda d: next((n["stats"].get("dashboard_url") for n in d["nodes"]
                                      if n["id"] == "dashboard"), None), 15, "dashboard url")
    assert re.search(rf"\[dashboard\] INFO dashboard: {re.escape(url)}", lp.output)
    assert url.startswith("http://127.0.0.1:")
    with Chromium(user_data_dir=tmp_path / "chromium") as browser:
        browser.record_network()
        browser.open(url)
        browser.wait_for("window.genki && window.genki.frames >= 10", timeout=40)
        boxes = {k: panel_box(browser, k) for k in
                 ("sine_0", "wave_with_noise", "wave_spectrum", "smooth_sample_rate")}
        assert all(boxes.values()), boxes
        frame = boxes["sine_0"]["frame"]
        frames0 = browser.evaluate("window.genki.frames")
        first = browser.screenshot(tmp_path / "dashboard-1.png")
        time.sleep(1.0)
        second = browser.screenshot(tmp_path / "dashboard-2.png")
        frames1 = browser.evaluate("window.genki.frames")
        requested = browser.requested_urls()
    if os.environ.get("GENKI_SCREENSHOTS"):  # keep them to look at
        shot_dir = Path(os.environ["GENKI_SCREENSHOTS"])
        shot_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "dashboard-1.png", shot_dir / "dashboard-1.png")
        shutil.copy(tmp_path / "dashboard-2.png", shot_dir / "dashboard-2.png")
    # nothing was fetched from anywhere but the dashboard itself (no CDN)
    origin = url.rstrip("/")
    foreign = [u for u in requested if not (u.startswith(origin) or
                                            u.startswith(origin.replace("http", "ws", 1)) or
                                            u.startswith("data:"))]
    assert requested and not foreign, foreign
    # the sine panel is drawn (the 3 Hz sine fills its frame with line pixels) ...
    a, b = _trace_mask(first, frame), _trace_mask(second, frame)
    assert a.sum() > 0.01 * a.size and b.sum() > 0.01 * b.size, (a.sum(), b.sum(), a.size)
    # ... and moving: the trace is not where it was a second earlier
    assert (a ^ b).sum() > 0.2 * a.sum(), ((a ^ b).sum(), a.sum())
    assert frames1 - frames0 >= 5  # the browser kept painting new data
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
