"""``ClockProbe``: a node that publishes what its clock says, for tests and benchmarks.

Run it as a custom node (``class: genki_signals.testing.clock_probe:ClockProbe``). Every
``1 / rate`` seconds it publishes one sample: ``timestamp`` (the node's leader-time estimate,
read from the default clock every source of the node stamps with), ``monotonic`` (the host's
CLOCK_MONOTONIC at the same moment, never skewed by a test clock: on one host,
``monotonic - clock_origin`` is the true leader time when the launcher leads), ``read_span``
(how long the two readings took: a preempted reading is visible) and ``uncertainty`` (the
estimate's current uncertainty; 0 on the leader, NaN without a clock service).
"""

from __future__ import annotations

import time

import numpy as np

from genki_signals.clock import default_clock
from genki_signals.clocksync.node import active
from genki_signals.nodes.logic import NodeLogic, Output


class ClockProbe(NodeLogic):
    input_mode = "timed"

    def __init__(self, rate: float = 50.0) -> None:
        self.update_rate = float(rate)

    def poll(self, now: float) -> list[Output]:
        clock = default_clock()
        m0 = time.monotonic()
        t = clock.now()
        m1 = time.monotonic()
        service = active()
        u = service.uncertainty() if service is not None else float("nan")
        return [Output("main", {"timestamp": np.array([t]),
                                "monotonic": np.array([0.5 * (m0 + m1)]),
                                "read_span": np.array([m1 - m0]),
                                "uncertainty": np.array([u])})]
