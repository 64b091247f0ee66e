"""Benchmark: replay speed through the processes, and record throughput.

1. **Replay.** Writes a 1-hour recording of the demo's raw topic (``signals/main``: 100 Hz, 4
   samples per frame at 25 frames/s as the demo source publishes them, 90,000 frames), then runs
   ``specs/demo.yaml`` with ``signals`` replaced by a replay node as fast as possible (exactly
   what ``genki replay REC specs/demo.yaml --replace signals`` does: lossless edges downstream,
   the derived graph and the printer as their own processes) and times it: end to end (launcher
   start to every process gone) and the replay phase alone (all nodes ready to every node
   finished). It checks the replay node played every recorded frame. As ``genki replay`` does at
   full speed, the dashboard is left out (``--with-display`` keeps it) and the replay node
   coalesces frames (``--coalesce N`` samples, 0: off) and reads the recording in bulk
   (``record.bulk``). The run's fixed costs are timed too: start (launcher start to every node
   ready: fork server, node processes, connections) and the end (from the replay node's last log
   line, written once its readers have read everything up to eos, to every process gone; part of
   the replay phase). Interleaved with each run, two baselines in this process (no bus): the
   derived graph on the recorded 4-sample frames read and decoded one by one (the issue's
   baseline), and the derived graph on the same bulk-read, coalesced frames the replay node
   publishes (the fastest: what the processes do minus the bus). Ratios (baseline time / process
   time) per round, their medians printed, with the load average.
2. **Record throughput.** A source node publishes pre-built frames as fast as it can on a
   lossless edge to a ``recorder`` node (two processes); frames/s and MB/s of payload over the
   recorder's first-to-last receive time. Also the recorder alone, in-process (no bus). For
   64 B frames (timestamp + 7 float64) and 1 MiB frames (timestamp + 131,072 float64 of noise,
   incompressible), with each compression.

    python tools/bench_replay.py [--hours 1] [--repeats 3] [--quick] [--skip-record]
                                 [--with-display] [--coalesce N]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # node processes import Blaster from this file

from genki_signals.bus.codec import encode  # noqa: E402
from genki_signals.nodes.logic import NodeLogic, Output  # noqa: E402


# ====================================================================== a fast source
class Blaster(NodeLogic):
    """Publishes ``count`` copies of one frame as fast as the lossless edge takes them."""

    input_mode = "timed"
    update_rate = 1e9

    def __init__(self, count: int, width: int, seed: int = 0) -> None:
        self.count = count
        rng = np.random.default_rng(seed)
        self.values = rng.normal(size=(1, width))
        self.sent = 0

    def poll(self, now: float) -> list[Output]:
        out = []
        for _ in range(min(64, self.count - self.sent)):
            out.append(Output("main", {"timestamp": np.array([float(self.sent)]),
                                       "x": self.values}))
            self.sent += 1
        return out

    @property
    def finished(self) -> bool:
        return self.sent >= self.count


# ====================================================================== replay
def write_hour(path: Path, hours: float) -> int:
    """The demo's raw topic for ``hours`` (frames as the demo source publishes them)."""
    from genki_signals.record import Recorder

    frames = int(round(hours * 3600 * 25))
    rng = np.random.default_rng(1)
    with Recorder(path, wall_anchor=time.time()) as rec:
        for i in range(frames):
            ts = (np.arange(4) + 4 * i) / 100.0
            frame = {"timestamp": ts, "sine_0": 5 * np.sin(2 * np.pi * 3 * ts),
                     "sine_1": 2 * np.sin(2 * np.pi * 7 * ts), "noise": rng.normal(size=4)}
            rec.record_frame("signals/main", frame, node_id="signals", publish_time=ts[-1],
                             log_time=ts[-1])
    return frames


