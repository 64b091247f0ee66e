"""Benchmark: what writing the Foxglove JSON form costs next to a raw recording.

Decides whether ``genki record`` should write the Foxglove form itself (``docs/foxglove.md``).
The demo's traffic (``signals/main``: 100 Hz, 4 samples per frame, 3 float64 streams;
``derived/main``: the same rate, 4 streams; ``derived/wave_spectrum``: 129 bins every 1.28 s)
for ``--seconds`` of data is written, in-process, interleaved, ``--repeats`` times:

* **raw**: ``Recorder.record_frame`` per frame (what a recorder does per bus message, plus
  the encoding a node did before publishing it), zstd;
* **foxglove**: ``FrameEncoder`` (one JSON message per sample, schemas) into an MCAP writer,
  zstd: what a recorder writing both forms would add per frame;
* **export**: ``genki export --foxglove`` of the raw file (read, decode, encode, write).

Prints CPU seconds per second of data for each (medians), the ratio foxglove/raw, and the
file sizes.

    python tools/bench_foxglove.py [--seconds 600] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import median, spread  # noqa: E402

from genki_signals.record import Recorder  # noqa: E402
from genki_signals.record.foxglove import FrameEncoder, export_foxglove  # noqa: E402


def demo_frames(seconds: float) -> list[tuple[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    out = []
    n_frames = int(seconds * 25)
    for i in range(n_frames):
        ts = (np.arange(4) + 4 * i) / 100.0
        s0, s1, noise = 5 * np.sin(6 * np.pi * ts), 2 * np.sin(14 * np.pi * ts), \
            rng.normal(size=4)
        out.append(("signals/main", {"timestamp": ts, "sine_0": s0, "sine_1": s1,
                                     "noise": noise}))
        out.append(("derived/main", {"timestamp": ts, "composite_sine": s0 + s1,
                                     "wave_with_noise": s0 + s1 + noise,
                                     "sample_rate": np.full(4, 100.0),
                                     "smooth_sample_rate": np.full(4, 100.0)}))
        if i % 32 == 31:
            out.append(("derived/wave_spectrum", {"timestamp": ts[-1:],
                                                  "wave_spectrum": rng.random((1, 129))}))
    return out


def run_raw(frames, path: Path) -> float:
    t0 = time.process_time()
    with Recorder(path, wall_anchor=1.7e9) as rec:
        for topic, frame in frames:
            rec.record_frame(topic, frame, node_id=topic.split("/")[0],
                             log_time=float(frame["timestamp"][-1]))
    return time.process_time() - t0


def run_foxglove(frames, path: Path) -> float:
    from mcap.writer import CompressionType, Writer

    t0 = time.process_time()
    with path.open("wb") as f:
        writer = Writer(f, compression=CompressionType.ZSTD)
        writer.start(profile="", library="bench")

        def open_channel(topic, schema):
            sid = writer.register_schema(topic, "jsonschema", json.dumps(schema).encode())
            return writer.register_channel(topic, "json", sid)

        encoder = FrameEncoder(open_channel, int(1.7e18))
        for topic, frame in frames:
            for channel, t, data in encoder.encode(topic, frame):
                writer.add_message(channel, t, data, t)
        writer.finish()
    return time.process_time() - t0


def run_export(src: Path, out: Path) -> float:
    t0 = time.process_time()
    export_foxglove(src, out, progress=False)
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    frames = demo_frames(args.seconds)
    samples = sum(len(f["timestamp"]) for _, f in frames)
    times: dict[str, list[float]] = {"raw": [], "foxglove": [], "export": []}
    with tempfile.TemporaryDirectory() as tmp:
        raw, fox, exp = Path(tmp, "raw.mcap"), Path(tmp, "fox.mcap"), Path(tmp, "exp.mcap")
        for _ in range(args.repeats):  # interleaved
            times["raw"].append(run_raw(frames, raw))
            times["foxglove"].append(run_foxglove(frames, fox))
            times["export"].append(run_export(raw, exp))
        sizes = {"raw": raw.stat().st_size, "foxglove": fox.stat().st_size,
                 "export": exp.stat().st_size}
    print(f"{args.seconds:g} s of demo traffic: {len(frames)} frames, {samples} samples; "
          f"CPU seconds, median of {args.repeats} interleaved runs")
    print(f"{'form':10s} {'CPU s':>8s} {'CPU ms per s of data':>21s} {'spread':>7s} "
          f"{'file MB':>8s}")
    for name, values in times.items():
        m = median(values)
        print(f"{name:10s} {m:8.3f} {1000 * m / args.seconds:21.3f} {spread(values):7.1%} "
              f"{sizes[name] / 1e6:8.2f}")
    print(f"foxglove / raw CPU: {median(times['foxglove']) / median(times['raw']):.1f}x; "
          f"size: {sizes['foxglove'] / sizes['raw']:.1f}x")


if __name__ == "__main__":
    main()
