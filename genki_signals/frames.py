"""Frames: the unit of data everywhere (source reads, System reads, bus messages, buffers).

A *frame* is a ``dict[str, np.ndarray]`` holding a batch of samples: every array is time-first,
``(n, ...)``, and the frame always holds ``timestamp``, float64 seconds on the topology clock.

Streams at another rate. An operator with a new timeline (a windowed FFT without upsampling)
produces fewer rows than its input. Such a key ``K`` never shares ``timestamp`` by accident: the
frame carries its own timestamps under ``"K.timestamp"``. The rule is therefore simple and
checkable: a key either has as many rows as ``timestamp``, or has a ``K.timestamp`` companion
with as many rows as itself. Stream names cannot contain ``.``, so companions never clash with
user names. ``split_timelines`` turns such a frame into one single-rate frame per timeline (what
goes on the bus); ``DataBuffer`` keeps each timeline's timestamps.

On the bus, each timeline of a node travels on its own *topic*, ``<node>/<timeline>``
(``Topic``); the main timeline is called ``main`` there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from genki_signals.errors import GenkiError

Frame = dict[str, np.ndarray]

TIMESTAMP = "timestamp"
COMPANION_SUFFIX = ".timestamp"


def companion(key: str) -> str:
    """Name of the timestamps of ``key`` when it lives on its own timeline."""
    return key + COMPANION_SUFFIX


def is_companion(key: str) -> bool:
    """True for ``K.timestamp``: the timestamps of ``K``, not a stream of its own."""
    return key.endswith(COMPANION_SUFFIX)


MAIN_TIMELINE = "main"
"""The name of a node's main timeline on the bus (``split_timelines`` keys it ``""``)."""


@dataclass(frozen=True)
class Topic:
    """Where one timeline of a node travels on the bus: ``<node>/<timeline>``.

    The one place that formats (``str(topic)``) and parses (``Topic.parse``) the convention.
    A node id never contains ``/``; the timeline is everything after the first ``/``.
    """

    node: str
    timeline: str = MAIN_TIMELINE

    def __post_init__(self) -> None:
        if "/" in self.node:
            raise ValueError(f"a topic's node id cannot contain '/', got {self.node!r}")
        if not self.timeline:  # the main timeline is keyed "" in a split frame
            object.__setattr__(self, "timeline", MAIN_TIMELINE)

    def __str__(self) -> str:
        return f"{self.node}/{self.timeline}"

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # a node sees a handful of topics, each very often
    def parse(text: str) -> Topic:
        """``"node/timeline"`` -> ``Topic``; a missing or empty timeline is ``main``."""
        node, _, timeline = text.partition("/")
        return Topic(node, timeline or MAIN_TIMELINE)


def frame_length(frame: Mapping[str, np.ndarray]) -> int:
    """Number of samples on the frame's main timeline (0 for an empty frame)."""
    ts = frame.get(TIMESTAMP)
    return 0 if ts is None else len(ts)


def timestamps_of(frame: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """The timestamps that belong to ``key`` in ``frame``."""
    own = frame.get(companion(key))
    return own if own is not None else frame[TIMESTAMP]


def validate_frame(frame: Mapping[str, np.ndarray], where: str = "frame") -> None:
    """Raise ``GenkiError`` naming the key when a frame breaks the conventions above."""
    if TIMESTAMP not in frame:
        raise GenkiError(f"{where}: missing '{TIMESTAMP}' (keys: {sorted(frame)})")
    n = len(frame[TIMESTAMP])
    for key, value in frame.items():
        if is_companion(key):
            base = key[: -len(COMPANION_SUFFIX)]
            if base not in frame:
                raise GenkiError(f"{where}: '{key}' has no stream '{base}'")
            continue
        arr = np.asarray(value)
        if arr.ndim == 0:
            raise GenkiError(f"{where}: '{key}' must be time-first (n, ...), got a scalar")
        want = len(frame[companion(key)]) if companion(key) in frame else n
        if arr.shape[0] != want:
            raise GenkiError(
                f"{where}: '{key}' has {arr.shape[0]} samples but its timestamps have {want}"
            )


def split_timelines(frame: Mapping[str, np.ndarray]) -> dict[str, Frame]:
    """Split a frame into single-rate frames, keyed by timeline.

    The main timeline is keyed ``""``; each key ``K`` with a companion gets its own frame keyed
    ``K`` holding ``timestamp`` and ``K``. Empty timelines are omitted.
    """
    out: dict[str, Frame] = {}
    main: Frame = {}
    for key, value in frame.items():
        if is_companion(key):
            continue
        if companion(key) in frame:
            ts = frame[companion(key)]
            if len(ts):
                out[key] = {TIMESTAMP: ts, key: value}
        elif key != TIMESTAMP:
            main[key] = value
    if TIMESTAMP in frame and len(frame[TIMESTAMP]):
        out[""] = {TIMESTAMP: frame[TIMESTAMP], **main}
    return out


def concat_frames(frames: list[Mapping[str, np.ndarray]]) -> Frame:
    """Concatenate frames with the same keys along time (empty list -> empty frame)."""
    frames = [f for f in frames if f]
    if not frames:
        return {}
    if len(frames) == 1:
        return dict(frames[0])
    keys = frames[0].keys()
    return {k: np.concatenate([f[k] for f in frames]) for k in keys}
