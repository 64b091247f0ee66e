"""The ``replay`` kind: publishes the frames a recorded node published, under the replay
node's own topics. Params::

    path: run.mcap            # required; an existing recording
    node: signals             # the recorded node whose topics it plays (default: its own id)
    speed: 1.0                # > 0, or max (as fast as possible)
    start: 0.0                # seconds into the recording
    loop: false
    batch: 64                 # frames read per step at full speed
    coalesce: 1024            # at full speed, join consecutive frames of a topic into frames
                              # of up to this many samples (0: off; see record/coalesce.py)

Its outputs are the streams the recorded node published, read from the recording.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Bool, Field, Float, InputPath, Int, Name, Problem, params


@params
class ReplayParams:
    path: InputPath
    node: Annotated[Name, Field(pattern=r"^[^/]+$", description="a node id")] | None = None
    speed: Annotated[Annotated[Float, Field(gt=0)] | Literal["max"], Field(
        description="a number > 0 or 'max'")] = 1.0
    start: Annotated[Float, Field(ge=0, description="a number of seconds >= 0")] = 0.0
    loop: Bool = False
    batch: Annotated[Int, Field(ge=1)] = 64
    coalesce: Annotated[Int, Field(ge=0)] = 1024


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    from genki_signals.record.format import RecordingError
    from genki_signals.record.player import node_streams, recorded_topics
    from genki_signals.record.reader import Recording

    node = params.node or ctx.node_id
    path = ctx.resolve(params.path)
    try:
        with Recording(path) as rec:
            streams = node_streams(rec, node)
            if not streams:
                nodes = sorted({t.split("/", 1)[0] for t in recorded_topics(rec)})
                field = "params.node" if params.node is not None else "params"
                return [Problem(field, f"{path} holds no frames of node '{node}' (recorded "
                                       f"nodes: {', '.join(nodes) or 'none'}; "
                                       f"{rec.report.describe()})")], None
    except RecordingError as exc:
        return [Problem("params.path", str(exc))], None
    # the recorded shapes, for the dry run of the graphs downstream
    ctx.published_samples.update({name: (tuple(shape), dtype.str)
                                  for name, (_, dtype, shape) in streams.items()})
    return [], {name: timeline for name, (timeline, _, _) in streams.items()}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.replay_node import ReplayNodeLogic, parse_speed, resolve_path

    return ReplayNodeLogic(resolve_path(params.path, config.spec_dir), params.node or config.id,
                           speed=parse_speed(params.speed), start=params.start,
                           loop=params.loop, batch=params.batch, coalesce=params.coalesce)


KIND = NodeKind(kind="replay", params=ReplayParams, build=_build, inputs="none",
                publishes=True, outputs=_outputs, order=7,
                doc="publishes a recorded node's frames (params.path, node, speed, start, loop)")
