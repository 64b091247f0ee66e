"""CPU of the demo's Sampler at 100 Hz read 25 times a second: sampled on read vs. its thread.

The demo's sources (two ``SineWave``s and a seeded ``RandomNoise``) make the ``Sampler`` sample
on read (no thread). The baseline is the same functions behind a wrapper that hides
``add_change_listener``, so the same ``Sampler`` samples them in its thread, waking every tick
(the behaviour before). Each run is a fresh process (CPU time of the whole process per wall
second, user + system, the reader loop included); the two variants are interleaved, and the
ratio is taken per pair (thread / on read).

    python tools/bench_sampler_cpu.py [--runs 5] [--seconds 10] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import median

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from genki_signals.data_sources import RandomNoise, Sampler, SineWave

    class Hidden:  # the same function, without add_change_listener: sampled by the thread
        vectorized = True
        def __init__(self, fn):
            self.fn = fn
        def __call__(self, t):
            return self.fn(t)

    mode, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    fns = {"sine_0": SineWave(frequency=3, amplitude=5), "sine_1": SineWave(frequency=7,
           amplitude=2), "noise": RandomNoise(amplitude=1, seed=1)}
    if mode == "thread":
        fns = {k: Hidden(v) for k, v in fns.items()}
    sampler = Sampler(fns, sample_rate=rate)
    assert sampler.sampled_on_read == (mode == "on_read")

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    sampler.start()
    n, c0, w0 = 0, cpu(), time.monotonic()
    next_read = w0
    while time.monotonic() - w0 < seconds:
        next_read += 0.04  # 25 reads a second, as the demo's source node
        time.sleep(max(0.0, next_read - time.monotonic()))
        n += len(sampler.read()["timestamp"])
    c1, w1 = cpu(), time.monotonic()
    sampler.stop()
    print(json.dumps({"cpu_percent": 100 * (c1 - c0) / (w1 - w0), "rate": n / (w1 - w0)}))
""")


def run(mode: str, seconds: float, rate: float) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(seconds), str(rate)],
                         capture_output=True, text=True, check=True, env=os.environ)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=100.0)
    args = ap.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}")
    results: dict[str, list[dict[str, float]]] = {"on_read": [], "thread": []}
    for i in range(args.runs):
        for mode in (("on_read", "thread") if i % 2 == 0 else ("thread", "on_read")):
            r = run(mode, args.seconds, args.rate)
            results[mode].append(r)
            print(f"  run {i} {mode:8s} cpu {r['cpu_percent']:.2f}%  samples/s {r['rate']:.1f}",
                  flush=True)
    a = [r["cpu_percent"] for r in results["on_read"]]
    b = [r["cpu_percent"] for r in results["thread"]]
    ratios = [y / x for x, y in zip(a, b) if x]
    print(f"\nSampler at {args.rate:g} Hz read at 25 Hz, CPU % of one core, medians of "
          f"{args.runs}: on read {median(a):.2f} ({min(a):.2f}-{max(a):.2f}), thread "
          f"{median(b):.2f} ({min(b):.2f}-{max(b):.2f}), ratio thread/on read "
          f"{median(ratios):.2f}; samples/s on read "
          f"{median([r['rate'] for r in results['on_read']]):.1f}, thread "
          f"{median([r['rate'] for r in results['thread']]):.1f}")
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
