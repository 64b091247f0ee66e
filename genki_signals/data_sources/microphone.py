"""MicDataSource: an audio input (microphone, line in, virtual device) via sounddevice/PortAudio.

The microphone runs on its own clock, so it is a source of its own (no Sampler): ``read()``
returns ``{"timestamp": (n,), "audio": (n, channels)}`` with every sample captured since the
last read. ``System(MicDataSource(), derived_signals=[...])`` works as in the seed notebook.

* **Capture.** A PortAudio callback stream (``sounddevice.InputStream``) delivers blocks of
  ``blocksize`` frames (default: 10 ms). The callback only copies the block, notes the clock time
  and counts; everything else happens in ``read()``. Unread audio is bounded by ``max_buffer``
  seconds: older blocks are then dropped and counted (``dropped_samples``), so a reader that
  stalls costs memory once, never forever.
* **Timestamps** come from the stream's sample count, anchored once to the topology clock and
  corrected for the device's drift (``AudioTimeline``); never one host stamp per block.
  Samples lost by the driver (PortAudio's *input overflow*: the callback ran late) are counted
  in ``overflows`` and re-anchor the timeline. ``stats()`` reports these counters (a source
  node forwards them in its heartbeat, see ``genki top``).
* **Devices.** ``device`` is a PortAudio device index, a (part of a) device name, or None for
  the default input. A missing device, or a rate/channels/dtype it does not support, is a
  ``SourceError`` at ``start()`` listing the available input devices. ``sample_rate=None``
  uses the device's default rate (known after ``start()``).

sounddevice loads PortAudio when imported, so it is imported by ``start()`` (and by the
launcher's preflight), never at import of this module. PortAudio scans devices once, when it
is loaded: a device plugged in later needs a new process.
"""

from __future__ import annotations

import collections
import importlib
import math
import threading
from types import ModuleType
from typing import Annotated, Any, Literal

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources.audio_timeline import AudioTimeline
from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.data_sources.input_devices import HARDWARE_EXTRA
from genki_signals.data_sources.registry import UpdateRate
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP, Frame
from genki_signals.params import Field, Float, Int, Str, params

__all__ = ["MicDataSource", "MicParams", "AUDIO", "DTYPES", "import_sounddevice",
           "input_device_problem"]

AUDIO = "audio"
DTYPES = ("float32", "int16", "int32", "int8", "uint8")
"""Sample formats PortAudio delivers (``int24`` is left out: numpy has no such dtype)."""
BLOCK_SECONDS = 0.01


def import_sounddevice(who: str = "MicDataSource") -> ModuleType:
    """``sounddevice``, or a ``SourceError`` saying what to install."""
    try:
        return importlib.import_module("sounddevice")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "sounddevice":
            raise SourceError(f"{who} needs sounddevice, which is not installed: "
                              f"{HARDWARE_EXTRA}") from exc
        raise
    except OSError as exc:  # sounddevice could not load libportaudio
        raise SourceError(f"{who} needs the PortAudio library: {exc} (Debian/Ubuntu: "
                          f"apt-get install libportaudio2)") from exc


def list_input_devices(sd: ModuleType) -> str:
    """The available input devices, one per line, as an error message lists them."""
    try:
        devices = sd.query_devices()
    except Exception as exc:  # PortAudio failing to enumerate is worth reporting as such
        return f"  (cannot list devices: {exc})"
    lines = [f"  {d['index']}: {d['name']!r} ({d['max_input_channels']} ch, "
             f"default {d['default_samplerate']:g} Hz)"
             for d in devices if d["max_input_channels"] > 0]
    return "\n".join(lines) if lines else "  none (no sound card or input device found)"


def _resolve(sd: ModuleType, device: int | str | None, sample_rate: float | None,
             channels: int, dtype: str) -> tuple[dict[str, Any], float]:
    """The device's info and the rate to use; ``ValueError`` saying what does not fit."""
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        what = "no default input device" if device is None else f"no input device {device!r}"
        raise ValueError(f"{what} ({exc})") from exc
    rate = float(sample_rate if sample_rate is not None else info["default_samplerate"])
    try:
        sd.check_input_settings(device=info["index"], channels=channels, dtype=dtype,
                                samplerate=rate)
    except (ValueError, sd.PortAudioError) as exc:
        raise ValueError(f"input device {info['index']} {info['name']!r} does not support "
                         f"{rate:g} Hz, {channels} channel(s), {dtype}: {exc}") from exc
    return info, rate


def input_device_problem(who: str, device: int | str | None, sample_rate: float | None,
                         channels: int, dtype: str) -> str | None:
    """Why the input could not be opened here (library, device, settings), or None.

    Queries PortAudio without opening a stream: the launcher's preflight.
    """
    try:
        sd = import_sounddevice(who)
    except SourceError as exc:
        return str(exc)
    try:
        _resolve(sd, device, sample_rate, channels, dtype)
    except ValueError as exc:
        return f"{who}: {exc}; available input devices:\n{list_input_devices(sd)}"
    return None


