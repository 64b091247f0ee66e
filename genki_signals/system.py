"""System: one source plus a SignalGraph, in-process (the seed notebook's API).

::

    system = System(data_source, derived_signals=[s.Sum("sine_0", "sine_1", name="both")])
    with system:                       # start() ... stop()
        buffer.extend(system.read())   # source keys + every derived stream

The graph runs in the caller's thread, on ``read()``: the source's own thread only samples, so a
slow operator never delays sampling, and an operator error surfaces exactly where the user reads.
An operator that raises stops the system; that read and every later one raise
``SystemStoppedError`` naming the operator. Operators can be added and removed while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

from genki_signals.errors import GraphError, OperatorError, SystemStoppedError
from genki_signals.frames import Frame
from genki_signals.graph import SignalGraph
from genki_signals.signals.base import Operator


class System:
    """A data source and the derived signals computed from it."""

    def __init__(self, data_source, derived_signals: Iterable[Operator] | SignalGraph = ()) -> None:
        self.data_source = data_source
        self.graph = (derived_signals if isinstance(derived_signals, SignalGraph)
                      else SignalGraph(derived_signals, source_keys=_known_keys(data_source)))
        self._lock = threading.Lock()
        self._error: SystemStoppedError | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the source. Raises if the system stopped on an error before."""
        self._raise_if_failed()
        self.data_source.start()

    def stop(self) -> None:
        """Stop the source (idempotent)."""
        self.data_source.stop()

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
                return self.graph.process(frame)
            except (OperatorError, GraphError) as exc:
                self._error = SystemStoppedError(f"system stopped: {exc}")
                self._error.__cause__ = exc
                self.data_source.stop()
                raise self._error from exc

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
