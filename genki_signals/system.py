"""System: one source plus a SignalGraph, in-process (the seed notebook's API).

::

    system = System(data_source, derived_signals=[s.Sum("sine_0", "sine_1", name="both")])
    with system:                       # start() ... stop()
        buffer.extend(system.read())   # source keys + every derived stream

The graph runs in the caller's thread, on ``read()``: the source's own thread only samples, so a
slow operator never delays sampling, and an operator error surfaces exactly where the user reads.
An operator that raises stops the system; that read and every later one raise
``SystemStoppedError`` naming the operator. Operators can be added and removed while it runs.

Recording: ``System(source, ops, recorder="run.mcap")`` (or a ``genki_signals.record.Recorder``)
records every read as a topology would: the source's frames on ``source/<timeline>``, the
derived streams on ``derived/<timeline>``. A path starts a new recording at each ``start()``
and closes it at ``stop()``; a Recorder object is the caller's to close. A recording drives a
System again through ``genki_signals.data_sources.replay.ReplaySource(path)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from types import TracebackType

from genki_signals.errors import GraphError, OperatorError, SystemStoppedError
from genki_signals.frames import Frame
from genki_signals.graph import SignalGraph
from genki_signals.signals.base import Operator


class System:
    """A data source and the derived signals computed from it."""

    def __init__(self, data_source, derived_signals: Iterable[Operator] | SignalGraph = (),
                 recorder=None) -> None:
        self.data_source = data_source
        self._record_path = recorder if isinstance(recorder, (str, os.PathLike)) else None
        self.recorder = None if self._record_path is not None else recorder
        self.graph = (derived_signals if isinstance(derived_signals, SignalGraph)
                      else SignalGraph(derived_signals, source_keys=_known_keys(data_source)))
        self._lock = threading.Lock()
        self._error: SystemStoppedError | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the source. Raises if the system stopped on an error before."""
        self._raise_if_failed()
        if self._record_path is not None and self.recorder is None:
            from genki_signals.record.recorder import Recorder

            self.recorder = Recorder(self._record_path, clock=self.data_source.clock)
        self.data_source.start()

    def stop(self) -> None:
        """Stop the source (idempotent); close the recording the system opened."""
        self.data_source.stop()
        if self._record_path is not None and self.recorder is not None:
            with self._lock:
                self.recorder.close()
                self.recorder = None

    @property
    def is_active(self) -> bool:
        return self._error is None and bool(self.data_source.is_active)

    def __enter__(self) -> "System":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ data
    def read(self) -> Frame:
        """Everything the source produced since the last read, with every derived stream."""
        with self._lock:
            self._raise_if_failed()
            frame = self.data_source.read()
            try:
                out = self.graph.process(frame)
            except (OperatorError, GraphError) as exc:
                self._error = SystemStoppedError(f"system stopped: {exc}")
                self._error.__cause__ = exc
                self.data_source.stop()
                raise self._error from exc
            if self.recorder is not None:
                self._record(frame, out)
            return out

    def _record(self, frame: Frame, out: Frame) -> None:
        """The source's frame and the derived streams, one topic per timeline."""
        from genki_signals.frames import TIMESTAMP, companion, split_timelines

        for timeline, part in split_timelines(frame).items():
            self.recorder.record_frame(f"source/{timeline or 'main'}", part, node_id="source")
        if TIMESTAMP not in out:
            return
        derived = {TIMESTAMP: out[TIMESTAMP]}
        for name in self.graph.outputs:
            if name in out:
                derived[name] = out[name]
                if companion(name) in out:
                    derived[companion(name)] = out[companion(name)]
        for timeline, part in split_timelines(derived).items():
            if timeline or len(part) > 1:
                self.recorder.record_frame(f"derived/{timeline or 'main'}", part,
                                           node_id="derived")

    def add_derived_signal(self, op: Operator) -> None:
        """Add an operator; it computes from the next read on."""
        with self._lock:
            self.graph.add(op)

    def remove_derived_signal(self, name: str) -> Operator:
        """Remove the operator whose output is ``name``."""
        with self._lock:
            return self.graph.remove(name)

    @property
    def derived_signals(self) -> list[Operator]:
        return self.graph.operators

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


def _known_keys(source) -> list[str] | None:
    """The stream names a source declares up front (None when only known from data)."""
    keys = getattr(source, "stream_names", None)
    if callable(keys):
        keys = keys()
    return None if keys is None else ["timestamp", *keys]
