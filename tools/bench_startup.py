"""Start-up, restart and idle cost of ``genki launch specs/demo.yaml``: fork server vs. spawn.

Each run is a real ``genki launch`` in a subprocess. Variants: ``fork`` (nodes forked from the
launcher's pre-warmed fork server, the default), ``spawn`` (``GENKI_NODE_START=spawn``: each node
a new ``python -m genki_signals.nodes``), with ``--against CHECKOUT`` also ``fork@CHECKOUT``
(another checkout's code, e.g. ``/work/main``: the before of a change, in the same run), and for
the idle cost ``fork, no dashboard`` (the demo without its plot node). Variants are interleaved
run by run (the order rotating); figures are medians over the runs, ratios are medians of the
per-round ratios variant / fork.

* **first frame**: from starting the command to the printer node's first line (the first frame
  to reach a subscriber, ``derived -> printer``); also from the launcher's first line (spec
  parsed, launcher started) to that frame; and the CPU seconds (user + system) the command
  had used when its launcher started (imports, parsing, the spec check: what the wall time is
  on an idle core, and less dependent on the machine's load than the wall time).
* **restart to ready**: ``kill -9`` of the ``derived`` graph node; from the kill to the node
  being ``ready`` again in the launcher's directory (includes the restart policy's first
  backoff, 0.5 s by default), and from the launcher noticing the death (its log line) to ready.
* **idle cost** (``--idle``): after ``--settle`` seconds, CPU time and memory of the launcher and
  every process under it over ``--seconds`` (100 Hz demo, no browser attached): CPU as a
  percentage of one core, in total and per process (launcher, fork server, each node); memory
  as the sums of PSS (``/proc/PID/smaps_rollup``: shared pages split between the processes
  sharing them, the fair total when nodes share the fork server's pages), USS (pages of one
  process only) and RSS (shared pages counted in every process).

    python tools/bench_startup.py [--runs 5] [--idle --idle-runs 5 --seconds 30]
                                  [--against /work/main] [--no-spawn]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import median

from genki_signals.bus import control

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "specs" / "demo.yaml"
# Bytecode: an installed package has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE
# (as on the project's machines) compiles every genki module at every start (~0.2-0.4 s). By
# default the launches read bytecode compiled once, before the runs, into a private cache
# (PYTHONPYCACHEPREFIX: nothing is written into the checkout); --no-bytecode-cache measures
# the compile-every-time case.
BYTECODE_ENV: dict[str, str] = {}


def use_bytecode_cache(directory: str) -> None:
    """Compile the package once into ``directory``; every launch reads its bytecode there."""
    BYTECODE_ENV["PYTHONPYCACHEPREFIX"] = directory
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "genki_signals")],
                   env={**env, **BYTECODE_ENV}, check=True, stdout=subprocess.DEVNULL)


class Launch:
    """One ``genki launch`` of the demo, its output lines timestamped as they arrive."""

    def __init__(self, variant: Variant, run_dir: Path) -> None:
        env = {**os.environ, "GENKI_NODE_START": variant.method, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(variant.checkout), **BYTECODE_ENV}
        if BYTECODE_ENV:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.address = f"ipc://{run_dir / 'control'}"
        self.lines: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genki_signals.cli", "launch", str(variant.spec),
             "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, start_new_session=True, cwd=variant.checkout)
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


def startup_run(variant: Variant) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="genki-bench-startup-") as tmp:
        launch = Launch(variant, Path(tmp))
        try:
            t_first_line = launch.wait_line("[launch] topology", 60)
            try:  # CPU the command used until its launcher started (less load-dependent)
                times = psutil.Process(launch.proc.pid).cpu_times()
                cli_cpu = times.user + times.system
            except psutil.Error:
                cli_cpu = math.nan
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
            "cpu_before_launcher_start": cli_cpu,
            "restart_ready": t_ready - t_kill, "restart_ready_after_noticed": t_ready - t_noticed}


def role(p: psutil.Process, launcher_pid: int) -> str:
    """launcher, forkserver, a node's id (from its ``--config .../<id>.json``), or the name."""
    if p.pid == launcher_pid:
        return "launcher"
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    if "forkserver" in cmd:
        return "forkserver"
    m = re.search(r"--config \S*/([^/ ]+)\.json", cmd)
    return m.group(1) if m else p.name()


