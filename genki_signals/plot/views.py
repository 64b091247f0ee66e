"""What a panel draws, computed from a DataBuffer with numpy alone (no plotting library).

Both front ends (bqplot in notebooks, Bokeh in the browser dashboard) draw the same four plot
types from these views, so they show the same thing and the maths is tested once:

* ``line``: the last ``window`` seconds of a key against its timestamps; an N-d key is one
  line per component. Long windows are decimated per bucket to its min and max
  (``minmax_decimate``), which keeps every peak visible with at most ``max_points`` points.
* ``spectrogram``: a magnitude-spectrum stream (``FourierTransform``) as an image, time
  against frequency (Hz), coloured in dB. The view keeps its own history of distinct spectra
  (an upsampled FFT repeats each spectrum until the next window completes), so the image is
  not limited by the buffer's ``maxlen``.
* ``trace2D``: a 2-D signal (a mouse position) as a path, x against y, with its head marked.
* ``histogram``: a vector key (class probabilities) as bars of its latest sample, named by
  ``class_names``; a scalar key as a histogram of its values over the window.

Reads take the buffer's lock only to get read-only views (no copies under the lock), so a
producer calling ``extend`` is never held up by a plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import numpy as np

from genki_signals.params import Field, Float, Int, Name, Str, field_names, params, salvage

PLOT_TYPES = ("line", "spectrogram", "trace2D", "histogram")
PlotType = Literal["line", "spectrogram", "trace2D", "histogram"]
DEFAULT_MAX_POINTS = 2000
DEFAULT_ROWS = 120
DEFAULT_DYNAMIC_RANGE = 80.0  # dB shown below the image's maximum
_EPS = 1e-12


@params
class PanelParams:
    """A panel as written in a spec, on the command line (``KEY:TYPE:name=value``) or in a
    notebook: the fields and rules of ``PanelSpec`` (the plot sink's ``params.panels``)."""

    key: Annotated[Name, Field(description="a stream name")]
    type: PlotType = "line"
    title: Str | None = None
    unit: Str | None = None
    window: Annotated[Float, Field(gt=0, description="a number > 0 (seconds)")] | None = None
    max_points: Annotated[Int, Field(ge=10)] = DEFAULT_MAX_POINTS
    sample_rate: Annotated[Float, Field(gt=0, description="a number > 0 (Hz)")] | None = None
    window_size: Annotated[Int, Field(ge=2)] | None = None
    channel: Annotated[Int, Field(ge=0)] = 0
    rows: Annotated[Int, Field(ge=2, le=10000)] = DEFAULT_ROWS
    dynamic_range: Annotated[Float, Field(gt=0, description="a number > 0 (dB)")] = \
        DEFAULT_DYNAMIC_RANGE
    class_names: Annotated[tuple[Str | Int, ...], Field(
        min_length=1, description="a non-empty list of names")] | None = None
    bins: Annotated[Int, Field(ge=1, le=1000)] = 30


PANEL_FIELDS = tuple(field_names(PanelParams))


@dataclass
class PanelSpec:
    """One plot: which key, which type, and the type's parameters.

    ``window`` (seconds) bounds the history drawn by ``line``/``trace2D``/scalar ``histogram``
    (None: everything the buffer holds). ``sample_rate`` and ``window_size`` give a
    spectrogram its frequency axis (defaults: estimated from the buffer's main timeline, and
    ``2 * (bins - 1)``); ``channel`` picks a component of an N-d spectrum. ``rows`` is the
    spectrogram's history, ``dynamic_range`` its colour range in dB. ``unit`` is appended to
    the value axis label.
    """

    key: str
    type: str = "line"
    title: str | None = None
    unit: str | None = None
    window: float | None = None
    max_points: int = DEFAULT_MAX_POINTS
    sample_rate: float | None = None
    window_size: int | None = None
    channel: int = 0
    rows: int = DEFAULT_ROWS
    dynamic_range: float = DEFAULT_DYNAMIC_RANGE
    class_names: list[str] | None = None
    bins: int = 30

    def __post_init__(self) -> None:
        problems = check_panel(asdict(self))
        if problems:
            raise ValueError(f"plot panel: {'; '.join(problems)}")
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]

    @classmethod
    def parse(cls, value: PanelSpec | PanelParams | str | Mapping[str, Any]) -> PanelSpec:
        """From a mapping (spec files), the plot sink's parsed ``PanelParams``, or
        ``KEY[:TYPE][:name=value,...]`` (command line)."""
        if isinstance(value, PanelSpec):
            return value
        if isinstance(value, PanelParams):
            return cls(**asdict(value))
        if isinstance(value, str):
            return cls(**parse_panel_string(value))
        if isinstance(value, Mapping):
            problems = check_panel(value)
            if problems:
                raise ValueError(f"plot panel: {'; '.join(problems)}")
            return cls(**dict(value))
        raise ValueError(f"plot panel must be a key, 'KEY:TYPE' or a mapping, got {value!r}")

    @property
    def label(self) -> str:
        return f"{self.key} ({self.unit})" if self.unit else self.key

    def to_dict(self) -> dict[str, Any]:
        default = PanelSpec(self.key)
        return {k: v for k, v in asdict(self).items() if k == "key" or v != getattr(default, k)}


