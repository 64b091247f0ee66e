"""`genki schema`: the JSON Schema accepts every valid spec and rejects the schema-level faults.

Every ``tests/specs/invalid-*`` case is either rejected by the schema, or listed in
``NOT_SCHEMA_LEVEL`` with the reason a schema cannot see it; such a case must be *accepted* by
the schema (so the list stays exact), and ``genki validate`` still rejects it (test_spec.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from genki_signals.cli import main
from genki_signals.launch.schema import topology_schema
from genki_signals.specfile import load_spec_file

HERE = Path(__file__).parent
CASES = HERE / "specs"
REPO = HERE.parent
VALID = sorted([*CASES.glob("valid-*.yaml"), *CASES.glob("valid-*.json"),
                *(REPO / "specs").glob("*.yaml"), *(REPO / "specs").glob("*.json")])
INVALID = sorted(CASES.glob("invalid-*.yaml"))

NOT_SCHEMA_LEVEL = {
    "invalid-ambiguous-stream.yaml": "stream flow: which input publishes which stream",
    "invalid-bad-operator-param.yaml": "operator specs are checked by the operator registry",
    "invalid-clock-leader.yaml": "a reference: whether the name is one of the nodes",
    "invalid-cycle.yaml": "a property of the node graph",
    "invalid-dangling-input.yaml": "a reference to a node that does not exist",
    "invalid-duplicate-id.yaml": "uniqueness across nodes",
    "invalid-duplicate-operator.yaml": "uniqueness across operators",
    "invalid-endpoint-clash.yaml": "two nodes' endpoints naming the same socket",
    "invalid-graph-input-missing.yaml": "stream flow: an operator input nobody publishes",
    "invalid-input-from-sink.yaml": "a reference: the kind of another node",
    "invalid-mixed-inputs.yaml": "stream flow: streams of two inputs combined",
    "invalid-mixed-timelines.yaml": "stream flow: streams of two timelines combined",
    "invalid-operator-unknown-field.yaml": "operator specs are checked by the operator registry",
    "invalid-self-loop.yaml": "a property of the node graph",
    "invalid-sink-key-not-upstream.yaml": "stream flow: a key nobody publishes",
    "invalid-unknown-operator.yaml": "operator specs are checked by the operator registry",
    "invalid-yaml-syntax.yaml": "not a document at all: YAML syntax",
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = topology_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # a well-formed draft 2020-12 schema
    return cls(schema)


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_schema_accepts_every_valid_spec(validator, path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(load_spec_file(path))]
    assert errors == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_schema_rejects_every_schema_level_fault(validator, path: Path) -> None:
    if path.name == "invalid-yaml-syntax.yaml":
        return  # nothing to validate
    errors = list(validator.iter_errors(load_spec_file(path)))
    if path.name in NOT_SCHEMA_LEVEL:
        assert errors == [], f"{path.name} is now rejected by the schema: take it off the list"
    else:
        assert errors, f"{path.name}: the schema accepts a schema-level fault"


def test_every_listed_case_exists() -> None:
    assert set(NOT_SCHEMA_LEVEL) <= {p.name for p in INVALID}


def test_schema_knows_every_kind_and_sink_type(validator) -> None:
    node = validator.schema["properties"]["nodes"]["items"]
    assert node["properties"]["kind"]["enum"] == ["source", "graph", "sink", "inference",
                                                  "custom", "aligner", "recorder", "replay"]
    base = {"id": "k", "kind": "sink", "inputs": ["s"]}
    for params in ({"type": "printer", "every": 2}, {"type": "csv", "path": "x.csv"},
                   {"type": "null"}, {"type": None}, {"type": "plot", "panels": ["a"]}):
        assert validator.is_valid({"nodes": [{**base, "params": params}]}), params
    for params in ({"type": "printer", "every": True}, {"type": "csv"}, {"type": "chart"},
                   {"type": "plot", "fps": 0}, {"type": "printer", "colour": 1}):
        assert not validator.is_valid({"nodes": [{**base, "params": params}]}), params


def test_cli_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(topology_schema()))
