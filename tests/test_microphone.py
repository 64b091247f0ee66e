"""Microphone source: PortAudio callback unit tests, then the real sounddevice/PortAudio/ALSA path.

* Unit tests drive ``MicDataSource.callback`` with numpy blocks and sounddevice's real
  ``CallbackFlags`` (chunking, overflow, the bounded buffer) and ``AudioTimeline`` with a
  simulated device clock (anchor, drift correction, non-real-time devices).
* ALSA ``file``-plugin virtual microphone (recipe 1A): a known multi-tone comes back sample for
  sample, the FFT operator finds its tones, timestamps are exactly one period apart; as the
  seed notebook's ``System`` cell and as a topology (``Microphone`` source node).
* ``slow_audio``: a private PulseAudio null sink fed by ``pacat`` (recipe 1B), a real-time clock:
  the timestamps' rate against the wall clock within 0.1% and no drift growth over 20 s.

Needs libportaudio2 (and for the slow test pulseaudio, pulseaudio-utils, libasound2-plugins);
tools/install-test-deps.sh installs them.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.buffers import DataBuffer
from genki_signals.clock import Clock
from genki_signals.data_sources import MicDataSource, SourceParameterError
from genki_signals.data_sources.audio_timeline import AudioTimeline
from genki_signals.data_sources.registry import check_source_params, preflight_source
from genki_signals.errors import SourceError
from genki_signals.system import System
from proc_helpers import REPO, LauncherProcess
from virtual_devices import PulseNullSink, alsa_virtual_mic, reinit_portaudio, require_sounddevice

pytestmark = pytest.mark.timeout(90)

FS = 16000
TONES = (440.0, 1000.0, 3125.0)  # 3125 Hz falls exactly on bin 200 of a 1024-point FFT


def multitone(seconds: float, fs: int = FS, amplitudes=(0.3, 0.2, 0.1)) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return sum(a * np.sin(2 * np.pi * f * t) for a, f in zip(amplitudes, TONES)).astype(
        np.float32)


class ManualClock(Clock):
    """A clock whose ``now()`` the test sets."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0
        self.follow(lambda: self.t)


def flags(overflow: bool = False):
    sd = require_sounddevice()
    return sd.CallbackFlags(sd._lib.paInputOverflow if overflow else 0)


# ---------------------------------------------------------------------- callback unit tests
def driven_mic(rate=FS, latency=0.0, **kw) -> tuple[MicDataSource, ManualClock]:
    clock = ManualClock()
    mic = MicDataSource(sample_rate=rate, clock=clock, **kw)
    mic.reset_capture(rate, latency=latency)
    return mic, clock


def test_callback_blocks_come_back_whole_in_order_with_one_timeline():
    mic, clock = driven_mic(latency=0.02, channels=2)
    rng = np.random.default_rng(0)
    sizes = [160, 7, 1, 333, 160, 0, 512]
    blocks = [rng.standard_normal((n, 2)).astype(np.float32) for n in sizes]
    reads, k = [], 0
    clock.t = 5.0
    for i, b in enumerate(blocks):
        k += len(b)
        clock.t = 5.0 + k / FS + 0.001 * (i % 3)  # callbacks run a little late, irregularly
        buf = b.copy()
        mic.callback(buf, len(b), None, flags())
        buf[:] = 99  # PortAudio reuses its buffer: the source must have copied it
        if i % 2:
            reads.append(mic.read())
    reads.append(mic.read())
    audio = np.concatenate([r["audio"] for r in reads])
    ts = np.concatenate([r["timestamp"] for r in reads])
    np.testing.assert_array_equal(audio, np.concatenate(blocks))
    assert audio.dtype == np.float32 and audio.shape == (sum(sizes), 2)
    # one anchor: the first block's last sample was captured `latency` before it arrived
    t0 = 5.0 + 160 / FS - 0.02 - 159 / FS
    np.testing.assert_allclose(ts, t0 + np.arange(sum(sizes)) / FS, rtol=0, atol=1e-9)
    empty = mic.read()
    assert empty["audio"].shape == (0, 2) and empty["timestamp"].shape == (0,)
    assert mic.stats()["audio_blocks"] == len(sizes) and mic.stats()["audio_overflows"] == 0


