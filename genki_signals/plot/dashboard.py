"""The browser dashboard: a Bokeh server page with one live panel per signal.

``Dashboard(buffer, panels).start()`` serves, from a background thread, a page at
``http://127.0.0.1:PORT/`` (loopback unless ``host`` says otherwise) on which every panel
(``PanelSpec``: ``line``, ``spectrogram``, ``trace2D``, ``histogram``) redraws from the buffer up
to ``fps`` times a second. ``genki plot ADDRESS`` serves one from a ``RemoteBuffer``; the ``plot``
sink node serves one from the frames it receives.

Why Bokeh: a maintained plotting library whose browser side (BokehJS) ships inside the Python
wheel and is served by the Bokeh server itself (``/static/``), so the page needs no CDN and no
network; the server pushes only changed columns over one websocket, as binary arrays.

How it stays cheap and lossy: each browser session has one periodic callback on the server's
IOLoop. A panel whose key gained no samples since the last tick is skipped; one that did gets
its view (``genki_signals.plot.views``: min/max-decimated lines, spectrogram history, ...)
assigned to its ColumnDataSource, so a panel never sends more than ``max_points`` points per
frame however fast the input. The buffer is shared with whoever fills it; the dashboard only
reads it (read-only views under the buffer's lock, drawing outside it).

Measuring what the browser shows: the page counts, in JavaScript, the animation frames in which
new data was painted (``window.genki.fps``, shown in the page header) so tests and
``tools/bench_plot.py`` read the real frame rate through the DevTools protocol. ``/stats`` answers
JSON with the server side (sessions, updates, seconds spent drawing) and the feed's counters
(frames, drops, gaps).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from genki_signals.plot import missing_extra
from genki_signals.plot.views import (
    BarData,
    LineData,
    PanelSpec,
    PanelState,
    SpectrogramData,
    TraceData,
    guess_panel,
)

log = logging.getLogger(__name__)

CLOSED_SEND = "Failed sending message as connection was closed"


class _ClosedSendFilter(logging.Filter):
    """Drops Bokeh's warning for an update that was already on its way to a browser tab that
    just closed (the ticks skip sessions without a connection, but one update can be in
    flight): normal, not a fault. Counted instead (``closed_sends`` in ``stats()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(CLOSED_SEND):
            self.count += 1
            return False
        return True


_CLOSED_SENDS = _ClosedSendFilter()

DEFAULT_FPS = 30.0
DEFAULT_WINDOW = 5.0  # seconds of history a line panel shows unless its spec says
DEFAULT_HOST = "127.0.0.1"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]

# Counts, per panel, the animation frames that painted new data of that panel (several updates
# arriving within one frame are one frame); ``fps`` is the busiest panel's (see module doc).
_FPS_JS = """
if (!window.genki) {
  const g = window.genki = {changes: 0, frames: 0, fps: 0, pending: {}, counts: {},
                            panel_fps: {}};
  let last = performance.now(), before = {}, lastFrames = 0;
  const loop = (now) => {
    const names = Object.keys(g.pending);
    if (names.length) {
      g.frames += 1;
      for (const name of names) g.counts[name] = (g.counts[name] || 0) + 1;
      g.pending = {};
    }
    if (now - last >= 1000) {
      const dt = (now - last) / 1000;
      for (const name of Object.keys(g.counts))
        g.panel_fps[name] = (g.counts[name] - (before[name] || 0)) / dt;
      g.fps = Math.max(0, ...Object.values(g.panel_fps));
      before = Object.assign({}, g.counts); last = now;
      div.text = g.fps.toFixed(1) + " frames/s in this browser";
    }
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
}
"""
_CHANGE_JS = "if (window.genki) { window.genki.changes += 1; window.genki.pending[name] = true; }"


def _bokeh() -> Any:
    try:
        import bokeh
    except ImportError as exc:
        raise missing_extra("bokeh", exc) from None
    return bokeh


