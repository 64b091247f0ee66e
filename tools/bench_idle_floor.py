"""The idle demo's CPU against its floor: the same four processes in raw pyzmq, same host.

What runs (issue 16, row "demo topology at 100 Hz: memory / CPU", goal <= 3 % of one core)
    * ``genki``: ``genki launch specs/demo.yaml`` (fork server; launcher, fork server and the
      four nodes), measured by ``tools/bench_startup.py``'s ``idle_run``; with ``--against
      CHECKOUT`` also that checkout's code (e.g. ``/work/main``: the before of a change).
    * ``raw``: the floor, four processes of this file with no framework: ``signals`` computes
      the demo's three sources (two sines, seeded noise) for 4 samples at 100 Hz, 25 frames a
      second on a drift-free schedule, and sends each frame as one msgpack message (arrays
      inline as bin: the faster raw method for small frames, ``tools/bench_bus.py``) on a PUB
      socket; ``derived`` receives it, runs the demo's ``SignalGraph`` (the operators of
      ``specs/demo.yaml``) and sends the outputs; ``printer`` receives those and prints every
      25th frame's last values; ``dashboard`` receives both streams and writes them to a
      ``DataBuffer`` 64 frames at a time (as the unwatched plot node does). Compute + transport
      and nothing else: no control socket, heartbeats, clock sync, lossless credits, stats,
      checkpoints, supervision or launcher.
    * ``bare``: the same four processes and messages rates, each message one byte and nothing
      computed: what waking up 25 times a second per edge costs a Python process by itself.

After ``--settle`` s, the CPU time (user + system) of every process over ``--seconds`` s, as a
percentage of one core; variants interleaved run by run (order rotating), medians, and the
median of per-run ratios to ``raw``.

    python tools/bench_idle_floor.py [--runs 3] [--seconds 20] [--against /work/main]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import yaml
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import median

REPO = Path(__file__).resolve().parent.parent
RATE, UPDATE = 100, 25  # the demo: samples/s, frames/s
CHUNK = RATE // UPDATE
ROLES = ("signals", "derived", "printer", "dashboard")


def demo_operators() -> list[dict]:
    spec = yaml.safe_load((REPO / "specs" / "demo.yaml").read_text())
    return next(n for n in spec["nodes"] if n["id"] == "derived")["params"]["operators"]


def pack(frame: dict[str, np.ndarray]) -> bytes:
    return msgpack.packb([[k, v.dtype.str, v.shape, v.tobytes()] for k, v in frame.items()])


def unpack(data) -> dict[str, np.ndarray]:
    return {k: np.frombuffer(b, dtype=d).reshape(s) for k, d, s, b in msgpack.unpackb(data)}


# ------------------------------------------------------------------------------ workers
def worker(role: str, run_dir: str, bare: bool) -> None:
    """One process of the floor topology; runs until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ctx = zmq.Context()
    ep = {name: f"ipc://{run_dir}/{name}" for name in ("signals", "derived")}

    def sub(*names: str) -> zmq.Socket:
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        for name in names:
            s.connect(ep[name])
        return s

    if role == "signals":
        pub = ctx.socket(zmq.PUB)
        pub.bind(ep["signals"])
        rng = np.random.default_rng(1)
        t0, k = time.monotonic(), 0
        while True:
            time.sleep(max(0.0, t0 + (k + 1) / UPDATE - time.monotonic()))
            if bare:
                pub.send_multipart([b"signals/main", b"x"])
            else:
                t = np.arange(k * CHUNK, (k + 1) * CHUNK) / RATE
                frame = {"timestamp": t, "sine_0": 5 * np.sin(2 * np.pi * 3 * t),
                         "sine_1": 2 * np.sin(2 * np.pi * 7 * t),
                         "noise": rng.standard_normal(CHUNK)}
                pub.send_multipart([b"signals/main", pack(frame)])
            k += 1
    elif role == "derived":
        s, pub = sub("signals"), ctx.socket(zmq.PUB)
        pub.bind(ep["derived"])
        if bare:
            while True:
                s.recv_multipart()
                pub.send_multipart([b"derived/main", b"x"])
        from genki_signals.graph import SignalGraph
        from genki_signals.signals.base import Operator

        graph = SignalGraph([Operator.from_dict(op) for op in demo_operators()])
        outputs = graph.outputs
        while True:
            parts = s.recv_multipart(copy=False)
            result = graph.process(unpack(parts[1]))
            out = {"timestamp": result["timestamp"], **{k: result[k] for k in outputs}}
            pub.send_multipart([b"derived/main", pack(out)])
    elif role == "printer":
        s, n = sub("derived"), 0
        with open(os.devnull, "w") as null:
            while True:
                parts = s.recv_multipart(copy=False)
                if bare:
                    continue
                frame = unpack(parts[1])
                if n % 25 == 0:
                    print(f"derived/main t={frame['timestamp'][-1]:.3f} "
                          f"wave_with_noise={frame['wave_with_noise'][-1]:.4g} "
                          f"smooth_sample_rate={frame['smooth_sample_rate'][-1]:.4g}",
                          file=null, flush=True)
                n += 1
    else:  # dashboard
        from genki_signals.buffers import DataBuffer

        s = sub("signals", "derived")
        buffers = {b"signals/main": DataBuffer(maxlen=10000),
                   b"derived/main": DataBuffer(maxlen=10000)}
        held: dict[bytes, list] = {topic: [] for topic in buffers}
        count = 0
        while True:
            parts = s.recv_multipart(copy=False)
            if bare:
                continue
            topic = parts[0].bytes
            held[topic].append(unpack(parts[1]))
            count += 1
            if count >= 64:
                for tp, frames in held.items():
                    if frames:
                        buffers[tp].extend({k: np.concatenate([f[k] for f in frames])
                                            for k in frames[0]})
                        frames.clear()
                count = 0


