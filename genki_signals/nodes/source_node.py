"""Source node logic: read an in-process source and publish its frames."""

from __future__ import annotations

from genki_signals.frames import frame_length, split_timelines
from genki_signals.nodes.logic import NodeLogic, Output


class SourceNodeLogic(NodeLogic):
    """Publishes everything a source produced since the last poll, ``update_rate`` times a second.

    A finite source (a replay) that stops being active is ``finished``: the runner then sends
    end-of-stream downstream. A source with ``read_events()`` (the Wave ring's buttons and
    device info) has its event frames published as ``event`` outputs on their own timelines;
    a source with ``stats()`` has its counters in the node's heartbeats.
    """

    input_mode = "timed"

    def __init__(self, source, update_rate: float = 25.0) -> None:
        self.source = source
        self.update_rate = float(update_rate)
        self._started = False

    def start(self) -> None:
        self.source.start()
        self._started = True

    def poll(self, now: float) -> list[Output]:
        frame = self.source.read()
        events = getattr(self.source, "read_events", None)
        outputs = [Output(timeline, part, "event") for timeline, part in events()] \
            if events is not None else []
        if not frame or frame_length(frame) == 0:
            return outputs
        return [Output(timeline or "main", part) for timeline, part in
                split_timelines(frame).items()] + outputs

    def stats(self) -> dict:
        stats = getattr(self.source, "stats", None)
        return stats() if stats is not None else {}

    @property
    def finished(self) -> bool:
        return self._started and bool(getattr(self.source, "finite", False)) \
            and not self.source.is_active

    def stats(self) -> dict:
        """The source's own counters (e.g. a microphone's overflows), when it keeps any."""
        stats = getattr(self.source, "stats", None)
        return stats() if callable(stats) else {}

    def close(self) -> None:
        if self._started:
            self.source.stop()
