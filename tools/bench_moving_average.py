"""Benchmark: ``MovingAverage`` per call, against a hand-written numpy floor in the same run.

The operator (whichever ``genki_signals`` is on ``PYTHONPATH``: run it once against each tree to
compare two versions) on a 100 Hz stream fed in 4-sample chunks (the demo's frames), in
1,024-sample chunks (a coalesced replay) and in one batch of 360,000 samples; the floor is the
plain ``np.cumsum`` window-difference a user would write (carried tail, no NaN handling, not
chunking-independent). Medians of ``--repeats`` interleaved runs; ratio = operator / floor time.

    PYTHONPATH=$PWD python tools/bench_moving_average.py [--samples 360000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import genki_signals.signals as s


class Floor:
    """The textbook streaming moving average: cumsum over the carried tail plus the chunk."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.tail = np.empty(0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        ext = np.concatenate((self.tail, x))
        c = np.cumsum(ext)
        m = len(self.tail)
        lo = np.arange(m, len(ext)) - self.length
        sums = c[m:] - np.where(lo >= 0, c[np.maximum(lo, 0)], 0.0)
        counts = np.minimum(np.arange(m, len(ext)) + 1, self.length)
        self.tail = ext[-self.length:]
        return sums / counts


def run(make, x: np.ndarray, chunk: int) -> float:
    op = make()
    t0 = time.perf_counter()
    for i in range(0, len(x), chunk):
        op(x[i:i + chunk])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=360_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--length", type=int, default=10)
    args = ap.parse_args()
    x = 100 + np.random.default_rng(0).normal(size=args.samples)
    cases = {"4-sample chunks": 4, "1,024-sample chunks": 1024, "one batch": args.samples}
    op = lambda: s.MovingAverage("x", length=args.length)  # noqa: E731
    floor = lambda: Floor(args.length)  # noqa: E731
    for label, chunk in cases.items():
        times = {"op": [], "floor": []}
        for _ in range(args.repeats):
            times["op"].append(run(op, x, chunk))
            times["floor"].append(run(floor, x, chunk))
        t_op, t_floor = statistics.median(times["op"]), statistics.median(times["floor"])
        calls = -(-args.samples // chunk)
        print(f"{label:20s} MovingAverage({args.length}) {t_op / calls * 1e6:9.2f} us/call "
              f"{args.samples / t_op / 1e6:7.2f} M samples/s | floor {t_floor / calls * 1e6:9.2f} "
              f"us/call | ratio {t_op / t_floor:.2f}")


if __name__ == "__main__":
    main()