def _derived_graph_in_process(recording: Path, make_player, per_poll: int) -> dict[str, float]:
    """The demo's derived graph in this process on the frames ``make_player(rec)`` hands out
    (no bus, no printer): the time it took and the last main-timeline timestamp."""
    from genki_signals.frames import Topic
    from genki_signals.launch.spec import load_topology
    from genki_signals.nodes.graph_node import GraphNodeLogic
    from genki_signals.record.reader import Recording

    spec = load_topology(REPO / "specs" / "demo.yaml")
    ops = list(spec.node("derived").params["operators"])
    t0 = time.perf_counter()
    logic = GraphNodeLogic(ops, upstreams={"signals": []})
    last_t = float("nan")
    with Recording(recording) as rec:
        player = make_player(rec)
        while not player.done:
            for p in player.due(0.0, per_poll):
                for out in logic.on_frame(Topic.parse(p.topic), p.frame, 0.0):
                    if out.timeline == "main":
                        last_t = float(out.frame["timestamp"][-1])
    return {"replay_phase": time.perf_counter() - t0, "last_t": last_t}


def replay_in_process(recording: Path) -> dict[str, float]:
    """The baseline: the derived graph on the recorded 4-sample frames (read and decoded from
    the file, merged one topic at a time)."""
    from genki_signals.record.player import Player

    return _derived_graph_in_process(recording, lambda rec: Player(rec, "signals", speed=None),
                                     1024)


def replay_in_process_bulk(recording: Path, coalesce: int | None) -> dict[str, float]:
    """The fastest baseline: the derived graph on the frames the replay node would publish
    (``BulkPlayer``: bulk read, coalesced)."""
    from genki_signals.nodes.kinds.replay import ReplayParams
    from genki_signals.record.bulk import BulkPlayer
    from genki_signals.record.coalesce import CoalesceLimits

    if coalesce is None:
        coalesce = ReplayParams.__dataclass_fields__["coalesce"].default
    limits = CoalesceLimits(max_samples=max(coalesce, 1))
    return _derived_graph_in_process(
        recording, lambda rec: BulkPlayer(rec, "signals", limits=limits), 8)


