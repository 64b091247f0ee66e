"""The dry run: each graph runs in-process on zero frames of its inputs' declared shapes before
anything starts, so shape and dtype faults are refused by ``genki validate`` and ``genki launch``
naming the node and the operator (genki_signals/nodes/dry_run.py)."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import yaml

from genki_signals.bus.codec import encode
from genki_signals.cli import main
from genki_signals.launch.spec import TopologySpecError, load_topology, parse_topology
from genki_signals.nodes.dry_run import dry_run_graph
from genki_signals.nodes.kinds import Upstream
from genki_signals.record.recorder import Recorder
from genki_signals.signals.base import Operator
from proc_helpers import env_with_tests_on_path

SOURCE = {"id": "signals", "kind": "source",
          "params": {"type": "Sampler", "sample_rate": 100,
                     "sources": {"x": {"type": "SineWave"}}}}


def graph(node_id: str, upstream: str, *operators: dict) -> dict:
    return {"id": node_id, "kind": "graph", "inputs": [upstream],
            "params": {"operators": list(operators)}}


def reshape(input: str, shape: list[int], name: str) -> dict:
    return {"type": "Reshape", "input": input, "shape": shape, "name": name}


SCALE = {"type": "Scale", "input": "x", "factor": 2.0, "name": "y"}
ISSUE_SPEC = {"nodes": [SOURCE, graph("derived", "signals", SCALE, reshape("y", [2], "z")),
                        {"id": "out", "kind": "sink", "inputs": ["derived"],
                         "params": {"type": "printer"}}]}
ISSUE_PROBLEM = ("node 'derived': field 'params.operators[1]': dry run on zero samples of "
                 "signals/main: Reshape 'z': input 'y' with per-sample shape () cannot be "
                 "reshaped to [2]")


def write(tmp_path, data: dict):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_genki_validate_refuses_a_scalar_reshaped_to_two(tmp_path, capsys):
    spec = write(tmp_path, ISSUE_SPEC)
    assert main(["validate", str(spec)]) == 1
    out = capsys.readouterr()
    assert f"{spec}: {ISSUE_PROBLEM}" in out.out + out.err


def test_genki_launch_refuses_it_before_any_process_starts(tmp_path):
    spec = write(tmp_path, ISSUE_SPEC)
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "genki_signals.cli", "launch", str(spec),
                           "--run-dir", str(run_dir)], capture_output=True, text=True,
                          timeout=60, env=env_with_tests_on_path())
    assert proc.returncode == 1
    assert ISSUE_PROBLEM in proc.stderr
    assert "started node" not in proc.stdout + proc.stderr
    assert not run_dir.exists()  # no node config written, no socket bound


def test_declared_shapes_flow_from_graph_to_graph(tmp_path):
    """The first graph's dry-run output shapes feed the second graph's dry run."""
    ok = {"nodes": [SOURCE, graph("a", "signals", reshape("x", [1], "x1")),
                    graph("b", "a", reshape("x1", [1, 1], "x2"))]}
    spec = parse_topology(ok)
    assert spec.output_streams("b") == ["timestamp", "x2"]
    bad = {"nodes": [SOURCE, graph("a", "signals", reshape("x", [1], "x1")),
                     graph("b", "a", reshape("x1", [3], "x3"))]}
    with pytest.raises(TopologySpecError) as info:
        parse_topology(bad)
    [problem] = info.value.problems
    assert "node 'b': field 'params.operators[0]': dry run on zero samples of a/main: Reshape " \
           "'x3': input 'x1' with per-sample shape (1,) cannot be reshaped to [3]" in problem


def test_a_dtype_fault_from_a_recording_is_refused(tmp_path):
    """A replay declares its recorded dtypes: scaling a byte-string stream fails the dry run."""
    rec = tmp_path / "run.mcap"
    with Recorder(rec) as r:
        r.record_parts(encode("signals/main", {"timestamp": np.arange(2.0),
                                               "label": np.array([b"a", b"b"], dtype="S4")},
                              node_id="signals", seq=0))
    data = {"nodes": [{"id": "signals", "kind": "replay", "params": {"path": "run.mcap"}},
                      graph("g", "signals",
                            {"type": "Scale", "input": "label", "factor": 2.0, "name": "y"})]}
    with pytest.raises(TopologySpecError) as info:
        load_topology(write(tmp_path, data))
    [problem] = info.value.problems
    assert "node 'g': field 'params.operators[0]': dry run on zero samples of signals/main: " \
           "Scale 'y'" in problem


def test_inputs_without_declared_shapes_are_not_dry_run():
    """A custom node declares nothing: the graph after it is checked by names only."""
    ops = [Operator.from_dict(reshape("x", [2], "z"))]
    unknown = Upstream("c", {"timestamp": "main", "x": "main"}, None)
    assert dry_run_graph(ops, [unknown], {"z": 0}) == ([], None)
    known = Upstream("c", {"timestamp": "main", "x": "main"}, {"x": ((2,), "<f4")})
    problems, samples = dry_run_graph(ops, [known], {"z": 0})
    assert problems == [] and samples == {"timestamp": ((), "<f8"), "z": ((2,), "<f4")}


def test_the_dry_run_has_no_side_effects(tmp_path, monkeypatch):
    """No thread or file is left behind, and the source is never started."""
    monkeypatch.chdir(tmp_path)
    before = threading.active_count()
    data = {"nodes": [SOURCE, graph("derived", "signals", SCALE),
                      {"id": "out", "kind": "sink", "inputs": ["derived"],
                       "params": {"type": "csv", "path": "out.csv"}},
                      {"id": "rec", "kind": "recorder", "inputs": ["derived"],
                       "params": {"path": "run.mcap"}}]}
    spec = load_topology(write(tmp_path, data))
    assert spec.output_streams("derived") == ["timestamp", "y"]
    assert threading.active_count() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


@pytest.mark.parametrize("source, stream, shape", [
    ({"type": "Mouse", "sample_rate": 100}, "mouse_position", "(2,)"),
    ({"type": "Keyboard", "keys": ["a", "b", "c"], "name": "keys"}, "keys", "(3,)"),
    ({"type": "Microphone", "channels": 2}, "audio", "(2,)"),
])
def test_device_sources_declare_their_shapes_without_opening_a_device(source, stream, shape):
    """Checked on a machine without display or sound card: nothing is opened."""
    data = {"nodes": [{"id": "dev", "kind": "source", "params": source},
                      graph("g", "dev", reshape(stream, [5], "z"))]}
    with pytest.raises(TopologySpecError) as info:
        parse_topology(data)
    [problem] = info.value.problems
    assert f"node 'g': field 'params.operators[0]': dry run on zero samples of dev/main: " \
           f"Reshape 'z': input '{stream}' with per-sample shape {shape} cannot be " \
           f"reshaped to [5]" in problem


def test_shapes_flow_through_an_aligner():
    """An aligner declares its outputs' shapes (and a follower's dtype after interpolation)."""
    def sampler(node_id: str, rate: float) -> dict:
        return {"id": node_id, "kind": "source",
                "params": {"type": "Sampler", "sample_rate": rate,
                           "sources": {f"{node_id}_x": {"type": "SineWave"}}}}

    data = {"nodes": [sampler("lead", 100), sampler("f", 30),
                      {"id": "j", "kind": "aligner", "inputs": ["lead", "f"],
                       "params": {"leader": "lead", "followers": {"f": "linear"}}},
                      graph("g", "j", reshape("f_x", [2], "z"))]}
    with pytest.raises(TopologySpecError) as info:
        parse_topology(data)
    [problem] = info.value.problems
    assert "node 'g': field 'params.operators[0]': dry run on zero samples of j/main: Reshape " \
           "'z': input 'f_x' with per-sample shape () cannot be reshaped to [2]" in problem
    data["nodes"][3] = graph("g", "j", reshape("f_x", [1], "z"), reshape("lead_x", [1], "w"))
    parse_topology(data)