def parse_panel_string(text: str) -> dict[str, Any]:
    """``wave_spectrum:spectrogram:sample_rate=100,window_size=256`` -> a panel mapping."""
    parts = text.split(":", 2)
    out: dict[str, Any] = {"key": parts[0]}
    if len(parts) > 1 and parts[1]:
        out["type"] = parts[1]
    if len(parts) > 2 and parts[2]:
        for item in parts[2].split(","):
            name, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"plot panel {text!r}: expected name=value, got {item!r}")
            name = name.strip()
            if name == "class_names":
                out[name] = raw.split("|")
                continue
            try:
                value: Any = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
            out[name] = value
    return out


def check_panel(panel: Any, available: Sequence[str] | None = None) -> list[str]:
    """Problems with a panel mapping, each ``field 'NAME': message`` (empty: valid).

    The fields and their rules are ``PanelParams``; ``available``: the streams a panel may
    show (None: not known).
    """
    if not isinstance(panel, Mapping):
        return [f"must be a mapping with a 'key', got {panel!r}"]
    value, problems = salvage(PanelParams, dict(panel), path="")
    out = [str(p) for p in problems]
    if value is not None and available is not None and value.key not in available:
        out.append(f"field 'key': stream '{value.key}' is not published upstream "
                   f"(available: {', '.join(available)})")
    return out


