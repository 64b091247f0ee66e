"""Replay node logic: publishes a recording's frames under a node's topics.

A ``replay`` node stands in for the node whose frames it plays (``params.node``, by default its
own id): downstream nodes subscribe to ``<id>/`` and see the recorded frames, timestamps and
bytes. It is a timed node: paced, the runner polls it ``PACED_RATE`` times a second and it
hands over every frame that is due; as fast as possible (``speed: max``) it hands over ``batch``
frames per poll and the lossless edges downstream set the pace (backpressure, no drops), and
it coalesces consecutive frames of one topic into frames of up to ``coalesce`` samples
(``record.coalesce``: never across an event or a timeline change; every operator is
chunking-independent, so the outputs downstream are the same samples; 0 turns it off). At the
end it is ``finished``: the runner sends ``eos`` on every topic it published, so downstream
nodes flush and exit, and the launcher ends the run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from genki_signals.nodes.logic import NodeLogic, Output

log = logging.getLogger(__name__)

PACED_RATE = 200.0  # polls per second when paced: frames go out within 5 ms of due
FAST_RATE = 1e9  # as fast as possible: poll again at once
PACED_LIMIT = 100_000  # frames per poll when paced (a high --speed catches up in bursts)
BULK_FRAMES = 8  # coalesced frames per poll at full speed (each up to ``coalesce`` samples)


def parse_speed(value: Any) -> float | None:
    """``max`` (or None) -> None (as fast as possible); a number > 0 -> float."""
    if value is None or value == "max":
        return None
    speed = float(value)
    if not speed > 0:
        raise ValueError(f"speed must be > 0 or 'max', got {value!r}")
    return speed


class ReplayNodeLogic(NodeLogic):
    """Plays the frames ``node`` published in the recording at ``path``."""

    input_mode = "timed"

    def __init__(self, path: str | Path, node: str, *, speed: float | None = 1.0,
                 start: float = 0.0, loop: bool = False, batch: int = 64,
                 coalesce: int = 1024) -> None:
        from genki_signals.record.coalesce import CoalesceLimits

        self.path = Path(path)
        self.node = node
        self.speed = speed
        self.start_offset = float(start)
        self.loop = bool(loop)
        self.batch = int(batch)
        # only at full speed: paced frames keep their recorded rhythm
        self.coalesce = CoalesceLimits(max_samples=int(coalesce)) \
            if speed is None and coalesce > 1 else None
        self.update_rate = FAST_RATE if speed is None else PACED_RATE
        self.recording = None
        self.player = None

    def start(self) -> None:
        from genki_signals.record.bulk import BulkPlayer
        from genki_signals.record.player import Player
        from genki_signals.record.reader import Recording

        self.recording = Recording(self.path)
        if self.coalesce is not None and not self.loop:  # full speed: read in bulk
            self.player = BulkPlayer(self.recording, self.node, start=self.start_offset,
                                     limits=self.coalesce)
        else:
            self.player = Player(self.recording, self.node, speed=self.speed,
                                 start=self.start_offset, loop=self.loop)
        speed = "as fast as possible" if self.speed is None else f"at {self.speed:g}x"
        log.info("replaying node '%s' from %s %s (%.1f s of recording%s)", self.node,
                 self.path, speed, self.player.duration, ", looping" if self.loop else "")

    def poll(self, now: float) -> list[Output]:
        if self.coalesce is not None and not self.loop:
            played = self.player.due(now, BULK_FRAMES)
        elif self.coalesce is not None:
            played = self._coalesced(now)
        else:
            played = self.player.due(now, self.batch if self.speed is None else PACED_LIMIT)
        # the recorded timestamps are of another session: a replayed frame is acquired when read
        return [Output(p.timeline, p.frame, p.kind, acquired=now) for p in played]

    def _coalesced(self, now: float) -> list:
        """Frames read ``batch`` at a time until one coalesced frame's worth of samples (or
        the end), then joined (``record.coalesce``)."""
        from genki_signals.record.coalesce import coalesce

        played, rows = [], 0
        while rows < self.coalesce.max_samples and not self.player.done:
            more = self.player.due(now, self.batch)
            played += more
            rows += sum(len(p.frame.get("timestamp", ())) or 1 for p in more)
        return coalesce(played, self.coalesce)

    @property
    def finished(self) -> bool:
        return self.player is not None and self.player.done

    def stats(self) -> dict[str, Any]:
        p = self.player
        if p is None:
            return {}
        r = self.recording.report
        return {"replay_frames": p.frames, "replay_position": p.position,
                "replay_duration": p.duration, "replay_pass": p.pass_index,
                "replay_done": p.done,
                # damaged records skipped so far in this pass (see Recording.report)
                "replay_skipped": r.corrupt_chunks + r.corrupt_records + r.bad_messages,
                "replay_skipped_bytes": r.skipped_bytes + r.truncated_bytes}

    def close(self) -> None:
        if self.player is not None:
            report = self.recording.report
            # stdout reaches the launcher's log (the runner's log handler is gone by now)
            print(f"replayed {self.player.frames} frames of node '{self.node}' "
                  f"({self.player.pass_index + 1} passes); recording: {report.describe()}",
                  flush=True)
        if self.recording is not None:
            self.recording.close()


def resolve_path(path: str, spec_dir: str | Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or spec_dir is None else Path(spec_dir) / p
