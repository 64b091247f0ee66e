"""The ``lsl`` sink (``kind: sink``, ``params.type: lsl``): publishes its inputs as Lab
Streaming Layer outlets, one per input topic (the logic and the spec's fields:
``genki_signals.nodes.lsl_sink``). Needs the ``lsl`` extra to run, not to be checked."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Float, Name, Names, params

FORMATS = ("float32", "double64", "int32", "int16", "int8", "int64")


@params
class LSLSinkParams:
    """A ``type: lsl`` sink's params."""

    type: Literal["lsl"]
    keys: Names | None = None
    """Streams to publish as channels, in order (None: every numeric stream of a topic)."""
    name: Name | None = None
    """LSL stream name (None: the topic); with several topics, ``<name>/<timeline>``."""
    content_type: Name = "genki"
    """LSL content type (``EEG``, ``Mocap``...)."""
    nominal_rate: Annotated[Float, Field(ge=0, description="a number >= 0 (0: irregular)")] \
        | None = None
    """Samples per second announced (None: measured from the first frame; 0: irregular)."""
    format: Literal["float32", "double64", "int32", "int16", "int8", "int64"] | None = None
    """LSL channel format (None: float32 when every stream is float32, else double64...)."""
    source_id: Name | None = None
    """LSL source id prefix (None: ``genki/<topology>/<node>``); the topic is appended."""


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    return ctx.missing_streams(params.keys, "params.keys"), {}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.lsl_sink import LSLOutletSinkLogic

    return LSLOutletSinkLogic(
        params, source_id_prefix=f"genki/{config.topology or 'topology'}/{config.id}")


KIND = NodeKind(kind="sink", type="lsl", params=LSLSinkParams, build=_build, inputs="required",
                publishes=False, outputs=_outputs, order=2.5,
                doc="publishes its inputs as Lab Streaming Layer outlets "
                    "(genki_signals.nodes.lsl_sink)")