class MicDataSource(Source):
    """Audio frames ``audio`` ``(n, channels)`` with per-sample timestamps (see module doc)."""

    stream_names = [AUDIO]

    def __init__(self, device: int | str | None = None, sample_rate: float | None = None,
                 channels: int = 1, dtype: str = "float32", blocksize: int | None = None,
                 max_buffer: float = 10.0, clock: Clock | None = None) -> None:
        super().__init__(clock)
        problems = _check(device, sample_rate, channels, dtype, blocksize, max_buffer)
        if problems:
            raise SourceParameterError("MicDataSource: " + "; ".join(
                f"'{name}' {message}" for name, message in problems))
        self.device = device
        self.sample_rate = None if sample_rate is None else float(sample_rate)
        self.channels = int(channels)
        self.dtype = np.dtype(dtype)  # checked above
        self.blocksize = blocksize
        self.max_buffer = float(max_buffer)
        self.device_name: str | None = None
        self.timeline: AudioTimeline | None = None
        self._stream: Any = None
        self._lock = threading.Lock()  # guards everything the callback touches
        self._blocks: collections.deque = collections.deque()
        self._pending = 0  # frames in _blocks
        self._max_pending = 0
        self._count = 0  # frames delivered by the stream since start
        self.overflows = 0
        self.dropped_samples = 0
        self.blocks = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open and start the input stream; ``SourceError`` (listing devices) if it cannot."""
        if self.is_active:
            return
        self.stop()
        sd = import_sounddevice()
        try:
            info, rate = _resolve(sd, self.device, self.sample_rate, self.channels,
                                  self.dtype.name)
        except ValueError as exc:
            raise SourceError(f"MicDataSource: {exc}; available input devices:\n"
                              f"{list_input_devices(sd)}") from exc
        blocksize = self.blocksize if self.blocksize is not None \
            else max(1, round(rate * BLOCK_SECONDS))
        try:
            stream = sd.InputStream(samplerate=rate, blocksize=blocksize, device=info["index"],
                                    channels=self.channels, dtype=self.dtype.name,
                                    callback=self.callback)
        except (ValueError, sd.PortAudioError) as exc:
            raise SourceError(f"MicDataSource: cannot open input device {info['index']} "
                              f"{info['name']!r} at {rate:g} Hz: {exc}; available input "
                              f"devices:\n{list_input_devices(sd)}") from exc
        self.device_name = str(info["name"])
        self.reset_capture(rate, latency=float(stream.latency))
        self._stream = stream
        stream.start()

    def reset_capture(self, sample_rate: float, latency: float = 0.0) -> None:
        """Forget captured audio and counters, and start a new timeline (``start()`` calls
        it once the stream is open; tests call it before driving ``callback`` directly)."""
        with self._lock:
            self.sample_rate = float(sample_rate)
            self._blocks.clear()
            self._pending = self._count = 0
            self.overflows = self.dropped_samples = self.blocks = 0
            self._max_pending = max(1, int(self.max_buffer * self.sample_rate))
            self.timeline = AudioTimeline(self.sample_rate, latency=latency)

    def stop(self) -> None:
        """Stop capturing at once (idempotent). Captured audio not yet read stays readable."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()  # immediate; stop() would wait for the driver's buffers
            finally:
                stream.close()

    @property
    def is_active(self) -> bool:
        stream = self._stream
        return stream is not None and bool(stream.active)

    # ------------------------------------------------------------ PortAudio thread
    def callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        """PortAudio's stream callback, on its thread: one block ``(frames, channels)``.

        Copies the block (PortAudio reuses the buffer), notes the clock time, counts; drops the
        oldest unread blocks beyond ``max_buffer`` seconds. ``status`` is sounddevice's
        ``CallbackFlags`` (``input_overflow``: the driver lost samples before this block).
        """
        arrival = self.clock.now()
        block = indata.copy()
        with self._lock:
            overflow = bool(status.input_overflow) if status else False
            if overflow:
                self.overflows += 1
            self._blocks.append((self._count, block, arrival, overflow))
            self._count += frames
            self._pending += frames
            self.blocks += 1
            while self._pending > self._max_pending and len(self._blocks) > 1:
                _, dropped, _, lost = self._blocks.popleft()
                self._pending -= len(dropped)
                self.dropped_samples += len(dropped)
                if lost:  # the next block now follows the lost samples
                    first, b, t, _ = self._blocks[0]
                    self._blocks[0] = (first, b, t, True)

    # ------------------------------------------------------------ data
    def read(self) -> Frame:
        """Every sample captured since the last read (zero-length arrays when none).

        Raises ``SourceError`` once everything captured was read if the stream ended by itself
        (PortAudio stopped it: a device unplugged, a driver error), so a node fails visibly
        instead of publishing nothing.
        """
        with self._lock:
            blocks = list(self._blocks)
            self._blocks.clear()
            self._pending = 0
            timeline = self.timeline
        if not blocks:
            stream = self._stream
            if stream is not None and not stream.active and not stream.stopped:
                raise SourceError(f"MicDataSource: the input stream of {self.device_name!r} "
                                  f"ended by itself (device unplugged or a driver error)")
            return self._empty()
        ts = timeline.stamp([(first, len(b), arrival, lost)
                             for first, b, arrival, lost in blocks])
        audio = blocks[0][1] if len(blocks) == 1 else np.concatenate([b[1] for b in blocks])
        return {TIMESTAMP: ts, AUDIO: audio}

    def _empty(self) -> Frame:
        return {TIMESTAMP: np.zeros(0), AUDIO: np.zeros((0, self.channels), self.dtype)}

    def stats(self) -> dict[str, Any]:
        """Counters for a node's heartbeat: overflows, dropped samples, clock correction."""
        out: dict[str, Any] = {"audio_blocks": self.blocks, "audio_overflows": self.overflows,
                               "audio_dropped_samples": self.dropped_samples}
        if self.timeline is not None:
            out.update(self.timeline.stats())
        return out

    def __repr__(self) -> str:
        return (f"MicDataSource(device={self.device!r}, sample_rate={self.sample_rate}, "
                f"channels={self.channels}, dtype={self.dtype.name!r}, "
                f"active={self.is_active})")


