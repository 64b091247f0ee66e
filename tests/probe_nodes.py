"""Node logics that report what the runner handed them, run as `custom` nodes by process tests."""

import json

from genki_signals.nodes.logic import NodeLogic


class Seer(NodeLogic):
    """Logs every call the runner makes, in order; prints the log as one ``SEEN`` JSON line at
    close. ``mode`` is its input mode (any string: the runner must refuse unknown ones)."""

    def __init__(self, mode: str = "merged") -> None:
        self.input_mode = mode
        self.calls: list[list] = []
        self.ticks = 0

    def on_frame(self, topic, frame, now):
        self.calls.append(["data", str(topic), type(topic).__name__,
                           float(frame["timestamp"][0])])
        return []

    def on_event(self, topic, frame, now):
        self.calls.append(["event", str(topic), type(topic).__name__,
                           float(frame["timestamp"][0])])
        return []

    def on_eos(self, topic, now):
        self.calls.append(["eos", str(topic), type(topic).__name__])
        return []

    def on_message(self, message, now):
        ts = message.frame.get("timestamp")
        self.calls.append(["message", message.topic, message.kind,
                           None if ts is None else float(ts[0]), message.parts is not None])
        return []

    def tick(self, now):
        self.ticks += 1
        return []

    def stats(self):
        return {"seen": len(self.calls)}

    def close(self):
        print("SEEN " + json.dumps({"calls": self.calls, "ticks": self.ticks}), flush=True)


class Sleeper(NodeLogic):
    """Passes each frame on after sleeping ``delay`` seconds: a hop with a known delay."""

    input_mode = "merged"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def on_frame(self, topic, frame, now):
        import time

        from genki_signals.nodes.logic import Output

        time.sleep(self.delay)
        return [Output("main", dict(frame))]


class LaggedSource(NodeLogic):
    """A source whose samples were acquired ``lag`` seconds before it publishes them (a sensor
    with a known delay): ``rate`` frames/s, each saying so in ``Output.acquired``."""

    input_mode = "timed"

    def __init__(self, rate: float, lag: float) -> None:
        self.update_rate = float(rate)
        self.lag = float(lag)
        self.n = 0

    def poll(self, now):
        import numpy as np

        from genki_signals.nodes.logic import Output

        self.n += 1
        return [Output("main", {"timestamp": np.array([now]), "x": np.array([float(self.n)])},
                       acquired=now - self.lag)]


class Lingerer(NodeLogic):
    """Notes when (monotonic s) each frame reached it; ``linger`` as given (NodeLogic.linger).
    Prints ``HANDED [[time, first timestamp], ...]`` at close."""

    input_mode = "merged"

    def __init__(self, linger: float) -> None:
        self.linger = float(linger)
        self.handed: list[list[float]] = []

    def on_frame(self, topic, frame, now):
        import time

        self.handed.append([time.monotonic(), float(frame["timestamp"][0])])
        return []

    def stats(self):
        return {"seen": len(self.handed)}

    def close(self):
        print("HANDED " + json.dumps(self.handed), flush=True)
