"""The ``printer`` sink (``kind: sink``, ``params.type: printer``): prints the last sample of
the chosen ``keys`` of every ``every``-th frame, one line each, and every event."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Int, Names, params


@params
class PrinterParams:
    type: Literal["printer"]
    keys: Names | None = None  # default: every stream
    every: Annotated[Int, Field(ge=1)] = 1


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    return ctx.missing_streams(params.keys, "params.keys"), {}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.sinks import PrinterSinkLogic

    return PrinterSinkLogic(keys=params.keys, every=params.every)


KIND = NodeKind(kind="sink", type="printer", params=PrinterParams, build=_build,
                inputs="required", publishes=False, outputs=_outputs, order=2.0,
                doc="prints the last sample of every Nth frame")