def test_empty_read_before_start_has_the_streams_shapes():
    frame = MicDataSource(channels=3, dtype="int16").read()
    assert frame["audio"].shape == (0, 3) and frame["audio"].dtype == np.int16
    assert MicDataSource.stream_names == ["audio"]


def test_an_overflow_is_counted_and_reanchors_the_timeline():
    mic, clock = driven_mic()
    n = 160
    for i in range(10):
        clock.t = 1.0 + (i + 1) * n / FS
        mic.callback(np.zeros((n, 1), np.float32), n, None, flags())
    first = mic.read()
    # the driver loses 0.5 s; the next block says so
    clock.t += 0.5 + n / FS
    mic.callback(np.ones((n, 1), np.float32), n, None, flags(overflow=True))
    clock.t += n / FS
    mic.callback(np.ones((n, 1), np.float32), n, None, flags())
    second = mic.read()
    stats = mic.stats()
    assert stats["audio_overflows"] == 1 and stats["clock_reanchors"] == 1
    gap = second["timestamp"][0] - first["timestamp"][-1]
    assert gap == pytest.approx(0.5 + 1 / FS, abs=1e-9)  # the lost half second shows as a gap
    np.testing.assert_allclose(np.diff(second["timestamp"]), 1 / FS, atol=1e-12)


def test_unread_audio_is_bounded_and_drops_are_counted():
    mic, clock = driven_mic(max_buffer=0.05)  # 800 samples
    for i in range(20):
        clock.t = (i + 1) * 100 / FS
        mic.callback(np.full((100, 1), i, np.float32), 100, None, flags())
    frame = mic.read()
    assert mic.stats()["audio_dropped_samples"] == 1200
    np.testing.assert_array_equal(frame["audio"][:, 0], np.repeat(np.arange(12, 20), 100))
    # timestamps still come from the sample count: the kept samples are the last 800
    np.testing.assert_allclose(frame["timestamp"], (np.arange(1200, 2000) + 1) / FS,
                               atol=1e-9)


def test_bad_parameters_name_the_field():
    for kwargs, field in ((dict(sample_rate=-1), "sample_rate"), (dict(channels=0), "channels"),
                          (dict(dtype="float16"), "dtype"), (dict(blocksize=1.5), "blocksize"),
                          (dict(device=1.5), "device"), (dict(max_buffer=0), "max_buffer")):
        with pytest.raises(SourceParameterError, match=f"'{field}'"):
            MicDataSource(**kwargs)
    problems, names = check_source_params({"type": "Microphone", "sample_rate": 48000,
                                           "device": "USB", "dtype": "int16"})
    assert problems == [] and names == ["timestamp", "audio"]
    problems, _ = check_source_params({"type": "Microphone", "channels": 0, "rate": 1})
    text = "\n".join(problems)
    assert len(problems) == 2 and "field 'params.rate': unknown field" in text
    assert "field 'params.channels': must be an integer >= 1, got 0" in text


# ---------------------------------------------------------------------- timeline unit tests
def simulate(timeline: AudioTimeline, seconds: float, drift_ppm: float, block: int = 480,
             fs: int = 48000, seed: int = 0, speed: float = 1.0):
    """Blocks of a device whose clock runs ``drift_ppm`` fast, delivered with random delays.

    Returns (timestamps of every sample, true capture time of every sample).
    """
    rng = np.random.default_rng(seed)
    true_period = 1 / (fs * (1 + drift_ppm * 1e-6)) / speed
    out, truth, k = [], [], 0
    pending = []
    while k < seconds * fs:
        capture = 10.0 + (k + np.arange(block)) * true_period
        arrival = capture[-1] + 0.002 + rng.exponential(0.002)  # late, never early
        pending.append((k, block, arrival, False))
        truth.append(capture)
        k += block
        if len(pending) == 4:  # read 4 blocks at a time
            out.append(timeline.stamp(pending))
            pending = []
    if pending:
        out.append(timeline.stamp(pending))
    return np.concatenate(out), np.concatenate(truth)


