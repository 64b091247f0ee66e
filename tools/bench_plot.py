"""Benchmark: the browser dashboard's frame rate and the plot node's CPU cost, at 100 Hz and 1 kHz.

Runs the demo chain under the launcher at a given sample rate (Sampler -> graph: Sum, Sum,
FourierTransform 256/128, SampleRate, MovingAverage 10 -> plot sink with four panels: two lines,
the spectrogram, the smoothed sample rate) and opens the dashboard in headless Chromium. The line
panels show 5 s undecimated (``max_points`` 5000): 500 points each at 100 Hz, 5000 at 1 kHz.

* frame rate: animation frames per second in which the page painted new data of the ``sine_0``
  line panel, counted in the page itself (``window.genki.counts``, see
  ``genki_signals.plot.dashboard``);
* CPU of the plot node process (psutil, user + system time over the measuring window, in % of
  one core): first with no browser attached (it only receives frames), then with the browser;
* the dashboard's server side: panel redraws per second and milliseconds per redraw tick.

    python tools/bench_plot.py [--seconds 10] [--repeats 3] [--rates 100 1000] [--fps 30]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _bench_util import CpuAccount, machine_info, median, spread  # noqa: E402

from genki_signals.bus import control  # noqa: E402
from genki_signals.testing.headless import Chromium  # noqa: E402


def spec(rate: float, update_rate: float, fps: float) -> dict:
    return {"name": f"plot_bench_{int(rate)}", "nodes": [
        {"id": "signals", "kind": "source", "params": {
            "type": "Sampler", "sample_rate": rate, "update_rate": update_rate,
            "sources": {"sine_0": {"type": "SineWave", "frequency": 3, "amplitude": 5},
                        "sine_1": {"type": "SineWave", "frequency": 7, "amplitude": 2},
                        "noise": {"type": "RandomNoise", "amplitude": 1, "seed": 1}}}},
        {"id": "derived", "kind": "graph", "inputs": [{"node": "signals", "policy": "lossless"}],
         "params": {"operators": [
             {"type": "Sum", "inputs": ["sine_0", "sine_1"], "name": "composite_sine"},
             {"type": "Sum", "inputs": ["composite_sine", "noise"], "name": "wave_with_noise"},
             {"type": "FourierTransform", "input": "wave_with_noise", "name": "wave_spectrum",
              "window_size": 256, "window_overlap": 128},
             {"type": "SampleRate", "input": "timestamp", "name": "sample_rate"},
             {"type": "MovingAverage", "input": "sample_rate", "name": "smooth_sample_rate",
              "length": 10}]}},
        {"id": "dashboard", "kind": "sink",
         "inputs": [{"node": "signals", "policy": "drop_oldest", "maxlen": 50},
                    {"node": "derived", "policy": "drop_oldest", "maxlen": 50}],
         "params": {"type": "plot", "port": 0, "fps": fps, "history": 20000, "panels": [
             {"key": "sine_0", "window": 5, "max_points": 10000},
             {"key": "wave_with_noise", "window": 5, "max_points": 10000},
             {"key": "wave_spectrum", "type": "spectrogram", "sample_rate": rate,
              "window_size": 256},
             {"key": "smooth_sample_rate", "window": 5, "max_points": 10000, "unit": "Hz"}]}},
    ]}


def _directory(address: str) -> dict | None:
    try:
        return control.request(address, "directory", timeout=1.0)
    except (TimeoutError, OSError):
        return None


def _node(d: dict, node_id: str) -> dict:
    return next(n for n in d["nodes"] if n["id"] == node_id)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def measure(rate: float, update_rate: float, fps: float, seconds: float, workdir: Path
            ) -> dict[str, float]:
    path = workdir / f"plot_{int(rate)}.yaml"
    path.write_text(yaml.safe_dump(spec(rate, update_rate, fps)))
    run_dir = workdir / f"run_{int(rate)}"
    address = f"ipc://{run_dir / 'control'}"
    proc = subprocess.Popen([sys.executable, "-m", "genki_signals.cli", "launch", str(path),
                             "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        url = pid = None
        while time.monotonic() < deadline and url is None:
            d = _directory(address)
            if d and d["nodes"] and all(n["state"] == "ready" for n in d["nodes"]):
                node = _node(d, "dashboard")
                url, pid = node["stats"].get("dashboard_url"), node["pid"]
            time.sleep(0.2)
        if url is None:
            raise RuntimeError("the plot node did not report its dashboard URL")
        node = psutil.Process(pid)
        time.sleep(2.0)
        c0, t0 = _cpu(node), time.monotonic()
        time.sleep(min(seconds, 5.0))
        idle_cpu = (_cpu(node) - c0) / (time.monotonic() - t0) * 100
        with Chromium() as browser:
            browser.open(url)
            browser.wait_for("window.genki && window.genki.frames > 10", timeout=60)
            time.sleep(3.0)  # warm up (first spectrogram, JIT)
            frames = "window.genki.counts['sine_0'] || 0"  # a line panel of 500 / 5000 points
            f0 = browser.evaluate(frames)
            s0 = _node(_directory(address), "dashboard")["stats"]
            c0, t0 = _cpu(node), time.monotonic()
            time.sleep(seconds)
            f1 = browser.evaluate(frames)
            elapsed = time.monotonic() - t0
            cpu = (_cpu(node) - c0) / elapsed * 100
            s1 = _node(_directory(address), "dashboard")["stats"]
            points = browser.evaluate(
                "Bokeh.documents[0].get_model_by_name('panel-sine_0').renderers[0]"
                ".data_source.data.xs[0].length")
        upd = s1.get("dashboard_updates", 0) - s0.get("dashboard_updates", 0)
        draw = s1.get("dashboard_draw_seconds", 0.0) - s0.get("dashboard_draw_seconds", 0.0)
        return {"fps": (f1 - f0) / elapsed, "cpu": cpu, "idle_cpu": idle_cpu,
                "updates_per_s": upd / elapsed,
                "draw_ms_per_tick": 1000 * draw / max(1.0, elapsed * fps),
                "points": float(points or 0)}
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--fps", type=float, default=30.0, help="the dashboard's display rate")
    args = parser.parse_args(argv)
    print(machine_info())
    account = CpuAccount()
    rows = []
    with tempfile.TemporaryDirectory(prefix="genki-bench-plot-") as tmp:
        for rate in args.rates:
            update_rate = 25.0 if rate <= 100 else 100.0
            runs = [measure(rate, update_rate, args.fps, args.seconds, Path(tmp))
                    for _ in range(args.repeats)]
            for i, r in enumerate(runs):
                print(f"  {rate:g} Hz run {i + 1}: " + ", ".join(f"{k} {v:.2f}"
                                                               for k, v in r.items()))
            rows.append((rate, update_rate, runs))
    print(account.stop())
    print(f"\nmedians of {args.repeats} runs of {args.seconds:g} s, dashboard at {args.fps:g} fps"
          f" (spread = (max - min) / median)")
    print("| input | frames/s published | points per line panel | browser frames/s | "
          "plot node CPU, browser open | plot node CPU, no browser | redraws/s | ms per tick |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rate, update_rate, runs in rows:
        def m(key: str) -> float:
            return median([r[key] for r in runs])
        fps_spread = spread([r["fps"] for r in runs])
        print(f"| {rate:g} Hz | {update_rate:g} | {m('points'):.0f} | {m('fps'):.1f} "
              f"(spread {fps_spread:.0%}) | {m('cpu'):.0f}% | {m('idle_cpu'):.0f}% | "
              f"{m('updates_per_s'):.0f} | {m('draw_ms_per_tick'):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
