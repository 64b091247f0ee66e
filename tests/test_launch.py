"""Process tests: the launcher runs a topology as real processes over real ZeroMQ sockets."""

from __future__ import annotations

import csv
import os
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from genki_signals.demo import seed_derived_signals
from genki_signals.graph import SignalGraph
from proc_helpers import REPO, LauncherProcess

pytestmark = pytest.mark.timeout(90)


def demo_with_csv_sinks(tmp_path: Path) -> Path:
    """The shipped demo spec plus lossless CSV recorders of the raw and derived topics."""
    spec = yaml.safe_load((REPO / "specs" / "demo.yaml").read_text())
    spec["nodes"] = [n for n in spec["nodes"] if n["kind"] != "sink"]
    spec["nodes"] += [
        {"id": "raw_csv", "kind": "sink", "inputs": [{"node": "signals", "policy": "lossless"}],
         "params": {"type": "csv", "path": str(tmp_path / "raw.csv")}},
        {"id": "derived_csv", "kind": "sink",
         "inputs": [{"node": "derived", "policy": "lossless"}],
         "params": {"type": "csv", "path": str(tmp_path / "derived.csv")}},
    ]
    for n in spec["nodes"]:
        for edge in n.get("inputs", []):
            if isinstance(edge, dict):
                edge["policy"] = "lossless"
    path = tmp_path / "demo_csv.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    with path.open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = {}
    for i, name in enumerate(header[1:], start=1):
        cols[name] = np.array([float(r[i]) for r in body])
    return cols


@pytest.mark.process
def test_demo_topology_matches_in_process_system(tmp_path, launcher_factory):
    lp = launcher_factory(demo_with_csv_sinks(tmp_path), "--duration", "4")
    assert lp.wait_exit(timeout=60) == 0, lp.output
    raw = read_csv_columns(tmp_path / "raw.csv")
    derived = read_csv_columns(tmp_path / "derived.csv")
    n = len(raw["timestamp"])
    assert n >= 200, f"only {n} samples recorded:\n{lp.output}"
    # the derived stream lost nothing and is stamped with the source's timestamps
    m = len(derived["timestamp"])
    assert m >= n - 30  # the last frames may be in flight when the run stops
    np.testing.assert_array_equal(derived["timestamp"], raw["timestamp"][:m])
    np.testing.assert_allclose(np.diff(raw["timestamp"]), 0.01, atol=1e-9)
    # the same graph in-process, over the recorded raw samples
    frame = {k: raw[k] for k in ("timestamp", "sine_0", "sine_1", "noise")}
    expected = SignalGraph(seed_derived_signals()).process(frame)
    for key in ("composite_sine", "wave_with_noise", "sample_rate"):
        np.testing.assert_array_equal(derived[key], expected[key][:m], err_msg=key)
    # a moving average's sums round differently by chunk (1e-14): equal within the contract
    np.testing.assert_allclose(derived["smooth_sample_rate"], expected["smooth_sample_rate"][:m],
                               rtol=1e-12)
    spectrum = np.stack([derived[f"wave_spectrum[{i}]"] for i in range(129)], axis=1)
    np.testing.assert_array_equal(spectrum, expected["wave_spectrum"][:m])


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


DEMO_ON_FAILURE = """
    name: restart_test
    nodes:
      - id: signals
        kind: source
        params:
          type: Sampler
          sample_rate: 100
          sources: {x: {type: SineWave, frequency: 2}}
      - id: derived
        kind: graph
        restart: {policy: on-failure, max_restarts: 3, window: 60, backoff: 0.2}
        inputs: [signals]
        params:
          operators:
            - {type: Scale, input: x, factor: 2.0, name: y}
      - id: out
        kind: sink
        inputs: [derived]
        params: {type: null}
"""


@pytest.mark.process
def test_killed_node_is_reported_and_restarted_while_others_run(tmp_path, launcher_factory):
    lp = launcher_factory(write_spec(tmp_path, DEMO_ON_FAILURE))
    d = lp.wait_ready()
    pids = {n["id"]: n["pid"] for n in d["nodes"]}
    os.kill(pids["derived"], signal.SIGKILL)
    d = lp.wait_for(lambda d: d if next(n for n in d["nodes"] if n["id"] == "derived")
                    ["restarts"] == 1 and all(n["state"] == "ready" for n in d["nodes"])
                    else None, 30, "derived restarted")
    now = {n["id"]: n["pid"] for n in d["nodes"]}
    assert now["derived"] != pids["derived"]
    assert now["signals"] == pids["signals"] and now["out"] == pids["out"]
    lp.wait_for(lambda d: next(n for n in d["nodes"] if n["id"] == "out")["stats"]
                .get("samples", 0) > 0, 15, "sink receiving after the restart")
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0
    assert "node 'derived' killed by signal SIGKILL; restarting" in lp.output