def floor_run(bare: bool, settle: float, seconds: float) -> dict[str, float]:
    """CPU % of one core of the four raw processes (total, then per process)."""
    with tempfile.TemporaryDirectory(prefix="genki-floor-") as run_dir:
        procs = {}
        try:
            for role in reversed(ROLES):  # readers first
                procs[role] = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--worker", role, run_dir]
                    + (["--bare"] if bare else []))
                time.sleep(0.3 if role != "signals" else 0.0)
            time.sleep(settle)
            ps = {role: psutil.Process(p.pid) for role, p in procs.items()}

            def cpu() -> dict[str, float]:
                return {r: sum(p.cpu_times()[:2]) for r, p in ps.items()}

            c0, w0 = cpu(), time.monotonic()
            time.sleep(seconds)
            c1, w1 = cpu(), time.monotonic()
            for role, p in procs.items():
                assert p.poll() is None, f"raw worker {role} exited with {p.returncode}"
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
    per = {f"cpu_percent[{r}]": 100 * (c1[r] - c0[r]) / (w1 - w0) for r in ROLES}
    return {"cpu_percent": sum(per.values()), **per}


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], "--bare" in sys.argv[4:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--against", type=Path, metavar="CHECKOUT",
                    help="also the genki demo on another checkout's code (e.g. /work/main)")
    args = ap.parse_args()
    from bench_startup import Variant, idle_run

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    variants = {"raw": lambda: floor_run(False, args.settle, args.seconds),
                "bare": lambda: floor_run(True, args.settle, args.seconds),
                "genki": lambda: idle_run(Variant("fork", "fork"), args.settle, args.seconds)}
    if args.against:
        variants[f"genki@{args.against.name}"] = lambda: idle_run(
            Variant(f"fork@{args.against.name}", "fork", args.against), args.settle,
            args.seconds)
    names = list(variants)
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for i in range(args.runs):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            r = variants[name]()
            r = {key: v for key, v in r.items() if key.startswith("cpu_percent")}
            runs[name].append(r)
            print(f"  run {i} {name:14s} " + "  ".join(
                f"{key.removeprefix('cpu_percent') or 'total'} {v:.2f}" for key, v in r.items()),
                flush=True)
    print(f"\nCPU % of one core over {args.seconds:g} s, medians of {args.runs} interleaved runs; "
          "ratio = median of per-run ratios to raw")
    for name in names:
        rs = runs[name]
        total = [r["cpu_percent"] for r in rs]
        ratios = [a["cpu_percent"] / b["cpu_percent"] for a, b in zip(rs, runs["raw"])
                  if b["cpu_percent"]]
        keys = [k for k in rs[0] if k != "cpu_percent"]
        parts = ", ".join(f"{k[12:-1]} {median([r.get(k, math.nan) for r in rs]):.2f}"
                          for k in keys)
        print(f"  {name:14s} total {median(total):5.2f} ({min(total):.2f}-{max(total):.2f})  "
              f"ratio {median(ratios):5.2f}   {parts}")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
