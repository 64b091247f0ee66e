"""AlignedSource: the seed's leader/follower pattern for in-process sources.

One source leads; the others follow: every ``read()`` returns the leader's new samples with each
follower's value at those times (``hold`` or ``linear``, see ``genki_signals.signals.align``).
Followers faster than the leader are downsampled, slower ones upsampled::

    src = AlignedSource(wave_ring,                       # leads: its packets set the ticks
                        {"mouse": Sampler({"mouse_position": read_mouse}, sample_rate=200)},
                        max_lag=0.1)
    system = System(src, derived_signals=[...])

Every source of a process stamps on the same clock (the default clock), so their timestamps are
comparable; in a topology the ``aligner`` node kind does the same across processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genki_signals.clock import Clock
from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.frames import Frame
from genki_signals.signals.align import Aligner

__all__ = ["AlignedSource"]

LEADER = "leader"


class AlignedSource(Source):
    """Leader samples joined with follower values.

    ``followers``: name -> a ``Source`` (``hold``), or name -> ``{"source": Source, "method":
    "hold" | "linear", "keys": [...], "prefix": ""}``. ``max_lag``: how long (seconds) a leader
    sample waits for a follower before that follower's last value is held (None: wait).
    """

    def __init__(self, leader: Source, followers: Mapping[str, Source | Mapping[str, Any]],
                 max_lag: float | None = 0.1, clock: Clock | None = None) -> None:
        super().__init__(clock if clock is not None else leader.clock)
        if not isinstance(leader, Source):
            raise SourceParameterError(f"AlignedSource: 'leader' must be a Source, "
                                       f"got {type(leader).__name__}")
        if not isinstance(followers, Mapping) or not followers:
            raise SourceParameterError("AlignedSource: 'followers' must be a non-empty dict "
                                       "name -> Source")
        self.leader = leader
        self.sources: dict[str, Source] = {}
        specs: dict[str, Any] = {}
        for name, entry in followers.items():
            options = dict(entry) if isinstance(entry, Mapping) else {"source": entry}
            src = options.pop("source", None)
            if not isinstance(src, Source):
                raise SourceParameterError(f"AlignedSource: follower '{name}' must be a Source "
                                           f"or {{source: Source, method, keys, prefix}}")
            self.sources[name] = src
            specs[name] = options
        self.aligner = Aligner(LEADER, specs, max_lag=max_lag)
        self.sample_rate = leader.sample_rate
        self.finite = leader.finite

    def start(self) -> None:
        for src in self.sources.values():
            src.start()
        self.leader.start()

    def stop(self) -> None:
        self.leader.stop()
        for src in self.sources.values():
            src.stop()

    @property
    def is_active(self) -> bool:
        return self.leader.is_active

    def read(self) -> Frame:
        now = self.clock.now()
        for name, src in self.sources.items():  # followers first: they complete leader samples
            self.aligner.push(name, src.read(), arrival=now)
            if not src.is_active:
                self.aligner.end(name)
        self.aligner.push(LEADER, self.leader.read(), arrival=now)
        if not self.leader.is_active:
            return self.aligner.finish()
        return self.aligner.pop(now)
