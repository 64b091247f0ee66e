"""Benchmark: end-to-end latency of the gesture pipeline through the processes, at 100 Hz.

Runs the gesture topology (Sampler 100 Hz -> inference node: Differentiate, Norm, stateful GRU,
EventTrigger -> printer) under the launcher and attaches a subscriber from this process. For
every event it measures ``arrival time - timestamp of the sample that fired`` on the topology
clock (CLOCK_MONOTONIC minus the launcher's origin, shared by every process of the host), and
the same for the data frames of the inference node. The source publishes what it sampled
``update_rate`` times a second, so a sample waits up to ``1/update_rate`` before it leaves the
source: the table shows the seed's 25 Hz and 100 Hz.

    python tools/bench_gesture_latency.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from genki_signals.bus import control
from genki_signals.bus.sockets import Subscriber
from genki_signals.testing.onnx_builders import make_motion_gru


def spec(update_rate: float) -> dict:
    return {"name": f"gesture_bench_{int(update_rate)}", "nodes": [
        {"id": "mouse", "kind": "source", "params": {
            "type": "Sampler", "sample_rate": 100, "update_rate": update_rate,
            "sources": {"mouse_position": {"type": "GestureScript", "shape": "circle",
                                           "period": 0.5, "duration": 0.2, "size": 100.0}}}},
        {"id": "gestures", "kind": "inference", "inputs": [{"node": "mouse",
                                                           "policy": "lossless"}],
         "params": {"threads": 1, "operators": [
             {"type": "Differentiate", "input": "mouse_position", "sig_b": "timestamp",
              "name": "velocity"},
             {"type": "Norm", "input": "velocity", "name": "speed"},
             {"type": "Reshape", "input": "speed", "shape": [1], "name": "feature"},
             {"type": "Inference", "input": "feature", "model": "motion_gru.onnx",
              "stateful": True, "name": "probs"},
             {"type": "EventTrigger", "input": "probs", "name": "gesture", "threshold": 0.8,
              "release": 0.5, "refractory": 0.1, "classes": ["background", "motion"]}]}},
        {"id": "sink", "kind": "sink", "inputs": ["gestures"], "params": {"type": "null"}},
    ]}


def measure(update_rate: float, seconds: float, workdir: Path) -> dict[str, np.ndarray]:
    path = workdir / f"gesture_{int(update_rate)}.yaml"
    path.write_text(yaml.safe_dump(spec(update_rate)))
    run_dir = workdir / f"run_{int(update_rate)}"
    address = f"ipc://{run_dir / 'control'}"
    proc = subprocess.Popen([sys.executable, "-m", "genki_signals.cli", "launch", str(path),
                             "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                d = control.request(address, "directory", timeout=0.5)
                if "gestures/main" in d["topics"]:
                    break
            except (TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("topology did not come up")
            time.sleep(0.1)
        origin = d["clock_origin"]
        sub = Subscriber()
        sub.connect(d["topics"]["gestures/main"]["endpoint"], ["gestures/"],
                    policy="drop_oldest", maxlen=10000)
        events, frames = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = sub.recv(timeout=0.1)
            if msg is None:
                continue
            now = time.monotonic() - origin
            ts = msg.frame["timestamp"]
            if msg.kind == "event":
                events.extend(now - ts)
            elif len(ts):
                frames.append(now - ts[-1])
        sub.close()
        return {"event": np.array(events), "frame": np.array(frames)}
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_motion_gru(work / "motion_gru.onnx")
        print(f"{'source update rate':>18} {'what':>28} {'count':>6} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'max ms':>8}")
        for rate in (25.0, 100.0):
            lat = measure(rate, args.seconds, work)
            for key, label in (("event", "sample -> event at subscriber"),
                               ("frame", "newest sample -> frame")):
                x = lat[key] * 1000
                if len(x) == 0:
                    print(f"{rate:16.0f} Hz {label:>28} {0:6d}")
                    continue
                print(f"{rate:16.0f} Hz {label:>28} {len(x):6d} {np.percentile(x, 50):8.2f} "
                      f"{np.percentile(x, 99):8.2f} {x.max():8.2f}", flush=True)


if __name__ == "__main__":
    main()