class Dashboard:
    """A live dashboard of ``buffer`` (see the module docstring).

    ``panels``: PanelSpecs, keys, ``KEY:TYPE`` strings or mappings; None or empty: one panel per
    key of the buffer, chosen by ``guess(key, sample_shape)`` (default: a long vector becomes a
    spectrogram, anything else a line), panels being added as keys appear. ``port`` 0 picks a free port; a busy port falls back to a free one
    (``port_fallback``). Line, trace and spectrogram panels without a ``window`` show the last
    ``window`` seconds. ``feed_stats`` adds counters (frames, drops, gaps) to ``stats()``.
    """

    def __init__(self, buffer: Any, panels: Iterable[Any] | None = None, *,
                 host: str = DEFAULT_HOST, port: int = 0, fps: float = DEFAULT_FPS,
                 title: str = "genki-signals", ncols: int = 2, panel_width: int = 620,
                 panel_height: int = 280, feed_stats: Callable[[], dict[str, Any]] | None = None,
                 port_fallback: bool = True, subtitle: str = "",
                 guess: Callable[[str, tuple[int, ...]], PanelSpec] = guess_panel,
                 window: float = DEFAULT_WINDOW) -> None:
        _bokeh()
        if not fps or fps <= 0:
            raise ValueError(f"dashboard: fps must be > 0, got {fps!r}")
        self.buffer = buffer
        self.window = window
        self.panels = [self._windowed(PanelSpec.parse(p)) for p in panels or []]
        self.auto = not self.panels
        self.host, self.requested_port, self.port_fallback = host, int(port), port_fallback
        self.port: int | None = None
        self.fps, self.title, self.subtitle = float(fps), title, subtitle
        self.ncols, self.panel_width, self.panel_height = ncols, panel_width, panel_height
        self.feed_stats = feed_stats
        self.guess = guess
        self.updates = 0  # panel redraws sent, all sessions
        self.ticks = 0
        self.draw_seconds = 0.0
        self.errors = 0
        self.sessions = 0
        self.panel_keys: list[str] = []  # the panels shown (the latest session's)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: Any = None
        self._server: Any = None

    def _windowed(self, spec: PanelSpec) -> PanelSpec:
        """A line, trace or spectrogram without a ``window`` shows the last ``self.window``
        seconds (all panels of a page span the same time)."""
        if spec.window is None and spec.type in ("line", "trace2D", "spectrogram"):
            return dataclasses.replace(spec, window=self.window)
        return spec

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str | None:
        return None if self.port is None else f"http://{_url_host(self.host)}:{self.port}/"

    def start(self, timeout: float = 15.0) -> str:
        """Serve in a background thread; returns the URL once the port is bound."""
        ws_log = logging.getLogger("bokeh.server.views.ws")
        if _CLOSED_SENDS not in ws_log.filters:
            ws_log.addFilter(_CLOSED_SENDS)
        self._thread = threading.Thread(target=self._serve, name="genki-dashboard", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"dashboard did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self.url

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            loop.add_callback(self._shutdown)
            self._thread.join(timeout)

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _shutdown(self) -> None:
        try:
            if self._server is not None:
                self._server.stop(wait=False)
        finally:
            self._loop.stop()

    def _serve(self) -> None:
        try:
            asyncio.set_event_loop(asyncio.new_event_loop())
            from bokeh.application import Application
            from bokeh.application.handlers.function import FunctionHandler
            from bokeh.server.server import BaseServer
            from bokeh.server.tornado import BokehTornado
            from bokeh.server.util import bind_sockets
            from bokeh.settings import settings
            from tornado.httpserver import HTTPServer
            from tornado.ioloop import IOLoop

            settings.resources.set_value("server")  # BokehJS from this server, never a CDN
            for name in ("bokeh", "tornado.access"):  # no per-request chatter in node logs
                logging.getLogger(name).setLevel(logging.WARNING)
            try:
                sockets, port = bind_sockets(self.host, self.requested_port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or not self.port_fallback:
                    raise
                log.warning("port %d is busy; serving the dashboard on a free port",
                            self.requested_port)
                sockets, port = bind_sockets(self.host, 0)
            self.port = port
            origins = sorted({f"{_url_host(self.host)}:{port}", f"localhost:{port}",
                              f"127.0.0.1:{port}"})
            app = BokehTornado({"/": Application(FunctionHandler(self._make_document))},
                               extra_websocket_origins=origins,
                               extra_patterns=[(r"/stats", _make_stats_handler(),
                                                {"dashboard": self})],
                               absolute_url=self.url, use_index=False,
                               stats_log_frequency_milliseconds=3_600_000)
            http = HTTPServer(app)
            http.add_sockets(sockets)
            self._loop = IOLoop.current()
            self._server = BaseServer(self._loop, app, http)
            self._server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.start()
        finally:
            try:
                self._loop.close(all_fds=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass

    # ------------------------------------------------------------------ stats
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "sessions": self.sessions,
                               "panels": list(self.panel_keys),
                               "updates": self.updates, "ticks": self.ticks,
                               "draw_seconds": round(self.draw_seconds, 4),
                               "errors": self.errors, "fps": self.fps,
                               "closed_sends": _CLOSED_SENDS.count}
        if self.feed_stats is not None:
            out.update(self.feed_stats())
        return out

    # ------------------------------------------------------------------ documents
    def _make_document(self, doc: Any) -> None:
        from bokeh.events import DocumentReady
        from bokeh.layouts import column, row
        from bokeh.models import CustomJS, Div

        self.sessions += 1
        doc.title = self.title
        fps_div = Div(text="", styles={"color": "#555", "font-size": "12px"})
        stats_div = Div(text="", styles={"color": "#555", "font-size": "12px"})
        header = Div(text=f"<b>{_html(self.title)}</b> {_html(self.subtitle)}",
                     styles={"font-size": "16px"})
        box = column(children=[], name="panels")
        doc.add_root(column(row(header, fps_div, stats_div), box, name="dashboard"))
        doc.js_on_event(DocumentReady, CustomJS(args={"div": fps_div}, code=_FPS_JS))
        session = _Session(self, box)

        seen = [False]  # has a browser connected to this session yet?

        def connected() -> bool:
            """False once the session's browser tab is gone: bokeh keeps the session a while
            and every update sent to it would fail (a warning each). Before its first
            connection (the page is loading) the session is drawn as usual."""
            server_session = getattr(doc.session_context, "_session", None)
            count = getattr(server_session, "connection_count", 1)
            seen[0] = seen[0] or count > 0
            return count > 0 or not seen[0]

        def tick() -> None:
            if connected():
                session.tick()

        def slow_tick() -> None:
            if connected():
                stats_div.text = _format_stats(self.stats())

        doc.add_periodic_callback(tick, max(1, int(round(1000.0 / self.fps))))
        doc.add_periodic_callback(slow_tick, 1000)
        session.tick()

        def destroyed(session_context: Any) -> None:
            self.sessions -= 1

        doc.on_session_destroyed(destroyed)


class _Session:
    """The panels of one browser session and their redraw."""

    def __init__(self, dashboard: Dashboard, box: Any) -> None:
        self.d = dashboard
        self.box = box
        self.panels: list[_BokehPanel] = []
        self.keys: set[str] = set()
        if not dashboard.auto:
            for spec in dashboard.panels:
                self._add(spec)

    def _add(self, spec: PanelSpec) -> None:
        panel = _BokehPanel(spec, self.d.panel_width, self.d.panel_height)
        self.panels.append(panel)
        self.keys.add(spec.key)
        self.d.panel_keys = [p.spec.key for p in self.panels]
        self._layout()

    def _layout(self) -> None:
        from bokeh.layouts import row

        n = self.d.ncols
        figures = [p.figure for p in self.panels]
        self.box.children = [row(children=figures[i:i + n]) for i in range(0, len(figures), n)]

    def _discover(self) -> None:
        buffer = self.d.buffer
        for key in list(buffer.keys()):
            if key == "timestamp" or key in self.keys:
                continue
            sample = buffer[key]
            self._add(self.d._windowed(self.d.guess(key, tuple(sample.shape[1:]))))

    def tick(self) -> None:
        d = self.d
        start = time.perf_counter()
        d.ticks += 1
        if d.auto:
            self._discover()
        for panel in self.panels:
            try:
                if panel.refresh(d.buffer):
                    d.updates += 1
            except Exception as exc:  # one broken panel must not stop the others
                d.errors += 1
                panel.show_error(exc)
                if d.errors <= 5:
                    log.warning("dashboard panel '%s': %s: %s", panel.spec.key,
                                type(exc).__name__, exc)
        d.draw_seconds += time.perf_counter() - start


class _BokehPanel:
    """One Bokeh figure, its data source and how to redraw it from a view."""

    def __init__(self, spec: PanelSpec, width: int, height: int) -> None:
        from bokeh.models import ColumnDataSource, CustomJS
        from bokeh.plotting import figure

        self.spec = spec
        self.state = PanelState(spec)
        self.error_shown = False
        kind = spec.type
        common = {"width": width, "height": height, "title": spec.title or spec.key,
                  "name": f"panel-{spec.key}", "toolbar_location": None,
                  "output_backend": "canvas"}
        if kind == "line":
            self.source = ColumnDataSource({"xs": [], "ys": [], "color": [], "label": []})
            fig = figure(x_axis_label="t (s)", y_axis_label=spec.label, **common)
            fig.multi_line(xs="xs", ys="ys", line_color="color", line_width=1.5,
                           source=self.source, legend_field="label")
            fig.legend.visible = False
            fig.legend.location = "top_left"
            fig.x_range.range_padding = 0
        elif kind == "spectrogram":
            from bokeh.models import ColorBar, LinearColorMapper
            from bokeh.palettes import Viridis256

            self.mapper = LinearColorMapper(palette=Viridis256, low=-80, high=0)
            self.source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
            fig = figure(x_axis_label="t (s)", y_axis_label="Hz", **common)
            fig.image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=self.mapper,
                      source=self.source)
            fig.add_layout(ColorBar(color_mapper=self.mapper, title="dB", width=10), "right")
            fig.x_range.range_padding = fig.y_range.range_padding = 0
        elif kind == "trace2D":
            self.source = ColumnDataSource({"x": [], "y": []})
            self.head = ColumnDataSource({"x": [], "y": []})
            unit = f" ({spec.unit})" if spec.unit else ""
            fig = figure(x_axis_label=f"{spec.key}[0]{unit}", y_axis_label=f"{spec.key}[1]{unit}",
                         match_aspect=True, **common)
            fig.line("x", "y", source=self.source, line_color=COLORS[0], line_width=1.5)
            fig.scatter("x", "y", source=self.head, size=9, color=COLORS[3])
        else:  # histogram
            from bokeh.models import FactorRange

            names = list(spec.class_names or ["0"])
            self.source = ColumnDataSource({"name": [], "height": []})
            self.numeric_source = ColumnDataSource({"x": [], "height": [], "width": []})
            ylabel = spec.unit or ("probability" if spec.class_names else spec.key)
            self.factors = FactorRange(factors=names)
            fig = figure(x_range=self.factors, y_axis_label=ylabel, **common)
            fig.vbar(x="name", top="height", width=0.8, source=self.source, color=COLORS[0])
            fig.y_range.start = 0
        fig.title.text = f"{spec.title or spec.key} (waiting for data)"
        self.title = spec.title or spec.key
        self.figure = fig
        change_js = CustomJS(args={"name": spec.key}, code=_CHANGE_JS)
        for src in (self.source, getattr(self, "head", None)):
            if src is not None:
                src.js_on_change("data", change_js)

    def refresh(self, buffer: Any) -> bool:
        if not self.state.changed(buffer):
            return False
        data = self.state.view(buffer)
        if data is None:
            return False
        getattr(self, f"_draw_{self.spec.type.lower()}")(data)
        if self.figure.title.text != self.title and not self.error_shown:
            self.figure.title.text = self.title
        return True

    def show_error(self, exc: Exception) -> None:
        if not self.error_shown:
            self.error_shown = True
            self.figure.title.text = f"{self.spec.key}: {type(exc).__name__}: {exc}"[:120]

    def _draw_line(self, data: LineData) -> None:
        n = len(data.ys)
        self._min_y_span(data.ys)
        self.source.data = {"xs": data.xs, "ys": data.ys,
                            "color": [COLORS[i % len(COLORS)] for i in range(n)],
                            "label": data.labels}
        if n > 1 and not self.figure.legend.visible:
            self.figure.legend.visible = True

    def _min_y_span(self, ys: list[np.ndarray]) -> None:
        """Keep a nearly constant line from filling the panel with float noise (ticks like
        99.9999999999): the value axis spans at least 0.1% of the values' magnitude."""
        peak = max((float(np.nanmax(np.abs(y))) for y in ys if len(y) and
                    np.isfinite(y).any()), default=0.0)
        want = max(peak * 1e-3, 1e-9)
        current = self.figure.y_range.min_interval
        if current is None or not (0.5 * want <= current <= 2 * want):
            self.figure.y_range.min_interval = want

    def _draw_spectrogram(self, data: SpectrogramData) -> None:
        times, freqs = data.times, data.freqs
        # one image row per frequency bin, one column per spectrum; a column covers the time
        # up to its spectrum's timestamp, a row the band around its bin's frequency
        df = float(freqs[1] - freqs[0]) if len(freqs) > 1 else 1.0
        x0 = float(times[0]) - data.dt
        self.source.data = {"image": [np.ascontiguousarray(data.db.T, dtype=np.float32)],
                            "x": [x0], "y": [float(freqs[0]) - df / 2],
                            "dw": [float(times[-1]) - x0], "dh": [df * len(freqs)]}
        if (self.mapper.low, self.mapper.high) != (data.low, data.high):
            self.mapper.update(low=data.low, high=data.high)
        if data.span is not None and (self.figure.x_range.start,
                                      self.figure.x_range.end) != data.span:
            self.figure.x_range.update(start=data.span[0], end=data.span[1])
        if self.figure.yaxis[0].axis_label != data.freq_label:
            self.figure.yaxis[0].axis_label = data.freq_label

    def _draw_trace2d(self, data: TraceData) -> None:
        self.source.data = {"x": data.x, "y": data.y}
        if len(data.x):
            self.head.data = {"x": data.x[-1:], "y": data.y[-1:]}

    def _draw_histogram(self, data: BarData) -> None:
        if list(self.factors.factors) != data.names and data.names:
            self.factors.factors = data.names
        self.source.data = {"name": data.names, "height": data.heights}


def _make_stats_handler() -> type:
    from tornado.web import RequestHandler

    class StatsHandler(RequestHandler):
        def initialize(self, dashboard: Dashboard) -> None:
            self.dashboard = dashboard

        def get(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.write(json.dumps(self.dashboard.stats(), default=float))

    return StatsHandler


def _format_stats(stats: dict[str, Any]) -> str:
    parts = []
    for key in ("frames", "samples", "drops", "gaps"):
        if key in stats:
            parts.append(f"{key} {stats[key]}")
    return " · ".join(parts)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
