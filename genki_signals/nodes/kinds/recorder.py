"""The ``recorder`` kind: stores its inputs' messages as they crossed the bus in an MCAP
recording (``genki_signals.record``); its input edges are lossless unless the spec says
otherwise. Params::

    path: run.mcap            # required; inside the spec file's folder (or allow_paths)
    topics: [signals/, derived/main]   # optional topic prefixes to keep (default: everything)
    metadata: {subject: s01}  # optional, stored in the recording
    flush_interval: 0.5       # seconds, (0, 60]: the most a killed recorder loses
    chunk_size: 1048576       # bytes, >= 1024
    compression: zstd         # zstd | lz4 | none
    fsync: false              # also fsync at every flush (survives power loss)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Bool, Field, Float, Int, Name, OutputPath, Problem, Str, params

Compression = Literal["zstd", "lz4", "none"]  # record.recorder.COMPRESSIONS (a test checks)


@params
class RecorderParams:
    path: OutputPath
    topics: Annotated[tuple[Name, ...], Field(
        min_length=1, description="a non-empty list of topic prefixes")] | None = None
    metadata: dict[Str, Any] | None = None
    flush_interval: Annotated[Float, Field(gt=0, le=60, description=(
        "a number of seconds in (0, 60]"))] = 0.5
    chunk_size: Annotated[Int, Field(ge=1024)] = 1 << 20
    compression: Compression = "zstd"
    fsync: Bool = False


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    problems = []  # params.path was checked as it was parsed (OutputPath)
    inputs = [f"{node}/" for node in ctx.input_nodes]
    for i, t in enumerate(params.topics or ()):
        if inputs and not any(t.startswith(n) or n.startswith(t) for n in inputs):
            problems.append(Problem(f"params.topics[{i}]", (
                f"{t!r} matches no topic of the inputs (topics start with "
                f"{', '.join(inputs)})")))
    return problems, {}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.recorder_node import build_recorder

    return build_recorder(params, config)


KIND = NodeKind(kind="recorder", params=RecorderParams, build=_build, inputs="required",
                publishes=False, outputs=_outputs, default_policy="lossless", order=6,
                doc="stores its inputs' messages as they crossed the bus in an MCAP recording "
                    "(params.path); inputs lossless unless stated")
