"""Per-frame age through a real topology whose middle node runs on a skewed clock."""

from __future__ import annotations

import json
import textwrap

import pytest

from genki_signals.clocksync.sync import TEST_CLOCK_ENV
from proc_helpers import LauncherProcess

LAG, DELAY = 0.200, 0.050  # the source's acquisition delay; the middle node's sleep per frame
SLACK = 0.020  # one ipc hop + wake-ups on a loaded 2-core machine, upper side only

SPEC = """
    name: {name}
    nodes:
      - id: src
        kind: custom
        params: {{class: "probe_nodes:LaggedSource", args: {{rate: 10, lag: {lag}}}}}
      - id: slow
        kind: custom
        inputs: [src]
        params: {{class: "probe_nodes:Sleeper", args: {{delay: {delay}}}}}
      - id: end
        kind: sink
        inputs: [slow]
        params: {{type: "null"}}
"""


@pytest.mark.process
@pytest.mark.timeout(90)
def test_ages_along_a_chain_are_the_known_delays_within_the_clock_uncertainty(
        tmp_path, monkeypatch):
    """src publishes samples acquired LAG earlier; slow (its clock +2.5 s and +200 ppm off,
    synchronised to the launcher) sleeps DELAY per frame; end only receives. The ages each node
    reports are the truth (LAG, LAG + DELAY, LAG + DELAY + a hop) to within the clock's
    reported uncertainty below and a hop above: a node measuring on its own clock would be
    2.5 s off."""
    monkeypatch.setenv(TEST_CLOCK_ENV, json.dumps({"slow": {"offset": 2.5, "drift_ppm": 200}}))
    spec = tmp_path / "age.yaml"
    spec.write_text(textwrap.dedent(SPEC.format(name="age_chain", lag=LAG, delay=DELAY)))
    lp = LauncherProcess(spec, tmp_path / "run")
    try:
        lp.wait_ready()

        def settled(d):
            stats = {n["id"]: n.get("stats") or {} for n in d["nodes"]}
            keys = [("slow", "age_in_p50"), ("slow", "age_out_p50"), ("end", "age_in_p50"),
                    ("src", "age_out_p50")]
            ok = all(isinstance(stats[n].get(k), float) and stats[n][k] == stats[n][k]
                     for n, k in keys)
            return stats if ok and stats["slow"].get("clock_uncertainty") else None

        lp.wait_for(settled, 30, "heartbeats with ages")  # the clock warm-up is over
        stats = lp.wait_for(settled, 10, "a second round of heartbeats")
    finally:
        lp.interrupt()
        lp.wait_exit(timeout=30)
        lp.kill_all()
    u = stats["slow"]["clock_uncertainty"]
    assert stats["slow"]["clock_role"] == "follower"
    assert 0 < u < 0.005, stats["slow"]
    src, slow, end = stats["src"], stats["slow"], stats["end"]
    assert LAG - 1e-6 <= src["age_out_p50"] <= LAG + SLACK, src  # src reads the leader clock
    assert LAG - u <= slow["age_in_p50"] <= LAG + SLACK, slow
    assert LAG + DELAY - u <= slow["age_out_p50"] <= LAG + DELAY + SLACK, slow
    assert LAG + DELAY <= end["age_in_p50"] <= LAG + DELAY + 2 * SLACK, end
    assert slow["age_in_p99"] >= slow["age_in_p50"]
