"""The interface between a node's logic (plain, testable classes) and the one process runner.

A node's logic never touches sockets, signals or the launcher. It declares how its inputs reach
it, in one class attribute, ``input_mode``, one of:

* ``"timed"`` (sources, replays): ``poll(now)`` every ``1 / update_rate`` seconds; the logic
  sets ``update_rate`` (polls per second, > 0). Inputs, if any, are not read. An exception in
  ``poll`` ends the node (exit code 1).
* ``"merged"`` (the default: graphs, printers, CSV writers): the data and event frames of every
  input, merged into one timestamp order across inputs (``nodes.merge.TimestampMerger``):
  ``on_frame(topic, frame, now)`` per data frame, ``on_event(topic, frame, now)`` per event
  frame. An input that falls silent holds the others back at most ``max_lag`` (0.5 s live).
* ``"arrival"`` (aligners, plots: they order by timestamp themselves, or need not): the same
  calls, in the order frames arrive, with no wait; also ``on_eos(topic, now)`` when a topic
  ends, and ``tick(now)`` after every frame and at least every 50 ms (live timeouts).
* ``"raw"`` (recorders): ``on_message(message, now)`` with every received ``bus.codec.Message``
  (data, event and eos alike) in arrival order, with its received ``parts``.

``topic`` is a ``genki_signals.frames.Topic``: ``topic.node`` is the upstream node,
``topic.timeline`` its timeline (``main`` or a new timeline's name), ``str(topic)`` the
bus topic ``"<node>/<timeline>"``. The runner checks the declaration once, at start
(``check_input_mode``), and refuses a node that declares an unknown mode with a message naming
its class.

For every mode: ``start()`` once before anything else; ``finished`` tells the runner to send
end-of-stream downstream and exit (a non-timed node also exits once every input ended);
``stats()`` adds counters to the heartbeat; ``close()`` once at the end (flush files, stop
threads), also after an error. Each call returns the outputs to publish, as ``Output`` tuples;
an exception in a call other than ``poll`` is counted (``frame_errors``) and skipped.

A custom node (spec kind ``custom``) is any subclass, e.g.::

    class Peaks(NodeLogic):
        input_mode = "merged"

        def on_frame(self, topic, frame, now):
            return [Output("main", {"timestamp": frame["timestamp"], "peak": ...})]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from genki_signals.frames import Topic

InputMode = Literal["timed", "merged", "arrival", "raw"]
INPUT_MODES: tuple[str, ...] = get_args(InputMode)


@dataclass(frozen=True)
class Output:
    """One frame to publish on ``<node>/<timeline>``.

    ``acquired``: the leader-clock time at which the oldest sample this frame derives from was
    acquired (sent in the header; every receiver reports the frame's age from it). Leave it None
    and the runner fills it in: for a node with inputs, the oldest acquisition among the input
    frames handed to the logic since its previous output; for a ``timed`` node, the frame's first
    ``timestamp`` (a source stamps samples when it acquires them), or the publish time.
    """

    timeline: str
    frame: dict[str, np.ndarray]
    kind: str = "data"
    acquired: float | None = None


class NodeLogic:
    """Base class: what a node computes. Defaults do nothing."""

    input_mode: InputMode = "merged"
    """How inputs reach the logic: ``timed``, ``merged``, ``arrival`` or ``raw`` (see the
    module docstring)."""
    update_rate: float | None = None
    """Polls per second; set by (and only by) a ``timed`` logic."""
    linger: float = 0.0
    """Seconds the runner lets frames queue after handing this logic what had arrived, before
    it reads again (then every queued frame in one go). 0 (the default): every frame as soon
    as it arrives. A sink nobody waits on (a console printer, an unwatched dashboard) sets it:
    one wake-up per ``linger`` instead of one per frame, the same frames in the same order.
    A read that found a fast stream (64 frames or 1 MiB) is followed by the next at once: on a
    lossless edge a linger would hold the upstream's window shut.
    Read before every read of the inputs, so a property may change it (a dashboard: 0 once a
    browser watches). An ``arrival`` logic's ``tick`` then runs once per read (about every
    ``linger``), not every 50 ms. Not for ``timed`` logic."""

    def start(self) -> None:
        pass

    def poll(self, now: float) -> list[Output]:
        """``timed``: what to publish now."""
        return []

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        """``merged``/``arrival``: a data frame of ``topic``."""
        return []

    def on_event(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        """An ``event`` frame (e.g. a detected gesture); ignored unless a node wants them."""
        return []

    def on_eos(self, topic: Topic, now: float) -> list[Output]:
        """``arrival``: ``topic`` sent end-of-stream."""
        return []

    def on_message(self, message: Any, now: float) -> list[Output]:
        """``raw``: every received message (recorders)."""
        return []

    def tick(self, now: float) -> list[Output]:
        """``arrival``: after every frame and at least every 50 ms (live timeouts)."""
        return []

    @property
    def finished(self) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        """Extra counters for the heartbeat."""
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        """The logic's state as plain data for a checkpoint (``nodes/checkpoint.py``), taken
        between two calls; None (the default): this logic cannot be checkpointed, a restart
        starts it afresh."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict`` output; the runner calls it once, before ``start``,
        when the node restarts from a checkpoint."""
        raise NotImplementedError(f"{type(self).__name__} keeps no checkpointable state")

    def close(self) -> None:
        pass


_REPLACED_FLAGS = {"merge_inputs": "input_mode = 'arrival' (for merge_inputs = False)",
                   "raw_messages": "input_mode = 'raw' (for raw_messages = True)"}


def check_input_mode(logic: NodeLogic, has_inputs: bool = True) -> None:
    """Raise ``ValueError`` naming the class when ``logic`` does not declare a usable mode.

    Checked: the mode is one of ``INPUT_MODES``; a ``timed`` logic has an ``update_rate`` > 0
    and no other mode sets one (a class written for the older flags, which declared a source by
    its ``update_rate`` alone, is told what to write instead of silently never being polled);
    the replaced ``merge_inputs``/``raw_messages`` flags are gone; a non-timed node has inputs.
    """
    cls = type(logic)
    name = f"{cls.__module__}.{cls.__qualname__}"
    mode = logic.input_mode
    if not isinstance(mode, str) or mode not in INPUT_MODES:
        raise ValueError(f"{name} declares input_mode {mode!r}; expected one of "
                         + ", ".join(repr(m) for m in INPUT_MODES))
    for flag, replacement in _REPLACED_FLAGS.items():
        if hasattr(logic, flag):
            raise ValueError(f"{name} sets {flag}, which NodeLogic no longer reads: "
                             f"declare {replacement}")
    _check_rate(name, mode, logic.update_rate)
    if mode != "timed" and not has_inputs:
        raise ValueError(f"{name} has input_mode {mode!r} but the node has no inputs: it "
                         f"would never be called (a node without inputs is 'timed')")


def _check_rate(name: str, mode: str, rate: Any) -> None:
    """A ``timed`` logic has ``update_rate`` > 0; any other leaves it None."""
    if mode == "timed":
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"{name} has input_mode 'timed' and needs update_rate > 0 "
                             f"(polls per second), got {rate!r}")
    elif rate is not None:
        raise ValueError(f"{name} sets update_rate but declares input_mode {mode!r}: a node "
                         f"polled at update_rate declares input_mode = 'timed'")
