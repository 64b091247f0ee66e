"""The ``plot`` sink (``kind: sink``, ``params.type: plot``): serves a live browser dashboard
of its inputs (the logic: ``genki_signals.plot.node.PlotSinkLogic``; see its docstring).

A panel's params are ``genki_signals.plot.views.PanelParams``, so a panel means the same in a
spec, on the command line and in a notebook.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

import pydantic

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Float, Int, Names, Str, invalid, params
from genki_signals.plot.views import PanelParams

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5006
DEFAULT_FPS = 30.0
DEFAULT_HISTORY = 10_000

def _published(panel: PanelParams, info: pydantic.ValidationInfo) -> PanelParams:
    """In the spec checker (a ``KindContext`` as context): the key must be published upstream."""
    ctx = info.context
    problem = ctx.missing_stream(panel.key, "") if isinstance(ctx, KindContext) else None
    if problem is not None:
        raise invalid(problem.message, "key")
    return panel


def _panel_shorthand(value: Any) -> Any:
    return {"key": value} if isinstance(value, str) else value


Panel = Annotated[PanelParams, pydantic.BeforeValidator(
    _panel_shorthand, json_schema_input_type=str | PanelParams),
    pydantic.AfterValidator(_published)]
"""A panel: a stream name alone (a line panel) or a mapping."""


def _ip_address(value: str) -> str:
    if value != "localhost":
        ipaddress.ip_address(value)  # ValueError: not an address
    return value


@params
class PlotParams:
    type: Literal["plot"]
    panels: Annotated[tuple[Panel, ...], Field(
        min_length=1, description="a non-empty list of panels (a stream name or "
                                  "{key, type, ...})")] | None = None
    keys: Names | None = None  # one line panel each (besides panels); none: every stream
    host: Annotated[Str, pydantic.AfterValidator(_ip_address), Field(
        description=f"an IP address to bind (default {DEFAULT_HOST}, loopback)")] = DEFAULT_HOST
    port: Annotated[Int, Field(ge=0, le=65535, description="a port number 0..65535 (0: any "
                                                           "free port)")] = DEFAULT_PORT
    fps: Annotated[Float, Field(gt=0, le=120)] = DEFAULT_FPS
    history: Annotated[Int, Field(ge=10, le=10_000_000, description=(
        "an integer in 10..10000000 (samples kept per timeline)"))] = DEFAULT_HISTORY
    title: Str | None = None  # default: the topology's name


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    # each panel's key is checked as it is parsed (``_published``): one bad panel hides no other
    return ctx.missing_streams(params.keys, "params.keys"), {}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.plot.node import PlotSinkLogic

    panels: list[Any] = list(params.panels or [])
    panels += [PanelParams(key=k) for k in params.keys or [] if k not in {p.key for p in panels}]
    return PlotSinkLogic(panels, host=params.host, port=params.port, fps=params.fps,
                         history=params.history,
                         title=params.title or config.topology or "genki-signals",
                         subtitle=f"node '{config.id}'")


KIND = NodeKind(kind="sink", type="plot", params=PlotParams, build=_build, inputs="required",
                publishes=False, outputs=_outputs, order=2.3,
                doc="serves a live browser dashboard of its inputs (genki_signals.plot)")
