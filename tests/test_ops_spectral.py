"""FourierTransform: streaming contract, independent FFT reference, peaks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.testing.streaming import assert_streams_like_batch


def reference(x, W, overlap, window="hann", detrend=None):
    """Spectra of x[e-W+1:e+1] for every window end e, built by explicit slicing."""
    hop = W - overlap
    ends = np.arange(W - 1, len(x), hop)
    w = scipy.signal.get_window(tuple(window) if isinstance(window, list) else window, W)
    w = w.reshape((W,) + (1,) * (x.ndim - 1))
    spectra = []
    for e in ends:
        frame = x[e - W + 1:e + 1]
        if detrend is not None:
            frame = scipy.signal.detrend(frame, axis=0, type=detrend)
        spectra.append(np.abs(np.fft.rfft(frame * w, axis=0)))
    shape = (0, W // 2 + 1) + x.shape[1:]
    return (np.array(spectra) if spectra else np.empty(shape)), ends


def upsampled(x, spectra, ends):
    """Each sample gets the latest spectrum whose window ended at or before it; zeros before."""
    out = np.zeros((len(x),) + spectra.shape[1:])
    for j, e in enumerate(ends):
        out[e:] = spectra[j]
    return out


@pytest.mark.parametrize("shape", [(300,), (300, 3), (300, 2, 2)])
@pytest.mark.parametrize("W, overlap", [(16, 8), (16, 0), (16, 15), (7, 2)])
@pytest.mark.parametrize("detrend", [None, "constant", "linear"])
def test_new_timeline_matches_reference(shape, W, overlap, detrend):
    x = np.random.default_rng(1).normal(size=shape) + np.linspace(0, 5, shape[0]).reshape(
        (-1,) + (1,) * (len(shape) - 1))
    expected, ends = reference(x, W, overlap, detrend=detrend)
    assert_streams_like_batch(
        lambda: s.FourierTransform("x", name="spec", window_size=W, window_overlap=overlap,
                                   detrend=detrend, upsample=False),
        [x], expected, expected_emitted=ends)


@pytest.mark.parametrize("shape", [(200,), (200, 3)])
@pytest.mark.parametrize("window", ["hann", "boxcar", ["kaiser", 8.0]])
def test_upsampled_matches_reference(shape, window):
    x = np.random.default_rng(2).normal(size=shape)
    spectra, ends = reference(x, 16, 6, window=window)
    out = assert_streams_like_batch(
        lambda: s.FourierTransform("x", window_size=16, window_overlap=6, window=window),
        [x], upsampled(x, spectra, ends))
    assert out.shape == (200, 9) + shape[1:]
    assert not out[:15].any()  # zeros until the first window completes


def test_default_size_and_long_input():
    # 256/128 on more samples than the carry buffer holds (exercises the concatenating path).
    x = np.random.default_rng(3).normal(size=(1600, 2))
    expected, ends = reference(x, 256, 128)
    assert_streams_like_batch(lambda: s.FourierTransform("x", upsample=False), [x], expected,
                              expected_emitted=ends)


def test_two_sines_peak_at_their_bins():
    fs, W = 100.0, 256
    t = np.arange(1000) / fs
    x = np.sin(2 * np.pi * 3 * t) + 0.8 * np.sin(2 * np.pi * 7 * t)
    op = s.FourierTransform("wave_with_noise", name="wave_spectrum", window_size=W,
                            window_overlap=128)
    spectrum = op(x)[-1]
    freqs = op.frequencies(fs)
    np.testing.assert_allclose(freqs, np.fft.rfftfreq(W, 1 / fs))
    peaks = set(np.argsort(spectrum)[-2:].tolist())
    assert peaks == {int(np.argmin(abs(freqs - 3))), int(np.argmin(abs(freqs - 7)))}


def test_seed_usages_and_timeline_flag():
    audio = s.FourierTransform("audio", "audio_spectrum", window_size=1024, window_overlap=0,
                               upsample=False)
    assert audio.name == "audio_spectrum" and audio.new_timeline
    y = audio(np.zeros(3000))
    assert y.shape == (2, 513) and audio.emitted.tolist() == [1023, 2047]
    assert audio.emitted.dtype == np.intp
    up = s.FourierTransform("wave_with_noise", name="wave_spectrum")
    assert not up.new_timeline and up.to_dict()["window_size"] == 256


def test_empty_and_single_sample_chunks():
    op = s.FourierTransform("x", window_size=4, window_overlap=2, upsample=False)
    assert op(np.empty((0, 3))).shape == (0, 3, 3) and len(op.emitted) == 0
    rows = [op(np.ones((1, 3))) for _ in range(6)]
    assert [len(r) for r in rows] == [0, 0, 0, 1, 0, 1]
    assert op(np.empty((0, 3))).shape == (0, 3, 3) and op.emitted.size == 0
    up = s.FourierTransform("x", window_size=4, window_overlap=2)
    assert up(np.empty(0)).shape == (0, 3)


def test_fft_only_when_a_window_completes(monkeypatch):
    op = s.FourierTransform("x")  # 256 / 128
    calls = []
    real = np.fft.rfft
    monkeypatch.setattr(np.fft, "rfft", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.random.default_rng(4).normal(size=1024)
    for i in range(0, 1024, 4):
        op(x[i:i + 4])
    assert len(calls) == len(range(255, 1024, 128))


@pytest.mark.parametrize("kwargs, match", [
    ({"window_overlap": 256}, r"FourierTransform 'spec': field 'window_overlap' must be < "
                              r"window_size \(256\), got 256"),
    ({"window_overlap": -1}, r"field 'window_overlap' must be >= 0"),
    ({"window_size": 1}, r"field 'window_size' must be >= 2"),
    ({"window_size": 256.0}, r"field 'window_size' must be an integer"),
    ({"window": "nope"}, r"field 'window' is not a valid scipy.signal.get_window window"),
    ({"window": 3}, r"field 'window' must be a scipy.signal.get_window name"),
    ({"detrend": "quadratic"}, r"field 'detrend' must be one of"),
    ({"upsample": 1}, r"field 'upsample' must be true or false"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(OperatorError, match=match):
        s.FourierTransform("x", name="spec", **kwargs)


def test_bad_input():
    op = s.FourierTransform("x", name="spec", window_size=8, window_overlap=4)
    op(np.zeros((3, 2)))
    with pytest.raises(OperatorError, match=r"FourierTransform 'spec': input 'x' must keep the "
                                            r"shape of its earlier chunks"):
        op(np.zeros((3, 3)))
    with pytest.raises(OperatorError, match=r"input 'x' must be real numbers"):
        s.FourierTransform("x", name="spec")(np.zeros(4, dtype=complex))
    with pytest.raises(OperatorError, match=r"field 'sample_rate' must be > 0"):
        op.frequencies(0)
