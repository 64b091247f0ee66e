"""Benchmark: inference operators vs calling ``InferenceSession.run`` directly, in the same run.

Models come from ``genki_signals.testing.onnx_builders`` (written to a temporary directory): a GRU
(2 features, 16 hidden, 4 classes), the same GRU with a fixed time axis of 1 (stepped per
sample), a 1-D CNN on 128x3 windows (8 channels, kernel 5), an MLP, and a larger GRU (128 hidden)
and CNN (64 channels, kernel 9) to show how the operator's fixed per-call cost (a few
microseconds of Python) amortises as models grow. For each case the same float32 data goes
through the operator and through a hand-written loop of ``session.run`` calls on a session with
the same options (1 intra-op thread, 1 inter-op thread) doing exactly the model work the
operator must do (carry the GRU state, slice each window). Each repeat times both, interleaved;
the table shows medians over the repeats of the cost per sample (stateful/MLP) or per window
(CNN), and the ratio operator / direct (goal: <= 1.20).

With 10-sample chunks the windowed operator is also called ~9 times per window for chunks that
complete no window (it must buffer them; the direct loop reads windows from the whole array),
so that row measures streaming cost, not only inference overhead. The float64 row feeds the
GRU a float64 stream (what Differentiate outputs): the operator then also casts to float32,
which the direct loop is spared.

    python tools/bench_inference.py [--samples 3000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from genki_signals.signals.inference import Inference, WindowedInference
from genki_signals.testing.onnx_builders import make_cnn, make_gru, make_mlp

W, OVERLAP = 128, 32
HOP = W - OVERLAP


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- cases
def gru_case(path: Path, x: np.ndarray, chunk: int, whole_chunk: bool, cast_input: bool = False,
             hidden: int = 16):
    """(operator run, direct run) over ``x`` in chunks of ``chunk`` samples."""
    sess = session(path)
    x32 = x.astype(np.float32)
    xin = x if cast_input else x32
    n = len(x)

    op = Inference("v", str(path), stateful=True)

    def op_run():
        op.reset()
        for i in range(0, n, chunk):
            op(xin[i:i + chunk])

    def direct_run():
        h = np.zeros((1, 1, hidden), np.float32)
        if whole_chunk:
            for i in range(0, n, chunk):
                probs, h = sess.run(["probs", "h_out"], {"x": x32[None, i:i + chunk], "h": h})
        else:
            for i in range(n):
                probs, h = sess.run(["probs", "h_out"], {"x": x32[None, i:i + 1], "h": h})

    return op_run, direct_run, n


def mlp_case(path: Path, x: np.ndarray, chunk: int):
    sess = session(path)
    x32 = x.astype(np.float32)
    n = len(x)

    op = Inference("x", str(path))

    def op_run():
        for i in range(0, n, chunk):
            op(x32[i:i + chunk])

    def direct_run():
        for i in range(0, n, chunk):
            sess.run(["probs"], {"x": x32[i:i + chunk]})

    return op_run, direct_run, n


def cnn_case(path: Path, x: np.ndarray, chunk: int):
    """Windows of 128 samples every 96; the direct loop slices the same windows from ``x``."""
    sess = session(path)
    x32 = x.astype(np.float32)
    n = len(x)
    ends = np.arange(W - 1, n, HOP)

    op = WindowedInference("x", str(path), window_size=W, window_overlap=OVERLAP)

    def op_run():
        op.reset()
        for i in range(0, n, chunk):
            op(x32[i:i + chunk])

    if chunk >= n:  # one chunk: every window in one batched call
        from numpy.lib.stride_tricks import sliding_window_view

        def direct_run():
            frames = np.moveaxis(sliding_window_view(x32, W, axis=0)[::HOP], -1, 1)
            sess.run(["probs"], {"x": np.ascontiguousarray(frames)})
    else:
        def direct_run():
            for e in ends:
                sess.run(["probs"], {"x": x32[None, e - W + 1:e + 1]})

    return op_run, direct_run, len(ends)


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    n = args.samples
    rng = np.random.default_rng(0)
    vel = np.cumsum(rng.normal(size=(n, 2)), axis=0) * 0.1
    wave = rng.normal(size=(n * 4, 3))
    feats = rng.normal(size=(n, 4))

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_gru(d / "gru.onnx", features=2, hidden=16, classes=4)
        make_gru(d / "gru_step.onnx", features=2, hidden=16, classes=4, dynamic_time=False)
        make_cnn(d / "cnn.onnx", window=W, features=3, channels=8, kernel=5, classes=3)
        make_mlp(d / "mlp.onnx", features=4, hidden=16, classes=3)
        make_gru(d / "gru_big.onnx", features=2, hidden=128, classes=4)
        make_cnn(d / "cnn_big.onnx", window=W, features=3, channels=64, kernel=9, classes=3)
        cases = [
            ("GRU stateful, 1-sample chunks", "sample", gru_case(d / "gru.onnx", vel, 1, True)),
            ("GRU stateful, 10-sample chunks", "sample",
             gru_case(d / "gru.onnx", vel, 10, True)),
            ("GRU fixed T=1 (per-sample runs), 10-sample chunks", "sample",
             gru_case(d / "gru_step.onnx", vel, 10, False)),
            ("MLP stateless, 10-sample chunks", "sample", mlp_case(d / "mlp.onnx", feats, 10)),
            ("CNN windowed 128/96, 96-sample chunks", "window",
             cnn_case(d / "cnn.onnx", wave, HOP)),
            ("CNN windowed 128/96, 10-sample chunks", "window",
             cnn_case(d / "cnn.onnx", wave, 10)),
            ("CNN windowed 128/96, one chunk (batched)", "window",
             cnn_case(d / "cnn.onnx", wave, len(wave))),
            ("GRU stateful, 1-sample chunks, float64 stream", "sample",
             gru_case(d / "gru.onnx", vel, 1, True, cast_input=True)),
            ("GRU H=128 stateful, 1-sample chunks", "sample",
             gru_case(d / "gru_big.onnx", vel, 1, True, hidden=128)),
            ("CNN 64ch k9 windowed 128/96, 96-sample chunks", "window",
             cnn_case(d / "cnn_big.onnx", wave, HOP)),
            ("CNN 64ch k9 windowed 128/96, 10-sample chunks", "window",
             cnn_case(d / "cnn_big.onnx", wave, 10)),
        ]
        print(f"genki_signals inference benchmark: onnxruntime {ort.__version__}, "
              f"Python {platform.python_version()}, {platform.machine()}, "
              f"median of {args.repeats} repeats")
        header = f"{'case':52} {'unit':>6} {'operator':>11} {'direct':>11} {'ratio':>6}"
        print(header)
        print("-" * len(header))
        for label, unit, (op_run, direct_run, count) in cases:
            op_run(), direct_run()  # warm up (session creation, allocator)
            op_t, direct_t = [], []
            for _ in range(args.repeats):
                op_t.append(timed(op_run))
                direct_t.append(timed(direct_run))
            a, b = statistics.median(op_t) / count, statistics.median(direct_t) / count
            print(f"{label:52} {unit:>6} {a * 1e6:8.2f} us {b * 1e6:8.2f} us {a / b:6.2f}")


if __name__ == "__main__":
    main()
