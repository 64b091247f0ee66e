"""The ``foxglove`` sink: serve the node's inputs live over the Foxglove WebSocket protocol.

In a spec::

    - id: foxglove
      kind: sink
      inputs: [{node: derived, policy: drop_oldest, maxlen: 50}]
      params:
        type: foxglove
        port: 8765            # default 8765; 0: any free port
        host: 127.0.0.1       # loopback unless stated
        keys: [wave_with_noise, wave_spectrum]    # default: every stream

Every input topic becomes a channel ``/<topic>`` (JSON messages with a JSON Schema, one per
sample, log time = the sample's timestamp in Unix ns: ``genki_signals.record.foxglove``); events
get their own topic. The server's ``message_backlog_size`` bounds what it keeps per client, so
a slow Foxglove client loses messages (the SDK drops the oldest) and never holds up the node;
give the edge a lossy policy too. The URL is logged and in the heartbeat (``foxglove_url``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from genki_signals.clock import Clock, default_clock
from genki_signals.frames import Topic
from genki_signals.nodes.kinds.sink_foxglove import DEFAULT_PORT, FoxgloveSinkParams
from genki_signals.nodes.logic import NodeLogic, Output

__all__ = ["FoxgloveSinkParams", "FoxgloveSinkLogic", "FoxgloveServer", "build_foxglove_sink"]

log = logging.getLogger(__name__)

BACKLOG = 1024


class FoxgloveServer:
    """A foxglove-sdk WebSocket server with its own context, fed with bus frames."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 name: str = "genki-signals", keys: Any = None,
                 clock: Clock | None = None, wall_anchor: float | None = None) -> None:
        try:
            import foxglove
        except ImportError as exc:
            from genki_signals.errors import GenkiError

            raise GenkiError("live Foxglove view needs foxglove-sdk: "
                             "pip install 'genki-signals[foxglove]'") from exc
        from genki_signals.record.foxglove import FrameEncoder

        self._foxglove = foxglove
        self.clock = clock if clock is not None else default_clock()
        self.context = foxglove.Context()
        self.server = foxglove.start_server(name=name, host=host, port=port,
                                            context=self.context,
                                            message_backlog_size=BACKLOG)
        self.host, self.port = host, self.server.port
        self.url = f"ws://{host}:{self.port}"
        anchor = self.clock.wall_anchor if wall_anchor is None else wall_anchor
        self.encoder = FrameEncoder(self._open_channel, int(round(anchor * 1e9)), keys=keys)
        self.messages = 0

    def _open_channel(self, topic: str, schema: dict[str, Any]) -> Any:
        return self._foxglove.Channel(topic, schema=schema, message_encoding="json",
                                      context=self.context)

    def publish(self, topic: str, frame: dict[str, np.ndarray], kind: str = "data") -> None:
        for channel, t, data in self.encoder.encode(topic, frame, kind):
            channel.log(data, log_time=t)
            self.messages += 1

    def stop(self) -> None:
        self.server.stop()


class FoxgloveSinkLogic(NodeLogic):
    """Serves every received frame to Foxglove clients (see the module doc)."""

    input_mode = "arrival"  # a viewer needs no cross-input ordering

    def __init__(self, params: FoxgloveSinkParams | None = None, *,
                 name: str = "genki-signals", clock: Clock | None = None,
                 wall_anchor: float | None = None) -> None:
        self.params = params if params is not None else FoxgloveSinkParams(type="foxglove")
        self.name = name
        self.clock = clock
        self.wall_anchor = wall_anchor
        self.server: FoxgloveServer | None = None
        self.frames = 0

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def start(self) -> None:
        self.server = FoxgloveServer(self.params.host, self.params.port, name=self.name,
                                     keys=self.params.keys, clock=self.clock,
                                     wall_anchor=self.wall_anchor)
        log.info("foxglove: %s", self.server.url)

    def _wanted(self, topic: str) -> bool:
        return self.params.topics is None or topic.startswith(self.params.topics)

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        input_name = str(topic)  # "<node>/<timeline>": the outlet's (channel's) name
        if self.server is not None and self._wanted(input_name):
            self.server.publish(input_name, frame)
            self.frames += 1
        return []

    def on_event(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        input_name = str(topic)  # "<node>/<timeline>": the outlet's (channel's) name
        if self.server is not None and self._wanted(input_name):
            self.server.publish(input_name, frame, kind="event")
        return []

    def stats(self) -> dict[str, Any]:
        return {"foxglove_url": self.url, "foxglove_frames": self.frames,
                "foxglove_messages": self.server.messages if self.server else 0}

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def build_foxglove_sink(params: FoxgloveSinkParams, config: Any) -> FoxgloveSinkLogic:
    """The logic of a ``type: foxglove`` sink node (``config``: its ``NodeConfig``).

    Log times use the run's wall anchor from the launcher's directory (as recordings do), so a
    live view and a recording of the same run agree to the nanosecond."""
    from genki_signals.bus import control

    try:
        wall_anchor = control.request(config.control_endpoint, "directory",
                                      timeout=2.0).get("wall_anchor")
    except (TimeoutError, OSError, AttributeError, KeyError, TypeError):
        wall_anchor = None  # the node's own clock anchor (within milliseconds)
    return FoxgloveSinkLogic(params, name=f"{config.topology or 'genki-signals'} ({config.id})",
                             wall_anchor=wall_anchor)
