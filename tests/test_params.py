"""The generic params parser (genki_signals.params): mapping -> frozen dataclass, every problem
named by its field path, all problems at once; and the node-kind registry built on it."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Annotated, Literal

import pytest

from genki_signals.nodes.config import InputEdge, NodeConfig
from genki_signals.nodes.kinds import build_logic, kind_names, node_kinds, parse_node_params
from genki_signals.params import (Bool, Field, Float, Int, Names, Problem, Str, dump, params,
                                  parse, salvage, schema)


@params
class Wave:
    type: Literal["SineWave"]
    frequency: Annotated[Float, Field(ge=0)] = 1.0


@params
class Noise:
    type: Literal["RandomNoise"]
    seed: Int | None = None


@params
class Example:
    rate: Annotated[Float, Field(gt=0)]
    count: Annotated[Int, Field(ge=1, le=10)] = 1
    mode: Literal["fast", "slow"] = "fast"
    flag: Bool = False
    keys: Names | None = None
    sources: dict[Str, Annotated[Wave | Noise, Field(discriminator="type")]] = \
        dataclasses.field(default_factory=dict)


def _messages(data: object) -> list[str]:
    value, problems = parse(Example, data)
    assert value is None
    return [str(p) for p in problems]


def test_a_valid_mapping_becomes_a_frozen_typed_object() -> None:
    value, problems = parse(Example, {"rate": 100, "count": 3, "keys": ["a"],
                                      "sources": {"s": {"type": "SineWave", "frequency": 2}}})
    assert problems == []
    assert value == Example(rate=100.0, count=3, keys=("a",),
                            sources={"s": Wave(type="SineWave", frequency=2.0)})
    assert isinstance(value.rate, float) and value.mode == "fast"
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.rate = 1.0  # type: ignore[misc]
    again, _ = parse(Example, json.loads(json.dumps(dump(value))))
    assert again == value  # dump -> JSON -> parse round trip


def test_unknown_key_is_rejected_with_the_allowed_ones() -> None:
    assert _messages({"rate": 1, "colour": "red"}) == [
        "field 'params.colour': unknown field (allowed: rate, count, mode, flag, keys, sources)"]


def test_bool_is_never_an_int_or_a_number() -> None:
    assert _messages({"rate": True, "count": False}) == [
        "field 'params.rate': must be a number > 0, got True",
        "field 'params.count': must be an integer in 1..10, got False"]
    assert _messages({"rate": 1, "flag": 1}) == ["field 'params.flag': must be true or false, got 1"]


def test_strings_and_floats_are_not_coerced() -> None:
    assert _messages({"rate": "3", "count": 2.0}) == [
        "field 'params.rate': must be a number > 0, got '3'",
        "field 'params.count': must be an integer in 1..10, got 2.0"]


def test_non_finite_numbers_are_rejected() -> None:
    assert _messages({"rate": float("inf")})[0].startswith("field 'params.rate': must be a "
                                                           "number > 0, got inf")


def test_literal_choices() -> None:
    assert _messages({"rate": 1, "mode": "medium"}) == [
        "field 'params.mode': must be one of fast, slow, got 'medium'"]


def test_bounds() -> None:
    assert _messages({"rate": 0, "count": 11}) == [
        "field 'params.rate': must be a number > 0, got 0",
        "field 'params.count': must be an integer in 1..10, got 11"]


def test_nested_paths_name_the_field() -> None:
    assert _messages({"rate": 1, "keys": ["a", 3], "sources": {
        "sine_0": {"type": "SineWave", "frequency": -1},
        "n": {"type": "RandomNoise", "seed": 1.5, "colour": 1},
        "z": {"type": "CosWave"}, "q": {"frequency": 1}}}) == [
        "field 'params.keys[1]': must be a non-empty string, got 3",
        "field 'params.sources.sine_0.frequency': must be a number >= 0, got -1",
        "field 'params.sources.n.seed': must be an integer, got 1.5",
        "field 'params.sources.n.colour': unknown field (allowed: seed)",
        "field 'params.sources.z.type': unknown type 'CosWave' (known: SineWave, RandomNoise)",
        "field 'params.sources.q.type': missing required field (known: SineWave, RandomNoise)"]


def test_several_problems_at_once_and_a_missing_field() -> None:
    assert _messages({"count": 0, "mode": 1, "flag": "yes", "extra": None}) == [
        "field 'params.rate': missing required field",
        "field 'params.count': must be an integer in 1..10, got 0",
        "field 'params.mode': must be one of fast, slow, got 1",
        "field 'params.flag': must be true or false, got 'yes'",
        "field 'params.extra': unknown field (allowed: rate, count, mode, flag, keys, sources)"]


def test_not_a_mapping() -> None:
    value, problems = parse(Example, [1, 2], path="params")
    assert value is None and len(problems) == 1 and problems[0].path == "params"
    assert problems[0].message.startswith("must be a mapping (rate, count, ")


def test_salvage_keeps_what_is_valid_for_further_checks() -> None:
    value, problems = salvage(Example, {"rate": 2, "count": 0, "keys": ["a", 3]})
    assert [p.path for p in problems] == ["params.count", "params.keys[1]"]
    assert value == Example(rate=2.0)  # the faulty fields at their defaults
    value, problems = salvage(Example, {"rate": -1})
    assert value is None and problems == [Problem("params.rate",
                                                  "must be a number > 0, got -1")]


def test_schema_carries_types_bounds_and_choices() -> None:
    s = schema(Example)
    assert s["additionalProperties"] is False and s["required"] == ["rate"]
    assert s["properties"]["rate"] == {"exclusiveMinimum": 0, "title": "Rate", "type": "number"}
    assert s["properties"]["mode"]["enum"] == ["fast", "slow"]


# ---------------------------------------------------------------------- the registry
def test_every_kind_has_one_module_and_a_params_class() -> None:
    kinds = node_kinds()
    assert kind_names() == ["source", "graph", "sink", "inference", "custom", "aligner",
                            "recorder", "replay"]
    assert [k.type for k in kinds if k.kind == "sink"] == ["printer", "csv", "null", "plot",
                                                           "lsl", "foxglove"]
    modules = [k.build.__module__ for k in kinds if k.kind != "source"]
    assert len(set(modules)) == len(modules)  # each kind (and sink type) its own module
    for k in kinds:
        cls = k.params_class
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen


@pytest.mark.process
def test_a_sink_node_imports_only_its_own_kind() -> None:
    import subprocess
    import sys

    code = ("import sys; from genki_signals.nodes.config import NodeConfig; "
            "from genki_signals.nodes.kinds import build_logic; "
            "build_logic(NodeConfig(id='n', kind='sink', params={'type': None}, "
            "control_endpoint='ipc:///x')); "
            "print(sorted(m for m in ('scipy', 'onnxruntime', 'genki_signals.signals', "
            "'genki_signals.data_sources', 'genki_signals.record', 'genki_signals.plot.node') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_aligner_methods_match_the_aligner() -> None:
    from genki_signals.nodes.kinds.aligner import Method
    from genki_signals.signals.align import METHODS

    assert typing.get_args(Method) == METHODS


def test_recorder_compressions_match_the_recorder() -> None:
    from genki_signals.nodes.kinds.recorder import Compression
    from genki_signals.record.recorder import COMPRESSIONS

    assert typing.get_args(Compression) == COMPRESSIONS


def test_node_config_carries_parsed_params_through_json() -> None:
    from genki_signals.nodes.kinds.sink_printer import PrinterParams
    from genki_signals.nodes.sinks import PrinterSinkLogic

    parsed = PrinterParams(type="printer", keys=("a",), every=3)
    config = NodeConfig(id="p", kind="sink", params=parsed, control_endpoint="ipc:///x",
                        inputs=(InputEdge("s", "ipc:///s", ("s/",)),))
    again = NodeConfig.from_json(config.to_json())
    assert again.params == {"type": "printer", "keys": ["a"], "every": 3}
    entry, params_ = parse_node_params(again)
    assert entry.type == "printer" and params_ == parsed
    logic = build_logic(again)
    assert isinstance(logic, PrinterSinkLogic) and logic.every == 3 and logic.keys == ["a"]


def test_build_logic_names_the_node_and_field() -> None:
    config = NodeConfig(id="p", kind="sink", params={"type": "printer", "every": 0},
                        control_endpoint="ipc:///x")
    with pytest.raises(ValueError, match=r"node 'p': must be an integer >= 1, got 0 "
                                         r"\(field 'params.every'\)"):
        build_logic(config)
    with pytest.raises(ValueError, match="node 'p': unknown kind 'teapot'"):
        build_logic(dataclasses.replace(config, kind="teapot"))


def test_adding_a_kind_is_one_new_module(tmp_path, monkeypatch) -> None:
    """The example of docs/topology-spec.md ("Adding a node kind"), dropped in as a module:
    the spec checker, the schema and the node process all know it, nothing else edited."""
    import re
    from pathlib import Path

    import genki_signals.nodes.kinds as kinds
    from genki_signals.launch.schema import topology_schema
    from genki_signals.launch.spec import parse_topology

    doc = (Path(__file__).parent.parent / "docs" / "topology-spec.md").read_text()
    code = re.search(r"```python\n(# genki_signals/nodes/kinds/sink_counter.py\n.*?)```", doc,
                     re.DOTALL)[1]
    (tmp_path / "sink_counter.py").write_text(code)
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    caches = (kinds.node_kinds, kinds.entries_of, kinds._entries, kinds.kind_info)
    for cache in caches:
        cache.cache_clear()
    try:
        source = {"id": "s", "kind": "source", "params": {
            "type": "Sampler", "sample_rate": 10, "sources": {"x": {"type": "SineWave"}}}}
        spec = parse_topology({"nodes": [source, {"id": "c", "kind": "sink", "inputs": ["s"],
                                                  "params": {"type": "counter", "every": 2}}]})
        assert spec.node("c").parsed.every == 2
        with pytest.raises(Exception, match=r"field 'params.keys\[0\]': stream 'y' is not "
                                            r"published upstream"):
            parse_topology({"nodes": [source, {"id": "c", "kind": "sink", "inputs": ["s"],
                                               "params": {"type": "counter", "keys": ["y"]}}]})
        with pytest.raises(Exception, match=r"unknown sink type 'teapot' \(known: printer, "
                                            r"csv, null, plot, counter, lsl, foxglove\)"):
            parse_topology({"nodes": [source, {"id": "c", "kind": "sink", "inputs": ["s"],
                                               "params": {"type": "teapot"}}]})
        assert "CounterParams" in topology_schema()["$defs"]
        config = NodeConfig(id="c", kind="sink", params=spec.node("c").parsed,
                            control_endpoint="ipc:///x")
        assert type(build_logic(NodeConfig.from_json(config.to_json()))).__name__ == \
            "NullSinkLogic"
    finally:
        monkeypatch.undo()
        for cache in caches:
            cache.cache_clear()


def test_every_shipped_node_round_trips_through_its_node_config() -> None:
    """What the launcher writes for each node of every valid spec parses back equal."""
    from pathlib import Path

    from genki_signals.launch.spec import load_topology

    here = Path(__file__).parent
    paths = [*sorted((here / "specs").glob("valid-*.yaml")),
             *sorted((here.parent / "specs").glob("*.yaml"))]
    assert len(paths) >= 8
    for path in paths:
        for node in load_topology(path).nodes:
            config = NodeConfig(id=node.id, kind=node.kind, params=node.parsed,
                                control_endpoint="ipc:///x")
            entry, again = parse_node_params(NodeConfig.from_json(config.to_json()))
            assert again == node.parsed, (path.name, node.id)
            assert isinstance(again, entry.params_class)
