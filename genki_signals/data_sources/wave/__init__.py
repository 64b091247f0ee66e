"""The Genki Wave ring over Bluetooth LE (needs the ``hardware`` extra: bleak, bumble, cobs).

* ``protocol``: message layouts, the COBS frame decoder and our encoder;
* ``source``: ``WaveDataSource`` (bleak);
* ``params``: ``WaveParams``, what a spec's ``type: wave`` source may say (checked without a
  radio) and the pre-launch check for a Bluetooth adapter;
* ``bumble_backend``: a bleak client backend over bumble (no adapter needed);
* ``virtual``: ``VirtualRing``, a virtual ring for tests and benchmarks.

Names are imported lazily, so checking a spec imports neither bleak nor bumble.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"WaveDataSource": "source", "WaveParams": "params", "VirtualRing": "virtual"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"genki_signals.data_sources.wave.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'genki_signals.data_sources.wave' has no attribute {name!r}")
