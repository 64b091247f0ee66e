"""The plot sink while no browser is connected: frames are held and written in batches, and the
buffer then holds exactly what frame-by-frame writes give; with a session open, every frame is
written at once. A real dashboard (Bokeh server on a free loopback port) decides which."""

from __future__ import annotations

import time
import urllib.request

import bokeh  # noqa: F401  (the test extra installs it; without it this fails, never skips)
import numpy as np
import pytest

from genki_signals.buffers import DataBuffer
from genki_signals.frames import Topic
from genki_signals.plot.feed import TopicMux
from genki_signals.plot.node import IDLE_BATCH, IDLE_LINGER, PlotSinkLogic

pytestmark = pytest.mark.timeout(60)

SIGNALS, DERIVED = Topic.parse("signals/main"), Topic.parse("derived/main")


def demo_frames(count: int) -> list[tuple[Topic, dict[str, np.ndarray]]]:
    """The demo's two inputs, 4-sample frames, interleaved; the derived one with a spectrum."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        t = (4 * i + np.arange(4)) / 100.0
        out.append((SIGNALS, {"timestamp": t, "sine_0": np.sin(t), "noise": rng.normal(size=4)}))
        out.append((DERIVED, {"timestamp": t + 0.001, "wave_with_noise": rng.normal(size=4),
                              "wave_spectrum": rng.random((4, 129))}))
    return out


def assert_same_buffer(got: DataBuffer, want: DataBuffer) -> None:
    assert sorted(got.keys()) == sorted(want.keys())
    assert np.array_equal(got.timestamps(), want.timestamps())
    for key in want.keys():  # noqa: SIM118 - a DataBuffer, not a dict
        assert got[key].tobytes() == want[key].tobytes(), key
        assert np.array_equal(got.timestamps(key), want.timestamps(key)), key


def test_unwatched_dashboard_writes_held_frames_in_batches_with_the_same_result():
    logic = PlotSinkLogic(["sine_0"], port=0, history=500)
    reference = DataBuffer(maxlen=500)
    mux = TopicMux(reference)
    frames = demo_frames(150)  # 300 frames: over the history, so the batches also evict
    try:
        logic.start()
        assert logic.dashboard is not None and logic.dashboard.sessions == 0
        for i, (topic, frame) in enumerate(frames):
            logic.on_frame(topic, frame, 0.0)
            mux.extend(topic, frame)
            assert logic.stats()["dashboard_held"] == (i + 1) % IDLE_BATCH
        assert logic.mux.frames == 300 - 300 % IDLE_BATCH  # written so far, in batches
        logic.flush()
        assert logic.stats()["dashboard_held"] == 0
        assert logic.mux.frames == mux.frames == 300 and logic.mux.samples == mux.samples
        assert logic.mux.primary == SIGNALS  # the first main topic to arrive, as unbatched
        assert_same_buffer(logic.buffer, reference)
    finally:
        logic.close()


def test_a_held_frame_the_buffer_refuses_is_counted_and_skipped():
    logic = PlotSinkLogic(port=0, history=100)
    try:
        logic.start()
        frames = demo_frames(3)
        bad = {"timestamp": np.array([0.5, 0.51]), "sine_0": np.zeros((2, 3))}  # shape change
        for topic, frame in [*frames[:4], (SIGNALS, bad), *frames[4:]]:
            logic.on_frame(topic, frame, 0.0)
        logic.flush()
        assert logic.frame_errors == 1
        assert logic.mux.frames == 6 and len(logic.buffer["sine_0"]) == 12
    finally:
        logic.close()


def test_watched_dashboard_writes_every_frame_at_once():
    logic = PlotSinkLogic(["sine_0"], port=0, history=500)
    try:
        url = None
        logic.start()
        url = logic.url
        assert logic.linger == IDLE_LINGER > 0  # unwatched: the runner reads in batches
        frames = demo_frames(10)
        logic.on_frame(*frames[0], 0.0)
        assert logic.stats()["dashboard_held"] == 1
        with urllib.request.urlopen(url, timeout=20) as page:  # opens a session
            assert page.status == 200
        deadline = time.monotonic() + 10
        while logic.dashboard.sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert logic.dashboard.sessions >= 1
        assert logic.linger == 0.0  # watched: each frame as it comes
        for topic, frame in frames[1:]:
            logic.on_frame(topic, frame, 0.0)
            assert logic.stats()["dashboard_held"] == 0
        assert logic.mux.frames == 20  # the held one first, then each as it came
        assert len(logic.buffer["sine_0"]) == 40
    finally:
        logic.close()
