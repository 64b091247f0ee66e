"""The ``null`` sink (``kind: sink``, ``params.type: null``): discards everything and counts
samples (benchmarks). YAML reads a bare ``type: null`` as no value; it means this sink too."""

from __future__ import annotations

from typing import Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import NodeKind
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import params


@params
class NullParams:
    type: Literal["null"]


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.sinks import NullSinkLogic

    return NullSinkLogic()


KIND = NodeKind(kind="sink", type="null", type_aliases=(None,), params=NullParams,
                build=_build, inputs="required", publishes=False, order=2.2,
                doc="discards everything (benchmarks)")
