"""Frames as Foxglove-decodable JSON messages, and ``genki export run.mcap --foxglove out.mcap``.

Our recordings store bus messages as they crossed the bus (encoding ``genki-bus/1``), which no
viewer decodes. This module turns frames into what Foxglove (and the ``mcap`` package's decoded
reader, and any JSON consumer) understands:

* one **channel per bus topic**, named ``/<topic>`` (``/signals/main``), message encoding
  ``json`` with a **JSON Schema** (schema encoding ``jsonschema``) describing every field;
* **one message per sample**: ``{"timestamp": 1.23, "sine_0": 0.5, "wave_spectrum": [...]}`` so
  Foxglove's Plot panel plots ``/signals/main.sine_0`` against log time; scalars are numbers,
  N-d streams (spectra, vectors, quaternions) nested arrays, bytes strings, NaN/inf ``null``
  (JSON has no NaN; the schema allows ``null`` for float fields);
* **events** (``kind: event`` frames, e.g. ``inference/events``) on their own topic, one message
  per event; a field on its own timeline (``K.timestamp``) on ``/<topic>/<K>``;
* **log time = publish time = the sample's topology timestamp** in Unix nanoseconds
  (``wall_anchor_ns + timestamp * 1e9``), not its arrival time, so plots show when a sample was
  taken. ``timestamp`` stays in the message, in topology seconds.

A frame whose fields change (a stream appears or changes shape) gets a new channel on the same
topic with its own schema, so every message validates against its channel's schema.
``FrameEncoder`` is shared with the live ``foxglove`` sink (``genki_signals.foxglove``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genki_signals.frames import COMPANION_SUFFIX, TIMESTAMP, Frame
from genki_signals.record.format import META_RECORDING

__all__ = ["FrameEncoder", "event_json", "field_schema", "frame_schema", "foxglove_topic",
           "export_foxglove", "FoxgloveExport", "META_FOXGLOVE"]

META_FOXGLOVE = "genki.foxglove"
SCHEMA_ENCODING = "jsonschema"
MESSAGE_ENCODING = "json"

Layout = tuple[tuple[str, str, tuple[int, ...]], ...]  # (field, dtype kind+size, sample shape)


def foxglove_topic(bus_topic: str, kind: str = "data", field: str | None = None) -> str:
    """``signals/main`` -> ``/signals/main``; events of a non-``events`` topic go to
    ``/<topic>/events``; a field on its own timeline to ``/<topic>/<field>``."""
    topic = "/" + bus_topic.strip("/")
    if field is not None:
        return f"{topic}/{field}"
    if kind == "event" and not topic.endswith("/events"):
        return f"{topic}/events"
    return topic


def _scalar_schema(dtype: np.dtype) -> dict[str, Any]:
    if dtype.kind == "b":
        return {"type": "boolean"}
    if dtype.kind in "iu":
        return {"type": "integer"}
    if dtype.kind == "f":
        return {"type": ["number", "null"]}  # null: NaN or inf (JSON has neither)
    if dtype.kind in "SUO":
        return {"type": "string"}
    raise ValueError(f"dtype {dtype} has no JSON form")


def field_schema(dtype: np.dtype, shape: tuple[int, ...]) -> dict[str, Any]:
    """The JSON Schema of one sample of a field: a scalar, or nested arrays of ``shape``."""
    schema = _scalar_schema(np.dtype(dtype))
    for size in reversed(shape):
        schema = {"type": "array", "items": schema, "minItems": size, "maxItems": size}
    return schema


def frame_schema(title: str, layout: Layout) -> dict[str, Any]:
    """The JSON Schema of one message (one sample) of a channel."""
    props: dict[str, Any] = {TIMESTAMP: {"type": "number",
                                         "description": "seconds on the topology clock"}}
    for name, dtype, shape in layout:
        props[name] = field_schema(np.dtype(dtype), shape)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
            "type": "object", "properties": props, "required": list(props),
            "additionalProperties": False}


def _jsonable(values: np.ndarray) -> list[Any]:
    """Per sample, the JSON value (lists for N-d; None for NaN/inf; str for bytes)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            obj = arr.astype(object)
            obj[~np.isfinite(arr)] = None
            return obj.tolist()
        return arr.tolist()
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8", "replace").tolist()
    if arr.dtype.kind in "biuU":
        return arr.tolist()
    return [str(x) for x in arr.ravel()]


def event_json(frame: Mapping[str, np.ndarray], i: int) -> str:
    """Sample ``i`` of a frame as a JSON object of its fields, ``timestamp`` left out (the form
    of an LSL marker)."""
    fields = {k: _jsonable(np.asarray(v)[i:i + 1])[0] for k, v in frame.items()
              if k != TIMESTAMP and not k.endswith(COMPANION_SUFFIX)}
    return json.dumps(fields, allow_nan=False, separators=(",", ":"))


def _layout(frame: Mapping[str, np.ndarray], keys: Iterable[str]) -> Layout:
    return tuple((k, np.asarray(frame[k]).dtype.str, tuple(np.shape(frame[k])[1:]))
                 for k in keys)


@dataclass
class _Channel:
    topic: str
    layout: Layout
    handle: Any  # what the channel factory returned


