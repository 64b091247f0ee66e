"""Recorder node logic: stores every message of its inputs exactly as it crossed the bus.

The runner hands a recorder the received messages themselves (input mode ``raw``), in arrival
order, with their raw parts, before any merging: data, events and end-of-stream alike. The
``Recorder`` writes them to an MCAP recording (see ``genki_signals.record``). Its inputs are
lossless by default (the ``recorder`` kind, ``nodes/kinds/recorder.py``), so a recorder that falls behind slows its
upstreams instead of losing frames (publishers count ``stalls``); on a lossy edge the frames
lost before it are counted as sequence gaps. Both are reported in heartbeats and at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from genki_signals.bus.codec import Message
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.nodes.replay_node import resolve_path

log = logging.getLogger(__name__)


class RecorderNodeLogic(NodeLogic):
    """Writes every received message to ``path`` (see ``Recorder`` for the options)."""

    input_mode = "raw"  # the runner calls on_message with every message as received

    def __init__(self, path: str | Path, *, topics: Iterable[str] | None = None,
                 metadata: Mapping[str, Any] | None = None, flush_interval: float = 0.5,
                 chunk_size: int = 1 << 20, compression: str = "zstd", fsync: bool = False,
                 topology: Mapping[str, Any] | None = None, topology_name: str = "",
                 nodes: Mapping[str, str] | None = None, wall_anchor: float | None = None
                 ) -> None:
        self.path = Path(path)
        self.options = dict(topics=topics, metadata=metadata, flush_interval=flush_interval,
                            chunk_size=chunk_size, compression=compression, fsync=fsync,
                            topology=topology, topology_name=topology_name, nodes=nodes,
                            wall_anchor=wall_anchor)
        self.recorder = None

    def start(self) -> None:
        from genki_signals.record.recorder import Recorder

        self.recorder = Recorder(self.path, recorder="node", **self.options)

    def on_message(self, message: Message, now: float) -> list[Output]:
        self.recorder.record_message(message, log_time=now)
        return []

    def stats(self) -> dict[str, Any]:
        return self.recorder.stats() if self.recorder is not None else {}

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            # stdout reaches the launcher's log (the runner's log handler is gone by now)
            print(self.recorder.summary(), flush=True)


def build_recorder(params: Any, config: NodeConfig) -> RecorderNodeLogic:
    """The logic of a ``recorder`` node (``params``: ``nodes.kinds.recorder.RecorderParams``);
    the run's spec comes from the launcher's directory."""
    from genki_signals.bus import control

    topology = nodes = wall_anchor = None
    try:
        d = control.request(config.control_endpoint, "directory", timeout=2.0)
        topology = d.get("spec")
        nodes = {n["id"]: n["kind"] for n in d.get("nodes", [])}
        wall_anchor = d.get("wall_anchor")
    except (TimeoutError, OSError, KeyError, TypeError):
        pass  # recorded without the spec: the frames matter most
    return RecorderNodeLogic(
        resolve_path(params.path, config.spec_dir), topics=params.topics,
        metadata=params.metadata, flush_interval=params.flush_interval,
        chunk_size=params.chunk_size, compression=params.compression, fsync=params.fsync,
        topology=topology, topology_name=config.topology, nodes=nodes, wall_anchor=wall_anchor)