def _check(device: Any, sample_rate: Any, channels: Any, dtype: Any, blocksize: Any,
           max_buffer: Any) -> list[tuple[str, str]]:
    """(field, problem) pairs for MicDataSource's arguments; no device is touched."""
    out = []

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if device is not None and not (isinstance(device, str) or integer(device)):
        out.append(("device", f"must be a device index, a device name or null, "
                              f"got {device!r}"))
    if sample_rate is not None and not (number(sample_rate) and sample_rate > 0):
        out.append(("sample_rate", f"must be a number > 0 or null, got {sample_rate!r}"))
    if not (integer(channels) and channels >= 1):
        out.append(("channels", f"must be an integer >= 1, got {channels!r}"))
    try:
        dtype_name = np.dtype(dtype).name
    except TypeError:
        dtype_name = repr(dtype)
    if dtype_name not in DTYPES:
        out.append(("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}"))
    if blocksize is not None and not (integer(blocksize) and blocksize >= 0):
        out.append(("blocksize", f"must be an integer >= 0 (0: PortAudio chooses) or null "
                                 f"(10 ms), got {blocksize!r}"))
    if not (number(max_buffer) and max_buffer > 0):
        out.append(("max_buffer", f"must be a number of seconds > 0, got {max_buffer!r}"))
    return out


# ------------------------------------------------------------------ spec source type
@params
class MicParams:
    """A ``Microphone`` source node: an audio input on its own clock."""

    type: Literal["Microphone"]
    device: Annotated[Int | Str | None, Field(
        description="a device index, a device name or null")] = None
    """PortAudio device index or (part of a) name; null: the default input."""
    sample_rate: Annotated[Float, Field(gt=0)] | None = None
    """Samples per second; null: the device's default rate."""
    channels: Annotated[Int, Field(ge=1)] = 1
    """Channels captured: ``audio`` is (n, channels)."""
    dtype: Literal["float32", "int16", "int32", "int8", "uint8"] = "float32"
    """Sample format (``DTYPES``)."""
    blocksize: Annotated[Int, Field(ge=0, description="an integer >= 0 (0: PortAudio "
                                                      "chooses) or null (10 ms)")] | None = None
    """Frames per PortAudio callback; null: 10 ms; 0: PortAudio chooses."""
    max_buffer: Annotated[Float, Field(gt=0, description="a number of seconds > 0")] = 10.0
    """Seconds of unread audio kept before the oldest is dropped (counted)."""
    update_rate: UpdateRate = 25.0
    """Frames the node publishes per second."""


def mic_streams(p: MicParams) -> list[str]:
    return [TIMESTAMP, AUDIO]


def mic_samples(p: MicParams) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-sample shape and dtype of ``audio`` (for the spec checker's dry run)."""
    return {AUDIO: ((p.channels,), np.dtype(p.dtype).str)}


def build_mic_source(p: MicParams) -> Source:
    return MicDataSource(device=p.device, sample_rate=p.sample_rate, channels=p.channels,
                         dtype=p.dtype, blocksize=p.blocksize, max_buffer=p.max_buffer)


def mic_preflight(p: MicParams) -> str | None:
    return input_device_problem("the microphone", p.device, p.sample_rate, p.channels,
                                p.dtype)
