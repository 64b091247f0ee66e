"""A recording as numpy arrays, DataBuffers, CSV or NumPy ``.npz``: no bus, no processes.

::

    from genki_signals.record import load_recording, load_buffers, export_csv, export_npz

    data = load_recording("run.mcap")            # {"signals/main": {"timestamp": ..., ...}}
    buffers = load_buffers("run.mcap")            # {"signals/main": DataBuffer, ...}
    export_npz("run.mcap", "run.npz")             # keys "signals/main/timestamp", ...
    export_csv("run.mcap", "run_csv/")            # one CSV per topic

Data frames only (events with ``kinds=("data", "event")``); damaged records are skipped and
counted in the recording's report, as everywhere (``Recording.report``).
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genki_signals.buffers import DataBuffer
from genki_signals.frames import TIMESTAMP, Frame, companion, is_companion
from genki_signals.record.reader import RecordedMessage, Recording

__all__ = ["read_frames", "load_recording", "load_buffers", "export_npz", "export_csv",
           "progress_bar"]

PathLike = str | os.PathLike[str]


def progress_bar(total: float | None, desc: str, unit: str, enabled: bool | None):
    """A tqdm bar on stderr; ``enabled=None``: only when stderr is a terminal."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=True,
                dynamic_ncols=True, file=sys.stderr)


def _with_progress(rec: Recording, items: Iterator[tuple[RecordedMessage, Any]], desc: str,
                   enabled: bool | None) -> Iterator[tuple[RecordedMessage, Any]]:
    """Pass ``items`` through, advancing a bar in seconds of recording."""
    span = rec.span()
    first = span[0] if span else 0
    total = round((span[1] - span[0]) / 1e9, 1) if span else None
    with progress_bar(total, desc, "s", enabled) as bar:
        for i, item in enumerate(items):
            if not i % 256 and not bar.disable:
                bar.n = round(max(0, item[0].log_time - first) / 1e9, 1)
                bar.refresh()
            yield item
        if total is not None:
            bar.n = total
            bar.refresh()


def read_frames(path: PathLike, topics: Iterable[str] | None = None, *,
                kinds: Iterable[str] = ("data",), progress: bool | None = False
                ) -> dict[str, list[Frame]]:
    """Every frame per topic, in recorded order (``topics``: prefixes; None: all)."""
    kinds = set(kinds)
    out: dict[str, list[Frame]] = {}
    with Recording(path) as rec:
        items = rec.decoded(topics)
        for _, msg in _with_progress(rec, items, "reading", progress):
            if msg.kind in kinds:
                out.setdefault(msg.topic, []).append(msg.frame)
    return out


def _concat(frames: list[Frame]) -> dict[str, np.ndarray]:
    """One topic's frames along time; a DataBuffer sorts out frames whose keys change."""
    frames = [f for f in frames if f]
    if not frames:
        return {}
    first = frames[0]
    layout = {k: (v.dtype, v.shape[1:]) for k, v in first.items()}
    same = all(len(f) == len(layout) and all(
        k in layout and v.dtype == layout[k][0] and v.shape[1:] == layout[k][1]
        for k, v in f.items()) for f in frames)
    if same:
        return {k: np.concatenate([f[k] for f in frames]) for k in first}
    buf = DataBuffer()
    for f in frames:
        buf.extend(f)
    return buf.to_dict()


def load_recording(path: PathLike, topics: Iterable[str] | None = None, *,
                   progress: bool | None = False) -> dict[str, dict[str, np.ndarray]]:
    """Per topic, a dict of time-first numpy arrays (``timestamp`` and every field)."""
    return {topic: _concat(frames)
            for topic, frames in read_frames(path, topics, progress=progress).items()}


def load_buffers(path: PathLike, topics: Iterable[str] | None = None, *,
                 maxlen: int | None = None, progress: bool | None = False
                 ) -> dict[str, DataBuffer]:
    """Per topic, a DataBuffer holding its frames (plots and notebook code work on it)."""
    out: dict[str, DataBuffer] = {}
    for topic, data in load_recording(path, topics, progress=progress).items():
        buf = out[topic] = DataBuffer(maxlen=maxlen)
        if data:
            buf.extend(data)
    return out


def export_npz(path: PathLike, out: PathLike, topics: Iterable[str] | None = None, *,
               compressed: bool = False, progress: bool | None = None) -> Path:
    """Write every topic's arrays to one ``.npz``, keys ``<topic>/<field>``."""
    data = load_recording(path, topics, progress=progress)
    arrays = {f"{topic}/{key}": value for topic, fields in data.items()
              for key, value in fields.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out if out.suffix == ".npz" else out.with_name(out.name + ".npz")


def _columns(key: str, value: np.ndarray) -> list[str]:
    shape = value.shape[1:]
    if not shape:
        return [key]
    return [f"{key}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _cell(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else repr(x)


def _write_table(file: Path, timestamps: np.ndarray, fields: dict[str, np.ndarray]) -> None:
    n = len(timestamps)
    header = [TIMESTAMP]
    cols = [timestamps.reshape(n, 1).astype(object)]
    for key, value in fields.items():
        header += _columns(key, value)
        cols.append(np.asarray(value).reshape(n, -1).astype(object))
    table = np.concatenate(cols, axis=1) if cols else np.empty((n, 0))
    with file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([_cell(x) for x in row] for row in table.tolist())


def export_csv(path: PathLike, out_dir: PathLike, topics: Iterable[str] | None = None, *,
               progress: bool | None = None) -> list[Path]:
    """One CSV per topic in ``out_dir`` (``signals__main.csv``), N-d fields flattened.

    Columns: ``timestamp`` then each field, ``key[i]`` / ``key[i,j]`` for N-d fields; numbers
    are written with ``repr`` (round-trips float64 exactly). A field on its own timeline gets
    its own file (``<topic>__<field>.csv``).
    """
    data = load_recording(path, topics, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, fields in data.items():
        if TIMESTAMP not in fields:
            continue
        stem = topic.replace("/", "__")
        main = {k: v for k, v in fields.items() if k != TIMESTAMP and
                not is_companion(k) and companion(k) not in fields}
        file = out_dir / f"{stem}.csv"
        _write_table(file, fields[TIMESTAMP], main)
        written.append(file)
        for k, v in fields.items():
            if companion(k) in fields:
                file = out_dir / f"{stem}__{k}.csv"
                _write_table(file, fields[companion(k)], {k: v})
                written.append(file)
    return written
