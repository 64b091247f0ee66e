"""Sources: Clock, the Source interface, Sampler's drift-free schedule, synthetic waves."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from scipy import signal as sps

from genki_signals.buffers import DataBuffer
from genki_signals.clock import DEFAULT_CLOCK, Clock
from genki_signals.data_sources import (
    RandomNoise,
    Sampler,
    SineWave,
    Source,
    SourceParameterError,
    SquareWave,
    TriangleWave,
)
from genki_signals.errors import SourceError



class ToggleSource(Source):
    """A minimal Source for tests: active between start() and stop(), reads nothing."""

    def __init__(self):
        super().__init__()
        self.active = False

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def read(self):
        return {}

    @property
    def is_active(self):
        return self.active


def _collect(sampler: Sampler, seconds: float, every: float = 0.02) -> dict[str, np.ndarray]:
    """Run ``sampler`` for ``seconds``, reading every ``every`` s; all reads concatenated."""
    buf = DataBuffer()
    with sampler:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(every)
            buf.extend(sampler.read())
    buf.extend(sampler.read())
    return buf.to_dict()


# ------------------------------------------------------------------ clock and interface
def test_clock_is_monotonic_seconds_since_start():
    clock = Clock()
    a = clock.now()
    time.sleep(0.01)
    b = clock.now()
    assert 0 <= a < b and 0.009 < b - a < 0.5
    assert abs(clock.to_wall(b) - time.time()) < 0.05
    clock.start()
    assert clock.now() < 0.01
    assert DEFAULT_CLOCK.now() > 0


def test_source_is_abstract_and_a_context_manager():
    with pytest.raises(TypeError):
        Source()

    class Counter(ToggleSource):
        finite = True

    src = Counter()
    assert src.clock is DEFAULT_CLOCK and src.sample_rate is None and src.finite
    with src as entered:
        assert entered is src and src.is_active
    assert not src.is_active


# ------------------------------------------------------------------ sampler values and schedule
@pytest.mark.timeout(30)
def test_values_match_the_analytic_functions_at_the_timestamps():
    A, f, ph = 5.0, 3.0, 0.3

    def plain(t):  # the seed notebook's function: not vectorized, called per tick
        return A * np.sin(f * 2 * np.pi * t + ph)

    sampler = Sampler({"sine": SineWave(f, A, ph), "square": SquareWave(f, A, ph),
                       "tri": TriangleWave(f, A, ph), "plain": plain}, sample_rate=200)
    d = _collect(sampler, 0.4)
    t = d["timestamp"]
    theta = 2 * np.pi * f * t + ph
    assert len(t) >= 40
    np.testing.assert_allclose(d["sine"], A * np.sin(theta), atol=1e-9)
    np.testing.assert_allclose(d["plain"], A * np.sin(theta), atol=1e-9)
    np.testing.assert_allclose(d["tri"], A * 2 / np.pi * np.arcsin(np.sin(theta)), atol=1e-7)
    np.testing.assert_allclose(d["square"], A * sps.square(theta), atol=1e-9)
    assert set(np.unique(d["square"])) <= {-A, A}


@pytest.mark.timeout(30)
def test_timestamps_follow_the_ideal_schedule():
    rate = 500.0
    sampler = Sampler({"x": SineWave()}, sample_rate=rate)
    d = _collect(sampler, 0.3, every=0.013)
    t = d["timestamp"]
    assert t.dtype == np.float64 and len(t) > 100
    assert np.all(np.diff(t) > 0)
    # Every tick, none skipped, none repeated, across many reads: t = t0 + k / rate.
    np.testing.assert_allclose(t, t[0] + np.arange(len(t)) / rate, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.diff(t), 1 / rate, rtol=0, atol=1e-9)


@pytest.mark.timeout(30)
def test_rate_error_over_3_seconds_at_1khz_is_below_0_1_percent():
    rate = 1000.0
    sampler = Sampler({"x": SineWave(), "n": RandomNoise(seed=0)}, sample_rate=rate)
    count, t0 = 0, None
    sampler.start()
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            time.sleep(0.02)
            frame = sampler.read()
            if frame and len(frame["timestamp"]):
                t0 = frame["timestamp"][0] if t0 is None else t0
                count += len(frame["timestamp"])
        count += len(sampler.read()["timestamp"])
        elapsed = sampler.clock.now() - t0
    finally:
        sampler.stop()
    expected = elapsed * rate
    error = abs(count - expected) / expected
    assert error < 1e-3, f"rate error {error:.5%} ({count} samples in {elapsed:.4f} s)"


@pytest.mark.timeout(30)
def test_vectorized_sources_get_arrays_and_plain_ones_get_floats():
    calls = {"vec": [], "plain": []}

    def vec(t):
        calls["vec"].append(t)
        return np.stack([t, 2 * t], axis=1)

    vec.vectorized = True

    def plain(t):
        calls["plain"].append(t)
        return [t, -t]

    sampler = Sampler({"vec": vec, "plain": plain}, sample_rate=1000)
    d = _collect(sampler, 0.2, every=0.05)
    n = len(d["timestamp"])
    assert d["vec"].shape == (n, 2) and d["plain"].shape == (n, 2)
    np.testing.assert_array_equal(d["vec"][:, 1], 2 * d["timestamp"])
    np.testing.assert_array_equal(d["plain"][:, 1], -d["timestamp"])
    assert all(isinstance(t, np.ndarray) for t in calls["vec"])
    assert all(type(t) is float for t in calls["plain"]) and len(calls["plain"]) == n
    assert len(calls["vec"]) <= n


# ------------------------------------------------------------------ lifecycle
@pytest.mark.timeout(30)
def test_stop_is_prompt_even_between_slow_ticks():
    # a plain function: sampled by the thread (the waves alone are sampled on read)
    sampler = Sampler({"x": lambda t: 0.0}, sample_rate=0.5)  # next tick 2 s away
    sampler.start()
    time.sleep(0.05)
    assert sampler.is_active
    t = time.perf_counter()
    sampler.stop()
    assert time.perf_counter() - t < 0.2
    assert not sampler.is_active and not sampler._thread.is_alive()
    assert len(sampler.read()["timestamp"]) == 1  # tick 0 is emitted at start
    sampler.stop()  # idempotent


@pytest.mark.process
@pytest.mark.timeout(30)
def test_sampling_thread_is_a_daemon():
    sampler = Sampler({"x": lambda t: 0.0}, sample_rate=100)
    with sampler:
        assert sampler._thread.daemon
    # An interpreter that never calls stop() still exits.
    code = textwrap.dedent("""
        from genki_signals.data_sources import Sampler, SineWave
        Sampler({"x": SineWave(), "y": lambda t: t}, sample_rate=100).start()
        print("started")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0 and "started" in out.stdout


