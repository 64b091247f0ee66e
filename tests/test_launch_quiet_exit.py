"""A node that exits with 0 without a word does not hold the launch until ``ready_timeout``.

Under load a node's last control messages ("bye", even "ready") can be lost when its control
socket closes; the launcher then saw a finished node as never ready, waited out its ready
timeout with every node gone, and the run exited 1 (a flaky ``genki replay`` failure).
"""

from __future__ import annotations

import pytest
from proc_helpers import REPO  # noqa: F401 (puts tests/ on the nodes' path)


@pytest.mark.process
@pytest.mark.timeout(60)
def test_a_node_exiting_0_without_ready_does_not_fail_the_launch(tmp_path, launcher_factory):
    spec = tmp_path / "quiet.yaml"
    spec.write_text("""
name: quiet_exit
nodes:
  - id: quiet
    kind: custom
    restart: never
    params: {class: "bad_nodes:ExitsWithoutAWord"}
  - id: signals
    kind: source
    params: {type: Sampler, sample_rate: 100, update_rate: 25,
             sources: {x: {type: SineWave, frequency: 1}}}
""")
    lp = launcher_factory(spec, "--duration", "2")
    assert lp.wait_exit(timeout=45) == 0, lp.output
    assert "not ready" not in lp.output, lp.output
    assert "node 'quiet' exited with code 0" in lp.output
    assert "duration of 2 s reached" in lp.output, lp.output
