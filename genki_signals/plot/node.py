"""The ``plot`` sink: a node that serves a live browser dashboard of its inputs.

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genki_signals.buffers import DataBuffer
from genki_signals.frames import Topic
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.plot.feed import TopicMux
from genki_signals.plot.views import PanelSpec, check_panel

log = logging.getLogger(__name__)

DEFAULT_PORT = 5006
DEFAULT_HISTORY = 10_000
PLOT_FIELDS = ("panels", "keys", "host", "port", "fps", "history", "title")


class PlotSinkLogic(NodeLogic):
    """Fills a DataBuffer from the node's inputs and serves a Dashboard of it."""

    input_mode = "arrival"  # frames as they arrive: a plot needs no cross-input order or wait

    def __init__(self, panels: Sequence[Any] | None = None, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, fps: float = 30.0, history: int = DEFAULT_HISTORY,
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


def build_plot_sink(node_id: str, params: Mapping[str, Any], topology: str = "") -> PlotSinkLogic:
    panels: list[Any] = list(params.get("panels") or [])
    panels += [{"key": k} for k in params.get("keys") or []
               if k not in {PanelSpec.parse(p).key for p in panels}]
    return PlotSinkLogic(panels, host=params.get("host", "127.0.0.1"),
                         port=params.get("port", DEFAULT_PORT), fps=params.get("fps", 30.0),
                         history=params.get("history", DEFAULT_HISTORY),
                         title=params.get("title") or f"{topology or 'genki-signals'}",
                         subtitle=f"node '{node_id}'")


def check_plot_params(params: Mapping[str, Any], available: Sequence[str] | None
                      ) -> list[str]:
    """Problems with a plot sink's own params (``keys`` is checked by the generic sink check),
    each ``field 'params.X': message``. ``available``: the input streams, None when unknown."""
    import ipaddress
    import numbers
    import re

    problems: list[str] = []
    panels = params.get("panels")
    if "panels" in params:
        if not isinstance(panels, list) or not panels:
            problems.append(f"field 'params.panels': must be a non-empty list of panels (a "
                            f"stream name or {{key, type, ...}}), got {panels!r}")
        else:
            for i, panel in enumerate(panels):
                mapping = {"key": panel} if isinstance(panel, str) else panel
                for problem in check_panel(mapping, available):
                    m = re.match(r"field '([^']*)': (.*)", problem, re.DOTALL)
                    problems.append(f"field 'params.panels[{i}].{m[1]}': {m[2]}" if m
                                    else f"field 'params.panels[{i}]': {problem}")
    if "port" in params:
        port = params["port"]
        if isinstance(port, bool) or not isinstance(port, numbers.Integral) or \
                not 0 <= port <= 65535:
            problems.append(f"field 'params.port': must be a port number 0..65535 (0: any free "
                            f"port), got {port!r}")
    if "host" in params:
        host = params["host"]
        ok = isinstance(host, str) and host == "localhost"
        if isinstance(host, str) and not ok:
            try:
                ipaddress.ip_address(host)
                ok = True
            except ValueError:
                ok = False
        if not ok:
            problems.append(f"field 'params.host': must be an IP address to bind (default "
                            f"127.0.0.1, loopback), got {host!r}")
    if "fps" in params:
        fps = params["fps"]
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps <= 120:
            problems.append(f"field 'params.fps': must be a number in (0, 120], got {fps!r}")
    if "history" in params:
        history = params["history"]
        if isinstance(history, bool) or not isinstance(history, numbers.Integral) or \
                not 10 <= history <= 10_000_000:
            problems.append(f"field 'params.history': must be an integer in 10..10000000 "
                            f"(samples kept per timeline), got {history!r}")
    if "title" in params and not isinstance(params["title"], str):
        problems.append(f"field 'params.title': must be a string, got {params['title']!r}")
    return problems
