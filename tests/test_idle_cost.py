"""Idle cost of a running topology: what a node does when nothing changes.

A node whose clock leader is on its own host (an ipc:// clock endpoint) probes it every
``SAME_HOST_INTERVAL`` seconds once warmed up, not every 2 s: both ends read the same monotonic
clock. Read from the real nodes' heartbeat stats of a real ``genki launch``.
"""

from __future__ import annotations

import inspect
import time

import pytest
from test_supervision import chain_spec

from genki_signals.clocksync.node import SAME_HOST_INTERVAL
from genki_signals.clocksync.sync import ClockSync

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def bursts(d: dict) -> dict[str, int]:
    return {n["id"]: n["stats"].get("clock_bursts", 0) for n in d["nodes"]}


def test_a_same_host_node_probes_its_clock_leader_rarely_once_warm(tmp_path, launcher_factory):
    assert SAME_HOST_INTERVAL >= 5.0
    lp = launcher_factory(chain_spec(tmp_path, "idleclock"))
    lp.wait_ready(timeout=60)
    # warm-up: 2 blocking bursts, then more every 0.1 s up to ClockSync's warmup_bursts
    warmup = inspect.signature(ClockSync).parameters["warmup_bursts"].default
    warm = lp.wait_for(lambda d: d if all(b >= warmup for b in bursts(d).values()) else None,
                       30, "every node's clock warmed up")
    t0, before = time.monotonic(), bursts(warm)
    time.sleep(7.0)
    after = lp.wait_for(lambda d: d, 5, "the directory")
    elapsed = time.monotonic() - t0
    for node, count in bursts(after).items():
        # every 2 s would be >= 3 more; every SAME_HOST_INTERVAL at most 1 (2 if a beat lags)
        assert count - before[node] <= 1 + elapsed // SAME_HOST_INTERVAL, (node, before, after)
        assert count >= before[node]
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
