"""Issue 12 acceptance: kill -9 of a graph node with a stateful chain on lossless edges, and the
recorded downstream output equals an uncrashed run on the same input, bit for bit.

Real processes throughout (``genki_signals/testing/crash_resume.py``): ``genki launch``, a
replay of a recording as the deterministic source (paced at 1x, so the kill lands mid-stream),
a graph node running Butterworth low-pass -> moving average -> GRU (a real ONNX model) with
checkpoints every 10 frames, and a recorder node whose file is compared. The control run with
checkpoints off shows that the comparison can fail: the restarted node then starts its
operators afresh (the upstream still resends, so nothing is lost, but the output differs).

The uncrashed reference of each input runs once per module, unpaced and with checkpoints off,
and serves every test of that input: a crashed run must equal it whatever the pacing and
whether or not checkpoints are taken (a stricter comparison than a paced, checkpointed twin,
and about a third of the time).
"""

from __future__ import annotations

import pytest

from genki_signals.testing.crash_resume import (
    SCENARIOS,
    RunResult,
    frames_equal,
    prepare,
    run,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(rate)``: the uncrashed run of ``SCENARIOS[rate]``, run on first use."""
    runs: dict[str, RunResult] = {}

    def get(rate: str) -> RunResult:
        if rate not in runs:
            sc = SCENARIOS[rate]
            base = tmp_path_factory.mktemp(f"ref_{rate}")
            ref = run(prepare(base / "spec", f"ref_{rate}", sc, enabled=False, paced=False),
                      base / "run")
            assert ref.exit_code == 0, ref.output
            assert len(ref.frames) == sc.frames, ref.output
            runs[rate] = ref
        return runs[rate]

    return get


@pytest.mark.parametrize("rate", ["100Hz", "1kHz"])
def test_killed_graph_node_resumes_and_output_equals_an_uncrashed_run(tmp_path, rate,
                                                                      reference):
    sc = SCENARIOS[rate]
    crashed = run(prepare(tmp_path / "crash", f"crash_{rate}", sc), tmp_path / "run_crash",
                  kill_after=2.5)
    assert crashed.exit_code == 0, crashed.output
    assert "killed by signal SIGKILL" in crashed.output and crashed.restarts == 1, \
        crashed.output
    assert "resuming from checkpoint" in crashed.output, crashed.output
    diff = frames_equal(crashed.frames, reference(rate).frames)
    assert diff is None, f"crashed run differs from the uncrashed one: {diff}\n" \
                         f"{crashed.output}"
    # retained bytes: a gauge sampled from the source's heartbeats (a figure for
    # tools/bench_crash_resume.py); a restart shorter than a heartbeat can show 0
    assert crashed.restart_seconds is not None and crashed.retained_bytes_max is not None


def test_control_without_checkpoints_the_output_differs(tmp_path, reference):
    sc = SCENARIOS["100Hz"]
    crashed = run(prepare(tmp_path / "crash", "nockpt_crash", sc, enabled=False),
                  tmp_path / "run_crash", kill_after=2.5)
    assert crashed.exit_code == 0 and crashed.restarts == 1, crashed.output
    assert "resuming from checkpoint" not in crashed.output
    assert frames_equal(crashed.frames, reference("100Hz").frames) is not None
