"""Small timing helpers shared by the bus benchmarks (no genki_signals imports)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0..100, linear interpolation); NaN for no values."""
    arr = np.asarray(values, dtype=np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if v == v]  # drop NaN
    return statistics.median(vals) if vals else float("nan")


def spread(values: Sequence[float]) -> float:
    """(max - min) / median of the repeats, as a fraction; 0 for fewer than two values."""
    vals = [v for v in values if v == v]
    if len(vals) < 2:
        return 0.0
    mid = statistics.median(vals)
    return (max(vals) - min(vals)) / mid if mid else float("nan")


def wait_until(target: float, spin: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
    """Sleep until ``clock() >= target``, busy-waiting the last ``spin`` seconds.

    A drift-free schedule calls this with ``t0 + i * period``, so the lateness of one step is not
    carried into the next. ``spin=0`` (pure sleep, ~50-100 us late on Linux) leaves the CPU to
    the other processes, which matters on a machine with few cores.
    """
    while True:
        remaining = target - clock()
        if remaining <= 0:
            return
        if remaining > spin:
            time.sleep(remaining - spin)


def time_per_call(fn: Callable[[], object], budget: float = 0.2, batches: int = 5) -> float:
    """Best-of-``batches`` mean seconds per call of ``fn``, the whole run taking about ``budget``."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(budget / batches / one))
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def machine_info() -> str:
    """One line: platform, Python, CPU count and, if importable, pyzmq/libzmq/msgpack/numpy."""
    parts = [platform.platform(), f"Python {platform.python_version()}",
             f"{os.cpu_count()} CPUs"]
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
        if model:
            parts.append(model)
    except OSError:
        pass
    try:
        import zmq

        parts.append(f"pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}")
    except ImportError:
        pass
    try:
        import msgpack

        parts.append("msgpack " + ".".join(map(str, msgpack.version)))
    except ImportError:
        pass
    parts.append(f"numpy {np.__version__}")
    return ", ".join(parts)


class CpuAccount:
    """How much CPU other processes used between ``start`` and ``stop`` (Linux ``/proc/stat``).

    Busy time of the whole machine minus the CPU time of this process and its reaped children:
    what was left is background load that competed with the benchmark. Call ``stop`` after the
    benchmark's child processes were joined, so that their CPU time is counted as ours.
    """

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._own0 = self._own()
        self.other_cores = float("nan")  # set by stop()

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                vals = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        total = sum(vals[:8])  # user nice system idle iowait irq softirq steal (not guest)
        return (total - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def stop(self) -> str:
        wall = time.monotonic() - self._t0
        busy1 = self._busy()
        if self._busy0 is None or busy1 is None or wall <= 0:
            return "background CPU load: unknown (no /proc/stat)"
        other = max(0.0, (busy1 - self._busy0) - (self._own() - self._own0))
        self.other_cores = other / wall
        cpus = os.cpu_count() or 1
        return (f"background CPU load during the run: {other / wall:.2f} cores "
                f"({other / wall / cpus:.0%} of {cpus}) used by other processes; "
                f"load average now {os.getloadavg()[0]:.2f}")