@pytest.mark.process
def test_ctrl_c_leaves_no_child_process(tmp_path, launcher_factory):
    lp = launcher_factory(REPO / "specs" / "demo.yaml")
    lp.wait_ready()
    children = lp.remember_children()
    assert len(children) >= 3
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
    assert lp.alive_children() == [], lp.output
    assert "[launch] stopped" in lp.output


@pytest.mark.process
def test_node_ignoring_stop_is_killed_after_grace_and_reported(tmp_path, launcher_factory):
    spec = write_spec(tmp_path, """
        name: stubborn_test
        nodes:
          - id: stubborn
            kind: custom
            params: {class: "bad_nodes:IgnoresStop"}
    """)
    lp = launcher_factory(spec, "--grace", "1")
    lp.wait_ready()
    lp.interrupt()
    lp.wait_exit(timeout=30)
    assert "node 'stubborn' killed after 1 s grace (did not stop)" in lp.output
    assert lp.alive_children() == []


@pytest.mark.process
def test_node_crashing_in_init_fails_the_launch_with_its_cause(tmp_path, launcher_factory):
    spec = write_spec(tmp_path, """
        name: crash_test
        nodes:
          - id: fragile
            kind: custom
            params: {class: "bad_nodes:CrashesInInit", args: {message: "no sensor found"}}
    """)
    lp = launcher_factory(spec)
    assert lp.wait_exit(timeout=30) == 1
    assert "node 'fragile': exited with code 2" in lp.output
    assert "RuntimeError: no sensor found" in lp.output


@pytest.mark.process
def test_restart_budget_is_enforced(tmp_path, launcher_factory):
    spec = write_spec(tmp_path, """
        name: budget_test
        nodes:
          - id: flaky
            kind: custom
            restart: {policy: on-failure, max_restarts: 2, window: 60, backoff: 0.05}
            params: {class: "bad_nodes:CrashesAfter", args: {seconds: 0.3}}
    """)
    lp = launcher_factory(spec)
    assert lp.wait_exit(timeout=60) == 1
    out = lp.output
    assert out.count("node 'flaky' exited with code 1") >= 3
    assert "restart budget of 2 in 60 s exhausted: giving up" in out
    assert "RuntimeError: crashed on purpose" in out


@pytest.mark.process
def test_attach_tools_see_the_running_topology(tmp_path, launcher_factory, capsys):
    from genki_signals.cli import main

    lp = launcher_factory(REPO / "specs" / "demo.yaml")
    lp.wait_ready()
    lp.wait_for(lambda d: "derived/main" in d["topics"], 15, "derived/main published")
    assert main(["topics", lp.address]) == 0
    out = capsys.readouterr().out
    assert "signals/main" in out and "derived/main" in out
    assert main(["echo", lp.address, "derived/main", "-n", "3"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("derived/main")]
    assert len(lines) == 3 and "wave_with_noise=" in lines[0] and "frames/s" in lines[0]
    lp.wait_for(lambda d: all(n["stats"].get("rate_out") is not None for n in d["nodes"]
                              if n["kind"] != "sink"), 10, "heartbeats")
    assert main(["top", lp.address, "-n", "1"]) == 0
    table = capsys.readouterr().out
    for node in ("signals", "derived", "printer"):
        assert node in table
    assert "frames/s" in table and "cpu %" in table
    assert main(["echo", lp.address, "nope/"]) == 1
    assert "no topic starts with 'nope/'" in capsys.readouterr().err


def test_graph_verb_prints_mermaid(capsys):
    from genki_signals.cli import main

    assert main(["graph", str(REPO / "specs" / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR")
    assert "signals" in out and "derived" in out and "lossless" in out


@pytest.mark.process
def test_cpu_affinity_from_the_spec_is_applied(tmp_path, launcher_factory):
    import psutil

    spec = write_spec(tmp_path, """
        name: affinity_test
        nodes:
          - id: signals
            kind: source
            cpu: [0]
            params: {type: Sampler, sample_rate: 50, sources: {x: {type: SineWave}}}
          - id: out
            kind: sink
            inputs: [signals]
            params: {type: "null"}
    """)
    lp = launcher_factory(spec)
    d = lp.wait_ready()
    pids = {n["id"]: n["pid"] for n in d["nodes"]}
    assert psutil.Process(pids["signals"]).cpu_affinity() == [0]
    assert len(psutil.Process(pids["out"]).cpu_affinity()) == psutil.cpu_count()
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0


@pytest.mark.process
def test_heartbeats_report_rates_of_nodes_that_both_read_and_publish(tmp_path, launcher_factory):
    lp = launcher_factory(REPO / "specs" / "demo.yaml")
    lp.wait_ready()
    d = lp.wait_for(lambda d: d if next(n for n in d["nodes"] if n["id"] == "derived")
                    ["stats"].get("frames_in", 0) > 20 else None, 20, "derived heartbeat")
    stats = next(n for n in d["nodes"] if n["id"] == "derived")["stats"]
    assert stats["frames_out"] > 0 and stats["rate_out"] > 0
    assert stats["frames_in"] >= stats["frames_out"] // 2
