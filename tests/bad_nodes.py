"""Deliberately misbehaving node logics, run as `custom` nodes by the process tests."""

import signal
import time

from genki_signals.nodes.logic import NodeLogic


class IgnoresStop(NodeLogic):
    """A timed node that blocks forever in poll() and ignores SIGTERM/SIGINT."""

    input_mode = "timed"
    update_rate = 10.0

    def poll(self, now):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            time.sleep(0.1)


class CrashesInInit(NodeLogic):
    def __init__(self, message: str = "boom"):
        raise RuntimeError(message)


class CrashesAfter(NodeLogic):
    """Runs for a while, then raises (exit code 1)."""

    input_mode = "timed"
    update_rate = 20.0

    def __init__(self, seconds: float = 0.5):
        self.deadline = time.monotonic() + seconds

    def poll(self, now):
        if time.monotonic() > self.deadline:
            raise RuntimeError("crashed on purpose")
        return []



class IgnoresStopAfterReady(NodeLogic):
    """Reports ready, then blocks in its first poll with SIGTERM/SIGINT ignored: it stops
    heartbeating (unresponsive) and only SIGKILL or a hard exit ends it."""

    input_mode = "timed"  # the runner's declared input modes (ignored before them)
    update_rate = 10.0

    def poll(self, now):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            time.sleep(0.1)


class ExitsWithoutAWord(NodeLogic):
    """Exits with code 0 before saying ready or bye: what a node whose last control messages
    were lost looks like to the launcher."""

    def __init__(self):
        import os

        os._exit(0)

