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
rate. The URL is logged at start (``[dashboard] INFO dashboard: http://...``) and reported in
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
        if self.dashboard is not None:
            self.mux.extend(topic, frame)
        return []

    def _feed_stats(self) -> dict[str, Any]:
        return {"frames": self.mux.frames, "samples": self.mux.samples}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"samples": self.mux.samples, "dashboard_url": self.url}
        if self.dashboard is not None:
            d = self.dashboard
            out.update(dashboard_sessions=d.sessions, dashboard_updates=d.updates,
                       dashboard_draw_seconds=round(d.draw_seconds, 4))
        return out

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None
