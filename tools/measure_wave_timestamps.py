"""How close the Wave source's mapped timestamps are to the virtual ring's true sample times.

The ring (bumble virtual radio, real ``BleakClient``) streams motion at 100 Hz with a device
clock skewed by +-100 ppm and uniform(0, 5 ms) notification jitter; the source maps the ring's
``timestamp_us`` with its clock fit and the link latency it measures itself (half the smallest
battery request-reply round trip). Prints, per run, the error after the first 4 s (p50, p99 and
max of |mapped - truth|), the measured round trip and the fit's reported uncertainty.

    python tools/measure_wave_timestamps.py --runs 3 --seconds 12
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources.wave.source import WaveDataSource
from genki_signals.data_sources.wave.virtual import VirtualRing


def stream(source, ring, seconds: float) -> tuple[list[dict], dict]:
    """Start ``source``, read it 25 times a second for ``seconds``, silence ``ring`` and read
    the rest; stop the source. Returns the non-empty frames and the source's final stats."""
    source.start()
    frames, end = [], time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(0.04)
            frames.append(source.read())
        ring.silence()
        time.sleep(0.3)
        frames.append(source.read())
        stats = source.stats()
    finally:
        source.stop()
    return [f for f in frames if len(f["timestamp"])], stats

def one_run(skew_ppm: float, seconds: float, seed: int) -> dict[str, float]:
    clock = Clock()
    with VirtualRing(clock=clock.now, jitter=0.005, skew_ppm=skew_ppm, seed=seed) as ring:
        source = WaveDataSource(ring.address, transport=ring.transport, clock=clock)
        frames, stats = stream(source, ring, seconds)
        truth = dict(ring.sent)
    ts = np.concatenate([f["timestamp"] for f in frames])
    us = np.concatenate([f["timestamp_us"] for f in frames])
    err = np.abs(ts - np.array([truth[int(u)] for u in us]))[ts > ts[0] + 4.0]
    return {"p50_ms": np.median(err) * 1e3, "p99_ms": np.percentile(err, 99) * 1e3,
            "max_ms": err.max() * 1e3, "rtt_ms": stats["wave_link_rtt_ms"],
            "uncertainty_ms": stats["wave_clock_uncertainty_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per skew (+100 and -100 ppm)")
    ap.add_argument("--seconds", type=float, default=12.0)
    args = ap.parse_args()
    rows = []
    for i in range(args.runs):
        for skew in (100.0, -100.0):
            r = one_run(skew, args.seconds, seed=i * 2 + (skew > 0))
            rows.append(r)
            print(f"skew {skew:+.0f} ppm: |error| p50 {r['p50_ms']:.3f} ms, p99 "
                  f"{r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms; round trip "
                  f"{r['rtt_ms']:.3f} ms; reported uncertainty {r['uncertainty_ms']:.3f} ms",
                  flush=True)
    p99 = [r["p99_ms"] for r in rows]
    worst = [r["max_ms"] for r in rows]
    print(f"median over {len(rows)} runs: p99 {np.median(p99):.3f} ms (range {min(p99):.3f}-"
          f"{max(p99):.3f}), max {np.median(worst):.3f} ms (range {min(worst):.3f}-"
          f"{max(worst):.3f})")


if __name__ == "__main__":
    main()