# ====================================================================== decimation
def minmax_decimate(t: np.ndarray, y: np.ndarray, max_points: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a 1-D series: per bucket its min and its max, in order.

    Peaks survive (a plain stride would skip them). NaN samples are ignored within a bucket; an
    all-NaN bucket gives NaN (a gap in the line). The oldest samples that do not fill a whole
    bucket are dropped.
    """
    t = np.asarray(t)
    y = np.asarray(y, dtype=np.float64)
    m = y.shape[0]
    if m <= max_points:
        return t, y
    buckets = max(1, max_points // 2)
    k = math.ceil(m / buckets)
    buckets = m // k
    start = m - buckets * k
    yb = y[start:].reshape(buckets, k)
    nan = np.isnan(yb)
    lo = np.argmin(np.where(nan, np.inf, yb), axis=1)
    hi = np.argmax(np.where(nan, -np.inf, yb), axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    idx = np.empty(2 * buckets, dtype=np.intp)
    base = start + np.arange(buckets) * k
    idx[0::2] = base + first
    idx[1::2] = base + second
    return t[idx], y[idx]


def stride_decimate(n: int, max_points: int) -> slice:
    """A slice keeping at most ``max_points`` of ``n`` samples, always the newest."""
    if n <= max_points:
        return slice(None)
    step = math.ceil(n / max_points)
    return slice((n - 1) % step, None, step)


def _window_start(ts: np.ndarray, window: float | None) -> int:
    if window is None or len(ts) == 0:
        return 0
    return int(np.searchsorted(ts, ts[-1] - window, side="left"))


def _snapshot(buffer: Any, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Read-only views of ``key`` and its timestamps (None while the buffer lacks it)."""
    if key not in buffer:
        return None
    return buffer.timestamps(key), buffer[key]


def buffer_version(buffer: Any, key: str) -> tuple[int, float] | None:
    """Changes whenever ``key`` gains samples (cheap: no copy)."""
    if key not in buffer:
        return None
    ts = buffer.timestamps(key)
    return (len(ts), float(ts[-1]) if len(ts) else math.nan)


# ====================================================================== views
@dataclass
class LineData:
    xs: list[np.ndarray]
    ys: list[np.ndarray]
    labels: list[str]


def line_view(buffer: Any, spec: PanelSpec) -> LineData | None:
    snap = _snapshot(buffer, spec.key)
    if snap is None:
        return None
    ts, data = snap
    start = _window_start(ts, spec.window)
    ts, data = ts[start:], data[start:]
    flat = data.reshape(len(data), -1) if data.ndim != 1 else data[:, None]
    d = flat.shape[1]
    per_line = max(10, spec.max_points // max(d, 1)) if d > 8 else spec.max_points
    xs, ys, labels = [], [], []
    for i in range(d):
        x, y = minmax_decimate(ts, flat[:, i], per_line)
        xs.append(np.asarray(x, dtype=np.float64))
        ys.append(y)
        labels.append(spec.key if d == 1 else f"{spec.key}[{i}]")
    return LineData(xs, ys, labels)


@dataclass
class TraceData:
    x: np.ndarray
    y: np.ndarray


def trace2d_view(buffer: Any, spec: PanelSpec) -> TraceData | None:
    snap = _snapshot(buffer, spec.key)
    if snap is None:
        return None
    ts, data = snap
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"trace2D plot of '{spec.key}': needs a 2-D signal (n, 2), got "
                         f"samples of shape {data.shape[1:]}")
    start = _window_start(ts, spec.window)
    data = data[start:]
    data = data[stride_decimate(len(data), spec.max_points)]
    return TraceData(np.asarray(data[:, 0], dtype=np.float64),
                     np.asarray(data[:, 1], dtype=np.float64))


@dataclass
class BarData:
    names: list[str]
    heights: np.ndarray
    numeric: bool = False  # True: names are bin centres of a scalar histogram
    centers: np.ndarray | None = None
    width: float = 1.0


def histogram_view(buffer: Any, spec: PanelSpec) -> BarData | None:
    snap = _snapshot(buffer, spec.key)
    if snap is None:
        return None
    ts, data = snap
    if data.ndim == 1:  # a scalar: the distribution of its values over the window
        values = np.asarray(data[_window_start(ts, spec.window):], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return BarData([], np.zeros(0), numeric=True, centers=np.zeros(0))
        counts, edges = np.histogram(values, bins=spec.bins)
        centers = (edges[:-1] + edges[1:]) / 2
        return BarData([f"{c:.3g}" for c in centers], counts.astype(np.float64), numeric=True,
                       centers=centers, width=float(edges[1] - edges[0]) or 1.0)
    if len(data) == 0:
        return None
    latest = np.asarray(data[-1], dtype=np.float64).ravel()
    names = list(spec.class_names or [])
    if len(names) != latest.size:
        names = names[:latest.size] + [str(i) for i in range(len(names), latest.size)]
    return BarData(names, latest)


@dataclass
class SpectrogramData:
    times: np.ndarray  # (rows,)
    freqs: np.ndarray  # (bins,)
    db: np.ndarray  # (rows, bins)
    low: float
    high: float
    freq_label: str
    dt: float  # the time one spectrum (image column) covers, up to its timestamp
    span: tuple[float, float] | None = None  # the time axis to show (the panel's window)


class SpectrogramHistory:
    """The distinct spectra seen so far, newest last, at most ``spec.rows`` of them."""

    def __init__(self, spec: PanelSpec) -> None:
        self.spec = spec
        self._times = np.zeros(0)
        self._rows: np.ndarray | None = None  # (rows, bins) dB
        self._last_t = -math.inf
        self._last_row: np.ndarray | None = None
        self.revision = 0  # counts the spectra added

    def update(self, buffer: Any) -> SpectrogramData | None:
        snap = _snapshot(buffer, self.spec.key)
        if snap is None:
            return None
        ts, data = snap
        if data.ndim < 2:
            raise ValueError(f"spectrogram of '{self.spec.key}': needs a spectrum stream "
                             f"(n, bins), got scalar samples")
        new = int(np.searchsorted(ts, self._last_t, side="right"))
        if new < len(ts):
            self._add(np.asarray(ts[new:]), np.asarray(data[new:]))
        if self._rows is None or len(self._times) == 0:
            return None
        return self._data(buffer)

    def _add(self, ts: np.ndarray, data: np.ndarray) -> None:
        self._last_t = float(ts[-1])
        mags = data.reshape(len(data), data.shape[1], -1)
        channel = min(self.spec.channel, mags.shape[2] - 1)
        mags = np.abs(mags[:, :, channel].astype(np.float64))
        # an upsampled FFT repeats each spectrum, and is all zeros before its first window
        keep = np.any(mags != 0, axis=1)
        prev = np.concatenate([self._last_row[None, :] if self._last_row is not None
                               and self._last_row.shape == mags.shape[1:] else
                               np.full((1, mags.shape[1]), np.nan), mags[:-1]])
        keep &= np.any(mags != prev, axis=1)
        self._last_row = mags[-1].copy()
        if not keep.any():
            return
        chosen = np.flatnonzero(keep)[-self.spec.rows:]  # only what the history can hold
        rows = 20.0 * np.log10(np.maximum(mags[chosen], _EPS))
        times = ts[chosen]
        if self._rows is None or self._rows.shape[1] != rows.shape[1]:
            self._rows, self._times = rows, times
        else:
            self._rows = np.concatenate([self._rows, rows])
            self._times = np.concatenate([self._times, times])
        limit = self.spec.rows
        self._rows, self._times = self._rows[-limit:], self._times[-limit:]
        self.revision += len(times)

    def _data(self, buffer: Any) -> SpectrogramData:
        rows, times = self._rows, self._times
        span = None
        if self.spec.window is not None:  # the same seconds as the line panels beside it
            try:
                end = max(float(buffer.timestamps()[-1]), float(times[-1]))
            except (KeyError, IndexError):
                end = float(times[-1])
            span = (end - self.spec.window, end)
            first = min(int(np.searchsorted(times, span[0], side="right")), len(times) - 1)
            rows, times = rows[first:], times[first:]
        bins = rows.shape[1]
        window_size = self.spec.window_size or 2 * (bins - 1)
        rate = self.spec.sample_rate or estimate_rate(buffer)
        if rate:
            freqs = np.fft.rfftfreq(window_size, 1.0 / rate)[:bins]
            if len(freqs) < bins:
                freqs = np.arange(bins) * (rate / window_size)
            label = "Hz"
        else:
            freqs, label = np.arange(bins, dtype=np.float64), "bin"
        finite = rows[np.isfinite(rows)]
        high = float(finite.max()) if finite.size else 0.0
        low = high - self.spec.dynamic_range
        if len(self._times) > 1:
            dt = float(np.median(np.diff(self._times)))
        else:  # one spectrum so far: as wide as its window
            dt = window_size / rate if rate else 1.0
        return SpectrogramData(times.copy(), freqs, np.maximum(rows, low), low, high,
                               label, dt if dt > 0 else 1.0, span)


def estimate_rate(buffer: Any) -> float | None:
    """Sample rate of the buffer's main timeline (median spacing), None when unknown."""
    try:
        ts = buffer.timestamps()
    except KeyError:
        return None
    ts = ts[-200:]
    if len(ts) < 3:
        return None
    step = float(np.median(np.diff(ts)))
    return 1.0 / step if step > 0 else None


def guess_panel(key: str, sample_shape: tuple[int, ...]) -> PanelSpec:
    """A panel for a key of unknown meaning: long vectors look like spectra, others lines."""
    if len(sample_shape) >= 1 and sample_shape[0] > 16:
        return PanelSpec(key, "spectrogram")
    return PanelSpec(key, "line")


@dataclass
class PanelState:
    """A panel and what its view needs between updates (spectrogram history, version)."""

    spec: PanelSpec
    history: SpectrogramHistory | None = None
    version: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spec.type == "spectrogram":
            self.history = SpectrogramHistory(self.spec)

    def changed(self, buffer: Any) -> bool:
        """True (once) when the key gained samples since the last call."""
        version = buffer_version(buffer, self.spec.key)
        if version is None or version == self.version:
            return False
        self.version = version
        return True

    def view(self, buffer: Any) -> Any:
        """What to draw now; None when there is nothing (new) to draw."""
        kind = self.spec.type
        if kind == "line":
            return line_view(buffer, self.spec)
        if kind == "spectrogram":  # an upsampled FFT repeats itself: redraw new spectra only
            seen = self.history.revision
            data = self.history.update(buffer)
            if data is not None and self.history.revision == seen and \
                    self.extra.get("drawn"):
                return None
            self.extra["drawn"] = data is not None
            return data
        if kind == "trace2D":
            return trace2d_view(buffer, self.spec)
        return histogram_view(buffer, self.spec)
