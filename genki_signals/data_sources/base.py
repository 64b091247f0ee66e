"""Source: the interface of every in-process data source.

A source produces frames (see ``genki_signals.frames``): ``read()`` returns every sample produced
since the previous ``read()`` as one frame with a float64 ``timestamp`` in seconds on the
source's ``Clock``.

Empty reads. When nothing new was produced, ``read()`` returns zero-length arrays under the
source's keys (``timestamp`` plus every stream, each ``(0, *sample_shape)`` with its dtype) once
those shapes are known; before a source knows them (nothing produced yet) it returns ``{}``.
Consumers must accept both (``DataBuffer.extend`` does). A source whose keys are fixed should
learn them in ``start()`` (``Sampler.start()`` returns once tick 0 is sampled), so that ``{}``
is only seen before the first start.
"""

from __future__ import annotations

import abc
from types import TracebackType

from genki_signals.clock import Clock, default_clock
from genki_signals.errors import SourceError
from genki_signals.frames import Frame

__all__ = ["Source", "SourceParameterError"]


class SourceParameterError(SourceError, ValueError):
    """A source was given a bad parameter; the message names the field."""


class Source(abc.ABC):
    """Abstract base of in-process sources: start, read frames, stop.

    Attributes:
        sample_rate: nominal samples per second, or None when irregular/unknown.
        finite: True for sources that end on their own (e.g. a replay); ``is_active`` then
            turns False at the end.
        stream_names: the keys a source produces besides ``timestamp`` when known up front
            (lets ``System`` validate its graph before data arrives), else None.
        clock: the time base of the timestamps.
    """

    sample_rate: float | None = None
    finite: bool = False
    stream_names: list[str] | None = None

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock if clock is not None else default_clock()

    @abc.abstractmethod
    def start(self) -> None:
        """Begin producing samples (idempotent while active)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop producing samples (idempotent). Samples not yet read remain readable."""

    @abc.abstractmethod
    def read(self) -> Frame:
        """Every sample produced since the last read, as one frame (see module doc for empty)."""

    @property
    @abc.abstractmethod
    def is_active(self) -> bool:
        """True while the source is producing samples."""

    def __enter__(self) -> Source:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
