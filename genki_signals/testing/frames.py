"""Frame builders for tests and benchmarks: synthetic frames with evenly spaced timestamps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genki_signals.frames import Frame


def frames(n_frames: int = 10, size: int = 4, rate: float = 100.0, t0: float = 0.0,
           seed: int = 0, keys: Sequence[str] = ("x",)) -> list[Frame]:
    """``n_frames`` consecutive frames of ``size`` samples each, sampled at ``rate`` Hz from
    ``t0``, with one standard-normal stream per name in ``keys`` (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_frames):
        ts = t0 + (i * size + np.arange(size)) / rate
        out.append({"timestamp": ts, **{k: rng.normal(size=size) for k in keys}})
    return out
