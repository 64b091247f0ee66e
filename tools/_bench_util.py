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