class FrameEncoder:
    """Turns bus frames into per-sample JSON messages on schema'd channels.

    ``open_channel(topic, schema)`` is called once per (topic, layout) and returns a handle;
    ``encode(...)`` yields ``(handle, log_time_ns, json_bytes)`` per sample. ``keys``: only
    these fields (None: all).
    """

    def __init__(self, open_channel: Callable[[str, dict[str, Any]], Any], wall_anchor_ns: int,
                 keys: Iterable[str] | None = None) -> None:
        self.open_channel = open_channel
        self.wall_anchor_ns = int(wall_anchor_ns)
        self.keys = None if keys is None else set(keys)
        self.channels: dict[tuple[str, Layout], _Channel] = {}
        self.messages = 0

    def _channel(self, topic: str, layout: Layout) -> _Channel:
        ch = self.channels.get((topic, layout))
        if ch is None:
            handle = self.open_channel(topic, frame_schema(topic, layout))
            ch = self.channels[(topic, layout)] = _Channel(topic, layout, handle)
        return ch

    def encode(self, bus_topic: str, frame: Frame, kind: str = "data"
               ) -> Iterator[tuple[Any, int, bytes]]:
        ts = frame.get(TIMESTAMP)
        if ts is None or not len(ts):
            return
        n = len(ts)
        own: dict[str, list[str]] = {TIMESTAMP: []}
        for key, value in frame.items():
            if key == TIMESTAMP or key.endswith(COMPANION_SUFFIX):
                continue
            if self.keys is not None and key not in self.keys:
                continue
            if key + COMPANION_SUFFIX in frame:
                own[key] = [key]
            elif len(value) == n:
                own[TIMESTAMP].append(key)
        for line, keys in own.items():
            if line == TIMESTAMP:
                topic, stamps = foxglove_topic(bus_topic, kind), ts
            else:
                topic = foxglove_topic(bus_topic, kind, field=line)
                stamps = frame[line + COMPANION_SUFFIX]
            if line == TIMESTAMP and not keys and kind != "event":
                continue  # a frame holding only streams on other timelines
            yield from self._messages(topic, frame, keys, np.asarray(stamps, dtype=np.float64))

    def _messages(self, topic: str, frame: Frame, keys: list[str], stamps: np.ndarray
                  ) -> Iterator[tuple[Any, int, bytes]]:
        ch = self._channel(topic, _layout(frame, keys))
        columns = [(k, _jsonable(frame[k])) for k in keys]
        times = (self.wall_anchor_ns + np.round(stamps * 1e9)).astype(np.int64)
        dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
        for i, t in enumerate(stamps.tolist()):
            message = {TIMESTAMP: t}
            for k, column in columns:
                message[k] = column[i]
            self.messages += 1
            yield ch.handle, max(0, int(times[i])), dumps(message).encode()


# ---------------------------------------------------------------------- export
@dataclass
class FoxgloveExport:
    path: Path
    messages: int
    channels: int


def export_foxglove(path: str | os.PathLike[str], out: str | os.PathLike[str],
                    topics: Iterable[str] | None = None, *, kinds: Iterable[str] = ("data",
                                                                                  "event"),
                    compression: str = "zstd", progress: bool | None = None) -> FoxgloveExport:
    """Write ``out``: the recording at ``path`` as Foxglove-decodable JSON (module docstring).

    ``topics``: prefixes to export (None: all). The source's metadata records are copied, plus
    ``genki.foxglove`` naming the source file.
    """
    from mcap.writer import CompressionType, Writer

    from genki_signals.record.export import _with_progress
    from genki_signals.record.reader import Recording

    kinds = set(kinds)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
            "none": CompressionType.NONE}[compression]
    with Recording(path) as rec, out.open("wb") as f:
        writer = Writer(f, compression=kind)
        writer.start(profile="", library=f"genki-signals/{_version()}")
        for name, values in rec.metadata.items():
            writer.add_metadata(name, values)
        writer.add_metadata(META_FOXGLOVE, {"source": str(path), "message_encoding": "json",
                                            "log_time": "sample timestamp"})

        def open_channel(topic: str, schema: dict[str, Any]) -> int:
            schema_id = writer.register_schema(f"genki{topic.replace('/', '.')}",
                                               SCHEMA_ENCODING, json.dumps(schema).encode())
            return writer.register_channel(topic, MESSAGE_ENCODING, schema_id)

        anchor = rec.wall_anchor_ns
        if anchor is None:
            anchor = int(rec.metadata.get(META_RECORDING, {}).get("wall_anchor_ns", 0) or 0)
        encoder = FrameEncoder(open_channel, anchor)
        seq: dict[int, int] = {}
        for _, msg in _with_progress(rec, rec.decoded(topics), "exporting", progress):
            if msg.kind not in kinds:
                continue
            for channel, t, data in encoder.encode(msg.topic, msg.frame, msg.kind):
                n = seq.get(channel, 0)
                seq[channel] = n + 1
                writer.add_message(channel, t, data, t, n & 0xFFFFFFFF)
        writer.finish()
    return FoxgloveExport(out, encoder.messages, len(encoder.channels))


def _version() -> str:
    import genki_signals

    return genki_signals.__version__
