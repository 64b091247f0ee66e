"""Sampler: turns functions of time into a source sampled at a fixed rate.

``Sampler({'sine': SineWave(3), 'mouse': read_mouse}, sample_rate=100)`` runs a daemon thread
that samples every function on a drift-free schedule: tick ``k`` is at ``t0 + k / sample_rate``
(``t0`` = clock time at ``start()``). The thread waits on an ``Event`` until the next tick (so
``stop()`` is instant), and on waking emits every tick whose time has passed: a late wake-up
catches up, never skips, and the timestamps are always the ideal tick times. So the long-run rate
is exact whatever the OS scheduler's jitter. ``start()`` returns once tick 0 has been sampled, so
a ``read()`` right after it already carries every key (see ``Source`` for empty reads).

Each function is called with times in seconds on the sampler's clock. A function that declares
``vectorized = True`` (``SineWave`` and friends) is called once per wake-up with an array of
the due tick times and must return ``(n, ...)``; any other callable (a plain ``def f(t)``, a
mouse position reader) is called once per tick with a float and the results are stacked.
Entries that are ``Source`` objects are also started and stopped with the sampler.

**Sampled on read.** When every function is vectorized and announces its live parameter
changes (``add_change_listener``: ``SineWave``, ``SquareWave``, ``TriangleWave``,
``RandomNoise``), there is no thread at all: ``read()`` samples every tick due by then in one
batch, with the same ideal tick times, and a parameter change first samples the ticks due
before it with the old value. The samples are the same as the thread's; an idle 100 Hz source
costs nothing between reads instead of a wake-up per tick.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP, Frame, concat_frames

__all__ = ["Sampler"]

log = logging.getLogger(__name__)

_MAX_CATCHUP_S = 0.1  # at most this much backlog per batch, so stop() stays prompt
_START_TIMEOUT_S = 2.0  # start() waits at most this long for tick 0


class Sampler(Source):
    """Samples named functions of time at ``sample_rate`` in a background daemon thread."""

    def __init__(self, sources: Mapping[str, Callable[[Any], Any]], sample_rate: float,
                 clock: Clock | None = None) -> None:
        super().__init__(clock)
        if not isinstance(sources, Mapping) or not sources:
            raise SourceParameterError("Sampler: 'sources' must be a non-empty dict name -> f(t)")
        for name, fn in sources.items():
            if not isinstance(name, str) or not name or "." in name or name == TIMESTAMP:
                raise SourceParameterError(
                    f"Sampler: bad stream name {name!r} in 'sources' (non-empty str, no '.', "
                    f"not '{TIMESTAMP}')")
            if not callable(fn):
                raise SourceParameterError(
                    f"Sampler: sources['{name}'] must be callable f(t), got {type(fn).__name__}")
        try:
            rate = float(sample_rate)
        except (TypeError, ValueError):
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            raise SourceParameterError(
                f"Sampler: 'sample_rate' must be a positive finite number, got {sample_rate!r}")
        self.sources: dict[str, Callable[[Any], Any]] = dict(sources)
        self.sample_rate = rate
        self.stream_names = list(self.sources)
        self._lock = threading.Lock()  # guards _pending, _empty, _error
        self._pending: list[Frame] = []
        self._empty: Frame | None = None  # zero-length template, known after the first sample
        self._error: SourceError | None = None
        self._stop = threading.Event()
        self._first_batch = threading.Event()
        self._thread: threading.Thread | None = None
        # sampled on read (no thread): every source is vectorized and announces changes
        self.sampled_on_read = all(
            getattr(fn, "vectorized", False) and hasattr(fn, "add_change_listener")
            and not isinstance(fn, Source) for fn in self.sources.values())
        self._on_read_active = False
        self._t0 = 0.0
        self._next_tick = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start sampling; tick 0 is now and has been sampled when this returns.

        Idempotent while active; restartable after stop.
        """
        if self.is_active:
            return
        self.stop()
        with self._lock:
            self._error = None
        for fn in self.sources.values():
            if isinstance(fn, Source):
                fn.start()
        self._stop.clear()
        if self.sampled_on_read:
            with self._lock:
                self._t0, self._next_tick, self._on_read_active = self.clock.now(), 0, True
            for fn in self.sources.values():
                fn.add_change_listener(self._catch_up)
            self._catch_up()  # tick 0
            return
        self._first_batch.clear()
        t0 = self.clock.now()
        self._thread = threading.Thread(target=self._run, args=(t0,), daemon=True,
                                        name=f"genki-sampler[{','.join(self.sources)}]")
        self._thread.start()
        # Return once tick 0 is sampled (or failed), so a read() right after start() already
        # has every key and shape rather than {}; bounded in case a source blocks.
        self._first_batch.wait(timeout=_START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop sampling (idempotent, returns promptly). Unread samples stay readable."""
        if self._on_read_active:
            self._catch_up()  # the ticks due until now, as the thread would have sampled them
            with self._lock:
                self._on_read_active = False
            for fn in self.sources.values():
                fn.remove_change_listener(self._catch_up)
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        for fn in self.sources.values():
            if isinstance(fn, Source):
                fn.stop()

    @property
    def is_active(self) -> bool:
        if self.sampled_on_read:
            return self._on_read_active and self._error is None
        thread = self._thread
        return (thread is not None and thread.is_alive() and not self._stop.is_set()
                and self._error is None)

    # ------------------------------------------------------------ data
    def read(self) -> Frame:
        """All samples since the last read (see ``Source`` for the empty convention).

        Raises ``SourceError`` naming the stream if a function raised in the sampling thread
        (the sampler has then stopped).
        """
        if self._on_read_active:
            self._catch_up()
        with self._lock:
            if self._error is not None:
                raise self._error
            chunks, self._pending = self._pending, []
            empty = self._empty
        if not chunks:
            return {} if empty is None else {k: v.copy() for k, v in empty.items()}
        return concat_frames(chunks)

    # ------------------------------------------------------------ sampled on read
    def _catch_up(self) -> None:
        """Sample every tick due by now in one batch (sampled-on-read mode)."""
        with self._lock:
            if not self._on_read_active or self._error is not None:
                return
            k, t0, rate = self._next_tick, self._t0, self.sample_rate
            due = self._ticks_due(t0, self.clock.now(), rate)
            if due <= k:
                return
            ts = t0 + np.arange(k, due, dtype=np.float64) / rate
            try:
                frame = self._conform(self._sample(ts))
            except SourceError as exc:
                log.error("%s", exc)
                self._error = exc
                self._on_read_active = False
                return
            self._pending.append(frame)
            if self._empty is None:
                self._empty = {key: v[:0].copy() for key, v in frame.items()}
            self._next_tick = due

    # ------------------------------------------------------------ thread
    def _run(self, t0: float) -> None:
        try:
            self._loop(t0)
        finally:
            self._first_batch.set()  # never leave start() waiting

    def _loop(self, t0: float) -> None:
        rate = self.sample_rate
        max_batch = max(1, int(rate * _MAX_CATCHUP_S))
        k = 0  # next tick to emit
        while not self._stop.is_set():
            now = self.clock.now()
            due = self._ticks_due(t0, now, rate)
            while due > k and not self._stop.is_set():
                upto = min(due, k + max_batch)
                ts = t0 + np.arange(k, upto, dtype=np.float64) / rate
                try:
                    frame = self._conform(self._sample(ts))
                except SourceError as exc:
                    log.error("%s", exc)
                    with self._lock:
                        self._error = exc
                    return
                with self._lock:
                    self._pending.append(frame)
                    if self._empty is None:
                        self._empty = {key: v[:0].copy() for key, v in frame.items()}
                k = upto
                self._first_batch.set()
            self._stop.wait(max(0.0, t0 + k / rate - self.clock.now()))

    @staticmethod
    def _ticks_due(t0: float, now: float, rate: float) -> int:
        """Number of ticks ``j`` with ``t0 + j / rate <= now``."""
        due = max(0, math.floor((now - t0) * rate) + 1)
        while due > 0 and t0 + (due - 1) / rate > now:  # guard float rounding at the boundary
            due -= 1
        while t0 + due / rate <= now:
            due += 1
        return due

    def sample_at(self, ts: np.ndarray) -> Frame:
        """The frame the functions give at times ``ts`` (s), computed now in the caller's
        thread (what the sampling thread does each tick; the spec checker's dry run uses it to
        learn each stream's per-sample shape and dtype). Raises ``SourceError``."""
        return self._sample(np.asarray(ts, dtype=np.float64))

    def _sample(self, ts: np.ndarray) -> Frame:
        frame: Frame = {TIMESTAMP: ts}
        n = len(ts)
        for name, fn in self.sources.items():
            try:
                if getattr(fn, "vectorized", False):
                    values = np.asarray(fn(ts))
                else:
                    values = np.stack([np.asarray(fn(float(t))) for t in ts])
            except Exception as exc:
                raise SourceError(f"Sampler: source '{name}' raised {type(exc).__name__}: {exc}"
                                  ) from exc
            if values.ndim == 0 or values.shape[0] != n:
                raise SourceError(
                    f"Sampler: vectorized source '{name}' returned shape {values.shape} for "
                    f"{n} times; expected ({n}, ...)")
            frame[name] = values
        return frame

    def _conform(self, frame: Frame) -> Frame:
        """Keep every stream's per-sample shape and dtype those of its first sample."""
        template = self._empty
        if template is None:
            return frame
        for name in self.sources:
            want, got = template[name], frame[name]
            if got.shape[1:] != want.shape[1:]:
                raise SourceError(f"Sampler: source '{name}' changed per-sample shape from "
                                  f"{want.shape[1:]} to {got.shape[1:]}")
            if got.dtype != want.dtype:
                if not np.can_cast(got.dtype, want.dtype, casting="same_kind"):
                    raise SourceError(f"Sampler: source '{name}' changed dtype from "
                                      f"{want.dtype} to {got.dtype}")
                frame[name] = got.astype(want.dtype)
        return frame

    def __repr__(self) -> str:
        return (f"Sampler(sources={list(self.sources)}, sample_rate={self.sample_rate}, "
                f"active={self.is_active})")
