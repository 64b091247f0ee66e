"""Graph node logic: a SignalGraph over the frames of one or more input topics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genki_signals.errors import GraphError
from genki_signals.frames import TIMESTAMP, Topic, companion, split_timelines, timestamps_of
from genki_signals.graph import SignalGraph
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.signals.base import Event, Operator, with_node_defaults


def events_frame(trigger: str, events: Sequence[Event], timestamps: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """An ``event`` frame: one row per event (time, trigger, class name and index, score).

    ``timestamps`` are those of the trigger operator's output rows, which ``Event.row`` indexes.
    """
    return {
        TIMESTAMP: np.array([timestamps[e.row] for e in events], dtype=np.float64),
        "trigger": np.array([trigger.encode()] * len(events)),
        "class": np.array([e.class_name.encode() for e in events]),
        "class_index": np.array([e.class_index for e in events], dtype=np.int64),
        "score": np.array([e.score for e in events], dtype=np.float64),
    }


class GraphNodeLogic(NodeLogic):
    """Runs operators on incoming frames and publishes the derived streams.

    The runner delivers frames of several input topics in timestamp order. Each operator runs on the topic whose frames carry its inputs: the operators are split into
    one sub-graph per topic when that topic's first frame arrives. An operator that reads only
    ``timestamp`` runs on the first input topic. An operator combining streams of two topics is
    an error here: joining timelines is the aligner's job.

    Published: ``timestamp`` plus every derived stream; the main timeline of a single input goes
    out as ``main``, of several inputs as ``<upstream node>``; a new timeline (windowed FFT
    without upsampling) as its root operator's name.
    """

    input_mode = "merged"

    def __init__(self, operators: Sequence[Operator | Mapping[str, Any]],
                 upstreams: Mapping[str, Sequence[str]], *, threads: int | None = None,
                 base_dir: str | None = None) -> None:
        """``upstreams``: input node id -> its stream names (empty when not known up front).

        ``threads`` and ``base_dir`` fill the ONNX Runtime thread count and the directory that
        relative model paths resolve against, for model operators that do not set them.
        """
        ops = [op if isinstance(op, Operator) else
               Operator.from_dict(with_node_defaults(op, threads=threads, base_dir=base_dir))
               for op in operators]
        self._all = SignalGraph(ops)  # validates names and cycles up front
        self._pending: list[Operator] = self._all.operators
        self.upstreams = {k: list(v) for k, v in upstreams.items()}
        self._primary = Topic(next(iter(self.upstreams), ""))
        self._graphs: dict[Topic, SignalGraph] = {}
        self._keys: dict[Topic, list[str]] = {}  # each sub-graph's source keys (checkpoints)
        # per topic, worked out once (on_frame runs per frame): the published names with their
        # companion names, and the operators that emit events
        self._plans: dict[Topic, tuple[list[tuple[str, str]], list[Operator]]] = {}
        self._single = len(self.upstreams) <= 1
        if not self._single and all(self.upstreams.values()):
            self._check_no_mixing()

    def _check_no_mixing(self) -> None:
        origin: dict[str, set[str]] = {}
        for node, streams in self.upstreams.items():
            for name in streams:
                if name != TIMESTAMP:
                    origin.setdefault(name, set()).add(node)
        mixed = []
        for op in self._all.operators:
            nodes = set().union(*(origin.get(i, set()) for i in op.inputs))
            origin[op.name] = nodes
            if len(nodes) > 1:
                mixed.append(f"{op.describe()} reads {', '.join(sorted(nodes))}")
        if mixed:
            raise GraphError("operators combine streams from different inputs: "
                             + "; ".join(mixed) + " (join them with an aligner first)")

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        graph = self._graphs.get(topic) or self._build(topic, frame)
        names, emitters = self._plans[topic]
        result = graph.process(frame)
        derived = {TIMESTAMP: result[TIMESTAMP]}
        for name, name_ts in names:
            derived[name] = result[name]
            ts = result.get(name_ts)
            if ts is not None:
                derived[name_ts] = ts
        main_name = "main" if self._single else topic.node
        outputs = [Output(timeline or main_name, part)
                   for timeline, part in split_timelines(derived).items()
                   if len(part) > 1 or timeline]  # skip a main frame without derived streams
        for op in emitters:
            if op.emits_events:
                events = op.pop_events()
                if events:
                    frame = events_frame(op.name, events, timestamps_of(result, op.name))
                    outputs.append(Output("events", frame, "event"))
        return outputs

    def _build(self, topic: Topic, frame: Mapping[str, np.ndarray]) -> SignalGraph:
        available = set(frame)
        primary = topic == self._primary
        mine, rest = [], []
        for op in self._pending:
            reads_only_time = set(op.inputs) <= {TIMESTAMP}
            if all(i in available for i in op.inputs) and (primary or not reads_only_time):
                mine.append(op)
                available.add(op.name)
            else:
                rest.append(op)
        self._pending = rest
        graph = SignalGraph(mine, source_keys=frame.keys())
        self._add(topic, graph, list(frame.keys()))
        return graph

    def _add(self, topic: Topic, graph: SignalGraph, source_keys: list[str]) -> None:
        """Register a topic's sub-graph with what ``on_frame`` needs of it per frame."""
        self._graphs[topic] = graph
        self._keys[topic] = source_keys
        self._plans[topic] = ([(name, companion(name)) for name in graph.outputs],
                              [op for op in graph.operators if op.emits_events])

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Per input topic seen so far: its sub-graph's operators (in order), source keys and
        operator states. The operators of topics not seen yet are still fresh."""
        return {"graphs": [{"topic": str(topic), "operators": graph.outputs,
                            "source_keys": self._keys[topic], "state": graph.state_dict()}
                           for topic, graph in self._graphs.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the sub-graphs of the topics seen before the checkpoint and load their
        operators' states (raises ``GraphError`` naming what does not fit this node)."""
        if self._graphs:
            raise GraphError("a graph node's state is loaded before its first frame")
        entries = state.get("graphs") if isinstance(state, Mapping) else None
        if not isinstance(entries, list) or set(state) != {"graphs"}:
            raise GraphError("graph node state must be {'graphs': [...]}")
        pending = {op.name: op for op in self._pending}
        for entry in entries:
            if not isinstance(entry, Mapping) or set(entry) != {"topic", "operators",
                                                                "source_keys", "state"}:
                raise GraphError("graph node state: each entry needs topic, operators, "
                                 "source_keys and state")
            names = list(entry["operators"])
            unknown = [n for n in names if n not in pending]
            if unknown:
                raise GraphError(f"graph node state names operator(s) this node does not "
                                 f"have (or runs twice): {', '.join(map(str, unknown))}")
            topic = Topic.parse(entry["topic"])
            graph = SignalGraph([pending.pop(n) for n in names],
                                source_keys=entry["source_keys"])
            graph.load_state_dict(entry["state"])
            self._add(topic, graph, list(entry["source_keys"]))
        self._pending = [op for op in self._pending if op.name in pending]
