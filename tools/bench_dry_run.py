"""What the dry run adds to the spec check that runs at every ``genki validate`` and launch.

For each spec, ``parse_topology`` is timed with the dry run and without it (the dry run replaced
by a no-op), interleaved, ``--repeats`` times each; the figure is the median of each and their
ratio. One process, specs parsed once first (imports, model files in the page cache).

    PYTHONPATH=$PWD python tools/bench_dry_run.py --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

GRU_SPEC = {"nodes": [
    {"id": "s", "kind": "source",
     "params": {"type": "Sampler", "sample_rate": 100,
                "sources": {"x": {"type": "SineWave"}}}},
    {"id": "g", "kind": "inference", "inputs": ["s"], "params": {"operators": [
        {"type": "Reshape", "input": "x", "shape": [1], "name": "x1"},
        {"type": "Inference", "model": "motion_gru.onnx", "input": "x1", "name": "p",
         "stateful": True},
        {"type": "MovingAverage", "input": "p", "length": 10, "name": "smooth"}]}},
    {"id": "out", "kind": "sink", "inputs": ["g"], "params": {"type": "null"}}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import genki_signals.nodes.dry_run as dry_run
    from genki_signals.launch.spec import load_topology

    real = dry_run.dry_run_graph

    def off(*a, **k):
        return [], None

    with tempfile.TemporaryDirectory() as tmp:
        gru = Path(tmp) / "gru.yaml"
        gru.write_text(yaml.safe_dump(GRU_SPEC))
        (Path(tmp) / "motion_gru.onnx").write_bytes(
            (REPO / "specs" / "models" / "motion_gru.onnx").read_bytes())
        specs = {"specs/demo.yaml": REPO / "specs" / "demo.yaml", "GRU inference": gru}
        print(f"python {sys.version.split()[0]}; medians of {args.repeats} interleaved runs")
        print(f"{'spec':18s} {'check, ms':>10s} {'no dry run, ms':>15s} {'ratio':>6s}")
        for name, path in specs.items():
            load_topology(path)  # warm up
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.repeats):
                for on in (True, False):
                    dry_run.dry_run_graph = real if on else off
                    t0 = time.perf_counter()
                    load_topology(path)
                    times[on].append(time.perf_counter() - t0)
            dry_run.dry_run_graph = real
            with_dry, without = (statistics.median(times[k]) * 1e3 for k in (True, False))
            print(f"{name:18s} {with_dry:10.1f} {without:15.1f} {with_dry / without:6.2f}")


if __name__ == "__main__":
    main()
