"""DataBuffer: named, time-first arrays accumulated from frames, optionally circular.

A ``DataBuffer`` maps stream names to arrays whose first axis is time (``(n, ...)``), like a
pandas DataFrame whose columns may be multi-dimensional. ``extend(frame)`` appends a frame (see
``genki_signals.frames``); with ``maxlen`` the buffer is circular: every timeline keeps only its
last ``maxlen`` samples.

Timelines. ``timestamp`` is the main timeline. A key that arrives with a ``K.timestamp``
companion (a stream at another rate) keeps its own timestamps. So does a *late* key: one first
seen when the main timeline already holds samples (e.g. a derived signal added to a running
system) is stored from its first sample on, with its own timestamps; earlier rows are not padded
(NaN padding would be wrong for int/bool streams and would invent data). Likewise a key that a
frame with samples omits is moved to its own timeline (its timestamps so far are copied) rather
than silently drifting out of line with ``timestamp``. ``to_dict()`` writes a companion for every
key on its own timeline, so ``DataBuffer.from_dict(buf.to_dict())`` round-trips.

Reads. ``buffer[key]`` and ``buffer.timestamps(key)`` return *read-only views*, not copies. A
view stays valid (its contents never change) after later appends: appends write past its end,
growth moves data to a new array (the view keeps the old one alive), and a circular buffer
compacts in place only when no view of its storage is alive (checked with the storage's reference
count, CPython); otherwise it compacts into a fresh array. ``to_dict()`` returns copies.

Cost. Each key is a preallocated numpy array. Unbounded, its capacity doubles when full; with
``maxlen`` the capacity grows by doubling up to ``2 * maxlen``, after which the last ``maxlen``
rows are copied to the front when it fills up. Either way ``extend`` costs amortised O(chunk),
never O(buffer).

All methods are thread-safe (one lock), so a thread can ``extend`` while another reads.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass, field

import numpy as np

from genki_signals.errors import GenkiError
from genki_signals.frames import (
    TIMESTAMP,
    Frame,
    companion,
    frame_length,
    is_companion,
    timestamps_of,
    validate_frame,
)

__all__ = ["DataBuffer", "BufferShapeError"]

_MIN_CAPACITY = 16


class BufferShapeError(GenkiError, ValueError):
    """A key's per-sample shape or dtype differs from what the buffer already holds for it."""


class _Column:
    """Growable (or circular) storage for one time-first array.

    Rows live in ``_arr[_end - _len : _end]``. ``allocations`` counts storage arrays created, so
    tests can check that appending does not reallocate per call.
    """

    def __init__(self, maxlen: int | None, dtype: np.dtype, sample_shape: tuple[int, ...]):
        self.maxlen = maxlen
        self.dtype = dtype
        self.sample_shape = sample_shape
        self.has_rows = False  # dtype/shape are provisional until the first non-empty chunk
        self._arr: np.ndarray | None = None
        self._end = 0
        self._len = 0
        self.allocations = 0

    def __len__(self) -> int:
        return self._len

    @property
    def capacity(self) -> int:
        return 0 if self._arr is None else self._arr.shape[0]

    def view(self) -> np.ndarray:
        if self._arr is None:
            out = np.empty((0, *self.sample_shape), dtype=self.dtype)
        else:
            out = self._arr[self._end - self._len:self._end]
        out.flags.writeable = False
        return out

    def append(self, chunk: np.ndarray) -> None:
        k = chunk.shape[0]
        if k == 0:
            return
        self.has_rows = True
        if self.maxlen is not None and k > self.maxlen:
            chunk, k = chunk[-self.maxlen:], self.maxlen
        if self._end + k > self.capacity:
            self._make_room(k)
        self._arr[self._end:self._end + k] = chunk
        self._end += k
        self._len = self._len + k if self.maxlen is None else min(self._len + k, self.maxlen)

    def _make_room(self, k: int) -> None:
        """Make ``k`` free rows after ``_end``, keeping the rows that must survive."""
        keep = self._len if self.maxlen is None else min(self._len, self.maxlen - k)
        need = keep + k
        cap = self.capacity
        if self.maxlen is None:
            new_cap = max(need, 2 * cap, _MIN_CAPACITY)
        else:
            limit = 2 * self.maxlen
            new_cap = min(limit, max(need, 2 * cap, _MIN_CAPACITY))
            # At full size and no live view of the storage: compact in place, no allocation.
            # (refcount 2 = our attribute + getrefcount's argument; every view adds one.)
            if new_cap == cap and sys.getrefcount(self._arr) <= 2:
                if keep:
                    self._arr[:keep] = self._arr[self._end - keep:self._end]
                self._end = self._len = keep
                return
        new = np.empty((new_cap, *self.sample_shape), dtype=self.dtype)
        self.allocations += 1
        if keep:
            new[:keep] = self._arr[self._end - keep:self._end]
        self._arr, self._end, self._len = new, keep, keep


