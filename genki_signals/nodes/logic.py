"""The interface between a node's logic (plain, testable classes) and the one process runner.

A node's logic never touches sockets, signals or the launcher. The runner calls it:

* ``start()`` once, then for a *timed* node (a source) ``poll(now)`` every ``1/update_rate``
  seconds, or for a *reactive* node ``on_frame(input, frame, now)`` for each received data frame
  ``on_event(input, frame, now)`` for each event frame, and ``on_eos(input, now)`` when an
  input ends;
* ``finished`` tells the runner to send end-of-stream downstream and exit;
* ``close()`` once at the end (flush files, stop threads), also after an error.

Each call returns the outputs to publish, as ``Output`` tuples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Output:
    """One frame to publish on ``<node>/<timeline>``."""

    timeline: str
    frame: dict[str, np.ndarray]
    kind: str = "data"


class NodeLogic:
    """Base class: what a node computes. Defaults do nothing."""

    update_rate: float | None = None  # set for timed nodes (sources)
    merge_inputs: bool = True
    """False: frames come as they arrive, not merged by timestamp; then ``on_eos`` is called per
    topic and ``tick(now)`` at least every 50 ms (an aligner orders by timestamp itself)."""
    raw_messages: bool = False
    """True (recorders): ``on_message(message, now)`` gets every received ``bus.codec.Message``
    (data, event, eos) in arrival order, with its raw ``parts``, instead of merged frames."""

    def start(self) -> None:
        pass

    def poll(self, now: float) -> list[Output]:
        return []

    def on_frame(self, input_name: str, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        return []

    def on_event(self, input_name: str, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        """An ``event`` frame (e.g. a detected gesture); ignored unless a node wants them."""
        return []

    def on_eos(self, input_name: str, now: float) -> list[Output]:
        return []

    def on_message(self, message: Any, now: float) -> list[Output]:
        """Every received message, for ``raw_messages = True`` nodes (recorders)."""
        return []

    def tick(self, now: float) -> list[Output]:
        """Periodic call for ``merge_inputs = False`` nodes (live timeouts)."""
        return []

    @property
    def finished(self) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        """Extra counters for the heartbeat."""
        return {}

    def close(self) -> None:
        pass
