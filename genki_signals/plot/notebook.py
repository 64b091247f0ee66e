"""Live bqplot figures of a DataBuffer: ``buffer.plot(key, plot_type=...)`` in a notebook.

``live_plot(buffer, key, plot_type, **params)`` returns a ``bqplot.Figure`` (displayed by the
notebook like any widget) and registers it with one background *animator* thread per process.
The animator wakes at the display rate (``fps``, default 15), and for each live figure whose key
gained samples since its last update computes the view (``genki_signals.plot.views``) and
assigns the marks' data under ``hold_sync`` (one comm message per mark). So:

* the producer (``buffer.extend`` in the user's thread) never waits for a plot: the animator
  takes the buffer's lock only to get read-only views, and draws outside it;
* however fast the buffer fills, a figure gets at most ``fps`` updates a second, and an idle
  buffer costs nothing;
* closing a figure (``fig.close()``, or the notebook closing its comm) stops its updates at
  once: an observer on the figure's ``comm`` unregisters it and closes its marks, axes and
  scales, so nothing of it stays in ipywidgets' registry. The animator holds figures only
  weakly, so an unused figure is released too; with nothing left to draw the thread exits.

A ``LivePlot`` (``fig.live``) holds the buffer, the panel spec and counters (``updates``,
``errors``); ``fig.live.refresh()`` draws once, synchronously (tests).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
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
)

log = logging.getLogger(__name__)

DEFAULT_FPS = 15.0
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]


def _bqplot() -> Any:
    try:
        import bqplot
    except ImportError as exc:
        raise missing_extra("bqplot and ipywidgets", exc) from None
    return bqplot


def live_plot(buffer: Any, key: str, plot_type: str = "line", *, fps: float = DEFAULT_FPS,
              **params: Any) -> Any:
    """A live bqplot Figure of ``buffer[key]`` (see the module docstring).

    ``params`` are ``PanelSpec`` fields: ``window`` (seconds shown), ``max_points``,
    ``sample_rate``/``window_size``/``channel``/``rows``/``dynamic_range`` (spectrogram),
    ``class_names``/``bins`` (histogram), ``title``, ``unit``.
    """
    spec = PanelSpec(key=key, type=plot_type, **params)
    if not fps or fps <= 0:
        raise ValueError(f"plot: fps must be > 0, got {fps!r}")
    figure = _FIGURES[spec.type](_bqplot(), spec)
    live = LivePlot(buffer, spec, figure, fps)
    figure.live = live
    try:
        live.refresh()  # draw what is there now; a key that cannot be drawn so fails here
    except Exception:
        live.close()
        raise
    ANIMATOR.add(live)
    return figure


class LivePlot:
    """One figure bound to one buffer key; ``refresh()`` pulls the view and pushes it."""

    def __init__(self, buffer: Any, spec: PanelSpec, figure: Any, fps: float) -> None:
        self.buffer = buffer
        self.spec = spec
        self.state = PanelState(spec)
        self.period = 1.0 / float(fps)
        self.next_due = 0.0
        self.updates = 0
        self.errors = 0
        self.last_error: str | None = None
        self.closed = False
        self._figure = weakref.ref(figure)
        self._lock = threading.Lock()
        me = weakref.ref(self)

        def on_comm(change: dict[str, Any]) -> None:
            live = me()
            if live is not None and change["new"] is None:
                live.close()

        figure.observe(on_comm, names=["comm"])

    @property
    def figure(self) -> Any:
        return self._figure()

    def refresh(self) -> bool:
        """Draw the latest data if the key changed; False when there was nothing new."""
        fig = self.figure
        if fig is None or self.closed:
            return False
        with self._lock:
            if not self.state.changed(self.buffer):
                return False
            data = self.state.view(self.buffer)
            if data is None:
                return False
            _UPDATERS[self.spec.type](fig, self.spec, data)
            self.updates += 1
            return True

    def close(self) -> None:
        """Stop updating; close the figure's marks, axes and scales (idempotent)."""
        if self.closed:
            return
        self.closed = True
        ANIMATOR.remove(self)
        fig = self.figure
        if fig is None:
            return
        widgets: list[Any] = []
        for mark in fig.marks:
            widgets.append(mark)
            widgets.extend(mark.scales.values())
        widgets.extend(fig.axes)
        widgets.extend(getattr(a, "scale", None) for a in fig.axes)
        widgets.extend([fig.scale_x, fig.scale_y, getattr(fig, "layout", None)])
        seen: set[int] = set()
        for w in widgets:
            if w is not None and id(w) not in seen:
                seen.add(id(w))
                try:
                    w.close()
                except Exception:  # a widget may already be gone
                    pass
        if fig.comm is not None:
            fig.close()
        self.buffer = None  # release the data with the figure


class Animator:
    """One daemon thread updating every live figure at its display rate (see module doc)."""

    def __init__(self) -> None:
        self._plots: list[weakref.ref[LivePlot]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, plot: LivePlot) -> None:
        with self._lock:
            self._plots.append(weakref.ref(plot))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="genki-plot-animator",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def remove(self, plot: LivePlot) -> None:
        with self._lock:
            self._plots = [r for r in self._plots if r() is not None and r() is not plot]

    @property
    def plots(self) -> list[LivePlot]:
        with self._lock:
            return [p for p in (r() for r in self._plots) if p is not None and not p.closed]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._plots = [r for r in self._plots
                               if r() is not None and not r().closed
                               and r().figure is not None]
                if not self._plots:
                    self._thread = None
                    return
                plots = [r() for r in self._plots]
            now = time.monotonic()
            next_due = now + 0.5
            for plot in plots:
                if plot is None:
                    continue
                if now >= plot.next_due:
                    plot.next_due = now + plot.period
                    try:
                        plot.refresh()
                    except Exception as exc:  # a broken plot must not stop the others
                        plot.errors += 1
                        plot.last_error = f"{type(exc).__name__}: {exc}"
                        if plot.errors <= 3:
                            log.warning("plot of '%s' failed: %s", plot.spec.key,
                                        plot.last_error)
                next_due = min(next_due, plot.next_due)
            del plots, plot
            self._wake.wait(max(0.0, next_due - time.monotonic()))
            self._wake.clear()


