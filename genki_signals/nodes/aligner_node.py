"""The ``aligner`` node's logic: follower streams joined onto a leader stream's timestamps.

Its params, checks and builder: ``nodes/kinds/aligner.py``.

Published on ``<id>/main``: ``timestamp`` and the streams of the leader's timeline, then each
follower's ``keys`` (default: all streams of its timeline) as ``prefix + key``. Unlike graph and
sink nodes, an aligner takes its frames as they arrive (input mode ``arrival``): it orders by
timestamp itself and waits only for what a leader sample needs.

Stats in the heartbeat: ``aligned`` samples, ``align_late`` (follower values held because of
``max_lag``), ``align_dropped``, ``align_pending``, and the added latency (arrival of a leader
sample to its publication) ``align_latency_p50`` / ``align_latency_p99`` over the last 1000.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import numpy as np

from genki_signals.frames import Topic
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.signals.align import Aligner

__all__ = ["AlignerNodeLogic"]

MAIN = "main"


class AlignerNodeLogic(NodeLogic):
    """Runs an ``Aligner`` over frames as they arrive; publishes joined frames on ``main``."""

    input_mode = "arrival"

    def __init__(self, leader: str, followers: Mapping[str, Mapping[str, Any]],
                 max_lag: float | None, leader_timeline: str = MAIN) -> None:
        self.topics = {Topic(leader, leader_timeline): leader}
        specs = {}
        for name, spec in followers.items():
            spec = dict(spec)
            self.topics[Topic(name, spec.pop("timeline", MAIN))] = name
            specs[name] = spec
        self.aligner = Aligner(leader, specs, max_lag=max_lag)
        self._latency: collections.deque[float] = collections.deque(maxlen=1000)

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        name = self.topics.get(topic)
        if name is None:
            return []  # another timeline of an input: not aligned
        self.aligner.push(name, frame, arrival=now)
        return []  # the runner calls tick() right after every frame: one pop per frame

    def on_eos(self, topic: Topic, now: float) -> list[Output]:
        name = self.topics.get(topic)
        if name is not None:
            self.aligner.end(name)
        return self._pop(now)

    def tick(self, now: float) -> list[Output]:
        """After every frame, and at least every 50 ms (``max_lag`` timeouts)."""
        return self._pop(now)

    def _pop(self, now: float) -> list[Output]:
        out = self.aligner.pop(now)
        if not out:
            return []
        self._latency.extend((now - self.aligner.emitted_arrivals).tolist())
        return [Output(MAIN, out)]

    def stats(self) -> dict[str, Any]:
        out = self.aligner.stats()
        if self._latency:
            lat = np.fromiter(self._latency, dtype=np.float64)
            out["align_latency_p50"] = float(np.percentile(lat, 50))
            out["align_latency_p99"] = float(np.percentile(lat, 99))
        return out