@pytest.mark.timeout(30)
def test_empty_reads_and_restart():
    sampler = Sampler({"x": SineWave(), "v": lambda t: [t, t]}, sample_rate=100)
    assert sampler.read() == {}  # nothing sampled yet: shapes unknown
    assert sampler.stream_names == ["x", "v"] and sampler.sample_rate == 100.0
    assert not sampler.finite
    with sampler:
        first = sampler.read()  # start() returns once tick 0 is sampled: never {} here
        assert set(first) == {"timestamp", "x", "v"} and len(first["timestamp"]) >= 1
        time.sleep(0.05)
    first = sampler.read()
    assert len(first["timestamp"]) >= 1
    empty = sampler.read()  # shapes known now: zero-length arrays under every key
    assert set(empty) == {"timestamp", "x", "v"}
    assert empty["timestamp"].shape == (0,) and empty["v"].shape == (0, 2)
    assert empty["timestamp"].dtype == np.float64
    with sampler:  # restartable; the new schedule starts at the restart
        time.sleep(0.05)
        assert sampler.is_active
    second = sampler.read()
    assert second["timestamp"][0] > first["timestamp"][-1]


@pytest.mark.timeout(30)
def test_source_error_stops_the_sampler_and_names_the_stream():
    def broken(t):
        if t > 0.03 + start:
            raise RuntimeError("sensor unplugged")
        return 1.0

    start = DEFAULT_CLOCK.now()
    sampler = Sampler({"ok": SineWave(), "broken": broken}, sample_rate=200)
    sampler.start()
    deadline = time.monotonic() + 5
    while sampler.is_active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sampler.is_active
    with pytest.raises(SourceError, match="'broken'.*sensor unplugged"):
        sampler.read()
    sampler.stop()


@pytest.mark.timeout(30)
def test_error_on_the_first_tick_surfaces_on_read():
    def broken(t):
        raise ValueError("no device")

    sampler = Sampler({"dev": broken}, sample_rate=100)
    t = time.perf_counter()
    sampler.start()
    assert time.perf_counter() - t < 1.0 and not sampler.is_active
    with pytest.raises(SourceError, match="'dev'.*no device"):
        sampler.read()


@pytest.mark.timeout(30)
def test_sub_sources_are_started_and_stopped():
    class Follower(ToggleSource):

        def __call__(self, t):
            return 1.0 if self.active else 0.0

    follower = Follower()
    sampler = Sampler({"f": follower}, sample_rate=100)
    with sampler:
        time.sleep(0.05)
        assert follower.is_active
    assert not follower.is_active
    assert np.all(sampler.read()["f"] == 1.0)


# ------------------------------------------------------------------ live parameters
@pytest.mark.timeout(30)
def test_live_amplitude_change_takes_effect():
    sine = SineWave(frequency=5, amplitude=1)
    sampler = Sampler({"sine": sine}, sample_rate=500)
    with sampler:
        time.sleep(0.3)
        sine.amplitude = 3
        changed = sampler.clock.now()
        time.sleep(0.3)
    d = DataBuffer.from_dict(sampler.read()).to_dict()
    before = d["sine"][d["timestamp"] < changed - 0.01]
    after = d["sine"][d["timestamp"] > changed + 0.05]
    assert np.max(np.abs(before)) <= 1 + 1e-9
    assert 2.9 < np.max(np.abs(after)) <= 3 + 1e-9


def test_frequency_change_is_phase_continuous():
    rate, A = 1000.0, 1.0
    sine = SineWave(frequency=2, amplitude=A)
    t1 = np.arange(0, 1.237, 1 / rate)
    y1 = sine(t1)
    np.testing.assert_allclose(y1, np.sin(2 * np.pi * 2 * t1), atol=1e-12)
    sine.frequency = 7
    t2 = t1[-1] + np.arange(1, 800) / rate
    y2 = sine(t2)
    y = np.concatenate([y1, y2])
    # No jump: consecutive samples differ by at most the new max slope times the step.
    assert np.max(np.abs(np.diff(y))) <= 2 * np.pi * 7 * A / rate * 1.01
    # After the change it oscillates at 7 Hz: continuous phase from the last sample.
    theta0 = 2 * np.pi * 2 * t1[-1]
    np.testing.assert_allclose(y2, np.sin(theta0 + 2 * np.pi * 7 * (t2 - t1[-1])), atol=1e-9)


def test_waves_accept_scalars_and_arrays():
    for wave in (SineWave(2, 3), SquareWave(2, 3), TriangleWave(2, 3)):
        assert isinstance(wave(0.1), float)
        assert wave(np.array([0.1, 0.2])).shape == (2,)
        assert wave.vectorized
    assert TriangleWave(1, 2)(0.25) == pytest.approx(2.0)  # peaks where sine peaks
    assert SquareWave(1, 2)(0.1) == 2.0 and SquareWave(1, 2)(0.6) == -2.0


# ------------------------------------------------------------------ random noise
def test_random_noise_with_a_seed_is_reproducible_across_chunkings():
    a = RandomNoise(amplitude=2.0, seed=42)
    b = RandomNoise(amplitude=2.0, seed=42)
    t = np.arange(100) / 100
    whole = a(t)
    chunked = np.concatenate([b(t[:3]), b(t[3:50]), np.array([b(float(t[50]))]), b(t[51:])])
    np.testing.assert_array_equal(whole, chunked)
    assert not np.array_equal(whole, RandomNoise(2.0, seed=43)(t))
    np.testing.assert_allclose(np.std(RandomNoise(2.0, seed=1)(np.zeros(20000))), 2.0, rtol=0.05)


@pytest.mark.timeout(30)
def test_random_noise_through_a_sampler_is_reproducible():
    sampler = Sampler({"n": RandomNoise(seed=7)}, sample_rate=400)
    d = _collect(sampler, 0.2, every=0.017)
    np.testing.assert_array_equal(d["n"], RandomNoise(seed=7)(np.zeros(len(d["n"]))))


