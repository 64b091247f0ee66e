"""Benchmark: the seed's derived-signal chain through SignalGraph vs a hand-written floor.

One hour of 100 Hz, 6-channel data (360,000 samples) goes through the seed chain
(Sum, Sum, FourierTransform 256/128, SampleRate, MovingAverage 10) plus a 4th-order Butterworth
low-pass, fed in 4-sample chunks (100 Hz read at 25 Hz, as in the seed), in 40-sample chunks and
in one batch. In the same run, a hand-written numpy/scipy loop does the same operations with
carried state: that is the floor. Prints samples/s for each and the ratio graph/floor (time).

The FFT runs with ``upsample=False``: with upsampling, a one-hour batch would materialise 2.2 GB
of repeated spectra, which measures memory bandwidth rather than the framework.

    python tools/bench_signals.py [--minutes 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view

import genki_signals.signals as s
from genki_signals.graph import SignalGraph

RATE = 100.0
CHANNELS = 6
WINDOW, OVERLAP = 256, 128
MA_LENGTH = 10
CUTOFF = 10.0


def make_data(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(n) / RATE
    phases = np.linspace(0, np.pi, CHANNELS)
    return {
        "timestamp": t,
        "sine_0": 5 * np.sin(2 * np.pi * 3 * t[:, None] + phases),
        "sine_1": 2 * np.sin(2 * np.pi * 7 * t[:, None] + phases),
        "noise": rng.normal(size=(n, CHANNELS)),
    }


def make_graph() -> SignalGraph:
    return SignalGraph([
        s.Sum("sine_0", "sine_1", name="composite_sine"),
        s.Sum("composite_sine", "noise", name="wave_with_noise"),
        s.FourierTransform("wave_with_noise", name="wave_spectrum", window_size=WINDOW,
                           window_overlap=OVERLAP, upsample=False),
        s.SampleRate("timestamp", name="sample_rate"),
        s.MovingAverage("sample_rate", length=MA_LENGTH, name="smooth_sample_rate"),
        s.LowPass("wave_with_noise", cutoff=CUTOFF, sample_rate=RATE, order=4, name="lowpass"),
    ], source_keys=["timestamp", "sine_0", "sine_1", "noise"])


class HandWritten:
    """The floor: the same chain as straight numpy/scipy with carried state, no framework."""

    def __init__(self) -> None:
        self.hop = WINDOW - OVERLAP
        self.window = scipy.signal.get_window("hann", WINDOW)
        self.tail = np.empty((0, CHANNELS))
        self.seen = 0  # samples seen so far
        self.last_t = None
        self.ma_tail = np.empty(0)
        self.sos = scipy.signal.butter(4, CUTOFF, fs=RATE, output="sos")
        self.zi = None

    def step(self, f: dict[str, np.ndarray]) -> tuple:
        wave = f["sine_0"] + f["sine_1"] + f["noise"]
        n = len(wave)
        # FFT of every window completed in this chunk (carried tail of WINDOW-1 samples)
        buf = np.concatenate([self.tail, wave])
        before = self.seen
        self.seen += n
        first = max(WINDOW - 1, before)
        first = WINDOW - 1 + -(-(first - (WINDOW - 1)) // self.hop) * self.hop
        ends = np.arange(first, self.seen, self.hop) - before + len(self.tail)
        spectra = None
        if len(ends):
            windows = sliding_window_view(buf, WINDOW, axis=0)[ends - WINDOW + 1]
            spectra = np.abs(np.fft.rfft(windows * self.window, axis=-1)).swapaxes(1, 2)
        self.tail = buf[-(WINDOW - 1):]
        # sample rate and its moving average
        ts = f["timestamp"]
        prev = np.concatenate([[np.nan if self.last_t is None else self.last_t], ts[:-1]])
        rate = 1.0 / (ts - prev)
        self.last_t = ts[-1]
        ext = np.concatenate([self.ma_tail, rate])
        c = np.cumsum(np.nan_to_num(ext))
        smooth = (c[len(self.ma_tail):] - np.concatenate([[0.0], c])[
            np.maximum(np.arange(len(self.ma_tail), len(ext)) - MA_LENGTH + 1, 0)]) / MA_LENGTH
        self.ma_tail = ext[-(MA_LENGTH - 1):]
        # Butterworth low-pass, steady-state start
        if self.zi is None:
            self.zi = scipy.signal.sosfilt_zi(self.sos)[:, :, None] * wave[0]
        low, self.zi = scipy.signal.sosfilt(self.sos, wave, axis=0, zi=self.zi)
        return spectra, smooth, low


def chunks(data: dict[str, np.ndarray], size: int):
    n = len(data["timestamp"])
    return [{k: v[i:i + size] for k, v in data.items()} for i in range(0, n, size)]


def time_run(step, parts) -> float:
    start = time.perf_counter()
    for part in parts:
        step(part)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n = int(args.minutes * 60 * RATE)
    data = make_data(n)
    print(f"{n} samples x {CHANNELS} channels ({args.minutes:g} min at {RATE:g} Hz); "
          f"median of {args.repeats} runs; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"{'chunk':>8} {'graph samples/s':>16} {'floor samples/s':>16} "
          f"{'us/chunk graph':>15} {'us/chunk floor':>15} {'ratio':>6}")
    for size in (4, 40, n):
        parts = chunks(data, size)
        graph_times, floor_times = [], []
        for _ in range(args.repeats):
            graph_times.append(time_run(make_graph().process, parts))
            floor_times.append(time_run(HandWritten().step, parts))
        g, f = statistics.median(graph_times), statistics.median(floor_times)
        label = "batch" if size == n else str(size)
        print(f"{label:>8} {n / g:16,.0f} {n / f:16,.0f} {g / len(parts) * 1e6:15.1f} "
              f"{f / len(parts) * 1e6:15.1f} {g / f:6.2f}", flush=True)


if __name__ == "__main__":
    main()
