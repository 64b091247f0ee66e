"""The ``plot`` sink's logic: a node that serves a live browser dashboard of its inputs.

Its params, checks and builder: ``nodes/kinds/sink_plot.py``.

In a spec::

    - id: dashboard
      kind: sink
      inputs: [{node: derived, policy: drop_oldest, maxlen: 50}]
      params:
        type: plot
        panels:                      # or keys: [a, b] (one line panel each); none: every stream
          - wave_with_noise
          - {key: wave_spectrum, type: spectrogram, sample_rate: 100, window_size: 256}
        port: 5006                   # 0: any free port; a busy port falls back to a free one
        host: 127.0.0.1              # loopback unless stated
        fps: 30                      # display rate (frames/s)
        history: 10000               # samples kept per timeline

The node's logic only appends received frames to a DataBuffer (``TopicMux``: one timeline per
topic); the Bokeh server runs in a thread of the node and reads that buffer at the display
rate. While no browser is connected nothing reads the buffer, so frames are held and written
in batches (``IDLE_BATCH`` frames per topic in one ``extend``, about a second of the demo):
the per-frame cost of an unwatched dashboard is a list append, and the node reads its inputs
``IDLE_LINGER`` s apart, all queued frames at once (``NodeLogic.linger``), not once per frame. The URL is logged at start (``[dashboard] INFO dashboard: http://...``) and reported in
the node's heartbeat stats (``dashboard_url``), so ``genki top`` and tests can find it. Without
the plot extra installed the node logs a warning and discards its input (so a spec that shows a
dashboard still runs on a base install).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from genki_signals.buffers import DataBuffer
from genki_signals.frames import Topic
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.plot.feed import TopicMux
from genki_signals.nodes.kinds.sink_plot import (DEFAULT_FPS, DEFAULT_HISTORY, DEFAULT_HOST,
                                                 DEFAULT_PORT)
from genki_signals.plot.views import PanelSpec

log = logging.getLogger(__name__)

IDLE_BATCH = 64  # frames held (all topics) while no browser is connected, then written at once
IDLE_LINGER = 0.25  # s between reads of the inputs while no browser is connected
FRAME_ERROR_LOG_LIMIT = 5


class PlotSinkLogic(NodeLogic):
    """Fills a DataBuffer from the node's inputs and serves a Dashboard of it."""

    input_mode = "arrival"  # frames as they arrive: a plot needs no cross-input order or wait

    def __init__(self, panels: Sequence[Any] | None = None, *, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, fps: float = DEFAULT_FPS,
                 history: int = DEFAULT_HISTORY,
                 title: str = "genki-signals", subtitle: str = "") -> None:
        self.panels = [PanelSpec.parse(p) for p in panels or []]
        self.host, self.port, self.fps, self.title = host, int(port), float(fps), title
        self.subtitle = subtitle
        self.buffer = DataBuffer(maxlen=int(history))
        self.mux = TopicMux(self.buffer)
        self.dashboard: Any = None
        self.url: str | None = None
        self._held: list[tuple[Topic, dict[str, np.ndarray]]] = []  # no browser: batched
        self.frame_errors = 0  # held frames the buffer refused (a shape change): skipped

    def start(self) -> None:
        try:
            from genki_signals.plot.dashboard import Dashboard

            self.dashboard = Dashboard(self.buffer, self.panels, host=self.host, port=self.port,
                                       fps=self.fps, title=self.title, subtitle=self.subtitle,
                                       feed_stats=self._feed_stats)
        except ImportError as exc:
            log.warning("no dashboard: %s; discarding frames", exc)
            return
        self.url = self.dashboard.start()
        log.info("dashboard: %s", self.url)

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        if self.dashboard is None:
            return []
        if self.dashboard.sessions:  # watched: every frame now (the display reads at its fps)
            if self._held:
                self.flush()
            self.mux.extend(topic, frame)
        else:
            self._held.append((topic, frame))
            if len(self._held) >= IDLE_BATCH:
                self.flush()
        return []

    def flush(self) -> None:
        """Write the held frames: per topic, consecutive frames with the same keys joined into
        one frame (one ``extend``); the buffer then holds what frame-by-frame writes give."""
        held, self._held = self._held, []
        by_topic: dict[Topic, list[dict[str, np.ndarray]]] = {}
        for topic, frame in held:  # topics in order of first arrival (the primary timeline)
            by_topic.setdefault(topic, []).append(frame)
        for topic, frames in by_topic.items():
            for run in _same_keys(frames):
                try:
                    joined = run[0] if len(run) == 1 else {
                        k: np.concatenate([f[k] for f in run]) for k in run[0]}
                except ValueError:  # trailing shapes differ: frame by frame below
                    joined = None
                if joined is not None:
                    try:
                        self.mux.extend(topic, joined, frames=len(run))
                        continue
                    except Exception:  # noqa: BLE001, S110 - which frame: frame by frame below
                        pass
                for frame in run:
                    try:
                        self.mux.extend(topic, frame)
                    except Exception as exc:  # noqa: BLE001 - counted and skipped
                        self.frame_errors += 1
                        if self.frame_errors <= FRAME_ERROR_LOG_LIMIT:
                            log.warning("skipped a frame of %s: %s: %s", topic,
                                        type(exc).__name__, exc)

    @property
    def linger(self) -> float:  # type: ignore[override]
        """Unwatched, frames are read in batches (``IDLE_LINGER`` s apart: a few wake-ups a
        second, not one per frame); watched, each as it comes (the display reads at fps)."""
        return 0.0 if self.dashboard is not None and self.dashboard.sessions else IDLE_LINGER

    def _feed_stats(self) -> dict[str, Any]:
        return {"frames": self.mux.frames, "samples": self.mux.samples}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.mux.samples, "dashboard_url": self.url,
                               "dashboard_held": len(self._held),
                               "dashboard_frame_errors": self.frame_errors}
        if self.dashboard is not None:
            d = self.dashboard
            out.update(dashboard_sessions=d.sessions, dashboard_updates=d.updates,
                       dashboard_draw_seconds=round(d.draw_seconds, 4))
        return out

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None


def _same_keys(frames: list[dict[str, np.ndarray]]) -> list[list[dict[str, np.ndarray]]]:
    """``frames`` cut into runs of consecutive frames with the same keys."""
    runs: list[list[dict[str, np.ndarray]]] = []
    for frame in frames:
        if runs and frame.keys() == runs[-1][0].keys():
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs
