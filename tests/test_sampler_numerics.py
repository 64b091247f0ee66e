"""The demo's synthetic sources through the Sampler give exactly (bit for bit) what numpy gives
for the same formulas: the idle-cost work on the sampling path must not change a sample."""

from __future__ import annotations

import math

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources import RandomNoise, Sampler, SineWave


def demo_sampler(clock: Clock) -> Sampler:
    """specs/demo.yaml's ``signals`` node: 100 Hz, two sines and seeded noise."""
    return Sampler({"sine_0": SineWave(frequency=3, amplitude=5),
                    "sine_1": SineWave(frequency=7, amplitude=2),
                    "noise": RandomNoise(amplitude=1, seed=1)}, sample_rate=100, clock=clock)


def test_demo_sources_read_in_frames_equal_numpy_bit_for_bit():
    now = [0.0]  # the test sets the time: a read samples every tick due by then
    sampler = demo_sampler(Clock().follow(lambda: now[0]))
    sampler.start()
    frames = []
    try:
        for k in range(1, 101):  # 25 reads a second for 4 s, as the demo's source node reads
            now[0] = k * 0.04 + 1e-9
            frames.append(sampler.read())
    finally:
        sampler.stop()
    ts = np.concatenate([f["timestamp"] for f in frames])
    n = len(ts)
    assert n == 401  # ticks 0..400
    assert np.array_equal(ts, np.arange(n) / 100.0)
    for name, freq, amp in (("sine_0", 3.0, 5.0), ("sine_1", 7.0, 2.0)):
        want = amp * np.sin((0.0 + 2.0 * math.pi * freq * (ts - 0.0)) + 0.0)
        got = np.concatenate([f[name] for f in frames])
        assert got.dtype == np.float64
        assert got.tobytes() == want.tobytes(), name
    want_noise = 1.0 * np.random.default_rng(1).standard_normal(n)
    got_noise = np.concatenate([f["noise"] for f in frames])
    assert got_noise.tobytes() == want_noise.tobytes()
