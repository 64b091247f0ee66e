"""Coalescing replayed frames: consecutive frames of one topic concatenated into larger ones.

At full speed a replay is bounded by the per-frame cost of the bus (encode, send, receive,
decode, merge) rather than by compute when the recorded frames are small (the demo's are 4
samples). Every operator is chunking-independent by contract (the same samples give the same
outputs however they are cut into frames), so the replay node may hand its lossless
downstream fewer, larger frames without changing any output sample.

A run of frames is joined only when all of these hold, so nothing but the frame boundaries
change:

* same topic (one timeline) and kind ``data``: an ``event`` frame, a timeline change (another
  topic in between) or the end of the recording ends the run;
* the same field names in the same order, dtypes and per-sample shapes;
* every field has as many rows as ``timestamp`` (a frame carrying companion timelines of other
  lengths is passed through unchanged);
* the joined frame stays within ``max_samples`` rows, ``max_bytes`` bytes and ``max_span``
  seconds of ``timestamp``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from genki_signals.frames import TIMESTAMP
from genki_signals.record.player import Played

__all__ = ["CoalesceLimits", "coalesce"]


@dataclass(frozen=True, slots=True)
class CoalesceLimits:
    """Bounds on one joined frame: rows, bytes (all fields) and seconds of ``timestamp``."""

    max_samples: int = 1024
    max_bytes: int = 1 << 20
    max_span: float = 10.0


def _layout(frame: dict[str, np.ndarray]) -> tuple | None:
    """What must match for two frames to join; None when this frame cannot be joined."""
    ts = frame.get(TIMESTAMP)
    if ts is None or ts.ndim != 1 or not len(ts):
        return None
    n = len(ts)
    layout = []
    for name, arr in frame.items():
        if arr.ndim == 0 or arr.shape[0] != n:
            return None
        layout.append((name, arr.dtype.str, arr.shape[1:]))
    return tuple(layout)


def coalesce(played: Iterable[Played], limits: CoalesceLimits = CoalesceLimits()
             ) -> list[Played]:
    """``played`` with runs of joinable consecutive frames concatenated (order kept)."""
    out: list[Played] = []
    run: list[Played] = []
    run_layout = None
    rows = nbytes = 0
    t_first = 0.0

    def flush() -> None:
        nonlocal run, run_layout
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first = run[0]
            frame = {name: np.concatenate([p.frame[name] for p in run])
                     for name in first.frame}
            out.append(Played(first.topic, first.timeline, first.kind, frame))
        run, run_layout = [], None

    for p in played:
        layout = _layout(p.frame) if p.kind == "data" else None
        if layout is None:
            flush()
            out.append(p)
            continue
        ts = p.frame[TIMESTAMP]
        n = len(ts)
        size = sum(a.nbytes for a in p.frame.values())
        if run and (p.topic != run[0].topic or layout != run_layout
                    or rows + n > limits.max_samples or nbytes + size > limits.max_bytes
                    or float(ts[-1]) - t_first > limits.max_span):
            flush()
        if not run:
            run_layout, rows, nbytes, t_first = layout, 0, 0, float(ts[0])
        run.append(p)
        rows += n
        nbytes += size
    flush()
    return out
