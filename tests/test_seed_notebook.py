"""Acceptance: the seed notebook's non-hardware cells run, and the spectrum peaks at 3 and 7 Hz."""

import runpy
from pathlib import Path

import numpy as np
import pytest

from genki_signals.demo import spectrum_peaks


@pytest.fixture(scope="module")
def results():
    ns = runpy.run_path(str(Path(__file__).with_name("seed_notebook_cells.py")))
    return ns["RESULTS"]


@pytest.mark.timeout(60)
def test_sampler_cells_fill_the_buffer(results):
    assert results["sine_keys"] == {"timestamp", "sine"}
    buf = results["sine_buffer"]
    ts = buf["timestamp"]
    assert 60 <= len(ts) <= 400  # ~1 s at 100 Hz
    np.testing.assert_allclose(np.diff(ts), 0.01, atol=1e-9)


@pytest.mark.timeout(60)
def test_system_cells_compute_every_derived_signal(results):
    assert results["system_keys"] == {"timestamp", "sine_0", "sine_1", "noise", "composite_sine",
                                      "wave_with_noise", "wave_spectrum", "sample_rate",
                                      "smooth_sample_rate"}
    buf = results["system_buffer"]
    np.testing.assert_allclose(buf["composite_sine"], buf["sine_0"] + buf["sine_1"])
    np.testing.assert_allclose(buf["wave_with_noise"], buf["composite_sine"] + buf["noise"])
    np.testing.assert_allclose(buf["smooth_sample_rate"][-100:], 100.0, rtol=1e-6)


@pytest.mark.timeout(60)
def test_spectrum_peaks_at_3_and_7_hz(results):
    peaks = spectrum_peaks(results["spectrum"], sample_rate=100, window_size=256)
    # bins are 100/256 = 0.39 Hz wide: the nearest bins to 3 and 7 Hz
    assert peaks == pytest.approx([3.0, 7.0], abs=100 / 256)


@pytest.mark.timeout(60)
def test_add_derived_signal_to_running_system(results):
    assert "sine_spectrum" not in results["keys_before_add"]
    assert "sine_spectrum" in results["keys_after_add"]
    slow = results["slow_spectrum_timestamps"]
    main = results["main_timestamps"]
    assert len(slow) >= 2 and len(slow) < len(main) / 8
    assert np.isin(slow, main).all()  # stamped with the times of real samples
