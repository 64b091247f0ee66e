"""``genki inspect``: what a recording holds, per topic, and what is missing from it.

Per topic: node, frames, samples, first/last timestamp and duration, frame rate (of arrival),
sample rate (from the median sample interval), sequence gaps (messages lost before the
recorder), time gaps (sample intervals over 1.5x the median: the source paused or frames were
lost), the longest gap, and the fields with dtype and per-sample shape. For the file: size,
whether it was closed cleanly, its metadata, and what the reader had to skip.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from genki_signals.bus.codec import MAX_GAP
from genki_signals.frames import TIMESTAMP
from genki_signals.record.format import META_DEVICE, META_RECORDING, META_STATS, META_USER
from genki_signals.record.reader import ReadReport, Recording

__all__ = ["inspect_recording", "RecordingSummary", "TopicSummary", "format_summary"]

GAP_FACTOR = 1.5


@dataclass
class TopicSummary:
    topic: str
    node: str = ""
    frames: int = 0
    events: int = 0
    eos: int = 0
    samples: int = 0
    bytes: int = 0
    first_log: int = 0
    last_log: int = 0
    seq_gaps: int = 0
    seq_resets: int = 0
    fields: dict[str, str] = field(default_factory=dict)  # name -> "float64 (129,)"
    first_t: float = float("nan")
    last_t: float = float("nan")
    median_dt: float = float("nan")
    time_gaps: int = 0
    max_gap: float = 0.0
    _last_seq: int | None = field(default=None, repr=False)
    _ts: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def duration(self) -> float:
        return self.last_t - self.first_t if self.samples else 0.0

    @property
    def frame_rate(self) -> float:
        span = (self.last_log - self.first_log) / 1e9
        return (self.frames - 1) / span if self.frames > 1 and span > 0 else float("nan")

    @property
    def sample_rate(self) -> float:
        return 1.0 / self.median_dt if self.median_dt > 0 else float("nan")


@dataclass
class RecordingSummary:
    path: Path
    size: int
    profile: str | None
    metadata: dict[str, dict[str, str]]
    report: ReadReport
    topics: dict[str, TopicSummary]
    first_log: int | None
    last_log: int | None

    @property
    def duration(self) -> float:
        if self.first_log is None:
            return 0.0
        return (self.last_log - self.first_log) / 1e9


def inspect_recording(path: str | os.PathLike[str], *, progress: bool | None = False
                      ) -> RecordingSummary:
    """Read the whole recording once and summarise it (raises ``RecordingError`` at open)."""
    from genki_signals.record.export import _with_progress

    topics: dict[str, TopicSummary] = {}
    first_log = last_log = None
    with Recording(path) as rec:
        for stored, msg in _with_progress(rec, rec.decoded(), "inspecting", progress):
            t = topics.get(msg.topic)
            if t is None:
                t = topics[msg.topic] = TopicSummary(msg.topic, node=msg.node_id,
                                                     first_log=stored.log_time)
            first_log = stored.log_time if first_log is None else min(first_log,
                                                                       stored.log_time)
            last_log = stored.log_time if last_log is None else max(last_log, stored.log_time)
            t.last_log = stored.log_time
            t.bytes += stored.nbytes
            if t._last_seq is not None:
                if t._last_seq + 1 < msg.seq <= t._last_seq + 1 + MAX_GAP:
                    t.seq_gaps += msg.seq - t._last_seq - 1
                elif msg.seq != t._last_seq + 1:  # backwards or an implausible jump
                    t.seq_resets += 1
            t._last_seq = msg.seq
            if msg.kind == "eos":
                t.eos += 1
                continue
            if msg.kind == "event":
                t.events += 1
            else:
                t.frames += 1
            for name, arr in msg.frame.items():
                if name not in t.fields:
                    shape = f" {tuple(arr.shape[1:])}" if arr.ndim > 1 else ""
                    t.fields[name] = f"{arr.dtype.name}{shape}"
            ts = msg.frame.get(TIMESTAMP)
            if ts is not None and len(ts):
                t.samples += len(ts)
                t._ts.append(np.asarray(ts, dtype=np.float64))
        for t in topics.values():
            _time_stats(t)
        return RecordingSummary(rec.path, rec.size, rec.profile, dict(rec.metadata),
                                rec.report, topics, first_log, last_log)


def _time_stats(t: TopicSummary) -> None:
    if not t._ts:
        return
    ts = np.concatenate(t._ts)
    t._ts = []
    t.first_t, t.last_t = float(ts[0]), float(ts[-1])
    dt = np.diff(ts)
    if len(dt):
        positive = dt[dt > 0]
        t.median_dt = float(np.median(positive)) if len(positive) else float("nan")
        if t.median_dt > 0:
            over = dt > GAP_FACTOR * t.median_dt
            t.time_gaps = int(over.sum())
            t.max_gap = float(dt[over].max()) if t.time_gaps else 0.0


def _fmt(x: float, spec: str = ".1f") -> str:
    return "-" if x != x else format(x, spec)


def format_summary(s: RecordingSummary) -> str:
    """The text ``genki inspect`` prints."""
    info = s.metadata.get(META_RECORDING, {})
    lines = [f"{s.path}: {s.size / 1e6:.2f} MB, genki recording"
             + (f" of topology '{info['topology']}'" if info.get("topology") else "")
             + (f", created {info['created']}" if info.get("created") else "")
             + (f" by {info['recorder']} recorder" if info.get("recorder") else "")]
    if s.first_log is not None:
        start = datetime.fromtimestamp(s.first_log / 1e9, tz=timezone.utc)
        lines.append(f"  {s.duration:.3f} s recorded from {start.isoformat(timespec='seconds')}"
                     f", {len(s.topics)} topics")
    lines.append(f"  read: {s.report.describe()}")
    if not s.report.complete:
        lines.append(f"  not closed: other MCAP tools cannot read it as it is; "
                     f"`genki recover {s.path} <out.mcap>` writes a complete copy")
    stats = s.metadata.get(META_STATS)
    if stats:
        lines.append(f"  recorder's count: {stats.get('frames', '?')} frames, "
                     f"{stats.get('gaps', '?')} lost before the recorder")
    for name, info in sorted(s.metadata.items()):
        if name.startswith(META_DEVICE):
            lines.append(f"  device {name[len(META_DEVICE):]}: "
                         + ", ".join(f"{k} {v}" for k, v in info.items()))
    user = s.metadata.get(META_USER)
    if user:
        lines.append("  metadata: " + ", ".join(f"{k}={v}" for k, v in user.items()))
    head = (f"  {'topic':24s} {'node':12s} {'frames':>8s} {'samples':>9s} {'duration s':>10s} "
            f"{'frames/s':>9s} {'samples/s':>9s} {'seq gaps':>8s} {'time gaps':>9s} "
            f"{'max gap s':>9s}")
    lines.append(head)
    for t in sorted(s.topics.values(), key=lambda t: t.topic):
        lines.append(
            f"  {t.topic:24s} {t.node:12s} {t.frames + t.events:8d} {t.samples:9d} "
            f"{t.duration:10.3f} {_fmt(t.frame_rate):>9s} {_fmt(t.sample_rate):>9s} "
            f"{t.seq_gaps:8d} {t.time_gaps:9d} {_fmt(t.max_gap, '.3f'):>9s}")
        fields = ", ".join(f"{k}: {v}" for k, v in t.fields.items())
        lines.append(f"      fields: {fields}" + (f"; {t.events} events" if t.events else "")
                     + ("; ended (eos)" if t.eos else ""))
    return "\n".join(lines)


def summary_dict(s: RecordingSummary) -> dict[str, Any]:
    """A JSON-able form (``genki inspect --json``)."""
    return {
        "path": str(s.path), "size": s.size, "duration": s.duration,
        "metadata": s.metadata, "report": vars(s.report) | {"damaged": s.report.damaged},
        "topics": {t.topic: {
            "node": t.node, "frames": t.frames, "events": t.events, "samples": t.samples,
            "first_t": t.first_t, "last_t": t.last_t, "duration": t.duration,
            "frame_rate": t.frame_rate, "sample_rate": t.sample_rate,
            "seq_gaps": t.seq_gaps, "seq_resets": t.seq_resets, "time_gaps": t.time_gaps,
            "max_gap": t.max_gap, "fields": t.fields, "eos": t.eos, "bytes": t.bytes}
            for t in s.topics.values()},
    }


def to_json(s: RecordingSummary) -> str:
    return json.dumps(summary_dict(s), indent=2, allow_nan=True)
