"""Node kinds: how a node's resolved config becomes its logic object."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.logic import NodeLogic


def _source(config: NodeConfig) -> NodeLogic:
    from genki_signals.data_sources.registry import build_source
    from genki_signals.nodes.source_node import SourceNodeLogic

    params = dict(config.params)
    update_rate = params.pop("update_rate", 25.0)
    return SourceNodeLogic(build_source(params), update_rate=update_rate)


def _graph(config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.graph_node import GraphNodeLogic

    return GraphNodeLogic(config.params["operators"],
                          upstreams={e.node: list(e.streams) for e in config.inputs},
                          threads=config.params.get("threads"), base_dir=config.spec_dir)


def _sink(config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes import sinks

    params = dict(config.params)
    kind = params.pop("type")
    if kind == "printer":
        return sinks.PrinterSinkLogic(keys=params.get("keys"), every=params.get("every", 1))
    if kind == "csv":
        path = Path(params["path"])
        if not path.is_absolute():
            path = Path(config.spec_dir) / path
        return sinks.CsvSinkLogic(path, keys=params.get("keys"))
    if kind == "null":
        return sinks.NullSinkLogic()
    if kind == "plot":  # a live browser dashboard (genki_signals.plot.node)
        from genki_signals.plot.node import build_plot_sink

        return build_plot_sink(config.id, params, config.topology)
    if kind in ("lsl", "foxglove"):  # genki_signals.nodes.lsl_sink, genki_signals.foxglove.sink
        from importlib import import_module

        module = import_module({"lsl": "genki_signals.nodes.lsl_sink",
                                "foxglove": "genki_signals.foxglove.sink"}[kind])
        return getattr(module, f"build_{kind}_sink")(config)
    raise ValueError(f"node '{config.id}': unknown sink type {kind!r}")


def load_logic_class(path: str) -> type[NodeLogic]:
    """Import ``package.module:ClassName`` and check it is a NodeLogic subclass."""
    import importlib

    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"class must be 'package.module:ClassName', got {path!r}")
    obj = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(obj, type) and issubclass(obj, NodeLogic)):
        raise ValueError(f"{path} is not a NodeLogic subclass")
    return obj


def _custom(config: NodeConfig) -> NodeLogic:
    cls = load_logic_class(config.params["class"])
    return cls(**config.params.get("args", {}))


def _recorder(config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.recorder_node import build_recorder

    return build_recorder(config)


def _replay(config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.replay_node import build_replay

    return build_replay(config)


def _aligner(config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.aligner_node import build_aligner

    return build_aligner(config)


BUILDERS: dict[str, Callable[[NodeConfig], NodeLogic]] = {
    "custom": _custom,
    "aligner": _aligner,  # leader/follower alignment (genki_signals.signals.align)
    "source": _source,
    "graph": _graph,
    "inference": _graph,  # a graph node whose model operators get params.threads
    "sink": _sink,
    "recorder": _recorder,  # genki_signals.record: MCAP recordings of raw bus messages
    "replay": _replay,
}


def build_logic(config: NodeConfig) -> NodeLogic:
    """The logic object for a node's kind (raises ValueError for an unknown kind)."""
    try:
        builder = BUILDERS[config.kind]
    except KeyError:
        raise ValueError(f"node '{config.id}': unknown kind {config.kind!r}") from None
    return builder(config)
