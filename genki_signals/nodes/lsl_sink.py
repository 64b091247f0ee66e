"""The ``lsl`` sink: publish a topology's streams as Lab Streaming Layer outlets.

In a spec::

    - id: to_lsl
      kind: sink
      inputs: [signals]
      params:
        type: lsl
        keys: [sine_0, sine_1]      # the channels (default: every numeric stream of the topic)
        name: GenkiSines            # LSL stream name (default: the topic, e.g. 'signals/main')
        content_type: EEG           # LSL content type (default 'genki')
        nominal_rate: 100           # default: measured from the first frame (0: irregular)
        format: float32             # default: from the streams' dtypes

Events (``kind: event`` frames, e.g. ``inference/events``) become an LSL marker stream per
topic: content type ``Markers``, irregular rate, one string channel holding each event's fields
as JSON (``{"label": "circle", "score": 0.93}``), stamped like samples.

One outlet per input topic. Its channels are the chosen streams in order, an N-d stream giving
one channel per element (labels ``key[i]``); the stream's description holds the channel labels
(``desc/channels/channel/label``, the XDF convention LabRecorder stores) and the genki topic.
Timestamps are moved from the topology clock onto LSL's clock (``local_clock``), per sample, so
any inlet's ``time_correction`` works as usual. The ``source_id``
(``genki/<topology>/<node>/<topic>``) is the same across restarts, so LSL inlets recover when
the node restarts. Needs the ``lsl`` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genki_signals.clock import Clock, default_clock
from genki_signals.frames import TIMESTAMP, Topic, frame_length, is_companion
from genki_signals.nodes.kinds.sink_lsl import LSLSinkParams
from genki_signals.nodes.logic import NodeLogic, Output

__all__ = ["LSLSinkParams", "LSLOutletSinkLogic"]

log = logging.getLogger(__name__)

_NUMPY_OF = {"float32": np.float32, "double64": np.float64, "int32": np.int32,
             "int16": np.int16, "int8": np.int8, "int64": np.int64}


def choose_format(dtypes: Sequence[np.dtype]) -> str:
    """The narrowest LSL format holding every dtype exactly (double64 when they mix)."""
    kinds = {np.dtype(d) for d in dtypes}
    for name in ("float32", "int32", "int16", "int8", "int64"):
        if kinds == {np.dtype(_NUMPY_OF[name])}:
            return name
    return "double64"


def measured_rate(timestamps: np.ndarray) -> float:
    """The nominal rate a frame's timestamps show (median interval, 6 significant digits)."""
    dt = np.diff(np.asarray(timestamps, dtype=np.float64))
    dt = dt[dt > 0]
    if not len(dt):
        return 0.0
    return float(f"{1.0 / float(np.median(dt)):.6g}")


class _Outlet:
    """One LSL outlet for one topic: its keys, channel layout and dtype."""

    def __init__(self, outlet: Any, keys: list[str], dtype: np.dtype, channels: int) -> None:
        self.outlet, self.keys, self.dtype, self.channels = outlet, keys, dtype, channels


