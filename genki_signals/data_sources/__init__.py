"""In-process data sources.

``Source`` is the interface (start / read frames / stop); ``Sampler`` samples functions of time
(``SineWave``, ``RandomNoise``, a plain ``def f(t)``, input readers) at a fixed rate. Device
sources (mouse, keyboard, microphone, Wave ring, replay) live in their own modules and are
exported here as they are added.
"""

from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.data_sources.sampler import Sampler
from genki_signals.data_sources.synthetic import RandomNoise, SineWave, SquareWave, TriangleWave
# Device and file sources are imported when first named (``genki_signals.data_sources.X``), not
# with the package: the spec check and the node of a demo spec need none of them.
_LAZY = {
    "GestureScript": "genki_signals.data_sources.trajectory",
    "ReplaySource": "genki_signals.data_sources.replay",
    "LSLDataSource": "genki_signals.data_sources.lsl",  # pylsl is imported at start()
    "KeyboardDataSource": "genki_signals.data_sources.keyboard",
    "MicDataSource": "genki_signals.data_sources.microphone",
    "MouseDataSource": "genki_signals.data_sources.mouse",
    "WaveDataSource": "genki_signals.data_sources.wave.source",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
