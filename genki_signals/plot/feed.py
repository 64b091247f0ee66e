"""Frames from several bus topics into one DataBuffer, each key on its own topic's timeline.

Every topic is a single-rate stream with its own ``timestamp``. The first *main* topic
(``<node>/main``, a node's main timeline) that delivers a frame becomes the buffer's main
timeline, whatever arrived before it (so ``buffer.timestamps()`` is a sample-rate timeline, not a
windowed FFT's, however the frames raced); the keys of every other topic are written with a
``K.timestamp`` companion (``genki_signals.frames``) and an empty main timeline, so no key ever
borrows another topic's timestamps. A key name that a second topic also publishes is stored as
``<node>/<key>`` (``/`` never appears in a stream name, so this cannot clash).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from genki_signals.buffers import DataBuffer
from genki_signals.frames import MAIN_TIMELINE, TIMESTAMP, Topic, companion, frame_length, \
    is_companion

_EMPTY_TS = np.zeros(0, dtype=np.float64)


class TopicMux:
    """Writes frames of several topics into ``buffer`` (see the module docstring)."""

    def __init__(self, buffer: DataBuffer) -> None:
        self.buffer = buffer
        self.primary: Topic | None = None
        self._owner: dict[str, Topic] = {}  # key -> topic that owns the plain name
        self.samples = 0
        self.frames = 0

    def name_of(self, topic: Topic, key: str) -> str:
        owner = self._owner.setdefault(key, topic)
        return key if owner == topic else f"{topic.node}/{key}"

    def extend(self, topic: Topic, frame: Mapping[str, np.ndarray], frames: int = 1) -> None:
        """Write ``frame`` of ``topic`` (``frames``: how many received frames it joins)."""
        n = frame_length(frame)
        if n == 0 or TIMESTAMP not in frame:
            return
        if self.primary is None and topic.timeline == MAIN_TIMELINE:
            self.primary = topic
        ts = np.asarray(frame[TIMESTAMP], dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        if topic == self.primary:
            out[TIMESTAMP] = ts
            for key, value in frame.items():
                if key != TIMESTAMP and not is_companion(key):
                    out[self.name_of(topic, key)] = value
        else:
            out[TIMESTAMP] = _EMPTY_TS
            for key, value in frame.items():
                if key != TIMESTAMP and not is_companion(key):
                    name = self.name_of(topic, key)
                    out[name] = value
                    out[companion(name)] = ts
        self.buffer.extend(out)
        self.frames += frames
        self.samples += n