def test_timeline_corrects_drift_and_stays_continuous():
    fs = 48000
    tl = AudioTimeline(fs, latency=0.0, min_span=5.0)
    ts, truth = simulate(tl, 120, drift_ppm=80.0, fs=fs)
    assert tl.realtime is True
    assert tl.drift_ppm == pytest.approx(-80.0, abs=3.0)  # a period 80 ppm shorter
    d = np.diff(ts)
    assert np.all(d > 0) and np.all(np.abs(d * fs - 1) < 1e-4)  # no jumps when re-based
    err = ts - truth
    # the offset is set once (by the first block's delay); it must not grow afterwards
    late = err[-fs * 10:]
    early = err[fs * 10: fs * 20]
    assert abs(np.median(late) - np.median(early)) < 0.5e-3, (np.median(early),
                                                               np.median(late))
    # without correction the error would have grown by 80 ppm * 100 s = 8 ms
    assert tl.stats()["clock_realtime"] is True


def test_timeline_leaves_a_non_real_time_device_alone():
    fs = 48000
    tl = AudioTimeline(fs, min_span=5.0)
    ts, _ = simulate(tl, 30, drift_ppm=0.0, fs=fs, speed=200.0)  # 200x faster than real time
    assert tl.realtime is False and tl.measured_drift_ppm < -1000
    # sample-accurate: the sample count over the nominal rate, from the one anchor
    np.testing.assert_allclose(ts - ts[0], np.arange(len(ts)) / fs, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------- virtual ALSA microphone
@pytest.fixture
def virtmic(tmp_path, monkeypatch):
    """``make(signal, rate, dtype)`` -> the ALSA ``virtmic`` device playing ``signal``."""
    sd = require_sounddevice()

    def make(signal_, rate=FS, dtype="float32", as_default=False):
        env = alsa_virtual_mic(tmp_path / "alsa_mic", signal_, rate, dtype, as_default)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reinit_portaudio(sd)
        return "virtmic"

    yield make
    monkeypatch.undo()
    reinit_portaudio(sd)


def capture(mic: MicDataSource, samples: int, timeout: float = 20.0) -> dict[str, np.ndarray]:
    buf = DataBuffer()
    with mic:
        deadline = time.monotonic() + timeout
        while len(buf) < samples and time.monotonic() < deadline:
            buf.extend(mic.read())
            time.sleep(0.002)
    assert len(buf) >= samples, f"only {len(buf)} of {samples} samples in {timeout} s"
    return {k: v[:samples] for k, v in buf.to_dict().items()}


def test_virtual_mic_frames_match_the_file_sample_for_sample(virtmic):
    tone = multitone(4.0)
    mic = MicDataSource(device=virtmic(tone), sample_rate=FS, blocksize=160, max_buffer=120)
    out = capture(mic, 3 * FS)
    np.testing.assert_array_equal(out["audio"][:, 0], tone[: 3 * FS])  # bit-exact
    assert mic.device_name == "virtmic" and mic.sample_rate == FS
    # sample-accurate timestamps: the sample count, exactly one period apart
    ts = out["timestamp"]
    np.testing.assert_allclose(ts - ts[0], np.arange(len(ts)) / FS, rtol=0, atol=1e-9)
    stats = mic.stats()
    assert stats["audio_overflows"] == 0 and stats["audio_dropped_samples"] == 0
    assert stats["clock_realtime"] in (False, None)  # a file is not a real-time clock


def test_two_channel_int16_capture_is_exact(virtmic):
    rng = np.random.default_rng(1)
    data = rng.integers(-30000, 30000, size=(2 * FS, 2), dtype=np.int16)
    mic = MicDataSource(device=virtmic(data, dtype="int16"), sample_rate=FS, channels=2,
                        dtype="int16", max_buffer=120)
    out = capture(mic, FS)
    assert out["audio"].dtype == np.int16
    np.testing.assert_array_equal(out["audio"], data[:FS])


def test_fft_operator_finds_the_tones(virtmic):
    tone = multitone(4.0)
    mic = MicDataSource(device=virtmic(tone), sample_rate=FS, max_buffer=120)
    out = capture(mic, 3 * FS)
    fft = s.FourierTransform("audio", "audio_spectrum", window_size=1024, window_overlap=0,
                             upsample=False)
    spectra = fft(out["audio"])
    assert spectra.shape == (3 * FS // 1024, 513, 1)
    freqs = np.fft.rfftfreq(1024, 1 / FS)
    mean = spectra[:, :, 0].mean(axis=0)
    from scipy.signal import find_peaks

    index, props = find_peaks(mean, height=0)
    peaks = sorted(freqs[index[np.argsort(props["peak_heights"])[-3:]]])  # 3 highest peaks
    for found, tone_hz in zip(peaks, TONES):
        assert abs(found - tone_hz) <= FS / 1024 / 2 + 1e-9, (peaks, TONES)
    # the same windows through numpy: the operator's default Hann window, no detrend
    window = np.hanning(1025)[:-1]
    ref = np.abs(np.fft.rfft(out["audio"][:1024, 0] * window))
    np.testing.assert_allclose(spectra[0, :, 0], ref, rtol=1e-4, atol=1e-3)


def test_seed_notebook_mic_cell_with_a_spectrogram(virtmic):
    """The seed's cells 22-26 as written: System(MicDataSource()), add the FFT while running,
    plot. The virtual microphone is ALSA's default device here, at 16 kHz."""
    virtmic(multitone(60.0), as_default=True)
    mic_source = MicDataSource()
    buffer = DataBuffer(maxlen=400)
    system = System(data_source=mic_source, derived_signals=[])
    with system:
        time.sleep(0.05)
        buffer.extend(system.read())
        assert "audio" in buffer.keys()
        system.add_derived_signal(s.FourierTransform('audio', 'audio_spectrum', window_size=1024,
                                                     window_overlap=0, upsample=False))
        deadline = time.monotonic() + 10
        while "audio_spectrum" not in buffer.keys() and time.monotonic() < deadline:
            time.sleep(1 / 25)
            buffer.extend(system.read())
    assert set(buffer.keys()) >= {"audio", "audio_spectrum"}
    assert mic_source.sample_rate == FS and mic_source.device_name == "default"
    figure = buffer.plot(key='audio_spectrum', plot_type='spectrogram',
                         sample_rate=mic_source.sample_rate, window_size=1024)
    try:
        assert type(figure).__name__ == "Figure"
    finally:
        close = getattr(figure, "close", None)
        if close:
            close()


def test_missing_device_and_unsupported_rate_list_the_input_devices(virtmic):
    virtmic(multitone(1.0))
    with pytest.raises(SourceError) as err:
        MicDataSource(device="no such mic").start()
    msg = str(err.value)
    assert "no input device 'no such mic'" in msg and "'virtmic'" in msg
    with pytest.raises(SourceError, match=r"does not support 1e\+06 Hz.*\n.*virtmic"):
        MicDataSource(device="virtmic", sample_rate=1e6).start()
    problem = preflight_source({"type": "Microphone", "device": "no such mic"})
    assert "no input device 'no such mic'" in problem and "virtmic" in problem
    assert preflight_source({"type": "Microphone", "device": "virtmic",
                             "sample_rate": FS}) is None


# ---------------------------------------------------------------------- as a topology
@pytest.mark.process
@pytest.mark.timeout(120)
def test_shipped_mic_spectrogram_spec_runs_on_a_default_input(virtmic, tmp_path):
    """specs/mic-spectrogram.yaml as shipped (default input, 44.1 kHz), on a virtual default
    device: audio flows, spectra come out, the microphone's counters reach the heartbeats."""
    virtmic(multitone(60.0, 44100), rate=44100, as_default=True)
    lp = LauncherProcess(REPO / "specs" / "mic-spectrogram.yaml", tmp_path / "run")
    try:  # the launcher's environment carries XDG_CONFIG_HOME, so its nodes see the device
        lp.wait_ready(timeout=60)

        def flowing(d):
            nodes = {n["id"]: n.get("stats") or {} for n in d["nodes"]}
            mic, spectrum = nodes["mic"], nodes["spectrum"]
            ok = mic.get("audio_blocks", 0) > 0 and spectrum.get("frames_out", 0) > 0
            return (mic, spectrum) if ok else None

        mic, spectrum = lp.wait_for(flowing, timeout=30, what="audio and spectra flowing")
        assert {"audio_overflows", "audio_dropped_samples", "clock_drift_ppm",
                "clock_realtime"} <= set(mic)
        assert "spectrum/audio_spectrum" in spectrum["topics"]
        lp.interrupt()
        assert lp.wait_exit(timeout=30) == 0, lp.output
    finally:
        lp.kill_all()
    assert "[dashboard] INFO dashboard: http://127.0.0.1:" in lp.output


@pytest.mark.process
def test_launch_without_an_input_device_fails_before_starting_anything(tmp_path):
    # the shipped spec, naming a device no machine has (this one may have a microphone)
    spec = tmp_path / "mic-spectrogram.yaml"
    shipped = (REPO / "specs" / "mic-spectrogram.yaml").read_text()
    assert "device: null" in shipped
    spec.write_text(shipped.replace("device: null", "device: genki-test-missing-mic"))
    out = subprocess.run([sys.executable, "-m", "genki_signals.cli", "launch", str(spec),
                          "--run-dir", str(tmp_path / "run")], text=True, capture_output=True,
                         timeout=60)
    assert out.returncode == 1, out
    assert "node 'mic' (Microphone): the microphone: no input device " \
           "'genki-test-missing-mic'" in out.stderr
    assert "available input devices" in out.stderr and "nothing was started" in out.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- real time (PulseAudio)
@pytest.mark.slow_audio
@pytest.mark.timeout(120)
def test_timestamps_follow_the_wall_clock_on_a_real_time_device(tmp_path, monkeypatch):
    """Private PulseAudio null sink fed by pacat, recorded through ALSA's pulse device."""
    sd = require_sounddevice()
    rate, seconds = 16000, 20.0
    pulse = PulseNullSink(tmp_path / "pulse", multitone(seconds + 15, rate), rate)
    try:
        for key in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "HOME", "PULSE_SOURCE"):
            monkeypatch.setenv(key, pulse.env()[key])
        reinit_portaudio(sd)
        clock = Clock()
        mic = MicDataSource(device="pulse", sample_rate=rate, clock=clock)
        reads = []  # (clock time after the read, last timestamp, samples so far)
        total = 0
        with mic:
            deadline = time.monotonic() + 10
            while total == 0 and time.monotonic() < deadline:  # 1-2 s to the first block
                total += len(mic.read()["timestamp"])
                time.sleep(0.01)
            assert total, "no audio from PulseAudio within 10 s"
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                frame = mic.read()
                now = clock.now()
                if len(frame["timestamp"]):
                    total += len(frame["timestamp"])
                    reads.append((now, frame["timestamp"][-1], total))
                    last_audio = frame["audio"]
                time.sleep(0.01)
        stats = mic.stats()
    finally:
        monkeypatch.undo()
        reinit_portaudio(sd)
        pulse.stop()
    now, last, count = map(np.array, zip(*reads))
    assert stats["audio_overflows"] == 0, stats
    # rate: the stamps advance as fast as the wall clock (over the whole run), within issue
    # 13's 0.1 %. Measured as the slope of a least-squares line of stamp against read time
    # over every read. The two end reads alone (as before) put each one's delivery and
    # scheduling delay straight into the figure: 1.06e-3, seen once under load, is only 21 ms
    # between two reads' delays over 20 s. The fit averages that jitter over about a thousand
    # reads, while a timeline running 0.1 % fast or slow still shows in full.
    span = now[-1] - now[0]
    rate_error = np.polyfit(now - now[0], last - last[0], 1)[0] - 1
    ends_error = (last[-1] - last[0]) / span - 1  # printed: the old two-read figure
    assert abs(rate_error) <= 1e-3, (rate_error, stats)
    # no drift growth: a sample is read some (jittery) time after its timestamp; the least of
    # that delay over 4 s stays put from the first seconds to the last. The PulseAudio -> ALSA
    # bridge itself is not a steady clock: over 10 s windows its delivery rate wandered from
    # -1000 to +540 ppm (buffer fill changing by ~8 ms over 40 s), hence 10 ms; a drift
    # correction gone wrong (the timeline off by 0.1%) would add 20 ms over these 20 s. The
    # correction itself is checked to the ppm in test_timeline_corrects_drift_and_stays_continuous.
    delay = now - last
    first = delay[now < now[0] + 4].min()
    final = delay[now > now[-1] - 4].min()
    print(f"rate error {rate_error * 1e6:+.1f} ppm over {span:.1f} s ({len(now)} reads; two "
          f"end reads alone: {ends_error * 1e6:+.1f} ppm), least read delay "
          f"{first * 1e3:.2f} ms first 4 s, {final * 1e3:.2f} ms last 4 s; {stats}")
    assert abs(final - first) < 10e-3, (first, final, stats)
    assert np.all(np.diff(last) > 0)
    assert np.sqrt(np.mean(last_audio.astype(float) ** 2)) > 0.05  # pacat was playing