class LSLOutletSinkLogic(NodeLogic):
    """Pushes every received sample into an LSL outlet per topic (see the module doc)."""

    input_mode = "arrival"  # each topic is its own outlet: no need to order across inputs

    def __init__(self, params: LSLSinkParams | None = None, *, source_id_prefix: str = "genki",
                 clock: Clock | None = None) -> None:
        params = params if params is not None else LSLSinkParams(type="lsl")
        self.params = params
        self.source_id_prefix = params.source_id or source_id_prefix
        self.clock = clock if clock is not None else default_clock()
        self.outlets: dict[str, _Outlet] = {}
        self.markers: dict[str, Any] = {}  # topic -> string outlet of its events
        self.samples = 0
        self.events = 0
        self._pylsl: Any = None

    def start(self) -> None:
        from genki_signals.data_sources.lsl import import_pylsl

        self._pylsl = import_pylsl()

    def _keys_of(self, frame: Mapping[str, np.ndarray]) -> list[str]:
        n = frame_length(frame)
        if self.params.keys is not None:
            return [k for k in self.params.keys if k in frame]
        return [k for k, v in frame.items() if k != TIMESTAMP and not is_companion(k)
                and len(v) == n and np.asarray(v).dtype.kind in "fiub"]

    def _open(self, topic: str, frame: Mapping[str, np.ndarray]) -> _Outlet | None:
        pylsl = self._pylsl
        keys = self._keys_of(frame)
        if not keys:
            log.warning("topic %s has none of the keys to publish (%s); not published", topic,
                        ", ".join(self.params.keys or ["numeric streams"]))
            return None
        labels: list[str] = []
        for k in keys:
            shape = np.shape(frame[k])[1:]
            labels += [k] if not shape else [f"{k}[{','.join(map(str, i))}]"
                                             for i in np.ndindex(*shape)]
        fmt = self.params.format or choose_format([np.asarray(frame[k]).dtype for k in keys])
        rate = self.params.nominal_rate
        if rate is None:
            rate = measured_rate(frame[TIMESTAMP])
        name = self.params.name or topic
        if self.params.name and not topic.endswith("/main"):
            name = f"{self.params.name}/{topic.split('/', 1)[-1]}"
        info = pylsl.StreamInfo(name, self.params.content_type, len(labels), rate,
                                getattr(pylsl, f"cf_{fmt}"),
                                f"{self.source_id_prefix}/{topic}")
        desc = info.desc()
        desc.append_child_value("genki_topic", topic)
        channels = desc.append_child("channels")
        for label in labels:
            channels.append_child("channel").append_child_value("label", label)
        outlet = pylsl.StreamOutlet(info)
        log.info("LSL outlet %r: %d channels (%s), %s, %g Hz", name, len(labels),
                 ", ".join(labels), fmt, rate)
        return _Outlet(outlet, keys, np.dtype(_NUMPY_OF[fmt]), len(labels))

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        input_name = str(topic)  # "<node>/<timeline>": the outlet's (channel's) name
        n = frame_length(frame)
        if n == 0:
            return []
        if input_name not in self.outlets:
            self.outlets[input_name] = self._open(input_name, frame)
        out = self.outlets[input_name]
        if out is None or any(k not in frame for k in out.keys):
            return []
        data = np.concatenate([np.asarray(frame[k]).reshape(n, -1) for k in out.keys], axis=1)
        from genki_signals.data_sources.lsl import lsl_to_topology_offset

        offset = lsl_to_topology_offset(self.clock, self._pylsl.local_clock)
        stamps = np.asarray(frame[TIMESTAMP], dtype=np.float64) - offset
        out.outlet.push_chunk(np.ascontiguousarray(data, dtype=out.dtype), stamps.tolist())
        self.samples += n
        return []

    def on_event(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        input_name = str(topic)  # "<node>/<timeline>": the outlet's (channel's) name
        n = frame_length(frame)
        if n == 0:
            return []
        outlet = self.markers.get(input_name)
        if outlet is None:
            pylsl = self._pylsl
            name = self.params.name or input_name
            if self.params.name:
                name = f"{self.params.name}/{input_name.split('/', 1)[-1]}"
            info = pylsl.StreamInfo(name, "Markers", 1, 0.0, pylsl.cf_string,
                                    f"{self.source_id_prefix}/{input_name}")
            info.desc().append_child_value("genki_topic", input_name)
            info.desc().append_child("channels").append_child("channel") \
                .append_child_value("label", "event")
            outlet = self.markers[input_name] = pylsl.StreamOutlet(info)
        from genki_signals.data_sources.lsl import lsl_to_topology_offset
        from genki_signals.record.foxglove import event_json

        offset = lsl_to_topology_offset(self.clock, self._pylsl.local_clock)
        stamps = np.asarray(frame[TIMESTAMP], dtype=np.float64) - offset
        for i in range(n):
            outlet.push_sample([event_json(frame, i)], float(stamps[i]))
        self.events += n
        return []

    def stats(self) -> dict[str, Any]:
        return {"samples": self.samples, "events": self.events,
                "lsl_outlets": len([o for o in self.outlets.values() if o is not None])
                + len(self.markers)}

    def close(self) -> None:
        self.outlets.clear()  # pylsl destroys each outlet with its object
        self.markers.clear()
