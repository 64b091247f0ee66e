"""The ``foxglove`` sink (``kind: sink``, ``params.type: foxglove``): serves its inputs live
over the Foxglove WebSocket protocol (the logic and the spec's fields:
``genki_signals.foxglove.sink``). Needs the ``foxglove`` extra to run, not to be checked."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

import pydantic

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Int, Name, Names, Str, params

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _ip_address(value: str) -> str:
    if value != "localhost":
        ipaddress.ip_address(value)  # ValueError: not an address
    return value


@params
class FoxgloveSinkParams:
    """A ``type: foxglove`` sink's params."""

    type: Literal["foxglove"]
    host: Annotated[Str, pydantic.AfterValidator(_ip_address), Field(
        description=f"an IP address to bind (default {DEFAULT_HOST}, loopback)")] = DEFAULT_HOST
    """Address to bind (loopback by default: non-loopback only under the multi-host rules)."""
    port: Annotated[Int, Field(ge=0, le=65535, description="a port number 0..65535 (0: any "
                                                           "free port)")] = DEFAULT_PORT
    keys: Names | None = None
    """Streams to serve (None: every stream)."""
    topics: Annotated[tuple[Name, ...], Field(
        min_length=1, description="a non-empty list of topic prefixes")] | None = None
    """Topic prefixes to serve (None: every input topic)."""


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    return ctx.missing_streams(params.keys, "params.keys"), {}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.foxglove.sink import build_foxglove_sink

    return build_foxglove_sink(params, config)


KIND = NodeKind(kind="sink", type="foxglove", params=FoxgloveSinkParams, build=_build,
                inputs="required", publishes=False, outputs=_outputs, order=2.6,
                doc="serves its inputs live over the Foxglove WebSocket protocol "
                    "(genki_signals.foxglove)")
