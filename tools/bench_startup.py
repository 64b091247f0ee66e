"""Start-up, restart and idle cost of ``genki launch specs/demo.yaml``: fork server vs. spawn.

Each run is a real ``genki launch`` in a subprocess; the node start method is chosen with
``GENKI_NODE_START`` (``fork``: nodes forked from the launcher's pre-warmed fork server, the
default; ``spawn``: each node a new ``python -m genki_signals.nodes``). The two methods are
interleaved run by run; figures are medians over the runs, ratios are per pair (spawn/fork).

* **first frame**: from starting the command to the printer node's first line (the first frame
  to reach a subscriber, ``derived -> printer``); also from the launcher's first line (spec
  parsed, launcher started) to that frame.
* **restart to ready**: ``kill -9`` of the ``derived`` graph node; from the kill to the node
  being ``ready`` again in the launcher's directory (includes the restart policy's first
  backoff, 0.5 s by default), and from the launcher noticing the death (its log line) to ready.
* **idle cost** (``--idle``): after ``--settle`` seconds, CPU time and memory of the launcher and
  every process under it over ``--seconds`` (100 Hz demo): CPU as a percentage of one core,
  memory as the sum of RSS and the sum of PSS (``/proc/PID/smaps_rollup``: shared pages split
  between the processes sharing them; the fair total when nodes share the fork server's pages).

    python tools/bench_startup.py [--runs 5] [--idle --seconds 60 --idle-runs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import median

from genki_signals.bus import control

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "specs" / "demo.yaml"
METHODS = ("fork", "spawn")


class Launch:
    """One ``genki launch`` of the demo, its output lines timestamped as they arrive."""

    def __init__(self, method: str, run_dir: Path) -> None:
        env = {**os.environ, "GENKI_NODE_START": method, "PYTHONUNBUFFERED": "1"}
        self.address = f"ipc://{run_dir / 'control'}"
        self.lines: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genki_signals.cli", "launch", str(DEMO), "--run-dir",
             str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env, start_new_session=True, cwd=REPO)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_line(self, prefix: str, timeout: float, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                if t >= after and line.startswith(prefix):
                    return t
            if self.proc.poll() is not None:
                break
            time.sleep(0.002)
        raise RuntimeError(f"no line {prefix!r} within {timeout} s:\n" +
                           "\n".join(l for _, l in self.lines))

    def directory(self) -> dict | None:
        try:
            return control.request(self.address, "directory", timeout=0.5)
        except (TimeoutError, OSError):
            return None

    def node(self, node_id: str) -> dict | None:
        d = self.directory()
        return next((n for n in d["nodes"] if n["id"] == node_id), None) if d else None

    def processes(self) -> list[psutil.Process]:
        me = psutil.Process(self.proc.pid)
        return [me, *me.children(recursive=True)]

    def stop(self) -> None:
        procs = self.processes() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)


def startup_run(method: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="genki-bench-startup-") as tmp:
        launch = Launch(method, Path(tmp))
        try:
            t_first_line = launch.wait_line("[launch] topology", 60)
            t_frame = launch.wait_line("[printer] derived/main", 60)
            launch.wait_line("[launch] all nodes ready", 60)
            node = launch.node("derived")
            time.sleep(1.0)
            t_kill = time.monotonic()
            os.kill(node["pid"], signal.SIGKILL)
            t_noticed = launch.wait_line("[launch] node 'derived' killed by signal", 30, t_kill)
            while True:
                n = launch.node("derived")
                if n and n["restarts"] == 1 and n["state"] == "ready":
                    t_ready = time.monotonic()
                    break
                if time.monotonic() - t_kill > 30:
                    raise RuntimeError("derived not ready again within 30 s")
                time.sleep(0.005)
        finally:
            launch.stop()
    return {"first_frame": t_frame - launch.t0, "first_frame_after_start": t_frame - t_first_line,
            "restart_ready": t_ready - t_kill, "restart_ready_after_noticed": t_ready - t_noticed}


def pss_bytes(p: psutil.Process) -> int:
    try:
        with open(f"/proc/{p.pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def idle_run(method: str, settle: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="genki-bench-idle-") as tmp:
        launch = Launch(method, Path(tmp))
        try:
            launch.wait_line("[launch] all nodes ready", 60)
            time.sleep(settle)
            procs = launch.processes()

            def cpu() -> float:
                total = 0.0
                for p in procs:
                    try:
                        t = p.cpu_times()
                        total += t.user + t.system
                    except psutil.NoSuchProcess:
                        pass
                return total

            c0, w0 = cpu(), time.monotonic()
            time.sleep(seconds)
            c1, w1 = cpu(), time.monotonic()
            rss = sum(p.memory_info().rss for p in procs if p.is_running())
            pss = sum(pss_bytes(p) for p in procs if p.is_running())
            return {"cpu_percent": 100 * (c1 - c0) / (w1 - w0), "rss_mb": rss / 2**20,
                    "pss_mb": pss / 2**20, "processes": len(procs)}
        finally:
            launch.stop()


def report(name: str, runs: dict[str, list[dict[str, float]]], keys: list[str]) -> None:
    print(f"\n{name}: medians of {len(runs['fork'])} interleaved runs (per-pair ratio spawn/fork)")
    for key in keys:
        f = [r[key] for r in runs["fork"]]
        s = [r[key] for r in runs["spawn"]]
        ratios = [b / a for a, b in zip(f, s) if a]
        print(f"  {key:30s} fork {median(f):9.3f}   spawn {median(s):9.3f}   "
              f"ratio {median(ratios):6.2f}   (fork {min(f):.3f}-{max(f):.3f}, "
              f"spawn {min(s):.3f}-{max(s):.3f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="start-up/restart runs per method")
    ap.add_argument("--idle", action="store_true", help="also measure CPU and memory")
    ap.add_argument("--idle-runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}")
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    for i in range(args.runs):
        for method in (METHODS if i % 2 == 0 else METHODS[::-1]):
            r = startup_run(method)
            runs[method].append(r)
            print(f"  run {i} {method:5s} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()),
                  flush=True)
    report("start-up and restart, seconds", runs,
           ["first_frame", "first_frame_after_start", "restart_ready",
            "restart_ready_after_noticed"])
    if args.idle:
        idle: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
        for i in range(args.idle_runs):
            for method in (METHODS if i % 2 == 0 else METHODS[::-1]):
                r = idle_run(method, args.settle, args.seconds)
                idle[method].append(r)
                print(f"  idle {i} {method:5s} " + "  ".join(f"{k} {v:.2f}"
                                                              for k, v in r.items()), flush=True)
        report(f"demo at 100 Hz over {args.seconds:g} s (launcher + fork server + nodes)", idle,
               ["cpu_percent", "rss_mb", "pss_mb", "processes"])
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
