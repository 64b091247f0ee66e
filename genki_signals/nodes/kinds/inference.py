"""The ``inference`` kind: a graph node whose model operators get ``params.threads`` ONNX
Runtime threads each (unless an operator sets its own); publishes EventTrigger events on
``<id>/events``. Checked and built as a graph (``nodes/kinds/graph.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from genki_signals.nodes.checkpoint import CheckpointParams
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import NodeKind
from genki_signals.nodes.kinds.graph import Operators, build_graph, graph_outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Int, params


@params
class InferenceParams:
    operators: Operators
    threads: Annotated[Int, Field(ge=1)] | None = None
    checkpoint: CheckpointParams = CheckpointParams()


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    return build_graph(params, config, threads=params.threads)


KIND = NodeKind(kind="inference", params=InferenceParams, build=_build, inputs="required",
                publishes=True, outputs=graph_outputs, order=3,
                doc="a graph of model operators (params.operators) with params.threads ONNX "
                    "Runtime threads per model; publishes EventTrigger events on <id>/events")