# ------------------------------------------------------------------ parameter validation
@pytest.mark.parametrize("make, field", [
    (lambda: SineWave(amplitude=-1), "amplitude"),
    (lambda: SineWave(frequency=-2), "frequency"),
    (lambda: SquareWave(frequency=float("nan")), "frequency"),
    (lambda: TriangleWave(phase=float("inf")), "phase"),
    (lambda: SineWave(frequency="fast"), "frequency"),
    (lambda: RandomNoise(amplitude=-0.5), "amplitude"),
    (lambda: RandomNoise(seed=-1), "seed"),
    (lambda: RandomNoise(seed="abc"), "seed"),
    (lambda: Sampler({"x": SineWave()}, sample_rate=0), "sample_rate"),
    (lambda: Sampler({"x": SineWave()}, sample_rate=float("inf")), "sample_rate"),
    (lambda: Sampler({}, sample_rate=10), "sources"),
    (lambda: Sampler({"x": 3.0}, sample_rate=10), "sources['x']"),
    (lambda: Sampler({"a.b": SineWave()}, sample_rate=10), "'a.b'"),
    (lambda: Sampler({"timestamp": SineWave()}, sample_rate=10), "'timestamp'"),
])
def test_bad_parameters_raise_naming_the_field(make, field):
    with pytest.raises(SourceParameterError) as info:
        make()
    assert field in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SourceError)


def test_live_parameter_assignment_is_validated():
    sine = SineWave()
    with pytest.raises(SourceParameterError, match="amplitude"):
        sine.amplitude = -3
    assert sine.amplitude == 1.0
    noise = RandomNoise()
    with pytest.raises(SourceParameterError, match="amplitude"):
        noise.amplitude = float("nan")


# ------------------------------------------------------------------ with a buffer (seed usage)
@pytest.mark.timeout(30)
def test_seed_notebook_loop():
    buffer = DataBuffer(maxlen=400)
    sine_wave = SineWave(frequency=3, amplitude=5, phase=0)
    source = Sampler(sources={"sine": sine_wave}, sample_rate=100)

    def run_source():
        source.start()
        while True:
            buffer.extend(source.read())
            time.sleep(1 / 25)
            if not source.is_active:
                return

    t = threading.Thread(target=run_source)
    t.start()
    time.sleep(0.3)
    source.stop()
    t.join(timeout=5)
    assert not t.is_alive()
    assert list(buffer.keys()) == ["timestamp", "sine"]
    assert 20 <= len(buffer) <= 400


# ------------------------------------------------------------------ sampled on read
class _Hidden:
    """The same vectorized function without ``add_change_listener``: sampled by the thread."""

    vectorized = True

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, t):
        return self.fn(t)


@pytest.mark.timeout(30)
def test_waves_alone_are_sampled_on_read_without_a_thread_and_give_the_threads_samples():
    rate = 200.0
    on_read = Sampler({"sine": SineWave(3, 5, 0.5), "noise": RandomNoise(seed=4)}, rate)
    threaded = Sampler({"sine": _Hidden(SineWave(3, 5, 0.5)),
                        "noise": _Hidden(RandomNoise(seed=4))}, rate)
    assert on_read.sampled_on_read and not threaded.sampled_on_read
    before = threading.active_count()
    a = _collect(on_read, 0.4, every=0.03)
    assert on_read._thread is None and threading.active_count() == before
    b = _collect(threaded, 0.4, every=0.03)
    for d in (a, b):
        t = d["timestamp"]
        assert len(t) > 40
        np.testing.assert_allclose(t, t[0] + np.arange(len(t)) / rate, rtol=0, atol=1e-9)
        np.testing.assert_allclose(d["sine"], 5 * np.sin(2 * np.pi * 3 * t + 0.5), atol=1e-9)
    n = min(len(a["noise"]), len(b["noise"]))  # the draws depend on their count only
    np.testing.assert_array_equal(a["noise"][:n], b["noise"][:n])
    np.testing.assert_array_equal(a["noise"][:n],
                                  np.random.default_rng(4).standard_normal(n))


@pytest.mark.timeout(30)
def test_sampled_on_read_a_change_between_reads_applies_from_its_own_time():
    sine = SineWave(frequency=5, amplitude=1)
    sampler = Sampler({"sine": sine}, sample_rate=500)
    sampler.start()
    time.sleep(0.2)
    sine.amplitude = 3  # no read since start: the ticks due so far keep amplitude 1
    changed = sampler.clock.now()
    time.sleep(0.2)
    d = sampler.read()
    sampler.stop()
    t, y = d["timestamp"], d["sine"]
    np.testing.assert_allclose(y[t <= changed - 0.005], np.sin(2 * np.pi * 5 * t[t <= changed
                                                                                  - 0.005]),
                               atol=1e-9)
    np.testing.assert_allclose(y[t > changed], 3 * np.sin(2 * np.pi * 5 * t[t > changed]),
                               atol=1e-9)
    assert not sine.__dict__.get("_change_listeners")  # stop() unhooks the sampler
