"""Topology specs: every valid-*.yaml parses and round-trips; every invalid-*.yaml fails as stated.

An invalid case is one file in tests/specs/ whose leading comments say what the error must hold::

    # expect: node 'out': field 'inputs[0].node': unknown node 'scr'
    # problems: 1          (optional: the exact number of problems, so errors never cascade)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genki_signals.cli import main
from genki_signals.data_sources.registry import (
    SOURCE_TYPES,
    build_source,
    check_source_params,
)
from genki_signals.data_sources.base import SourceParameterError
from genki_signals.launch.spec import (
    InputSpec,
    RestartPolicy,
    TopologySpec,
    TopologySpecError,
    load_topology,
    parse_topology,
    publishes,
)
from genki_signals.specfile import SpecError

HERE = Path(__file__).parent
CASES = HERE / "specs"
REPO = HERE.parent
VALID = sorted([*CASES.glob("valid-*.yaml"), *CASES.glob("valid-*.json"),
                *(REPO / "specs").glob("*.yaml"), *(REPO / "specs").glob("*.json")])
INVALID = sorted(CASES.glob("invalid-*.yaml"))

# <file>[:line:col]: [node '<id>': ]field '<path>': <message>, or a file-level syntax error
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+): (node '[^']+': )?field '[^']*': \S")


def _expectations(path: Path) -> tuple[list[str], int | None]:
    expect, count = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if m := re.match(r"#\s*expect:\s*(.+?)\s*$", line):
            expect.append(m[1])
        elif m := re.match(r"#\s*problems:\s*(\d+)\s*$", line):
            count = int(m[1])
    return expect, count


def _source(sample_rate: float = 100, **sources: dict) -> dict:
    return {"type": "Sampler", "sample_rate": sample_rate,
            "sources": sources or {"x": {"type": "SineWave"}}}


# ---------------------------------------------------------------------- the case files
def test_case_files_exist() -> None:
    assert len(VALID) >= 5 and len(INVALID) >= 16


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_valid_spec_parses_and_round_trips(path: Path) -> None:
    spec = load_topology(path)
    assert spec.path == path and spec.nodes
    data = spec.to_dict()
    again = parse_topology(json.loads(json.dumps(data)), path=path)  # JSON-ready, and equal
    assert again == spec
    assert again.to_dict() == data
    for node in spec.nodes:
        assert again.output_streams(node.id) == spec.output_streams(node.id)
        streams = spec.output_streams(node.id)
        if not publishes(node.kind):
            assert streams == []
        elif node.kind != "custom":  # a custom node's streams are not known statically
            assert streams[0] == "timestamp"
    chart = spec.mermaid()
    assert chart.startswith("flowchart LR\n")
    for node in spec.nodes:
        assert f'["{node.id}<br/>{node.kind}"]' in chart


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_spec_reports_what_its_header_expects(path: Path) -> None:
    expect, count = _expectations(path)
    assert expect, f"{path.name}: no '# expect:' line"
    with pytest.raises(SpecError) as info:
        load_topology(path)
    message = str(info.value)
    for fragment in expect:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    lines = message.splitlines()
    if count is not None:
        assert len(lines) == count, message
    for line in lines:
        assert line.startswith(str(path)), line
        if isinstance(info.value, TopologySpecError):
            assert PROBLEM_LINE.match(line), line


# ---------------------------------------------------------------------- demo and model
def test_demo_yaml_and_json_are_the_same_topology() -> None:
    yaml_spec = load_topology(REPO / "specs" / "demo.yaml")
    json_spec = load_topology(REPO / "specs" / "demo.json")
    assert yaml_spec.to_dict() == json_spec.to_dict()
    assert yaml_spec.name == "demo"
    assert [n.id for n in yaml_spec.nodes] == ["signals", "derived", "printer", "dashboard"]
    assert yaml_spec.output_streams("signals") == ["timestamp", "sine_0", "sine_1", "noise"]
    derived = yaml_spec.output_streams("derived")
    for name in ("composite_sine", "wave_with_noise", "wave_spectrum", "sample_rate",
                 "smooth_sample_rate"):
        assert name in derived
    assert yaml_spec.node("derived").inputs == (InputSpec("signals", "lossless", 1000),)
    assert yaml_spec.node("printer").inputs == (InputSpec("derived"),)
    assert [n.id for n in yaml_spec.downstream("signals")] == ["derived", "dashboard"]
    assert yaml_spec.downstream("printer") == ()


def test_defaults_and_shorthand() -> None:
    spec = parse_topology({"nodes": [
        {"id": "s", "kind": "source", "params": _source()},
        {"id": "k", "kind": "sink", "inputs": ["s"], "params": {"type": "null"}},
    ]})
    sink = spec.node("k")
    assert spec.name == "topology" and spec.path is None and spec.clock_leader is None
    assert sink.inputs == (InputSpec(node="s", policy="drop_oldest", maxlen=1000),)
    assert sink.host == "localhost" and sink.cpu is None and sink.endpoint is None
    assert sink.restart == RestartPolicy("on-failure", 5, 60.0, 0.5)
    hash(spec.nodes)  # usable as dict keys despite the params dict
    with pytest.raises(KeyError, match="no node 'nope'"):
        spec.node("nope")


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "bench-1.json"
    path.write_text(json.dumps({"nodes": [{"id": "s", "kind": "source",
                                           "params": _source()}]}))
    assert load_topology(path).name == "bench-1"


def test_restart_mapping_and_cpu() -> None:
    spec = load_topology(CASES / "valid-restart-mapping.yaml")
    assert spec.node("src").restart == RestartPolicy("always", 3, 30.0, 0.25)
    assert spec.node("out").restart == RestartPolicy("on-failure")
    assert spec.node("quiet").restart == RestartPolicy("never")
    assert load_topology(CASES / "valid-cpu-affinity.yaml").node("src").cpu == (0,)


def test_timelines_follow_the_edges() -> None:
    spec = load_topology(CASES / "valid-new-timeline.yaml")
    assert spec.output_timelines("spectral")["spectrum"] == "spectrum"
    assert spec.output_timelines("post")["magnitude"] == "spectrum"
    multi = load_topology(CASES / "valid-multi-input.yaml")
    lines = multi.output_timelines("derived")
    assert (lines["a2"], lines["bc"], lines["rate"]) == ("left", "right", "left")


def test_mermaid() -> None:
    chart = load_topology(REPO / "specs" / "demo.yaml").mermaid()
    assert chart.splitlines() == [
        "flowchart LR",
        '    n_signals["signals<br/>source"]',
        '    n_derived["derived<br/>graph"]',
        '    n_printer["printer<br/>sink"]',
        '    n_dashboard["dashboard<br/>sink"]',
        "    n_signals -->|lossless| n_derived",
        "    n_derived -->|drop_oldest| n_printer",
        "    n_signals -->|drop_oldest| n_dashboard",
        "    n_derived -->|drop_oldest| n_dashboard",
    ]


# ---------------------------------------------------------------------- every problem at once
def test_several_problems_are_all_reported() -> None:
    data = {
        "name": "many", "colour": "red",
        "nodes": [
            {"id": "s", "kind": "source", "params": _source(-1), "cpu": [-2]},
            {"id": "g", "kind": "graph", "inputs": [{"node": "s", "policy": "some"}],
             "params": {"operators": [{"type": "Nope"}]}},
            {"id": "k", "kind": "sink", "inputs": ["ghost"], "params": {"type": "printer"},
             "restart": "sometimes", "extra": 1},
            {"id": "s", "kind": "source", "params": _source()},
        ],
    }
    with pytest.raises(TopologySpecError) as info:
        parse_topology(data, path="many.yaml")
    problems = info.value.problems
    assert str(info.value).splitlines() == list(problems)
    expected = [
        "many.yaml: field 'colour': unknown field",
        "many.yaml: node 's': field 'cpu[0]': must be a core index >= 0",
        "many.yaml: node 's': field 'params.sample_rate': must be a number > 0, got -1",
        "many.yaml: node 'g': field 'inputs[0].policy': must be one of",
        "many.yaml: node 'g': field 'params.operators[0]': unknown operator type 'Nope'",
        "many.yaml: node 'k': field 'extra': unknown field",
        "many.yaml: node 'k': field 'restart': must be one of never, on-failure, always",
        "many.yaml: node 'k': field 'inputs[0].node': unknown node 'ghost'",
        "many.yaml: node 's': field 'id': duplicate id (also nodes[0])",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for line, fragment in zip(problems, expected):
        assert line.startswith(fragment), f"{line!r} does not start with {fragment!r}"


def test_a_broken_upstream_does_not_cascade() -> None:
    data = {"nodes": [
        {"id": "s", "kind": "source", "params": _source(x={"type": "SineWave", "frequency": -1})},
        {"id": "g", "kind": "graph", "inputs": ["s"],
         "params": {"operators": [{"type": "Abs", "input": "x", "name": "ax"},
                                  {"type": "Abs", "input": "missing", "name": "am"}]}},
        {"id": "k", "kind": "sink", "inputs": ["g"], "params": {"type": "printer",
                                                               "keys": ["whatever"]}},
    ]}
    with pytest.raises(TopologySpecError) as info:
        parse_topology(data)
    assert len(info.value.problems) == 1
    assert "node 's': field 'params.sources.x.frequency'" in info.value.problems[0]


def test_operator_specs_are_still_checked_below_a_broken_upstream() -> None:
    data = {"nodes": [
        {"id": "s", "kind": "source", "params": {"type": "Nope"}},
        {"id": "g", "kind": "graph", "inputs": ["s"],
         "params": {"operators": [{"type": "MovingAverage", "input": "x", "length": -1}]}},
    ]}
    with pytest.raises(TopologySpecError) as info:
        parse_topology(data)
    assert len(info.value.problems) == 2
    assert "node 'g': field 'params.operators[0]': MovingAverage" in info.value.problems[1]


def test_csv_path_is_resolved_against_the_spec_directory(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    data = {"nodes": [
        {"id": "s", "kind": "source", "params": _source()},
        {"id": "k", "kind": "sink", "inputs": ["s"], "params": {"type": "csv", "path": "out"}},
    ]}
    with pytest.raises(TopologySpecError, match=r"field 'params.path': .* is a directory"):
        parse_topology(data, path=tmp_path / "t.yaml")
    data["nodes"][1]["params"]["path"] = "out/rec.csv"
    parse_topology(data, path=tmp_path / "t.yaml")


@pytest.mark.parametrize("data", [None, [], "nodes", {"operators": []}])
def test_not_a_topology(data: object) -> None:
    with pytest.raises(TopologySpecError):
        parse_topology(data)


# ---------------------------------------------------------------------- source registry
def test_check_source_params() -> None:
    assert "Sampler" in SOURCE_TYPES
    problems, names = check_source_params(
        {**_source(sine={"type": "SineWave", "frequency": 3}, n={"type": "RandomNoise"}),
         "update_rate": 25})
    assert problems == [] and names == ["timestamp", "sine", "n"]
    problems, _ = check_source_params(
        {"type": "Sampler", "sample_rate": 10, "update_rate": 0, "sources": {
            "a": {"type": "SineWave", "frequency": "3"},
            "b": {"type": "RandomNoise", "seed": 1.5},
            "c": {"type": "TriangleWave", "amplitude": -1},
            "timestamp": {"type": "SineWave"}}})
    assert problems == [
        "field 'params.update_rate': must be a number > 0, got 0",
        "field 'params.sources.a.frequency': must be a number, got '3'",
        "field 'params.sources.b.seed': must be an integer, got 1.5",
        "field 'params.sources.c.amplitude': TriangleWave: 'amplitude' must be a finite "
        "number >= 0, got -1",
        "field 'params.sources.timestamp': bad stream name 'timestamp' (letters, digits, "
        "underscore; not 'timestamp')",
    ]
    assert check_source_params("Sampler")[0] == [
        "field 'params': must be a mapping with a 'type', got 'Sampler'"]
    assert check_source_params({})[0] == [
        "field 'params.type': missing required field (known: Sampler, lsl, Mouse, Keyboard, "
        "Microphone, wave)"]


def test_build_source_makes_a_sampler_without_starting_it() -> None:
    source = build_source({**_source(50, a={"type": "SineWave", "frequency": 2},
                                     b={"type": "RandomNoise", "seed": 4}),
                           "update_rate": 10})
    assert source.sample_rate == 50.0 and source.stream_names == ["a", "b"]
    assert not source.is_active
    with pytest.raises(SourceParameterError, match="params.sample_rate"):
        build_source(_source(0))


# ---------------------------------------------------------------------- CLI
def test_cli_validate_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "specs" / "demo.yaml")]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("demo.yaml: ok (topology 'demo': 4 nodes: signals (source), "
                                "derived (graph), printer (sink), dashboard (sink))")
    assert err == ""


def test_cli_validate_reports_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    path = CASES / "invalid-bad-cpu.yaml"
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert len(lines) == 4
    assert all(line.startswith(f"{path}: node '") for line in lines[:3])
    assert lines[3] == f"genki: {path}: 3 problem(s)"


def test_cli_validate_syntax_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CASES / "invalid-yaml-syntax.yaml")]) == 1
    assert "invalid YAML" in capsys.readouterr().err


def test_cli_validate_signal_graph_spec(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"operators": [
        {"type": "Sum", "inputs": ["a", "b"], "name": "c"}]}))
    assert main(["validate", str(path)]) == 0
    assert "ok (signal graph: 1 operators: c)" in capsys.readouterr().out
    path.write_text(json.dumps({"operators": [{"type": "Summ"}]}))
    assert main(["validate", str(path)]) == 1
    assert "unknown operator type 'Summ'" in capsys.readouterr().err
    path.write_text(json.dumps({"things": []}))
    assert main(["validate", str(path)]) == 1
    assert "neither a topology spec" in capsys.readouterr().err


def test_cli_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(REPO / "specs" / "demo.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR\n") and "n_signals -->|lossless| n_derived" in out
    assert main(["graph", str(CASES / "invalid-cycle.yaml")]) == 1
    assert "cycle: c -> a -> b -> c" in capsys.readouterr().err


def test_spec_type_is_exported() -> None:
    assert TopologySpec.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_every_cli_argument_has_help_text() -> None:
    """`genki VERB --help` explains every argument (issue 11): walk the whole parser."""
    import argparse

    from genki_signals.cli import DESCRIPTION, build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) \
                    and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    parser = build_parser()
    walk(parser, "genki")
    assert not missing, f"arguments without help text: {missing}"
    assert parser.description == DESCRIPTION and "build_parser" not in parser.format_help()
