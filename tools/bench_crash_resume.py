"""Benchmark: kill -9 of a checkpointed graph node, restart, resume (issue 12).

What runs (``genki_signals/testing/crash_resume.py``, the harness of
``tests/test_crash_resume.py``): ``genki launch`` of replay -> graph -> recorder on lossless
edges; the graph runs a Butterworth low-pass, a moving average and a GRU (ONNX) and checkpoints
every 10 frames / 0.5 s. 2.5 s after every node is ready the graph node gets SIGKILL, the
launcher restarts it (backoff 0.1 s), it loads its checkpoint and the replay resends what it had
not acknowledged. Per scenario (100 Hz in frames of 5 samples, 1 kHz in frames of 20):

* restart time: from the kill to the publish time (topology clock) of the first frame the
  restarted node published, read from the recorder's file. It includes the launcher noticing the exit, the backoff,
  the interpreter start and imports, loading the checkpoint, reconnecting and recomputing the
  frames after the checkpoint; start-up time itself is the ``startup`` track's work.
* retained: the most bytes the replay node held for the killed reader while it was down
  (``retained_bytes`` of its heartbeats, sampled every 50 ms, heartbeats every 1 s).
* identical: the recorded output equals that of an uncrashed run, bit for bit (``yes``/``no``).
* baseline: the same crash with checkpoints off (``checkpoint.enabled: false``; the node starts
  its operators afresh, the upstream still resends). The ratio restart(checkpoints) /
  restart(off) shows what loading a checkpoint costs at restart.

Also, in-process: the cost of one checkpoint of that chain (state_dict + encode + write with
fsync + rename), median of ``--saves`` writes, and its size.

Runs of the two variants alternate; the table shows medians over ``--repeats`` runs.

    PYTHONPATH=$PWD python tools/bench_crash_resume.py [--repeats 3] [--saves 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genki_signals.testing.crash_resume import SCENARIOS, frames_equal, prepare, run


def checkpoint_cost(folder: Path, saves: int) -> tuple[float, int]:
    """Median seconds of one checkpoint of the chain after 1 s of 1 kHz data, and its bytes."""
    from genki_signals.nodes.checkpoint import Checkpoint, CheckpointStore
    from genki_signals.nodes.graph_node import GraphNodeLogic
    from genki_signals.testing.onnx_builders import make_gru

    make_gru(folder / "gru.onnx", features=2, hidden=16, classes=3, seed=7)
    ops = [{"type": "LowPass", "input": "v", "cutoff": 100.0, "sample_rate": 1000.0,
            "order": 4, "name": "lp"},
           {"type": "MovingAverage", "input": "lp", "length": 8, "name": "ma"},
           {"type": "Inference", "input": "ma", "model": str(folder / "gru.onnx"),
            "stateful": True, "name": "gru"}]
    logic = GraphNodeLogic(ops, {"src": ["timestamp", "v"]})
    from genki_signals.frames import Topic

    t = np.arange(1000) / 1000.0
    logic.on_frame(Topic.parse("src/main"), {"timestamp": t, "v": np.random.default_rng(0)
                                            .normal(size=(1000, 2))}, now=0.0)
    store = CheckpointStore(folder / "g.checkpoint")
    times, size = [], 0
    for i in range(saves):
        start = time.perf_counter()
        size = store.save(Checkpoint(node="g", consumed={"src/main": i}, epochs={"src": 1},
                                     lineage={"epoch": 2, "next_seq": {"g/main": i}},
                                     state=logic.state_dict(), frames=i))
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--saves", type=int, default=200)
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_crash_") as tmp:
        root = Path(tmp)
        cost, size = checkpoint_cost(root, args.saves)
        print(f"one checkpoint of LowPass+MovingAverage+GRU(16): {cost * 1e3:.2f} ms median "
              f"of {args.saves} (state_dict + msgpack + write + fsync + rename), {size} bytes")
        print(f"{'scenario':9} {'variant':12} {'restart s':>10} {'retained B':>11} "
              f"{'identical':>9}  runs")
        for name in args.scenarios:
            sc = SCENARIOS[name]
            ref = run(prepare(root / f"{name}_ref", f"bench_ref_{name}", sc), root / "r0")
            if ref.exit_code != 0 or len(ref.frames) != sc.frames:
                print(ref.output, file=sys.stderr)
                return 1
            rows: dict[str, list[tuple[float | None, int | None, bool]]] = {
                "checkpoints": [], "off": []}
            k = 0
            for rep in range(args.repeats):
                order = ["checkpoints", "off"] if rep % 2 == 0 else ["off", "checkpoints"]
                for variant in order:
                    k += 1
                    folder = root / f"{name}_{variant}_{rep}"
                    spec = prepare(folder, f"bench_{variant}_{name}_{rep}", sc,
                                   enabled=None if variant == "checkpoints" else False)
                    r = run(spec, root / f"r{k}", kill_after=2.5)
                    same = frames_equal(r.frames, ref.frames) is None
                    rows[variant].append((r.restart_seconds, r.retained_bytes_max, same))
            med = {}
            for variant, got in rows.items():
                restarts = [g[0] for g in got if g[0] is not None]
                med[variant] = statistics.median(restarts) if restarts else float("nan")
                retained = statistics.median([g[1] or 0 for g in got])
                identical = "yes" if all(g[2] for g in got) else \
                    f"{sum(g[2] for g in got)}/{len(got)}"
                print(f"{name:9} {variant:12} {med[variant]:10.2f} {retained:11.0f} "
                      f"{identical:>9}  {len(got)}  (restart s: "
                      f"{', '.join(f'{x:.2f}' for x in restarts)})")
            print(f"{name:9} restart(checkpoints) / restart(off) = "
                  f"{med['checkpoints'] / med['off']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
