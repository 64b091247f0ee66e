"""One timeline for a whole topology: the clock leader, time probes, device clocks.

* ``estimator``: offset + drift of a local clock to the leader from bursts of time probes
  (Lab Streaming Layer's method), with an uncertainty;
* ``sync``: the probe protocol over ZeroMQ, the leader's ``TimeServer``, a node's ``ClockSync``;
* ``node``: how a node process wires its default clock to leader time;
* ``device``: device clocks (a sensor's microsecond counter, an ADC's sample counter) mapped to
  leader time by an online lower-envelope linear fit (``data_sources.device_clock.DeviceClocked``
  applies it to a source).

Names are imported lazily: every node process imports this package, most never need numpy-heavy
parts. See docs/clock.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClockMap": "estimator", "OffsetEstimator": "estimator", "Probe": "estimator",
    "ClockSync": "sync", "TimeServer": "sync", "local_clock": "sync", "injected_skew": "sync",
    "DeviceClockFit": "device",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"genki_signals.clocksync.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'genki_signals.clocksync' has no attribute {name!r}")