class StampedOut(io.StringIO):
    """The launcher's output, with the time each line arrived (``times[i]`` for line ``i``)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, s: str) -> int:
        now = time.perf_counter()
        self.times.extend([now] * s.count("\n"))
        return super().write(s)


def replay_once(recording: Path, workdir: Path, tag: str, with_display: bool = False,
                coalesce: int | None = None) -> dict[str, float]:
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.replay import replay_topology
    from genki_signals.launch.spec import load_topology

    spec = load_topology(REPO / "specs" / "demo.yaml")
    kwargs = {"with_display": True} if with_display else {}
    if coalesce is not None:
        kwargs["coalesce"] = coalesce
    plan = replay_topology(spec, recording, ["signals"], name=f"bench_replay_{tag}", **kwargs)
    out = StampedOut()
    t0 = time.perf_counter()
    launcher = Launcher(plan.spec, run_dir=workdir / f"run_{tag}", out=out,
                        node_extra=plan.node_extra)
    try:
        launcher.start()
        t1 = time.perf_counter()
        code = launcher.run()
        t2 = time.perf_counter()
    finally:
        launcher.stop()
    t3 = time.perf_counter()
    text = out.getvalue()
    if code != 0 or "every node has finished" not in text:
        raise SystemExit(f"replay failed ({code}):\n{text[-3000:]}")
    printed = [ln for ln in text.splitlines() if ln.startswith("[printer] derived/main")]
    last_t = float(printed[-1].split(" t=")[1].split()[0]) if printed else float("nan")
    lines = text.splitlines()
    replayed = [ln for ln in lines if "replayed " in ln]
    # the end: from the replay node's last line (it has sent everything; eos next) to the
    # last process gone
    t_replayed = next((t for ln, t in zip(lines, out.times) if "replayed " in ln), t2)
    return {"end_to_end": t3 - t0, "start": t1 - t0, "replay_phase": t2 - t1,
            "shutdown": t3 - t_replayed, "last_t": last_t,
            "printed": len(printed), "log": replayed[-1] if replayed else ""}


# ====================================================================== record
def record_through_processes(workdir: Path, frames: int, width: int, compression: str,
                             tag: str) -> dict[str, float]:
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import parse_topology
    from genki_signals.record import Recording

    out_file = workdir / f"rec_{tag}.mcap"
    spec = parse_topology({"name": f"bench_record_{tag}", "nodes": [
        {"id": "blaster", "kind": "custom",
         "params": {"class": "bench_replay:Blaster", "args": {"count": frames, "width": width}}},
        {"id": "rec", "kind": "recorder", "inputs": ["blaster"],
         "params": {"path": str(out_file), "compression": compression}}]})
    out = io.StringIO()
    launcher = Launcher(spec, run_dir=workdir / f"run_rec_{tag}", out=out)
    try:
        launcher.start()
        code = launcher.run()
    finally:
        launcher.stop()
    if code != 0:
        raise SystemExit(f"record run failed:\n{out.getvalue()[-3000:]}")
    with Recording(out_file) as rec:
        times = [stored.log_time for stored, msg in rec.decoded() if msg.kind == "data"]
    span = (max(times) - min(times)) / 1e9
    n_data = len(times)
    payload = (width + 1) * 8
    size = out_file.stat().st_size
    out_file.unlink()
    return {"frames": n_data, "seconds": span, "frames_per_s": (n_data - 1) / span,
            "mb_per_s": (n_data - 1) * payload / span / 1e6, "file_mb": size / 1e6}


def record_in_process(workdir: Path, frames: int, width: int, compression: str
                      ) -> dict[str, float]:
    from genki_signals.record import Recorder

    values = np.random.default_rng(0).normal(size=(1, width))
    parts = [encode("b/main", {"timestamp": np.array([float(i)]), "x": values}, node_id="b",
                    seq=i) for i in range(64)]
    path = workdir / "inproc.mcap"
    t0 = time.perf_counter()
    with Recorder(path, compression=compression) as rec:
        for i in range(frames):
            rec.record_parts(parts[i % 64], log_time=i * 1e-6)
    dt = time.perf_counter() - t0
    path.unlink()
    payload = (width + 1) * 8
    return {"frames_per_s": frames / dt, "mb_per_s": frames * payload / dt / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--with-display", action="store_true",
                        help="keep the demo's dashboard (plot) node in the replay")
    parser.add_argument("--coalesce", type=int, default=None, metavar="N",
                        help="samples per coalesced frame (0: off; default: genki replay's)")
    parser.add_argument("--compare-plain", action="store_true",
                        help="each round also replays the recorded frames with the dashboard "
                             "(--coalesce 0 --with-display: the behaviour before coalescing)")
    parser.add_argument("--skip-record", action="store_true")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    hours = 0.05 if args.quick else args.hours
    with tempfile.TemporaryDirectory(prefix="genki-bench-replay-") as tmp:
        workdir = Path(tmp)
        if not args.skip_replay:
            recording = workdir / "hour.mcap"
            t0 = time.perf_counter()
            frames = write_hour(recording, hours)
            t_write = time.perf_counter() - t0
            seconds = hours * 3600
            print(f"recording: {seconds:.0f} s of 100 Hz demo data, {frames} frames, "
                  f"{recording.stat().st_size / 1e6:.1f} MB, written in {t_write:.1f} s")
            runs, inproc, fastest, plain = [], [], [], []
            for i in range(args.repeats):  # interleaved: processes, then in-process, per round
                if args.compare_plain:  # as before coalescing: recorded frames, dashboard kept
                    plain.append(replay_once(recording, workdir, f"plain{i}", True, 0))
                    print(f"  round {i}: recorded frames with the dashboard "
                          f"{plain[-1]['replay_phase']:.2f} s", flush=True)
                runs.append(replay_once(recording, workdir, str(i), args.with_display,
                                        args.coalesce))
                inproc.append(replay_in_process(recording))
                fastest.append(replay_in_process_bulk(recording, args.coalesce))
                r = runs[-1]
                if f"replayed {frames} frames" not in r["log"]:
                    raise SystemExit(f"the replay did not play all {frames} frames: {r['log']}")
                print(f"  round {i}: processes: replay phase {r['replay_phase']:.2f} s "
                      f"(start {r['start']:.2f} s, end {r['shutdown']:.2f} s, end to end "
                      f"{r['end_to_end']:.2f} s); in-process: bulk + coalesced "
                      f"{fastest[-1]['replay_phase']:.2f} s (ratio "
                      f"{fastest[-1]['replay_phase'] / r['replay_phase']:.2f}), 4-sample frames "
                      f"{inproc[-1]['replay_phase']:.2f} s (ratio "
                      f"{inproc[-1]['replay_phase'] / r['replay_phase']:.2f}); load "
                      f"{os.getloadavg()[0]:.1f}; {r['log'].strip()}", flush=True)
            med = {k: statistics.median(r[k] for r in runs)
                   for k in ("end_to_end", "start", "replay_phase", "shutdown")}
            print(f"replay through the demo graph as processes, median of {len(runs)}: end to "
                  f"end {med['end_to_end']:.2f} s = {seconds / med['end_to_end']:.0f}x real "
                  f"time (start {med['start']:.2f} s, replay phase {med['replay_phase']:.2f} s "
                  f"= {seconds / med['replay_phase']:.0f}x, of which the end "
                  f"{med['shutdown']:.2f} s); "
                  f"{frames / med['replay_phase']:.0f} recorded frames/s")
            for label, base_runs in (("bulk + coalesced frames (the fastest)", fastest),
                                     ("recorded 4-sample frames", inproc)):
                base = statistics.median(r["replay_phase"] for r in base_runs)
                ratio = statistics.median(b["replay_phase"] / r["replay_phase"]
                                          for r, b in zip(runs, base_runs))
                print(f"in-process baseline, {label}, median of {len(base_runs)}: {base:.2f} s "
                      f"= {seconds / base:.0f}x real time; processes / in-process speed "
                      f"(replay phase), median of the per-round ratios: {ratio:.2f}x "
                      f"(last t: processes {runs[-1]['last_t']:.2f}, in-process "
                      f"{base_runs[-1]['last_t']:.2f})")
            if plain:
                p_phase = statistics.median(r["replay_phase"] for r in plain)
                p_ratio = statistics.median(i["replay_phase"] / r["replay_phase"]
                                            for r, i in zip(plain, inproc))
                print(f"recorded frames with the dashboard (--coalesce 0 --with-display), "
                      f"median of {len(plain)}: replay phase {p_phase:.2f} s = "
                      f"{seconds / p_phase:.0f}x real time; / in-process: {p_ratio:.2f}x")
        if not args.skip_record:
            cases = [("64 B", 7, 20_000 if args.quick else 200_000),
                     ("1 MiB", 131_072, 50 if args.quick else 500)]
            print("record throughput (payload = timestamp + x, float64):")
            for label, width, frames in cases:
                for compression in ("none", "lz4", "zstd"):
                    procs = [record_through_processes(workdir, frames, width, compression,
                                                      f"{width}_{compression}_{i}")
                             for i in range(args.repeats)]
                    inproc = [record_in_process(workdir, frames, width, compression)
                              for _ in range(args.repeats)]
                    fps = statistics.median(p["frames_per_s"] for p in procs)
                    mbs = statistics.median(p["mb_per_s"] for p in procs)
                    ifps = statistics.median(p["frames_per_s"] for p in inproc)
                    imbs = statistics.median(p["mb_per_s"] for p in inproc)
                    print(f"  {label:6s} {compression:5s} through processes: {fps:10,.0f} "
                          f"frames/s {mbs:8.1f} MB/s | recorder alone: {ifps:10,.0f} frames/s "
                          f"{imbs:8.1f} MB/s  (file {procs[0]['file_mb']:.1f} MB, "
                          f"{procs[0]['frames']} frames)")


if __name__ == "__main__":
    main()
