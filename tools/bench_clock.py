"""Benchmark: clock synchronisation on loopback, aligner throughput, aligner added latency.

1. **Offset estimation** (processes). A topology of two ``ClockProbe`` nodes under the launcher
   (the clock leader): ``skewed`` runs on a test clock with +2.5 s offset and +200 ppm drift
   (``GENKI_TEST_CLOCK``), ``plain`` on the host's clock. Each publishes, 50 times a second, its
   leader-time estimate next to the host's CLOCK_MONOTONIC read at the same moment; on one host
   ``monotonic - clock_origin`` is the true leader time. Reported after a warm-up: the error
   (estimate - truth), the uncertainty the node reported, and how often it covered the error.
2. **Aligner throughput** (in-process): one 100 Hz leader and three followers (1 kHz hold,
   250 Hz linear, 30 Hz linear), 4-sample leader frames and followers in 10-60 ms frames,
   interleaved by time; leader samples aligned per second (and input samples per second).
3. **Added latency** (processes): four Samplers (leader + three followers) publishing every
   sample (``update_rate`` = ``sample_rate``, i.e. paced at 100 Hz and at 1 kHz; and 1 kHz
   sampled, published 100 times a second) into an aligner
   node. A subscriber here takes both the leader's and the aligner's topic: the added latency of
   a sample is the publish time of its aligned row minus the publish time of the leader frame
   that carried it (both in the frame headers, on leader time): transport to the aligner,
   queueing there, waiting for the followers' next samples, processing.
   The aligner's own heartbeat figure (``align_latency_p50``: from dequeue to publication) is
   shown next to it.

    python tools/bench_clock.py [--seconds 60] [--latency-seconds 15] [--skip-processes]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from genki_signals.bus import control
from genki_signals.bus.sockets import Subscriber
from genki_signals.clocksync.sync import TEST_CLOCK_ENV
from genki_signals.signals.align import Aligner

PROBE = "genki_signals.testing.clock_probe:ClockProbe"


class Topology:
    """``genki launch`` in a subprocess; ``directory()`` attaches to it."""

    def __init__(self, spec: dict, workdir: Path, env: dict[str, str] | None = None) -> None:
        path = workdir / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        run_dir = workdir / f"run_{spec['name']}"
        self.address = f"ipc://{run_dir / 'control'}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genki_signals.cli", "launch", str(path), "--run-dir",
             str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})})

    def directory(self) -> dict:
        return control.request(self.address, "directory", timeout=1.0)

    def wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = self.directory()
                if d["nodes"] and all(n["state"] == "ready" for n in d["nodes"]):
                    return d
            except (TimeoutError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("topology did not come up")

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------- 1. offset estimation
def bench_offset(seconds: float, warmup: float, workdir: Path) -> None:
    spec = {"name": "clock_bench", "nodes": [
        {"id": n, "kind": "custom", "params": {"class": PROBE, "args": {"rate": 50}}}
        for n in ("skewed", "plain")]}
    env = {TEST_CLOCK_ENV: json.dumps({"skewed": {"offset": 2.5, "drift_ppm": 200}})}
    topo = Topology(spec, workdir, env)
    rows: dict[str, list] = {"skewed/main": [], "plain/main": []}
    try:
        d = topo.wait_ready()
        origin = d["clock_origin"]
        sub = Subscriber()
        for topic, info in d["topics"].items():
            sub.connect(info["endpoint"], [topic], policy="drop_oldest", maxlen=100_000)
        start = time.monotonic()
        end = start + warmup + seconds
        while time.monotonic() < end:
            msg = sub.recv(timeout=0.1)
            if msg is None or msg.kind != "data" or time.monotonic() < start + warmup:
                continue
            f = msg.frame
            rows[msg.topic].append((f["timestamp"][0], f["monotonic"][0] - origin,
                                    f["read_span"][0], f["uncertainty"][0]))
        stats = {n["id"]: n["stats"] for n in topo.directory()["nodes"]}
        sub.close()
    finally:
        topo.stop()
    print(f"\n1. Offset estimation on loopback over {seconds:g} s (after {warmup:g} s warm-up), "
          f"leader: the launcher, probes: bursts of 8, every 2 s")
    print(f"{'node':>8} {'samples':>8} {'|err| p50 us':>13} {'p99 us':>8} {'max us':>8} "
          f"{'unc p50 us':>11} {'unc max us':>11} {'covered':>8} {'offset s':>12} "
          f"{'drift ppm':>10} {'best rtt us':>12}")
    for topic, r in rows.items():
        a = np.array(r)
        a = a[a[:, 2] < 100e-6]  # readings preempted between the two clocks say nothing
        err = np.abs(a[:, 0] - a[:, 1]) * 1e6
        unc = a[:, 3] * 1e6
        s = stats[topic.split("/")[0]]
        print(f"{topic.split('/')[0]:>8} {len(a):8d} {np.percentile(err, 50):13.1f} "
              f"{np.percentile(err, 99):8.1f} {err.max():8.1f} {np.percentile(unc, 50):11.1f} "
              f"{unc.max():11.1f} {np.mean(err <= unc):8.1%} {s['clock_offset']:12.6f} "
              f"{s['clock_drift_ppm']:10.2f} {s['clock_rtt'] * 1e6:12.1f}", flush=True)


# ---------------------------------------------------------------------- 2. throughput
def make_frames(seconds: float, rng: np.random.Generator, scale: int = 1
                ) -> list[tuple[str, dict]]:
    """Leader at 100 Hz in 4-sample frames (x scale), followers in their own sizes, by time."""
    streams = {"leader": (100, 4 * scale), "f1": (1000, 20 * scale), "f2": (250, 15 * scale),
               "f3": (30, 2 * scale)}
    out = []
    for name, (rate, per_frame) in streams.items():
        t = rng.uniform(0, 1 / rate) + np.arange(int(seconds * rate)) / rate
        v = rng.normal(size=(t.size, 3))
        for k in range(0, t.size, per_frame):
            out.append((t[k:k + per_frame][-1], name,
                        {"timestamp": t[k:k + per_frame], "x": v[k:k + per_frame]}))
    out.sort(key=lambda e: e[0])
    return [(name, frame) for _, name, frame in out]


def bench_throughput(repeats: int = 5) -> None:
    print("\n2. Aligner throughput, in-process: 1 leader (100 Hz) + 3 followers (1 kHz hold, "
          "250 Hz linear, 30 Hz linear), 3 channels each, 600 s of data, median of "
          f"{repeats}")
    for scale in (1, 10):
        _throughput(scale, repeats)


def _throughput(scale: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    seconds = 600.0
    frames = make_frames(seconds, rng, scale)
    followers = {"f1": {"method": "hold", "prefix": "f1_"},
                 "f2": {"method": "linear", "prefix": "f2_"},
                 "f3": {"method": "linear", "prefix": "f3_"}}
    n_in = sum(len(f["timestamp"]) for _, f in frames)
    rates = []
    for _ in range(repeats):
        al = Aligner("leader", followers)
        t0 = time.perf_counter()
        n = 0
        for name, frame in frames:
            al.push(name, frame)
            if name == "leader":
                n += len(al.pop().get("timestamp", ()))
        n += len(al.finish().get("timestamp", ()))
        rates.append((n / (time.perf_counter() - t0), n))
    med = sorted(rates)[len(rates) // 2]
    print(f"   leader frames of {4 * scale:3d} samples: {med[0]:>11,.0f} leader samples/s "
          f"aligned, {med[0] * n_in / med[1]:>11,.0f} input samples/s, "
          f"{1e6 / (med[0] / (4 * scale)):7.1f} us per leader frame", flush=True)


# ---------------------------------------------------------------------- 3. added latency
def latency_spec(rate: float, update_rate: float | None = None) -> dict:
    update_rate = update_rate or rate

    def sampler(name: str, sample_rate: float) -> dict:
        return {"id": name, "kind": "source", "params": {
            "type": "Sampler", "sample_rate": sample_rate, "update_rate": update_rate,
            "sources": {"x": {"type": "SineWave", "frequency": 1}}}}

    return {"name": f"align_latency_{int(rate)}_{int(update_rate)}", "nodes": [
        sampler("leader", rate), sampler("f1", rate), sampler("f2", rate), sampler("f3", rate),
        {"id": "joined", "kind": "aligner", "inputs": ["leader", "f1", "f2", "f3"],
         "params": {"leader": "leader", "max_lag": 0.25, "followers": {
             "f1": {"method": "hold", "prefix": "f1_"},
             "f2": {"method": "linear", "prefix": "f2_"},
             "f3": {"method": "linear", "prefix": "f3_"}}}},
        {"id": "sink", "kind": "sink", "inputs": ["joined"], "params": {"type": "null"}}]}


def bench_latency(seconds: float, workdir: Path) -> None:
    print(f"\n3. Added latency of the aligner node: leader + 3 follower Samplers at one rate, "
          f"{seconds:g} s per case. Added = publish time of a sample's aligned row - publish "
          f"time of the leader sample\n   (frame headers, leader time): transport to the "
          f"aligner, queueing, waiting for the followers' next samples, processing")
    print(f"{'rate':>7} {'frames/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'rows/s':>8} {'late':>6} {'in-node p50 ms':>15} {'aligner cpu %':>14}")
    for rate, update_rate in ((100.0, 100.0), (1000.0, 1000.0), (1000.0, 100.0)):
        topo = Topology(latency_spec(rate, update_rate), workdir)
        arrivals: dict[str, dict[float, float]] = {"leader/main": {}, "joined/main": {}}
        try:
            d = topo.wait_ready()
            sub = Subscriber()
            for topic in arrivals:
                sub.connect(d["topics"][topic]["endpoint"], [topic], policy="drop_oldest",
                            maxlen=100_000)
            start = time.monotonic() + 2.0  # let every node settle
            end = start + seconds
            while time.monotonic() < end:
                msg = sub.recv(timeout=0.1)
                if msg is None or msg.kind != "data" or time.monotonic() < start:
                    continue
                seen = arrivals[msg.topic]
                for t in msg.frame["timestamp"].tolist():
                    seen.setdefault(t, msg.publish_time)
            sub.close()
            s = next(n for n in topo.directory()["nodes"] if n["id"] == "joined")["stats"]
        finally:
            topo.stop()
        lead, joined = arrivals["leader/main"], arrivals["joined/main"]
        added = np.array([joined[t] - lead[t] for t in joined if t in lead]) * 1e3
        print(f"{rate:5.0f}Hz {update_rate:9.0f} {np.percentile(added, 50):8.2f} "
              f"{np.percentile(added, 90):8.2f} "
              f"{np.percentile(added, 99):8.2f} {len(joined) / seconds:8.1f} "
              f"{s['align_late']:6d} {s['align_latency_p50'] * 1e3:15.2f} "
              f"{s['cpu_percent']:14.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="offset measurement (s)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--skip-processes", action="store_true", help="only the in-process part")
    args = ap.parse_args()
    bench_throughput()
    if args.skip_processes:
        return
    with tempfile.TemporaryDirectory() as tmp:
        bench_offset(args.seconds, args.warmup, Path(tmp))
        bench_latency(args.latency_seconds, Path(tmp))


if __name__ == "__main__":
    main()
