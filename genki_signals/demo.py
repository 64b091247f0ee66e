"""The seed notebook's demo: two sine waves plus noise at 100 Hz and its derived-signal chain.

Kept in one place so the CLI demo, the tests and the benchmarks run exactly the same graph.
"""

from __future__ import annotations

import time

import numpy as np

import genki_signals.signals as s
from genki_signals.buffers import DataBuffer
from genki_signals.data_sources import RandomNoise, Sampler, SineWave
from genki_signals.signals.base import Operator
from genki_signals.system import System

SAMPLE_RATE = 100.0


def seed_source(sample_rate: float = SAMPLE_RATE, noise_seed: int | None = None) -> Sampler:
    """``sine_0`` (3 Hz, amplitude 5), ``sine_1`` (7 Hz, amplitude 2) and ``noise``."""
    return Sampler({
        "sine_0": SineWave(frequency=3, amplitude=5, phase=0),
        "sine_1": SineWave(frequency=7, amplitude=2, phase=0),
        "noise": RandomNoise(amplitude=1.0, seed=noise_seed),
    }, sample_rate=sample_rate)


def seed_derived_signals() -> list[Operator]:
    """The derived-signal list of the seed notebook, verbatim."""
    return [
        s.Sum("sine_0", "sine_1", name="composite_sine"),
        s.Sum("composite_sine", "noise", name="wave_with_noise"),
        s.FourierTransform("wave_with_noise", name="wave_spectrum", window_size=256,
                           window_overlap=128),
        s.SampleRate("timestamp", name="sample_rate"),
        s.MovingAverage("sample_rate", length=10, name="smooth_sample_rate"),
    ]


def spectrum_peaks(spectrum: np.ndarray, sample_rate: float, window_size: int,
                   count: int = 2) -> list[float]:
    """Frequencies (Hz) of the ``count`` highest local maxima of a magnitude spectrum, ascending.

    Local maxima, not the largest bins: a strong peak between two bins fills both of them.
    """
    import scipy.signal  # only here: importing it costs over a second

    freqs = np.fft.rfftfreq(window_size, 1.0 / sample_rate)
    peaks, props = scipy.signal.find_peaks(spectrum, height=0)
    top = peaks[np.argsort(props["peak_heights"])[-count:]]
    return sorted(float(freqs[i]) for i in top)


def run_demo(duration: float = 10.0, update_rate: float = 25.0, maxlen: int = 400
             ) -> DataBuffer:
    """Run the seed demo in-process, printing a status line twice a second.

    ``samples`` counts every sample read so far (it keeps growing); the buffer keeps the last
    ``maxlen`` of them, shown as ``buffer n/maxlen``.
    """
    buffer = DataBuffer(maxlen=maxlen)
    total = 0
    system = System(seed_source(), seed_derived_signals())
    print("genki demo: sine 3 Hz + sine 7 Hz + noise at 100 Hz -> "
          "Sum, Sum, FourierTransform(256/128), SampleRate, MovingAverage(10)")
    next_print = 0.0
    with system:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < duration:
            frame = system.read()
            total += len(frame.get("timestamp", ()))
            buffer.extend(frame)
            if elapsed >= next_print and len(buffer):
                next_print += 0.5
                rate = buffer["smooth_sample_rate"][-1]
                spectrum = buffer["wave_spectrum"][-1]
                peaks = ("(filling first window)" if not spectrum.any() else
                         " and ".join(f"{f:.1f} Hz" for f in
                                      spectrum_peaks(spectrum, SAMPLE_RATE, 256)))
                print(f"t={buffer['timestamp'][-1]:6.2f}s  samples={total:5d} "
                      f"(buffer {len(buffer)}/{maxlen})  "
                      f"rate={rate:7.2f} Hz  wave_with_noise={buffer['wave_with_noise'][-1]:+7.3f}"
                      f"  spectrum peaks: {peaks}", flush=True)
            time.sleep(1.0 / update_rate)
    return buffer