@dataclass
class _Stream:
    """One key: its data column and, when it has its own timeline, its timestamps column."""

    data: _Column
    own_ts: _Column | None = None  # None: shares the main timeline


@dataclass
class _Plan:
    """Validated work for one ``extend`` (computed before anything is mutated)."""

    n: int
    timestamps: np.ndarray
    new: dict[str, tuple[np.ndarray, bool]] = field(default_factory=dict)  # key -> (arr, own)
    detach: list[str] = field(default_factory=list)
    appends: list[tuple[str, np.ndarray, np.ndarray | None]] = field(default_factory=list)


class DataBuffer:
    """Named time-first arrays accumulated from frames; circular per timeline with ``maxlen``.

    See the module docstring for timelines, late keys, views and cost.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        if maxlen is not None and (isinstance(maxlen, bool) or int(maxlen) != maxlen
                                   or maxlen < 1):
            raise ValueError(f"DataBuffer: maxlen must be a positive integer or None, "
                             f"got {maxlen!r}")
        self._maxlen = None if maxlen is None else int(maxlen)
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._ts = _Column(self._maxlen, np.dtype(np.float64), ())
        self._streams: dict[str, _Stream] = {}
        self._seen_timestamp = False

    # ------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, np.ndarray], maxlen: int | None = None) -> DataBuffer:
        """A buffer holding ``data`` (a frame, e.g. from ``to_dict()``)."""
        buf = cls(maxlen=maxlen)
        buf.extend(data)
        return buf

    @property
    def maxlen(self) -> int | None:
        return self._maxlen

    # ------------------------------------------------------------ writing
    def extend(self, frame: Mapping[str, np.ndarray]) -> None:
        """Append a frame. ``{}`` (an empty source read) is a no-op.

        Raises ``GenkiError`` (from ``frames.validate_frame``) for a malformed frame and
        ``BufferShapeError`` naming the key when a key's per-sample shape or dtype changes. A
        rejected frame leaves the buffer unchanged.
        """
        if not frame:
            return
        validate_frame(frame, where="DataBuffer.extend")
        with self._lock:
            plan = self._plan(frame)
            self._apply(plan)

    def _plan(self, frame: Mapping[str, np.ndarray]) -> _Plan:
        n = frame_length(frame)
        ts = np.asarray(frame[TIMESTAMP], dtype=np.float64)
        plan = _Plan(n=n, timestamps=ts)
        main_has_rows = len(self._ts) > 0
        for key, value in frame.items():
            if key == TIMESTAMP or is_companion(key):
                continue
            arr = np.asarray(value)
            own = companion(key) in frame
            key_ts = (np.asarray(timestamps_of(frame, key), dtype=np.float64) if own else None)
            stream = self._streams.get(key)
            if stream is None:
                # A key is on the main timeline only if it was there from the main's start.
                own_timeline = own or main_has_rows
                plan.new[key] = (arr, own_timeline)
                plan.appends.append((key, arr, (ts if key_ts is None else key_ts)
                                     if own_timeline else None))
                continue
            self._check_compatible(key, stream.data, arr)
            if stream.own_ts is None and own:
                plan.detach.append(key)  # arrives on its own timeline now
            if stream.own_ts is not None or own:
                plan.appends.append((key, arr, ts if key_ts is None else key_ts))
            else:
                plan.appends.append((key, arr, None))
        if n:
            plan.detach += [k for k, s in self._streams.items()
                            if s.own_ts is None and k not in frame]
        return plan

    @staticmethod
    def _check_compatible(key: str, col: _Column, arr: np.ndarray) -> None:
        if not col.has_rows or arr.shape[0] == 0:
            return  # empty chunks carry no reliable shape/dtype
        if arr.shape[1:] != col.sample_shape:
            raise BufferShapeError(
                f"DataBuffer: key '{key}' has per-sample shape {arr.shape[1:]}, "
                f"but the buffer holds {col.sample_shape}")
        if arr.dtype != col.dtype:
            raise BufferShapeError(
                f"DataBuffer: key '{key}' has dtype {arr.dtype}, but the buffer holds {col.dtype}")

    def _apply(self, plan: _Plan) -> None:
        # Detach before the main timeline grows, so the copied timestamps match the rows held.
        for key in plan.detach:
            own = _Column(self._maxlen, self._ts.dtype, ())
            own.append(self._ts.view())
            self._streams[key].own_ts = own
        for key, (arr, own_timeline) in plan.new.items():
            self._streams[key] = _Stream(
                _Column(self._maxlen, arr.dtype, arr.shape[1:]),
                _Column(self._maxlen, self._ts.dtype, ()) if own_timeline else None)
        self._seen_timestamp = True
        self._ts.append(plan.timestamps)
        for key, arr, key_ts in plan.appends:
            stream = self._streams[key]
            col = stream.data
            if not col.has_rows and arr.shape[0]:
                col.dtype, col.sample_shape = arr.dtype, arr.shape[1:]  # first real data fixes them
            col.append(arr)
            if key_ts is not None:
                stream.own_ts.append(key_ts)

    def clear(self) -> None:
        """Remove every key and sample (views handed out earlier keep their contents)."""
        with self._lock:
            self._reset()

    # ------------------------------------------------------------ reading
    def keys(self) -> KeysView[str]:
        """Stream names (``timestamp`` first, then in order of appearance; no companions)."""
        with self._lock:
            names = ([TIMESTAMP] if self._seen_timestamp else []) + list(self._streams)
        return dict.fromkeys(names).keys()

    def __getitem__(self, key: str) -> np.ndarray:
        """Read-only view of ``key``'s samples (valid after later appends; see module doc)."""
        with self._lock:
            if key == TIMESTAMP and self._seen_timestamp:
                return self._ts.view()
            stream = self._streams.get(key)
            if stream is None:
                hint = (f"; use buffer.timestamps('{key[:-len('.timestamp')]}')"
                        if is_companion(key) else "")
                raise KeyError(f"DataBuffer has no key '{key}' (keys: {list(self.keys())}){hint}")
            return stream.data.view()

    def timestamps(self, key: str = TIMESTAMP) -> np.ndarray:
        """Read-only view of the timestamps of ``key`` (its own, or the main timeline's)."""
        with self._lock:
            if key == TIMESTAMP and self._seen_timestamp:
                return self._ts.view()
            if key not in self._streams:
                raise KeyError(f"DataBuffer has no key '{key}' (keys: {list(self.keys())})")
            own = self._streams[key].own_ts
            return (self._ts if own is None else own).view()

    def has_own_timeline(self, key: str) -> bool:
        """True when ``key`` keeps its own timestamps (other rate, or added late)."""
        with self._lock:
            return key in self._streams and self._streams[key].own_ts is not None

    def to_dict(self) -> Frame:
        """Copies of everything as a frame (companions for keys on their own timeline).

        ``{}`` for a buffer that never received a frame.
        """
        with self._lock:
            if not self._seen_timestamp:
                return {}
            out: Frame = {TIMESTAMP: self._ts.view().copy()}
            for key, stream in self._streams.items():
                out[key] = stream.data.view().copy()
                if stream.own_ts is not None:
                    out[companion(key)] = stream.own_ts.view().copy()
            return out

    def __len__(self) -> int:
        """Samples on the main timeline."""
        with self._lock:
            return len(self._ts)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._streams or (key == TIMESTAMP and self._seen_timestamp)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def plot(self, key: str, plot_type: str = "line", **params):
        """A live bqplot Figure of ``key`` that updates as the buffer fills.

        ``plot_type``: ``line``, ``spectrogram``, ``trace2D`` or ``histogram``; ``params`` as in
        ``genki_signals.plot.notebook.live_plot`` (e.g. ``sample_rate=100, window_size=256``,
        ``class_names=[...]``, ``fps=15``). Needs ``pip install 'genki-signals[plot]'``.
        """
        from genki_signals.plot.notebook import live_plot

        return live_plot(self, key, plot_type, **params)

    def __repr__(self) -> str:
        return f"DataBuffer(maxlen={self._maxlen}, len={len(self)}, keys={list(self.keys())})"
