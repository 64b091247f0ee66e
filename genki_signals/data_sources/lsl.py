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
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from genki_signals.clock import Clock
from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.data_sources.registry import STREAM_NAME, UpdateRate
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP, Frame
from genki_signals.params import Field, Float, Name, Problem, Str, invalid, params, parse

__all__ = ["LSLDataSource", "LSLSourceParams", "LSL_TIMESTAMP", "lsl_to_topology_offset",
           "lsl_problems", "lsl_streams", "build_lsl_source", "import_pylsl"]

log = logging.getLogger(__name__)

LSL_TIMESTAMP = "lsl_timestamp"
DEFAULT_KEY = "data"

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


def _stream_name(name: str) -> str:
    if not STREAM_NAME.match(name) or name in (TIMESTAMP, LSL_TIMESTAMP):
        raise invalid(f"must be a stream name (letters, digits, underscore; not "
                      f"'{TIMESTAMP}' or '{LSL_TIMESTAMP}'), got {name!r}")
    return name


StreamName = Annotated[Str, pydantic.AfterValidator(_stream_name)]
Seconds = Annotated[Float, Field(gt=0)]


@params
class LSLSourceParams:
    """A ``type: lsl`` source's params (also ``LSLDataSource``'s keyword arguments)."""

    type: Literal["lsl"]
    name: Name | None = None
    """LSL stream name to resolve."""
    content_type: Name | None = None
    """LSL content type to resolve (``EEG``, ``Markers``...); ``type`` names the source type."""
    source_id: Name | None = None
    """LSL source id to resolve (the most specific: survives an outlet restart)."""
    channels: Annotated[tuple[StreamName, ...], Field(
        min_length=1, description="a non-empty list of stream names")] | None = None
    """One stream name per LSL channel; None: one stream ``key`` of shape (n, channels)."""
    key: StreamName = DEFAULT_KEY
    """The stream name of the samples when ``channels`` is not given."""
    resolve_timeout: Seconds = 5.0
    """Seconds ``start()`` waits for a matching stream."""
    max_buffer: Seconds = 60.0
    """Seconds (or x100 samples for irregular streams) liblsl buffers when reads lag."""
    update_rate: UpdateRate = 25.0
    """The node's publish rate (frames per second)."""

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
        params, problems = parse(LSLSourceParams, {"type": "lsl", **{
            k: v for k, v in spec.items() if v is not None}})
        problems += lsl_problems(params) if params is not None else []
        if problems:
            raise SourceParameterError("LSLDataSource: " + "; ".join(map(str, problems)))
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
def lsl_problems(p: LSLSourceParams) -> list[Problem]:
    """``SourceType.check`` for ``type: lsl``: what the field types cannot say."""
    problems = []
    if not (p.name or p.content_type or p.source_id):
        problems.append(Problem("params.name", "give at least one of name, source_id, "
                                               "content_type to resolve the LSL stream"))
    if p.channels is not None and len(set(p.channels)) != len(p.channels):
        problems.append(Problem("params.channels", f"names must be unique, got "
                                                   f"{list(p.channels)!r}"))
    return problems


def lsl_streams(p: LSLSourceParams) -> list[str]:
    return p.stream_names


def build_lsl_source(p: LSLSourceParams) -> LSLDataSource:
    """``SourceType.build`` for ``type: lsl``."""
    return LSLDataSource(p.name, p.content_type, p.source_id, channels=p.channels,
                         key=p.key, resolve_timeout=p.resolve_timeout,
                         max_buffer=p.max_buffer)
