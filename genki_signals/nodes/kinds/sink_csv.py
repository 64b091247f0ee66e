"""The ``csv`` sink (``kind: sink``, ``params.type: csv``): appends every sample of the chosen
``keys`` to a CSV file (``path`` relative to the spec file's directory)."""

from __future__ import annotations

from typing import Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Names, OutputPath, params


@params
class CsvParams:
    type: Literal["csv"]
    path: OutputPath
    keys: Names | None = None  # default: every stream


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    # params.path was checked as it was parsed (OutputPath)
    return ctx.missing_streams(params.keys, "params.keys"), {}


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from pathlib import Path

    from genki_signals.nodes.sinks import CsvSinkLogic

    path = Path(params.path)
    return CsvSinkLogic(path if path.is_absolute() else Path(config.spec_dir) / path,
                        keys=params.keys)


KIND = NodeKind(kind="sink", type="csv", params=CsvParams, build=_build, inputs="required",
                publishes=False, outputs=_outputs, order=2.1,
                doc="appends every sample to a CSV file (relative to the spec's directory)")
