"""Sink node logic: printer, CSV writer, null (benchmarks), and an in-memory buffer."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from genki_signals.buffers import DataBuffer
from genki_signals.frames import TIMESTAMP, Topic, frame_length
from genki_signals.nodes.logic import NodeLogic, Output

PRINTER_LINGER = 0.2  # s between a printer's reads (NodeLogic.linger)


class PrinterSinkLogic(NodeLogic):
    """Prints the last sample of the chosen keys of every ``every``-th frame, one line each.

    Nobody waits on a console: frames are read in batches, ``PRINTER_LINGER`` s apart (the
    first frame at once), so an idle topology's printer wakes a few times a second, not once
    per frame; the same lines, up to that much later."""

    input_mode = "merged"
    linger = 0.0  # set per instance (the ``linger`` argument)

    def __init__(self, keys: Sequence[str] | None = None, every: int = 1,
                 stream: IO[str] | None = None, linger: float = PRINTER_LINGER) -> None:
        self.keys = list(keys) if keys else None
        self.linger = float(linger)
        self.every = int(every)
        self.stream = stream
        self._count = 0

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        self._count += 1
        if (self._count - 1) % self.every or frame_length(frame) == 0:
            return []
        keys = [k for k in (self.keys or frame) if k in frame and k != TIMESTAMP]
        if not keys:
            return []
        values = "  ".join(f"{k}={_short(frame[k][-1])}" for k in keys)
        print(f"{topic} t={frame[TIMESTAMP][-1]:.3f} n={frame_length(frame)}  {values}",
              file=self.stream or sys.stdout, flush=True)
        return []

    def on_event(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        """Every event is printed, one line each (``every`` applies to data frames only)."""
        for i in range(frame_length(frame)):
            fields = "  ".join(f"{k}={_short(v[i])}" for k, v in frame.items() if k != TIMESTAMP)
            print(f"EVENT {topic} t={frame[TIMESTAMP][i]:.3f}  {fields}",
                  file=self.stream or sys.stdout, flush=True)
        return []


class CsvSinkLogic(NodeLogic):
    """Appends every sample of the chosen keys to a CSV file (N-d fields flattened).

    Columns: ``topic, timestamp`` then one column per scalar, ``key[i]`` / ``key[i,j]`` for
    N-d keys, fixed by the first frame of each topic. Rows are flushed at every frame, so a
    killed process loses at most the frame being written.
    """

    input_mode = "merged"

    def __init__(self, path: str | Path, keys: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.keys = list(keys) if keys else None
        self._file: IO[str] | None = None
        self._writer: Any = None
        self._columns: dict[Topic, list[str]] = {}

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        n = frame_length(frame)
        if n == 0:
            return []
        keys = self._columns.get(topic)
        if keys is None:
            keys = [k for k in (self.keys or frame) if k in frame and k != TIMESTAMP
                    and len(frame[k]) == n]
            self._columns[topic] = keys
            header = ["topic", TIMESTAMP]
            for k in keys:
                shape = np.shape(frame[k])[1:]
                header += [k] if not shape else [f"{k}[{','.join(map(str, idx))}]"
                                                 for idx in np.ndindex(*shape)]
            self._writer.writerow(header)
        columns = [np.asarray(frame[k]).reshape(n, -1) for k in keys]
        table = np.concatenate([np.asarray(frame[TIMESTAMP]).reshape(n, 1), *columns], axis=1)
        self._writer.writerows([str(topic), *map(repr, row.tolist())] for row in table)
        self._file.flush()
        return []

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


class NullSinkLogic(NodeLogic):
    """Discards everything (a sink for benchmarks); counts samples."""

    input_mode = "merged"

    def __init__(self) -> None:
        self.samples = 0

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        self.samples += frame_length(frame)
        return []

    def stats(self) -> dict[str, Any]:
        return {"samples": self.samples}


class BufferSinkLogic(NodeLogic):
    """Keeps what it receives in one DataBuffer per topic (read by tests and notebooks).

    ``buffers`` is keyed by the topic's text, ``"<node>/<timeline>"``.
    """

    input_mode = "merged"

    def __init__(self, maxlen: int | None = None) -> None:
        self.maxlen = maxlen
        self.buffers: dict[str, DataBuffer] = {}

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        key = str(topic)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = DataBuffer(maxlen=self.maxlen)
        buf.extend(frame)
        return []

    on_event = on_frame  # events land in their own buffer, under their own topic


def _short(value: Any) -> str:
    arr = np.asarray(value)
    if arr.dtype.kind == "S":
        return arr.item().decode(errors="replace") if arr.ndim == 0 else str(arr.tolist())
    if arr.ndim == 0:
        return f"{arr.item():.4g}" if np.issubdtype(arr.dtype, np.number) else str(arr.item())
    if arr.size <= 4:
        return "[" + " ".join(f"{v:.4g}" for v in arr.ravel()) + "]"
    return f"<{arr.dtype} {arr.shape} max={np.nanmax(np.abs(arr)):.4g}>"
