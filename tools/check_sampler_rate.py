"""Acceptance check: a Sampler at 1 kHz for 10 s delivers the nominal rate within 0.1%.

Counts the samples read while the sampler runs and compares with elapsed time on the sampler's
clock. Also reports how far behind real time the sampling thread was at each read (its backlog).

    python tools/check_sampler_rate.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from genki_signals.data_sources import RandomNoise, Sampler, SineWave


def measure(rate: float, seconds: float, read_every: float = 0.02) -> dict[str, float]:
    sampler = Sampler({"sine": SineWave(frequency=3), "noise": RandomNoise(seed=0)},
                      sample_rate=rate)
    count, t0, backlogs = 0, None, []
    sampler.start()
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(read_every)
            frame = sampler.read()
            now = sampler.clock.now()
            if frame and len(frame["timestamp"]):
                ts = frame["timestamp"]
                t0 = ts[0] if t0 is None else t0
                count += len(ts)
                backlogs.append(now - ts[-1])
        count += len(sampler.read()["timestamp"])
        elapsed = sampler.clock.now() - t0
    finally:
        sampler.stop()
    expected = elapsed * rate
    return {"samples": count, "elapsed": elapsed, "expected": expected,
            "measured_rate": count / elapsed, "rate_error": abs(count - expected) / expected,
            "max_backlog": float(np.max(backlogs)), "median_backlog": float(np.median(backlogs))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    r = measure(args.rate, args.seconds)
    print(f"{r['samples']} samples in {r['elapsed']:.4f} s at nominal {args.rate:g} Hz: "
          f"measured {r['measured_rate']:.3f} Hz, rate error {r['rate_error']:.5%}")
    print(f"sampling backlog at read: median {r['median_backlog'] * 1e3:.3f} ms, "
          f"max {r['max_backlog'] * 1e3:.3f} ms")
    ok = r["rate_error"] < 1e-3
    print("PASS" if ok else "FAIL", "(threshold 0.1%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
