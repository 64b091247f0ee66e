"""In-process data sources.

``Source`` is the interface (start / read frames / stop); ``Sampler`` samples functions of time
(``SineWave``, ``RandomNoise``, a plain ``def f(t)``, input readers) at a fixed rate. Device
sources (mouse, keyboard, microphone, Wave ring, replay) live in their own modules and are
exported here as they are added.
"""

from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.data_sources.sampler import Sampler
from genki_signals.data_sources.synthetic import RandomNoise, SineWave, SquareWave, TriangleWave
from genki_signals.data_sources.trajectory import GestureScript
from genki_signals.data_sources.replay import ReplaySource
from genki_signals.data_sources.lsl import LSLDataSource  # pylsl is imported at start()

# Device sources: importing them touches no device (pynput and sounddevice load in start()).
from genki_signals.data_sources.keyboard import KeyboardDataSource
from genki_signals.data_sources.microphone import MicDataSource
from genki_signals.data_sources.mouse import MouseDataSource

from genki_signals.data_sources.wave.source import WaveDataSource

__all__ = [
    "Source",
    "SourceParameterError",
    "Sampler",
    "SineWave",
    "SquareWave",
    "TriangleWave",
    "RandomNoise",
    "GestureScript",
    "ReplaySource",
    "LSLDataSource",

    "MouseDataSource",
    "KeyboardDataSource",
    "MicDataSource",

    "WaveDataSource",
]
