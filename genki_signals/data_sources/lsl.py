"""LSLDataSource: a Lab Streaming Layer stream (an EEG amplifier, an eye tracker...) as a source.

::

    source = LSLDataSource(name="BioSemi", channels=["fp1", "fp2"])   # in a notebook
    # in a spec: params: {type: lsl, name: BioSemi, channels: [fp1, fp2]}

Needs the ``lsl`` extra (``pip install 'genki-signals[lsl]'``: ``pylsl``, which ships liblsl).

* **Resolve.** ``start()`` looks for a stream matching every given property (``name``,
  ``type``, ``source_id``) for at most ``resolve_timeout`` seconds and raises ``SourceError``
  naming the query and the streams it did see when none matches.
* **Pull.** A reader thread pulls chunks (``as_numpy``) with their LSL timestamps; ``read()``
  returns everything pulled since the last read as one frame.
* **Fields.** Channel count and format come from the stream's info. With ``channels`` given
  (one name per LSL channel), each channel is its own scalar stream; otherwise the samples are
  one stream ``key`` of shape ``(n, channel_count)``. ``lsl_timestamp`` keeps the raw LSL stamp
  (the outlet's ``local_clock``), as every device source keeps its device stamp. String streams
  (markers) give ``S`` (bytes) arrays.
* **Time.** ``timestamp = lsl_timestamp + time_correction + (clock.now() - local_clock())``:
  LSL's own clock-offset estimate maps the outlet's clock onto this host's LSL clock, and a
  bracketed reading maps that onto the topology clock (``docs/lsl.md``).
* **Recovery.** The inlet is made with ``recover=True``: liblsl reconnects by itself to an
  outlet with the same ``source_id`` that comes back. When the stream is lost for good
  (``LostError``: an outlet without ``source_id``), the reader resolves the query again until
  the source stops. Reconnections are counted (``reconnects``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP, Frame

__all__ = ["LSLDataSource", "LSLSourceParams", "LSL_TIMESTAMP", "lsl_to_topology_offset",
           "check_lsl_params", "build_lsl_source", "import_pylsl"]

log = logging.getLogger(__name__)

LSL_TIMESTAMP = "lsl_timestamp"
DEFAULT_KEY = "data"
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

# LSL channel formats (pylsl.cf_*) -> numpy dtypes
_FORMATS = {1: np.float32, 2: np.float64, 3: None, 4: np.int32, 5: np.int16, 6: np.int8,
            7: np.int64}


def import_pylsl() -> Any:
    """``pylsl``, or a ``SourceError`` that says which extra to install."""
    try:
        import pylsl
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SourceError("Lab Streaming Layer support needs pylsl: "
                          "pip install 'genki-signals[lsl]'") from exc
    return pylsl


def lsl_to_topology_offset(clock: Clock, local_clock: Any, probes: int = 3) -> float:
    """``clock.now() - local_clock()`` read between two LSL clock readings (the tightest of
    ``probes`` brackets), so ``topology_t = lsl_t + offset``."""
    best_width, best = math.inf, 0.0
    for _ in range(probes):
        a = local_clock()
        t = clock.now()
        b = local_clock()
        if b - a < best_width:
            best_width, best = b - a, t - (a + b) / 2
    return best


@dataclass(frozen=True)
class LSLSourceParams:
    """A ``type: lsl`` source's params (also ``LSLDataSource``'s keyword arguments)."""

    name: str | None = None
    """LSL stream name to resolve."""
    content_type: str | None = None
    """LSL content type to resolve (``EEG``, ``Markers``...); ``type`` names the source type."""
    source_id: str | None = None
    """LSL source id to resolve (the most specific: survives an outlet restart)."""
    channels: tuple[str, ...] | None = None
    """One stream name per LSL channel; None: one stream ``key`` of shape (n, channels)."""
    key: str = DEFAULT_KEY
    """The stream name of the samples when ``channels`` is not given."""
    resolve_timeout: float = 5.0
    """Seconds ``start()`` waits for a matching stream."""
    max_buffer: float = 60.0
    """Seconds (or x100 samples for irregular streams) liblsl buffers when reads lag."""

    FIELDS = ("name", "content_type", "source_id", "channels", "key", "resolve_timeout",
              "max_buffer")

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> tuple[LSLSourceParams | None, list[str]]:
        """Typed params from a spec's ``params`` (``type: lsl`` included) and the problems,
        each ``field 'params.X': message``."""
        problems: list[str] = []
        allowed = ("type", "update_rate", *cls.FIELDS)  # update_rate: the node's publish rate
        for k in params:
            if k not in allowed:
                problems.append(f"field 'params.{k}': unknown field (allowed: "
                                f"{', '.join(allowed)})")
        query = {k: params.get(k) for k in ("name", "content_type", "source_id")}
        for k, v in query.items():
            if v is not None and (not isinstance(v, str) or not v):
                problems.append(f"field 'params.{k}': must be a non-empty string, got {v!r}")
        if not any(query.values()):
            problems.append("field 'params.name': give at least one of name, source_id, "
                            "content_type to resolve the LSL stream")
        channels = params.get("channels")
        if channels is not None:
            if (not isinstance(channels, list) or not channels
                    or not all(isinstance(c, str) and c and set(c) <= _NAME_CHARS
                               and not c[0].isdigit() for c in channels)):
                problems.append(f"field 'params.channels': must be a non-empty list of stream "
                                f"names (letters, digits, underscore), got {channels!r}")
            elif len(set(channels)) != len(channels) or \
                    {TIMESTAMP, LSL_TIMESTAMP} & set(channels):
                problems.append(f"field 'params.channels': names must be unique and not "
                                f"'{TIMESTAMP}' or '{LSL_TIMESTAMP}', got {channels!r}")
        key = params.get("key", DEFAULT_KEY)
        if not isinstance(key, str) or not key or not set(key) <= _NAME_CHARS or \
                key in (TIMESTAMP, LSL_TIMESTAMP) or key[0].isdigit():
            problems.append(f"field 'params.key': must be a stream name, got {key!r}")
        for k in ("resolve_timeout", "max_buffer", "update_rate"):
            v = params.get(k, 1.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or \
                    not math.isfinite(v):
                problems.append(f"field 'params.{k}': must be a number > 0, got {v!r}")
        if problems:
            return None, problems
        return cls(name=params.get("name"), content_type=params.get("content_type"),
                   source_id=params.get("source_id"),
                   channels=tuple(channels) if channels else None, key=key,
                   resolve_timeout=float(params.get("resolve_timeout", 5.0)),
                   max_buffer=float(params.get("max_buffer", 60.0))), []

    @property
    def stream_names(self) -> list[str]:
        """What the source produces, ``timestamp`` first."""
        return [TIMESTAMP, *(self.channels or (self.key,)), LSL_TIMESTAMP]

    def describe(self) -> str:
        """The resolve query, e.g. ``name='BioSemi' type='EEG'``."""
        return " ".join(f"{k}={v!r}" for k, v in (("name", self.name), ("type", self.content_type),
                                                  ("source_id", self.source_id)) if v)


class LSLDataSource(Source):
    """A Lab Streaming Layer stream, resolved by name/type/source id (see the module doc)."""

    def __init__(self, name: str | None = None, type: str | None = None,  # noqa: A002
                 source_id: str | None = None, *, channels: Sequence[str] | None = None,
                 key: str = DEFAULT_KEY, resolve_timeout: float = 5.0,
                 max_buffer: float = 60.0, clock: Clock | None = None) -> None:
        super().__init__(clock)
        spec = {"name": name, "content_type": type, "source_id": source_id,
                "channels": list(channels) if channels is not None else None, "key": key,
                "resolve_timeout": resolve_timeout, "max_buffer": max_buffer}
        params, problems = LSLSourceParams.parse({k: v for k, v in spec.items()
                                                  if v is not None})
        if problems:
            raise SourceParameterError("LSLDataSource: " + "; ".join(problems))
        self.params: LSLSourceParams = params
        self.stream_names = params.stream_names[1:]
        self.info: Any = None  # the resolved pylsl.StreamInfo
        self.channel_count = 0
        self.dtype: np.dtype | None = None
        self.reconnects = 0
        self.samples = 0
        self._pylsl = None
        self._inlet: Any = None
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # values, raw, mapped
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._correction = 0.0  # LSL's offset of the outlet's clock to this host's

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._pylsl = import_pylsl()
        info = self._resolve(self.params.resolve_timeout)
        if info is None:
            seen = self._pylsl.resolve_streams(wait_time=0.5)
            names = ", ".join(sorted({f"{s.name()!r} (type {s.type()!r}, source_id "
                                      f"{s.source_id()!r})" for s in seen})) or "none"
            raise SourceError(f"no LSL stream with {self.params.describe()} found within "
                              f"{self.params.resolve_timeout:g} s (streams seen: {names})")
        self._open(info)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="genki-lsl-inlet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_inlet()

    @property
    def is_active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ resolving
    def _resolve(self, timeout: float) -> Any:
        p = self.params
        terms = [f"{k}='{v}'" for k, v in (("name", p.name), ("type", p.content_type),
                                            ("source_id", p.source_id)) if v]
        found = self._pylsl.resolve_bypred(" and ".join(terms), minimum=1, timeout=timeout)
        return found[0] if found else None

    def _open(self, info: Any) -> None:
        pylsl = self._pylsl
        inlet = pylsl.StreamInlet(info, max_buflen=max(1, round(self.params.max_buffer)),
                                  recover=True)
        full = inlet.info(timeout=self.params.resolve_timeout)
        count = full.channel_count()
        fmt = full.channel_format()
        if self.params.channels is not None and len(self.params.channels) != count:
            inlet.close_stream()
            raise SourceError(f"LSL stream {full.name()!r} has {count} channels but "
                              f"params.channels names {len(self.params.channels)}: "
                              f"{list(self.params.channels)}")
        if fmt not in _FORMATS:
            raise SourceError(f"LSL stream {full.name()!r}: unsupported channel format {fmt}")
        if self.info is not None and (count, fmt) != (self.channel_count,
                                                      self.info.channel_format()):
            raise SourceError(f"LSL stream {full.name()!r} came back with {count} channels of "
                              f"format {fmt}, was {self.channel_count} of "
                              f"{self.info.channel_format()}")
        inlet.open_stream(timeout=self.params.resolve_timeout)
        try:  # the first clock-offset estimate takes a few probes: before any data
            self._correction = inlet.time_correction(timeout=self.params.resolve_timeout)
        except self._pylsl.util.TimeoutError:
            log.warning("LSL stream %r: no clock offset estimate yet; assuming 0", full.name())
            self._correction = 0.0
        self.info, self.channel_count = full, count
        self.sample_rate = full.nominal_srate() or None
        self.dtype = np.dtype(_FORMATS[fmt]) if _FORMATS[fmt] is not None else None
        self._inlet = inlet

    def _close_inlet(self) -> None:
        inlet, self._inlet = self._inlet, None
        if inlet is not None:
            try:
                inlet.close_stream()
            except Exception:  # noqa: BLE001 - a lost stream may refuse; it is gone anyway
                pass

    # ------------------------------------------------------------------ reading
    def _run(self) -> None:
        pylsl = self._pylsl
        while not self._stop.is_set():
            if self._inlet is None:  # lost for good: resolve again
                info = self._resolve(0.5)
                if info is None:
                    continue
                try:
                    self._open(info)
                except (SourceError, pylsl.util.TimeoutError) as exc:
                    log.warning("LSL stream came back unusable: %s", exc)
                    self._stop.wait(0.5)
                    continue
                self.reconnects += 1
                log.info("LSL stream %s reconnected", self.params.describe())
            try:
                samples, stamps = self._inlet.pull_chunk(timeout=0.05, max_samples=4096,
                                                         as_numpy=True)
                if len(stamps):  # liblsl re-estimates every few seconds; this call is cheap
                    self._correction = self._inlet.time_correction(timeout=0.5)
            except pylsl.util.LostError:
                log.warning("LSL stream %s lost; resolving it again", self.params.describe())
                self._close_inlet()
                continue
            except pylsl.util.TimeoutError:
                pass  # no new clock estimate: keep the last one
            except Exception as exc:  # noqa: BLE001 - surfaces in read()
                self._error = exc
                return
            if len(stamps):
                stamps = np.asarray(stamps, dtype=np.float64)
                offset = lsl_to_topology_offset(self.clock, pylsl.local_clock)
                with self._lock:
                    self._chunks.append((samples, stamps, stamps + self._correction + offset))

    def read(self) -> Frame:
        if self._error is not None:
            raise SourceError(f"LSL inlet {self.params.describe()} failed: {self._error}")
        with self._lock:
            chunks, self._chunks = self._chunks, []
        if self.dtype is None and self.info is None:
            return {}
        if chunks:
            values = np.concatenate([c[0] for c in chunks])
            raw = np.concatenate([c[1] for c in chunks])
            mapped = np.concatenate([c[2] for c in chunks])
        else:
            values = np.empty((0, self.channel_count), dtype=self.dtype or "S1")
            raw = mapped = np.empty(0)
        if self.dtype is None:  # strings: bytes exactly as sent
            values = np.array(values.tolist(), dtype=bytes).reshape(len(raw),
                                                                    self.channel_count)
        else:
            values = np.asarray(values, dtype=self.dtype).reshape(len(raw), self.channel_count)
        self.samples += len(raw)
        frame: Frame = {TIMESTAMP: mapped}
        if self.params.channels is not None:
            for i, name in enumerate(self.params.channels):
                frame[name] = np.ascontiguousarray(values[:, i])
        else:
            frame[self.params.key] = values
        frame[LSL_TIMESTAMP] = raw
        return frame


# ---------------------------------------------------------------------- the registry entry
def check_lsl_params(params: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``SourceType.check`` for ``type: lsl``: problems and the stream names."""
    parsed, problems = LSLSourceParams.parse(params)
    return problems, parsed.stream_names if parsed else []


def build_lsl_source(params: Mapping[str, Any]) -> LSLDataSource:
    """``SourceType.build`` for ``type: lsl``."""
    parsed, problems = LSLSourceParams.parse(params)
    if problems:
        raise SourceParameterError("; ".join(problems))
    return LSLDataSource(parsed.name, parsed.content_type, parsed.source_id,
                         channels=parsed.channels,
                         key=parsed.key, resolve_timeout=parsed.resolve_timeout,
                         max_buffer=parsed.max_buffer)
