"""Paths in a spec stay inside the spec's folder (or its ``allow_paths``): escapes by ``..``,
absolute paths and symlinks are refused, as are non-regular files; command-line paths are
trusted. Every error names the file, the node and the field (genki_signals/spec_paths.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from genki_signals.cli import main
from genki_signals.launch.replay import replay_topology
from genki_signals.launch.spec import TopologySpecError, load_topology, parse_topology

REPO = Path(__file__).parent.parent
GRU = REPO / "specs" / "models" / "motion_gru.onnx"


def source() -> dict:
    return {"id": "s", "kind": "source",
            "params": {"type": "Sampler", "sample_rate": 100,
                       "sources": {"x": {"type": "SineWave"}}}}


def recorder(path: str) -> dict:
    return {"id": "rec", "kind": "recorder", "inputs": ["s"], "params": {"path": path}}


def csv(path: str) -> dict:
    return {"id": "out", "kind": "sink", "inputs": ["s"], "params": {"type": "csv", "path": path}}


def replay(path: str) -> dict:
    return {"id": "s", "kind": "replay", "params": {"path": path}}


def write(folder: Path, data: dict, name: str = "t.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / name
    spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    return spec


def problems_of(spec: Path) -> list[str]:
    with pytest.raises(TopologySpecError) as info:
        load_topology(spec)
    return list(info.value.problems)


DEEP = "../" * 30 + "etc/passwd"  # reaches / from any folder


@pytest.mark.parametrize("make, field", [
    (recorder, "node 'rec': field 'params.path'"),
    (csv, "node 'out': field 'params.path'"),
    (replay, "node 's': field 'params.path'"),
])
def test_etc_passwd_by_dot_dot_is_refused_naming_file_node_and_field(tmp_path, make, field):
    for path in ("../../../../etc/passwd", DEEP):
        node = make(path)
        nodes = [node] if node["kind"] == "replay" else [source(), node]
        spec = write(tmp_path / "a" / "b", {"nodes": nodes})
        [problem] = problems_of(spec)
        assert problem.startswith(f"{spec}: {field}: '{path}' (resolves to "), problem
        assert "is outside the spec's folder" in problem and "allow_paths" in problem
    assert "(resolves to /etc/passwd)" in problem


def test_absolute_path_outside_the_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "run.mcap"
    spec = write(tmp_path / "spec", {"nodes": [source(), recorder(str(outside))]})
    [problem] = problems_of(spec)
    assert "node 'rec': field 'params.path'" in problem and "outside the spec's folder" in problem


def test_symlink_pointing_out_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.mcap").write_bytes(b"not a recording")
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "data").symlink_to(secret)
    spec = write(folder, {"nodes": [replay("data/key.mcap")]})
    [problem] = problems_of(spec)
    assert f"'data/key.mcap' (resolves to {secret / 'key.mcap'}) is outside" in problem


def test_model_path_escaping_the_folder_is_refused_before_it_is_opened(tmp_path):
    op = {"type": "Inference", "model": "../../etc/passwd", "input": "x", "name": "y"}
    spec = write(tmp_path / "a" / "b", {"nodes": [
        source(), {"id": "g", "kind": "graph", "inputs": ["s"], "params": {"operators": [op]}}]})
    [problem] = problems_of(spec)
    assert f"{spec}: node 'g': field 'params.operators[0]': Inference 'y': model " \
           f"'../../etc/passwd'" in problem
    assert "outside the spec's folder" in problem
    # an operator's own base_dir cannot lead out either
    op.update(model="passwd", base_dir="/etc")
    spec = write(tmp_path / "a" / "b", {"nodes": [
        source(), {"id": "g", "kind": "graph", "inputs": ["s"], "params": {"operators": [op]}}]})
    [problem] = problems_of(spec)
    assert "field 'params.operators[0]': Inference 'y': model 'passwd' (resolves to " \
           "/etc/passwd)" in problem


def test_allow_paths_opens_a_folder_and_only_that_folder(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(GRU, models / "gru.onnx")
    op = {"type": "Inference", "model": "../models/gru.onnx", "input": "x1", "name": "y",
          "stateful": True}
    one = {"type": "Reshape", "input": "x", "shape": [1], "name": "x1"}  # the GRU's (1,)
    graph = {"id": "g", "kind": "graph", "inputs": ["s"], "params": {"operators": [one, op]}}
    spec = write(tmp_path / "spec", {"nodes": [source(), graph]})
    assert "outside the spec's folder" in problems_of(spec)[0]
    spec = write(tmp_path / "spec", {"allow_paths": ["../models"], "nodes": [source(), graph]})
    parsed = load_topology(spec)
    assert parsed.allow_paths == ("../models",)
    assert parse_topology(parsed.to_dict(), path=spec) == parsed  # round trip keeps the allow
    spec = write(tmp_path / "spec", {"allow_paths": ["../models"],
                                     "nodes": [source(), recorder("../other/run.mcap")]})
    assert "outside the spec's folder" in problems_of(spec)[0]
    spec = write(tmp_path / "spec", {"allow_paths": [str(tmp_path / "other")],
                                     "nodes": [source(), recorder("../other/run.mcap")]})
    load_topology(spec)


def test_allow_paths_never_opens_kernel_or_device_files(tmp_path):
    spec = write(tmp_path, {"allow_paths": ["/"], "nodes": [
        source(), csv("/dev/null"), recorder("/proc/self/environ")]})
    problems = problems_of(spec)
    assert len(problems) == 2
    assert "node 'out': field 'params.path': '/dev/null' is under /dev" in problems[0]
    assert "node 'rec': field 'params.path': '/proc/self/environ'" in problems[1]
    assert "is under /proc" in problems[1]


def test_non_regular_files_are_refused(tmp_path):
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    spec = write(tmp_path, {"nodes": [source(), csv("out"), recorder("pipe.csv")]})
    problems = problems_of(spec)
    assert "node 'out': field 'params.path': 'out' (resolves to" in problems[0]
    assert "is a directory, not a file" in problems[0]
    assert "node 'rec': field 'params.path'" in problems[1] and "is not a regular file (a fifo)" \
        in problems[1]


def test_a_file_to_read_must_exist(tmp_path):
    spec = write(tmp_path, {"nodes": [replay("missing.mcap")]})
    [problem] = problems_of(spec)
    assert "node 's': field 'params.path': 'missing.mcap'" in problem and "does not exist" \
        in problem


def test_bad_allow_paths_is_named(tmp_path):
    spec = write(tmp_path, {"allow_paths": "/data", "nodes": [source(), csv("x.csv")]})
    [problem] = problems_of(spec)
    assert problem.startswith(f"{spec}: field 'allow_paths': must be a list of folder paths")


def test_genki_validate_refuses_the_escape(tmp_path, capsys):
    spec = write(tmp_path / "a", {"nodes": [source(), recorder("../../../../etc/passwd")]})
    assert main(["validate", str(spec)]) == 1
    err = capsys.readouterr()
    assert "node 'rec': field 'params.path': '../../../../etc/passwd'" in err.out + err.err


def test_spec_built_in_code_resolves_against_the_cwd_unconfined(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    parse_topology({"nodes": [source(), recorder(str(tmp_path.parent / "run.mcap"))]})
    with pytest.raises(TopologySpecError, match=r"node 'rec': field 'params.path': 'dir' "
                                                r"\(resolves to .*\) is a directory"):
        parse_topology({"nodes": [source(), recorder("dir")]})
    with pytest.raises(TopologySpecError, match="is under /dev"):
        parse_topology({"nodes": [source(), recorder("/dev/null")]})


def test_command_line_paths_stay_allowed(tmp_path):
    """``genki replay REC SPEC --record OUT``: REC and OUT were typed by the user."""
    from genki_signals.bus.codec import encode
    from genki_signals.record.recorder import Recorder

    rec_dir, spec_dir = tmp_path / "recordings", tmp_path / "spec"
    rec_dir.mkdir()
    recording = rec_dir / "run.mcap"
    with Recorder(recording) as r:
        r.record_parts(encode("s/main", {"timestamp": np.arange(2.0), "x": np.zeros(2)},
                              node_id="s", seq=0))
    spec = load_topology(write(spec_dir, {"nodes": [source(), csv("out.csv")]}))
    plan = replay_topology(spec, recording, ["s"], record=tmp_path / "out" / "again.mcap")
    assert plan.spec.node("s").kind == "replay"
