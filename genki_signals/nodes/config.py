"""What the launcher tells a node process: its resolved runtime configuration (JSON).

The launcher validates the topology spec, resolves every endpoint, and hands each node process
one ``NodeConfig`` as a JSON file. The node needs nothing else to run. ``params`` is the node
kind's parsed params object (``nodes/kinds/``); in the JSON it is written by
``genki_signals.params.dump``, and the node process reads it back with the same parser
(``nodes.kinds.build_logic``), so a node runs on exactly the params the launcher checked.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genki_signals.frames import MAIN_TIMELINE, Topic
from genki_signals.params import dump, is_params_class


@dataclass(frozen=True)
class InputEdge:
    """One subscription: an upstream node's endpoint, the topics taken, and the queue policy."""

    node: str
    endpoint: str
    topics: tuple[str, ...]
    policy: str = "drop_oldest"
    maxlen: int = 1000
    streams: tuple[str, ...] = ()  # the upstream's stream names, from spec validation
    # a lossless edge's stall policy and window (bus.lossless; the spec's input edge fields)
    on_stall: str = "block"
    stall_after: float = 5.0
    queue_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class NodeConfig:
    id: str
    kind: str
    params: Any  # the kind's params object; a mapping until ``build_logic`` parses it
    control_endpoint: str
    publish_endpoint: str | None = None
    lossless_endpoint: str | None = None
    lossless_subscribers: int = 0  # downstream lossless edges to wait for before publishing
    inputs: tuple[InputEdge, ...] = ()
    clock_origin: float = 0.0  # CLOCK_MONOTONIC seconds at which the topology clock reads 0
    clock_leader: str = "launcher"  # the node id (or 'launcher') whose clock is leader time
    clock_endpoint: str | None = None  # where the leader answers time probes (None: no sync)
    heartbeat_interval: float = 1.0
    spec_dir: str = "."
    incarnation: int = 0
    topology: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        if is_params_class(type(self.params)):
            data["params"] = dump(self.params)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "NodeConfig":
        data = json.loads(text)
        data["inputs"] = tuple(InputEdge(**{**e, "topics": tuple(e["topics"]),
                                            "streams": tuple(e.get("streams", ()))})
                               for e in data.get("inputs", ()))
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "NodeConfig":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1024)  # called for every published frame
def topic_for(node_id: str, timeline: str = MAIN_TIMELINE) -> str:
    """The topic a node publishes a timeline on: ``<node>/<timeline>`` (see ``Topic``)."""
    return str(Topic(node_id, timeline))
