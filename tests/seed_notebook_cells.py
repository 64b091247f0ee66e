"""The seed notebook's non-hardware cells, in order, with the plots left out.

Source: ../shared/seed/genki-signals-notebook.txt. Changes from the notebook, and only these:
`os.chdir`, `%autoreload`, `buffer.plot(...)` and the ipywidgets sliders are left out (the plot
cells run as a real notebook in tests/test_plot_notebook.py; a slider is replaced by setting the
same attribute), hardware sources
(mouse, keyboard, microphone, Wave ring, the ONNX model) are left out, and each `while True`
polling thread is bounded by a few seconds so the script ends. The microphone cell that adds a
derived signal to a running system runs on the synthetic source instead.

Run as a script (`python tests/seed_notebook_cells.py`) it prints what the notebook would show;
tests/test_seed_notebook.py runs it and checks the results it leaves in `RESULTS`.
"""

import time
from threading import Thread

import numpy as np

RUN_SECONDS = 3.2  # > 2.56 s: the 256-sample FFT window must fill at 100 Hz
RESULTS: dict = {}

# In [2]
from genki_signals.buffers import DataBuffer

buffer = DataBuffer(maxlen=400)

# In [3]
from genki_signals.data_sources import Sampler


def make_sine_wave(freq, amplitude, phase):
    def f(t):
        return amplitude * np.sin(freq * 2 * np.pi * t + phase)
    return f


sine_wave = make_sine_wave(3, 5, 0)
sine_sampler = Sampler(sources={'sine': sine_wave}, sample_rate=100)

# In [4]
from genki_signals.data_sources import SineWave

buffer = DataBuffer(maxlen=400)
sine_wave = SineWave(frequency=3, amplitude=5, phase=0)
source = Sampler(sources={'sine': sine_wave}, sample_rate=100)


def run_source():
    source.start()
    deadline = time.monotonic() + 1.0
    while True:
        buffer.extend(source.read())
        time.sleep(1 / 25)
        if not source.is_active or time.monotonic() > deadline:
            return


t = Thread(target=run_source)
t.start()
t.join(timeout=0.5)

# In [5]
RESULTS["sine_keys"] = set(buffer.keys())

# In [7]: the slider callback, called directly
sine_wave.amplitude = 2.5
sine_wave.frequency = 5

# In [8]
t.join()
source.stop()
RESULTS["sine_buffer"] = buffer.to_dict()

# In [29]
import genki_signals.signals as s

derived_signals = [
    s.Sum('sine_0', 'sine_1', name='composite_sine'),
    s.Sum('composite_sine', 'noise', name='wave_with_noise'),
    s.FourierTransform('wave_with_noise', name='wave_spectrum', window_size=256, window_overlap=128),
    s.SampleRate('timestamp', name='sample_rate'),
    s.MovingAverage('sample_rate', length=10, name='smooth_sample_rate'),
]

# In [14]
from genki_signals.system import System
from genki_signals.data_sources import RandomNoise

sine_1 = SineWave(frequency=3, amplitude=5, phase=0)
sine_2 = SineWave(frequency=7, amplitude=2, phase=0)
noise_source = RandomNoise()

data_source = Sampler({
    'sine_0': sine_1,
    'sine_1': sine_2,
    'noise': noise_source
}, sample_rate=100)

buffer = DataBuffer(maxlen=400)

system = System(
    data_source=data_source,
    derived_signals=derived_signals
)

# In [15]


def run_system():
    system.start()
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        buffer.extend(system.read())
        time.sleep(1 / 25)
        if not system.is_active or time.monotonic() > deadline:
            return


t = Thread(target=run_system)
t.start()

# In [18]: the noise slider, set directly
noise_source.amplitude = 0.5

t.join()
# In [16]
RESULTS["system_keys"] = set(buffer.keys())
# In [20]: the spectrogram cell; peaks at 3 and 7 Hz expected
RESULTS["spectrum"] = np.array(buffer['wave_spectrum'][-1])
# In [21]
system.stop()
RESULTS["system_buffer"] = buffer.to_dict()

# In [22]-[27], on the synthetic source: add a derived signal to a running system
buffer = DataBuffer(maxlen=400)
system = System(data_source=Sampler({'sine_0': SineWave(frequency=3, amplitude=5, phase=0)},
                                    sample_rate=100),
                derived_signals=[])


def run_system_2():
    system.start()
    deadline = time.monotonic() + 1.5
    while True:
        time.sleep(1 / 25)
        buffer.extend(system.read())
        if not system.is_active or time.monotonic() > deadline:
            return


t = Thread(target=run_system_2)
t.start()
time.sleep(0.3)
RESULTS["keys_before_add"] = set(buffer.keys())
# In [24]
system.add_derived_signal(s.FourierTransform('sine_0', 'sine_spectrum', window_size=32,
                                             window_overlap=0, upsample=False))
t.join()
# In [25]
RESULTS["keys_after_add"] = set(buffer.keys())
RESULTS["slow_spectrum_timestamps"] = np.array(buffer.timestamps('sine_spectrum'))
RESULTS["main_timestamps"] = np.array(buffer['timestamp'])
# In [27]
system.stop()

if __name__ == "__main__":
    from genki_signals.demo import spectrum_peaks
    print("keys:", sorted(RESULTS["system_keys"]))
    print("spectrum peaks (Hz):", spectrum_peaks(RESULTS["spectrum"], 100, 256))
    print("keys after add_derived_signal:", sorted(RESULTS["keys_after_add"]))
