"""The ``source`` kind: publishes what an in-process source produces, ``update_rate`` times a
second. ``params.type`` names a source type of ``genki_signals.data_sources.registry`` (one
entry here per source type; their params classes live with the source types)."""

from __future__ import annotations

from typing import Any

from genki_signals.data_sources.registry import SOURCE_TYPES, source_streams
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import MAIN, KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Problem


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    from genki_signals.data_sources.base import SourceError
    from genki_signals.data_sources.registry import source_samples

    source_type = SOURCE_TYPES[params.type]
    problems = source_type.check(params) if source_type.check is not None else []
    if problems:
        return problems, None
    try:  # the declared shapes, for the dry run of the graphs downstream
        ctx.published_samples.update(source_samples(params) or {})
    except SourceError as exc:
        return [Problem("params", str(exc))], None
    return problems, {n: MAIN for n in source_streams(params)}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.data_sources.registry import build_source
    from genki_signals.nodes.source_node import SourceNodeLogic

    return SourceNodeLogic(build_source(params), update_rate=params.update_rate)


KINDS = [NodeKind(kind="source", type=name, params=source_type.params_class, build=_build,
                  inputs="none", publishes=True, outputs=_outputs,
                  order=i / 1000,  # in SOURCE_TYPES order
                  doc=f"produces frames: {source_type.doc}")
         for i, (name, source_type) in enumerate(SOURCE_TYPES.items())]