def memory(p: psutil.Process) -> dict[str, int]:
    """Rss, Pss and USS (Private_Clean + Private_Dirty) in bytes, from smaps_rollup."""
    out = {"rss": 0, "pss": 0, "uss": 0}
    try:
        with open(f"/proc/{p.pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "Rss":
                    out["rss"] = int(rest.split()[0]) * 1024
                elif key == "Pss":
                    out["pss"] = int(rest.split()[0]) * 1024
                elif key in ("Private_Clean", "Private_Dirty"):
                    out["uss"] += int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def idle_run(variant: Variant, settle: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="genki-bench-idle-") as tmp:
        launch = Launch(variant, Path(tmp))
        try:
            launch.wait_line("[launch] all nodes ready", 60)
            time.sleep(settle)
            procs = launch.processes()
            roles = {p.pid: role(p, launch.proc.pid) for p in procs}

            def cpu() -> dict[int, float]:
                out = {}
                for p in procs:
                    try:
                        t = p.cpu_times()
                        out[p.pid] = t.user + t.system
                    except psutil.NoSuchProcess:
                        pass
                return out

            c0, w0 = cpu(), time.monotonic()
            time.sleep(seconds)
            c1, w1 = cpu(), time.monotonic()
            result: dict[str, float] = {}
            for pid in c1:
                if pid in c0:
                    key = f"cpu_percent[{roles[pid]}]"
                    result[key] = result.get(key, 0.0) + 100 * (c1[pid] - c0[pid]) / (w1 - w0)
            mem = [memory(p) for p in procs if p.is_running()]
            return {"cpu_percent": sum(v for k, v in result.items()),
                    "pss_mb": sum(m["pss"] for m in mem) / 2**20,
                    "uss_mb": sum(m["uss"] for m in mem) / 2**20,
                    "rss_mb": sum(m["rss"] for m in mem) / 2**20,
                    "processes": len(procs), **dict(sorted(result.items()))}
        finally:
            launch.stop()


def report(name: str, runs: dict[str, list[dict[str, float]]], base: str) -> None:
    """Per figure: each variant's median (min-max), and the median of its per-run ratios to
    ``base`` (runs i of both were interleaved)."""
    n = min(len(v) for v in runs.values())
    print(f"\n{name}: medians of {n} interleaved runs; ratio = variant / {base}, per run pair")
    keys = list(dict.fromkeys(k for rs in runs.values() for r in rs for k in r))
    for key in keys:
        print(f"  {key}")
        b = [r.get(key, math.nan) for r in runs[base]]
        for label, rs in runs.items():
            v = [r.get(key, math.nan) for r in rs]
            ratios = [x / y for x, y in zip(v, b) if y and not math.isnan(x + y)]
            ratio = f"ratio {median(ratios):6.2f}" if label != base else " " * 12
            print(f"    {label:22s} {median(v):9.3f}   {ratio}   ({min(v):.3f}-{max(v):.3f})")


@dataclass(frozen=True)
class Variant:
    """What one launch runs: nodes forked or spawned, from which checkout, which spec."""

    label: str
    method: str
    checkout: Path = REPO
    spec: Path = DEMO


def without_node(spec: Path, node: str, out: Path) -> Path:
    """``spec`` without ``node`` (and without inputs from it), written to ``out``."""
    data = yaml.safe_load(spec.read_text(encoding="utf-8"))
    data["nodes"] = [n for n in data["nodes"] if n["id"] != node]
    for n in data["nodes"]:
        n["inputs"] = [e for e in n.get("inputs", []) if (e if isinstance(e, str)
                                                          else e["node"]) != node]
        if not n["inputs"]:
            n.pop("inputs")
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def interleaved(variants: list[Variant], runs: int, one: Any,
                what: str, warmup: int = 0) -> dict[str, list[dict[str, float]]]:
    """``runs`` rounds; each round runs every variant once, the order rotating per round.
    First ``warmup`` rounds not counted (the first launch of a session reads the files from
    disk and ran 2-4x slower than the rest, whichever variant came first)."""
    for i in range(warmup):
        for v in variants:
            one(v)
        print(f"  {what}: warm-up round {i} (not counted)", flush=True)
    out: dict[str, list[dict[str, float]]] = {v.label: [] for v in variants}
    for i in range(runs):
        k = i % len(variants)
        for v in variants[k:] + variants[:k]:
            r = one(v)
            out[v.label].append(r)
            print(f"  {what} {i} {v.label:22s} " + "  ".join(
                f"{key.removeprefix('cpu_percent')} {val:.3f}" for key, val in r.items()),
                flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="start-up/restart runs per variant")
    ap.add_argument("--idle", action="store_true", help="also measure CPU and memory")
    ap.add_argument("--idle-runs", type=int, default=5)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--against", type=Path, metavar="CHECKOUT",
                    help="also run another checkout's genki_signals (e.g. /work/main) with the "
                         "fork server: the before of a change, measured in the same run")
    ap.add_argument("--warmup", type=int, default=1,
                    help="rounds run first and not counted (default 1)")
    ap.add_argument("--no-spawn", action="store_true",
                    help="leave out the spawn variant (GENKI_NODE_START=spawn)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="compile every module at every start (PYTHONDONTWRITEBYTECODE as set)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="genki-bench-startup-pyc-") as pyc:
        if not args.no_bytecode_cache:
            use_bytecode_cache(pyc)
            if args.against:
                subprocess.run([sys.executable, "-m", "compileall", "-q",
                                str(args.against / "genki_signals")],
                               env={**os.environ, **BYTECODE_ENV}, check=True,
                               stdout=subprocess.DEVNULL)
        print("bytecode: " + ("compiled at every start" if args.no_bytecode_cache
                              else "compiled once before the runs (as an installed package)"))
        variants = [Variant("fork", "fork")] + ([] if args.no_spawn
                                                 else [Variant("spawn", "spawn")])
        if args.against:
            variants.append(Variant(f"fork@{args.against.name}", "fork", args.against))
        if args.runs:
            runs = interleaved(variants, args.runs, startup_run, "run", args.warmup)
            report("start-up and restart, seconds", runs, "fork")
        if args.idle:
            with tempfile.TemporaryDirectory(prefix="genki-bench-spec-") as tmp:
                plain = without_node(DEMO, "dashboard", Path(tmp) / "demo-no-dashboard.yaml")
                idle_variants = [Variant("fork", "fork"),
                                 Variant("fork, no dashboard", "fork", spec=plain),
                                 Variant("spawn", "spawn")]
                if args.against:
                    idle_variants.append(Variant(f"fork@{args.against.name}", "fork",
                                                 args.against))
                idle = interleaved(idle_variants, args.idle_runs,
                                   lambda v: idle_run(v, args.settle, args.seconds), "idle")
                report(f"demo at 100 Hz over {args.seconds:g} s: CPU % of one core (total, "
                       f"then per process), memory MB (launcher + fork server + nodes)",
                       idle, "fork")
    print(f"\nload at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
