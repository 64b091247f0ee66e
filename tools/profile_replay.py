"""Profile of the full-speed replay path, per recorded frame, in one process (no sockets).

The work the replay node and the graph node do per frame, in order: read and decode the
recording (``Player``, message by message; or ``record.bulk.BulkPlayer``, which reads runs of
messages with numpy and coalesces as it reads: what the replay node does at full speed now),
coalesce (``record.coalesce``, when on), encode the frame for the bus, decode it on the graph
node's side, run the demo's derived graph (``GraphNodeLogic``), encode its outputs. Prints
microseconds per *recorded* frame for each step, for 4-sample frames, coalesced frames read one
by one, and bulk-read coalesced frames (interleaved, median of ``--repeats``), and the top of a
cProfile of each.

    PYTHONPATH=$PWD python tools/profile_replay.py [--seconds 600] [--repeats 3]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_replay import write_hour


def run(recording: Path, coalesce_samples: int, bulk: bool = False) -> dict[str, float]:
    from genki_signals.bus.codec import decode, encode
    from genki_signals.frames import Topic
    from genki_signals.launch.spec import load_topology
    from genki_signals.nodes.graph_node import GraphNodeLogic
    from genki_signals.record.bulk import BulkPlayer
    from genki_signals.record.coalesce import CoalesceLimits, coalesce
    from genki_signals.record.player import Player
    from genki_signals.record.reader import Recording

    ops = list(load_topology(REPO / "specs" / "demo.yaml").node("derived").params["operators"])
    logic = GraphNodeLogic(ops, upstreams={"signals": []})
    limits = CoalesceLimits(max_samples=coalesce_samples) if coalesce_samples > 1 else None
    t = dict.fromkeys(("read", "coalesce", "encode", "decode", "graph", "encode_out"), 0.0)
    seq = 0
    clock = time.perf_counter
    with Recording(recording) as rec:
        player = BulkPlayer(rec, "signals", limits=limits) if bulk else \
            Player(rec, "signals", speed=None)
        while not player.done:
            t0 = clock()
            played = player.due(0.0, 8 if bulk else 1024)
            t1 = clock()
            if limits is not None and not bulk:
                played = coalesce(played, limits)
            t2 = clock()
            t["read"] += t1 - t0
            t["coalesce"] += t2 - t1
            for p in played:
                t0 = clock()
                parts = encode(p.topic, p.frame, node_id="signals", seq=seq)
                t1 = clock()
                msg = decode(parts)
                t2 = clock()
                outs = logic.on_frame(Topic.parse(msg.topic), msg.frame, 0.0)
                t3 = clock()
                for out in outs:
                    encode(f"derived/{out.timeline}", out.frame, node_id="derived", seq=seq)
                t4 = clock()
                seq += 1
                t["encode"] += t1 - t0
                t["decode"] += t2 - t1
                t["graph"] += t3 - t2
                t["encode_out"] += t4 - t3
        frames = player.frames
    t["total"] = sum(t.values())
    return {k: v / frames * 1e6 for k, v in t.items()} | {"frames": frames, "sent": seq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="seconds of 100 Hz demo data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--coalesce", type=int, default=1024, help="samples per coalesced frame")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="genki-profile-replay-") as tmp:
        recording = Path(tmp) / "rec.mcap"
        write_hour(recording, args.seconds / 3600)
        cases = {"4-sample frames": (0, False), f"coalesced to {args.coalesce}":
                 (args.coalesce, False), "bulk read, coalesced": (args.coalesce, True)}
        results: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
        for _ in range(args.repeats):
            for label, (n, bulk) in cases.items():
                results[label].append(run(recording, n, bulk))
        print(f"us per recorded frame ({results[next(iter(cases))][0]['frames']} frames), "
              f"median of {args.repeats} interleaved runs:")
        keys = ["read", "coalesce", "encode", "decode", "graph", "encode_out", "total"]
        print(f"  {'case':24s}" + "".join(f"{k:>11s}" for k in keys) + "  frames sent")
        for label, runs in results.items():
            row = "".join(f"{statistics.median(r[k] for r in runs):11.1f}" for k in keys)
            print(f"  {label:24s}{row}  {runs[0]['sent']}")
        for label, (n, bulk) in cases.items():
            prof = cProfile.Profile()
            prof.enable()
            run(recording, n, bulk)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(12)
            print(f"\ncProfile, {label} (tottime, top 12):")
            print("\n".join(ln for ln in buf.getvalue().splitlines()[6:] if ln.strip()))


if __name__ == "__main__":
    main()