ANIMATOR = Animator()


# ====================================================================== figures
def _layout(bq: Any) -> dict[str, Any]:
    return {"animation_duration": 0, "fig_margin": {"top": 40, "bottom": 50, "left": 60,
                                                      "right": 20}}


def _line_figure(bq: Any, spec: PanelSpec) -> Any:
    xs, ys = bq.LinearScale(), bq.LinearScale()
    lines = bq.Lines(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys}, colors=COLORS,
                     labels=[spec.key], display_legend=False)
    axes = [bq.Axis(label="t (s)", scale=xs),
            bq.Axis(label=spec.label, scale=ys, side="left")]
    return bq.Figure(marks=[lines], axes=axes, title=spec.title or spec.key, **_layout(bq))


def _update_line(fig: Any, spec: PanelSpec, data: LineData) -> None:
    mark = fig.marks[0]
    with mark.hold_sync():
        if len(data.ys) == 1:
            mark.x, mark.y = data.xs[0], data.ys[0]
        else:
            n = min(len(y) for y in data.ys)
            mark.x = np.stack([x[-n:] for x in data.xs])
            mark.y = np.stack([y[-n:] for y in data.ys])
            if list(mark.labels) != data.labels:
                mark.labels = data.labels
                mark.display_legend = True


def _spectrogram_figure(bq: Any, spec: PanelSpec) -> Any:
    xs, ys = bq.LinearScale(), bq.LinearScale()
    cs = bq.ColorScale(scheme="viridis")
    # bqplot squeezes arrays: an image needs at least 2 x 2 cells to stay 2-D
    heat = bq.HeatMap(x=np.arange(2.0), y=np.arange(2.0), color=np.zeros((2, 2)),
                      scales={"x": xs, "y": ys, "color": cs})
    axes = [bq.Axis(label="t (s)", scale=xs),
            bq.Axis(label="Hz", scale=ys, side="left"),
            bq.ColorAxis(label="dB", scale=cs, side="right")]
    return bq.Figure(marks=[heat], axes=axes, title=spec.title or spec.key, **_layout(bq))


def _update_spectrogram(fig: Any, spec: PanelSpec, data: SpectrogramData) -> None:
    mark = fig.marks[0]
    if fig.axes[1].label != data.freq_label:
        fig.axes[1].label = data.freq_label
    cs = mark.scales["color"]
    times, db = data.times, data.db
    if len(times) == 1:  # one spectrum so far: two columns, or bqplot squeezes it to 1-D
        times, db = np.array([times[0] - data.dt, times[0]]), np.repeat(db, 2, axis=0)
    with mark.hold_sync():
        mark.x = times
        mark.y = data.freqs
        mark.color = db.T  # (len(y), len(x)): frequency rows, time columns
    with cs.hold_sync():
        cs.min, cs.max = float(data.low), float(data.high)


def _trace_figure(bq: Any, spec: PanelSpec) -> Any:
    xs, ys = bq.LinearScale(), bq.LinearScale()
    path = bq.Lines(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys}, colors=COLORS[:1])
    head = bq.Scatter(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys},
                      colors=[COLORS[3]], default_size=48)
    unit = f" ({spec.unit})" if spec.unit else ""
    axes = [bq.Axis(label=f"x{unit}", scale=xs),
            bq.Axis(label=f"y{unit}", scale=ys, side="left")]
    return bq.Figure(marks=[path, head], axes=axes, title=spec.title or spec.key, **_layout(bq))


def _update_trace(fig: Any, spec: PanelSpec, data: TraceData) -> None:
    path, head = fig.marks
    with path.hold_sync():
        path.x, path.y = data.x, data.y
    if len(data.x):
        with head.hold_sync():
            head.x, head.y = data.x[-1:], data.y[-1:]


def _histogram_figure(bq: Any, spec: PanelSpec) -> Any:
    ys = bq.LinearScale(min=0.0)
    xs = bq.OrdinalScale()
    bars = bq.Bars(x=list(spec.class_names or []), y=np.zeros(len(spec.class_names or [])),
                   scales={"x": xs, "y": ys}, colors=COLORS[:1], padding=0.2)
    ylabel = spec.unit or ("Probability" if spec.class_names else spec.key)
    axes = [bq.Axis(scale=xs), bq.Axis(label=ylabel, scale=ys, side="left")]
    return bq.Figure(marks=[bars], axes=axes, title=spec.title or spec.key, **_layout(bq))


def _update_histogram(fig: Any, spec: PanelSpec, data: BarData) -> None:
    mark = fig.marks[0]
    with mark.hold_sync():
        if list(mark.x) != data.names:
            mark.x = data.names
        mark.y = data.heights


_FIGURES = {"line": _line_figure, "spectrogram": _spectrogram_figure,
            "trace2D": _trace_figure, "histogram": _histogram_figure}
_UPDATERS = {"line": _update_line, "spectrogram": _update_spectrogram,
             "trace2D": _update_trace, "histogram": _update_histogram}
