"""Benchmark: an exported graph in ONNX Runtime vs the same graph in Python, same data, same run.

The seed chain (Sum, Sum, FourierTransform 256/128, SampleRate, MovingAverage 10), alone and
with a 4th-order Butterworth low-pass (an ONNX ``Scan``, one step per sample), is fed 100 Hz
scalar streams in 4-sample chunks (the seed's 100 Hz read at 25 Hz) and in 4096-sample chunks,
through ``SignalGraph.process`` and through the exported model (``OnnxStream``: one
``session.run`` per chunk, states fed back; 1 intra-op thread). Repeats are interleaved (Python,
ONNX, Python, ONNX...) and the medians reported; the ratio is ONNX time / Python time.

    python tools/bench_export.py [--samples 16384] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime

import genki_signals.signals as s
from genki_signals.export import OnnxStream
from genki_signals.graph import SignalGraph

RATE = 100.0


def seed_chain(lowpass: bool) -> SignalGraph:
    ops = [s.Sum("sine_0", "sine_1", name="composite_sine"),
           s.Sum("composite_sine", "noise", name="wave_with_noise"),
           s.FourierTransform("wave_with_noise", window_size=256, window_overlap=128,
                              name="wave_spectrum"),
           s.SampleRate("timestamp", name="sample_rate"),
           s.MovingAverage("sample_rate", length=10, name="smooth_sample_rate")]
    if lowpass:
        ops.append(s.LowPass("wave_with_noise", cutoff=10.0, sample_rate=RATE, name="low"))
    return SignalGraph(ops)


def make_data(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = 1.76e9 + np.arange(n) / RATE
    return {"timestamp": t,
            "sine_0": (5 * np.sin(2 * np.pi * 3 * t)).astype(np.float32),
            "sine_1": (2 * np.sin(2 * np.pi * 7 * t)).astype(np.float32),
            "noise": rng.normal(size=n).astype(np.float32)}


def chunks(data: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    n = len(data["timestamp"])
    return [{k: v[i:i + size] for k, v in data.items()} for i in range(0, n, size)]


def run_python(graph: SignalGraph, pieces: list[dict[str, np.ndarray]]) -> float:
    graph.reset()
    frames = [{k: np.asarray(v, dtype=np.float64) for k, v in p.items()} for p in pieces]
    t0 = time.perf_counter()
    for f in frames:
        graph.process(f)
    return time.perf_counter() - t0


def run_onnx(stream: OnnxStream, pieces: list[dict[str, np.ndarray]]) -> float:
    stream.reset()
    t0 = time.perf_counter()
    for p in pieces:
        stream(p)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    data = make_data(args.samples)
    print(f"# {platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; {args.samples} samples, medians of "
          f"{args.repeats} interleaved repeats")
    print("| graph | chunk | Python samples/s | ONNX Runtime samples/s | us/chunk Python | "
          "us/chunk ONNX | ONNX/Python time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for lowpass in (False, True):
            graph = seed_chain(lowpass)
            outputs = ["wave_spectrum", "smooth_sample_rate"] + (["low"] if lowpass else [])
            path = graph.to_onnx(Path(tmp) / f"g{int(lowpass)}.onnx",
                                 inputs=["sine_0", "sine_1", "noise", "timestamp"],
                                 outputs=outputs)
            stream = OnnxStream(path)
            for size in (4, 4096):
                pieces = chunks(data, size)
                py, ox = [], []
                for _ in range(args.repeats):
                    py.append(run_python(graph, pieces))
                    ox.append(run_onnx(stream, pieces))
                tp, to = statistics.median(py), statistics.median(ox)
                name = "seed chain" + (" + low-pass" if lowpass else "")
                print(f"| {name} | {size} | {args.samples / tp:,.0f} | {args.samples / to:,.0f} | "
                      f"{tp / len(pieces) * 1e6:,.1f} | {to / len(pieces) * 1e6:,.1f} | "
                      f"{to / tp:.2f} |")


if __name__ == "__main__":
    main()
