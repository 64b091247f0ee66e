"""ReplaySource: a recording as a finite in-process source (drives a ``System`` in a notebook).

::

    from genki_signals.data_sources.replay import ReplaySource

    source = ReplaySource("run.mcap", node="signals")        # as fast as possible
    system = System(source, derived_signals=[...])
    with system:
        while system.is_active:
            buffer.extend(system.read())

It plays the frames the recorded node published (topics ``<node>/...``; ``System`` recordings
use node ``source``) with their recorded timestamps, paced (``speed=1.0``: real time; ``2.0``
twice as fast) or as fast as possible (``speed=None``: each ``read()`` returns the next
``frames_per_read`` recorded frames; the default 1 keeps the recorded chunking, so a System
computes exactly what it computed live, bit for bit; more is faster). ``start`` skips into the recording, ``loop`` starts
over at the end (see ``genki_signals.record.player``). It is ``finite``: ``is_active`` turns
False once everything was read, so a reader loop ends on its own. Frames of the node's other
timelines come back as ``K`` with its ``K.timestamp`` companion.
"""

from __future__ import annotations

import os

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources.base import Source
from genki_signals.frames import TIMESTAMP, Frame, companion, concat_frames, is_companion

__all__ = ["ReplaySource"]


class ReplaySource(Source):
    """Plays the frames of ``node`` from the recording at ``path``."""

    finite = True

    def __init__(self, path: str | os.PathLike[str], node: str = "source", *,
                 speed: float | None = None, start: float = 0.0, loop: bool = False,
                 frames_per_read: int = 1, clock: Clock | None = None) -> None:
        from genki_signals.record.player import node_streams
        from genki_signals.record.reader import Recording

        super().__init__(clock)
        self.path = path
        self.node = node
        self.speed = speed
        self.start_offset = start
        self.loop = loop
        self.frames_per_read = int(frames_per_read)
        with Recording(path) as rec:
            streams = node_streams(rec, node)
        self._layout = streams
        self.stream_names = [k for k in streams if k != TIMESTAMP]
        self.sample_rate = None
        self._recording = None
        self._player = None
        self._active = False

    def start(self) -> None:
        from genki_signals.record.player import Player
        from genki_signals.record.reader import Recording

        if self._active:
            return
        self._recording = Recording(self.path)
        self._player = Player(self._recording, self.node, speed=self.speed,
                              start=self.start_offset, loop=self.loop)
        self._player.begin(self.clock.now())
        self._active = True

    def stop(self) -> None:
        self._active = False

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def report(self):
        """The reader's account of the recording (skipped and damaged records)."""
        return None if self._recording is None else self._recording.report

    def read(self) -> Frame:
        if self._player is None:
            return {}
        limit = self.frames_per_read if self.speed is None else 1_000_000
        played = self._player.due(self.clock.now(), limit) if self._active else []
        if self._player.done:
            self._active = False
        main = [p.frame for p in played if p.kind == "data" and p.timeline == "main"]
        frame = concat_frames(main) if main else self._empty()
        others: dict[str, list[Frame]] = {}
        for p in played:
            if p.kind == "data" and p.timeline != "main":
                others.setdefault(p.timeline, []).append(p.frame)
        for frames in others.values():
            joined = concat_frames(frames)
            for key, value in joined.items():
                if key != TIMESTAMP and not is_companion(key):
                    frame[key] = value
                    frame[companion(key)] = joined[TIMESTAMP]
        return frame

    def _empty(self) -> Frame:
        """Zero-length arrays under the main timeline's keys (the Source contract)."""
        return {name: np.empty((0, *shape), dtype=dtype)
                for name, (timeline, dtype, shape) in self._layout.items()
                if timeline == "main"}

    def close(self) -> None:
        self.stop()
        if self._recording is not None:
            self._recording.close()
            self._recording = None
