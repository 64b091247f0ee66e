"""The Genki Wave ring's wire protocol: message layouts, a decoder and an encoder.

Every message, in either direction, is ``COBS(header || payload) || 0x00`` (standard COBS, the
``cobs`` package). Header: ``u8 type`` (1 request, 2 response, 3 stream), ``u8 id``,
``u16 payload_size``; all little-endian, payloads packed (layouts below, facts from
``shared/hardware/wave-protocol.md``). BLE notifications cut this byte stream anywhere, so
``WaveDecoder`` keeps a byte buffer across notifications and splits it at the delimiters.

Device -> host payloads (offsets in bytes)::

    DATASTREAM  105  gyro 3f @0 (deg/s) | acc 3f @12 (g) | mag 3f @24 | raw_pose 4f @36 (w,x,y,z)
                     current_pose 4f @52 | euler 3f @68 (rad) | linacc 3f @80 (g) | peak u8 @92
                     peak_norm_velocity f32 @93 (unaligned) | timestamp_us u64 @97
    RAW_DATA     32  gyro 3f @0 | acc 3f @12 | timestamp_us u64 @24
    SPECTROGRAM 392  96 f32, channel-major: acc_x acc_y acc_z gyro_x gyro_y gyro_z x 16 bins
                     | timestamp_us u64 @384
    BUTTON_EVENT  8  button u8 @0 | action u8 @1 | 2 pad | timestamp f32 @4 (device seconds)
    DEVICE_INFO  35  firmware 3u8 @0 | board 9 ASCII @3 | MAC 6 @12 (wire order) | serial 17 @18
    BATTERY      12  voltage f32 @0 | percentage f32 @4 | charging u8 @8 | 3 pad

A frame is rejected (counted under a reason, never raised to the caller) when it does not COBS
decode, is shorter than a header, has an unknown header type or id, a ``payload_size`` other
than the id's layout size, or a payload length other than ``payload_size``. Motion, raw and
spectrogram payloads of one ``feed`` are decoded together with one ``np.frombuffer`` over
structured dtypes (packed: the dtypes' item sizes equal the layout sizes).
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "API_CHAR_UUID",
    "MAX_FRAME",
    "MOTION_DTYPE",
    "RAW_DTYPE",
    "SERVICE_UUID",
    "SPECTROGRAM_BINS",
    "SPECTROGRAM_CHANNELS",
    "SPECTROGRAM_DTYPE",
    "BatteryStatus",
    "Button",
    "ButtonAction",
    "ButtonEvent",
    "Datastream",
    "Decoded",
    "DeviceInfo",
    "DeviceMode",
    "FrameError",
    "MsgId",
    "MsgType",
    "WaveDecoder",
    "api_mode_request",
    "config_request",
    "decode_message",
    "device_info_request",
    "encode_battery",
    "battery_request",
    "encode_button",
    "encode_device_info",
    "encode_message",
    "encode_motion",
    "encode_raw",
    "encode_spectrogram",
    "motion_fields",
    "raw_fields",
    "recenter_request",
    "spectrogram_fields",
]

SERVICE_UUID = "65e9296c-8dfb-11ea-bc55-0242ac130003"
API_CHAR_UUID = "65e92bb1-8dfb-11ea-bc55-0242ac130003"
"""The one characteristic: the host writes requests to it and gets notifications from it."""


class MsgType(enum.IntEnum):
    REQUEST = 1
    RESPONSE = 2
    STREAM = 3


class MsgId(enum.IntEnum):
    DATASTREAM = 1
    BATTERY_STATUS = 2
    DEVICE_INFO = 3
    BUTTON_EVENT = 4
    DEVICE_MODE = 5
    IDENTIFY = 6
    RECENTER = 7
    DISPLAY_FRAME = 8
    RAW_DATA = 9
    SPECTROGRAM = 10
    MODIFY_API_CONFIG = 11


class Button(enum.IntEnum):
    TOP = 0
    MIDDLE = 1
    BOTTOM = 2


class ButtonAction(enum.IntEnum):
    UP = 0
    DOWN = 1
    LONG = 2
    LONG_UP = 3
    EXTRA_LONG = 4
    EXTRA_LONG_UP = 5
    CLICK = 6
    DOUBLE_CLICK = 7


class DeviceMode(enum.IntEnum):
    STANDALONE = 100
    SOFTWAVE = 101
    WAVEFRONT = 102
    API = 103


class Datastream(enum.IntEnum):
    NONE = 0
    MOTION = 1
    RAW = 2


HEADER = struct.Struct("<BBH")

MOTION_DTYPE = np.dtype([
    ("gyro", "<f4", (3,)), ("acc", "<f4", (3,)), ("mag", "<f4", (3,)),
    ("raw_pose", "<f4", (4,)), ("current_pose", "<f4", (4,)), ("euler", "<f4", (3,)),
    ("linacc", "<f4", (3,)), ("peak", "u1"), ("peak_norm_velocity", "<f4"),
    ("timestamp_us", "<u8")])
RAW_DTYPE = np.dtype([("gyro", "<f4", (3,)), ("acc", "<f4", (3,)), ("timestamp_us", "<u8")])
SPECTROGRAM_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
SPECTROGRAM_BINS = 16
SPECTROGRAM_DTYPE = np.dtype([("bins", "<f4", (len(SPECTROGRAM_CHANNELS), SPECTROGRAM_BINS)),
                              ("timestamp_us", "<u8")])
_BUTTON = struct.Struct("<BBxxf")
_DEVICE_INFO = struct.Struct("<3B9s6s17s")
_BATTERY = struct.Struct("<ffBxxx")
_CONFIG = struct.Struct("<BBxxf")

DEVICE_SIZES = {MsgId.DATASTREAM: MOTION_DTYPE.itemsize, MsgId.RAW_DATA: RAW_DTYPE.itemsize,
                MsgId.SPECTROGRAM: SPECTROGRAM_DTYPE.itemsize, MsgId.BUTTON_EVENT: _BUTTON.size,
                MsgId.DEVICE_INFO: _DEVICE_INFO.size, MsgId.BATTERY_STATUS: _BATTERY.size}
"""Payload size of every message the ring sends (checked against the header and the bytes)."""
HOST_SIZES = {MsgId.DEVICE_INFO: (0,), MsgId.BATTERY_STATUS: (0,), MsgId.DEVICE_MODE: (1,),
              MsgId.RECENTER: (0,), MsgId.DISPLAY_FRAME: (45,), MsgId.MODIFY_API_CONFIG: (8, 12)}
"""Payload sizes of the requests a host may send (what a virtual ring accepts)."""

MAX_FRAME = 1024
"""Bytes without a delimiter after which the buffer is dropped as garbage (largest frame: 397)."""

assert MOTION_DTYPE.itemsize == 105 and RAW_DTYPE.itemsize == 32
assert SPECTROGRAM_DTYPE.itemsize == 392 and _DEVICE_INFO.size == 35


# ------------------------------------------------------------------ decoded values
@dataclass(frozen=True)
class DeviceInfo:
    firmware: tuple[int, int, int]
    board: str
    mac: str  # the six bytes in wire order, colon-separated hex
    serial: str

    @property
    def firmware_version(self) -> str:
        return ".".join(map(str, self.firmware))

    def as_dict(self) -> dict[str, str]:
        return {"firmware": self.firmware_version, "board": self.board, "mac": self.mac,
                "serial": self.serial}


@dataclass(frozen=True)
class ButtonEvent:
    button: int
    action: int
    timestamp: float  # device seconds, the clock of timestamp_us

    @property
    def button_name(self) -> str:
        return _name(Button, self.button)

    @property
    def action_name(self) -> str:
        return _name(ButtonAction, self.action)


@dataclass(frozen=True)
class BatteryStatus:
    voltage: float
    percentage: float
    charging: bool


def _name(kind: type[enum.IntEnum], value: int) -> str:
    try:
        return kind(value).name.lower()
    except ValueError:
        return str(value)


def _cobs() -> Any:
    """The ``cobs`` codec, imported on first use (checking a spec needs no hardware extra)."""
    global _COBS
    if _COBS is None:
        from cobs import cobs

        _COBS = cobs
    return _COBS


_COBS: Any = None


class FrameError(ValueError):
    """One frame is malformed; ``reason`` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_message(frame: bytes, *, from_device: bool = True) -> tuple[int, int, bytes]:
    """``(type, id, payload)`` of one COBS frame (without its delimiter), or ``FrameError``.

    ``from_device``: sizes of what the ring sends (``DEVICE_SIZES``); False: of what a host
    sends (``HOST_SIZES``, for a virtual ring).
    """
    try:
        raw = _cobs().decode(frame)
    except _cobs().DecodeError as exc:
        raise FrameError("cobs", str(exc)) from None
    if len(raw) < HEADER.size:
        raise FrameError("truncated", f"{len(raw)} bytes, shorter than the 4-byte header")
    kind, msg_id, size = HEADER.unpack_from(raw)
    payload = raw[HEADER.size:]
    if kind not in MsgType._value2member_map_:
        raise FrameError("bad_type", f"header type {kind}")
    sizes = DEVICE_SIZES if from_device else HOST_SIZES
    if msg_id not in sizes:
        raise FrameError("unknown_id", f"message id {msg_id}")
    expected = sizes[msg_id]
    if size not in (expected if isinstance(expected, tuple) else (expected,)):
        raise FrameError("bad_size", f"{MsgId(msg_id).name}: header says {size} bytes, the "
                                     f"layout has {expected}")
    if len(payload) != size:
        raise FrameError("truncated" if len(payload) < size else "oversized",
                         f"{MsgId(msg_id).name}: {len(payload)} payload bytes, header says "
                         f"{size}")
    return kind, msg_id, payload


_NO_MOTION = np.empty(0, MOTION_DTYPE)
_NO_RAW = np.empty(0, RAW_DTYPE)
_NO_SPECTROGRAM = np.empty(0, SPECTROGRAM_DTYPE)
for _a in (_NO_MOTION, _NO_RAW, _NO_SPECTROGRAM):
    _a.flags.writeable = False  # shared by every Decoded without such records


@dataclass
class Decoded:
    """What one ``WaveDecoder.feed`` produced, in arrival order per kind."""

    motion: np.ndarray = field(default_factory=lambda: _NO_MOTION)
    raw: np.ndarray = field(default_factory=lambda: _NO_RAW)
    spectrogram: np.ndarray = field(default_factory=lambda: _NO_SPECTROGRAM)
    buttons: list[ButtonEvent] = field(default_factory=list)
    device_info: list[DeviceInfo] = field(default_factory=list)
    battery: list[BatteryStatus] = field(default_factory=list)
    carried_id: int | None = None
    """The message id of the first message this feed completed if its first bytes came in an
    earlier feed (a frame split across notifications), else None. A host stamping samples by
    arrival can then give that message the earlier notification's arrival: its sample existed
    when its first byte arrived."""


class WaveDecoder:
    """Reassembles COBS frames across notifications and decodes them; never raises on data.

    ``feed(chunk)`` takes one notification's bytes and returns the complete messages they
    finished. Counters: ``frames`` (decoded), ``errors`` (a ``Counter`` by reason: ``cobs``,
    ``truncated``, ``oversized``, ``bad_size``, ``bad_type``, ``unknown_id``, ``overflow``),
    ``partial`` (a frame cut by a (re)connection: the bytes before the first delimiter of a
    fresh decoder that do not decode). ``reset()`` drops a partial frame (call on reconnect).
    """

    def __init__(self) -> None:
        self.frames = 0
        self.errors: Counter[str] = Counter()
        self.partial = 0
        self._buf = bytearray()
        self._fresh = True

    def reset(self) -> None:
        self._buf.clear()
        self._fresh = True

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held since an earlier feed."""
        return len(self._buf)

    @property
    def dropped(self) -> int:
        return sum(self.errors.values())

    def feed(self, chunk: bytes | bytearray | memoryview) -> Decoded:
        out = Decoded()
        buf = self._buf
        carried = len(buf) > 0
        buf += chunk
        if b"\x00" not in chunk:
            if len(buf) > MAX_FRAME:
                self.errors["overflow"] += 1
                buf.clear()
                self._fresh = False
            return out
        *frames, rest = bytes(buf).split(b"\x00")
        buf[:] = rest
        motion, raw, spec = [], [], []
        for i, frame in enumerate(frames):
            fresh, self._fresh = self._fresh, False
            if not frame:
                continue  # back-to-back delimiters carry nothing
            try:
                _, msg_id, payload = decode_message(frame)
            except FrameError as exc:
                if fresh:
                    self.partial += 1
                else:
                    self.errors[exc.reason] += 1
                continue
            self.frames += 1
            if i == 0 and carried:
                out.carried_id = msg_id
            if msg_id == MsgId.DATASTREAM:
                motion.append(payload)
            elif msg_id == MsgId.RAW_DATA:
                raw.append(payload)
            elif msg_id == MsgId.SPECTROGRAM:
                spec.append(payload)
            elif msg_id == MsgId.BUTTON_EVENT:
                out.buttons.append(ButtonEvent(*_BUTTON.unpack(payload)))
            elif msg_id == MsgId.DEVICE_INFO:
                out.device_info.append(_device_info(payload))
            elif msg_id == MsgId.BATTERY_STATUS:
                v, p, c = _BATTERY.unpack(payload)
                out.battery.append(BatteryStatus(v, p, bool(c)))
        if len(buf) > MAX_FRAME:
            self.errors["overflow"] += 1
            buf.clear()
        if motion:
            out.motion = np.frombuffer(b"".join(motion), MOTION_DTYPE)
        if raw:
            out.raw = np.frombuffer(b"".join(raw), RAW_DTYPE)
        if spec:
            out.spectrogram = np.frombuffer(b"".join(spec), SPECTROGRAM_DTYPE)
        return out


def _device_info(payload: bytes) -> DeviceInfo:
    major, minor, patch, board, mac, serial = _DEVICE_INFO.unpack(payload)
    text = lambda b: b.split(b"\x00", 1)[0].decode("ascii", "replace")
    return DeviceInfo((major, minor, patch), text(board), ":".join(f"{b:02x}" for b in mac),
                      text(serial))


# ------------------------------------------------------------------ host-side fields
def _rotation_matrices(q: np.ndarray) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices of unit quaternions ``q (n, 4)`` (w, x, y, z)."""
    w, x, y, z = q.T
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        axis=1).reshape(-1, 3, 3)


def motion_fields(records: np.ndarray) -> dict[str, np.ndarray]:
    """Time-first arrays of DATASTREAM records, plus the host-computed fields.

    ``grav = acc - linacc``; ``acc_glob``, ``linacc_glob``: ``acc``, ``linacc`` rotated by the
    normalised ``current_pose`` (an all-zero pose, no orientation yet, leaves them unrotated).
    Vectors are float32 ``(n, 3)``, poses ``(n, 4)``, ``peak``
    bool, ``peak_norm_velocity`` float32, ``timestamp_us`` int64.
    """
    out = {k: np.ascontiguousarray(records[k]) for k in
           ("gyro", "acc", "mag", "euler", "linacc", "raw_pose", "current_pose")}
    out["peak"] = records["peak"] != 0
    out["peak_norm_velocity"] = records["peak_norm_velocity"].astype(np.float32)
    out["timestamp_us"] = records["timestamp_us"].astype(np.int64)
    out["grav"] = out["acc"] - out["linacc"]
    q = out["current_pose"].astype(np.float64)
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
    q = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    q[norm[:, 0] == 0, 0] = 1.0  # no pose yet: the identity
    both = np.stack([out["acc"], out["linacc"]], axis=1).astype(np.float64)  # (n, 2, 3)
    rotated = np.einsum("nij,nkj->nki", _rotation_matrices(q), both).astype(np.float32)
    out["acc_glob"], out["linacc_glob"] = rotated[:, 0], rotated[:, 1]
    return out


def raw_fields(records: np.ndarray) -> dict[str, np.ndarray]:
    """``gyro``, ``acc`` ``(n, 3)`` float32 and ``timestamp_us`` int64 of RAW_DATA records."""
    return {"gyro": np.ascontiguousarray(records["gyro"]),
            "acc": np.ascontiguousarray(records["acc"]),
            "timestamp_us": records["timestamp_us"].astype(np.int64)}


def spectrogram_fields(records: np.ndarray) -> dict[str, np.ndarray]:
    """One ``(n, 16)`` float32 array per channel (``acc_x`` ... ``gyro_z``) + ``timestamp_us``."""
    out = {name: np.ascontiguousarray(records["bins"][:, i])
           for i, name in enumerate(SPECTROGRAM_CHANNELS)}
    out["timestamp_us"] = records["timestamp_us"].astype(np.int64)
    return out


# ------------------------------------------------------------------ encoder
def encode_message(kind: int, msg_id: int, payload: bytes = b"", *,
                   size: int | None = None) -> bytes:
    """``COBS(header || payload) || 0x00``; ``size`` overrides the header's payload size."""
    header = HEADER.pack(kind, msg_id, len(payload) if size is None else size)
    return _cobs().encode(header + bytes(payload)) + b"\x00"


def _records(dtype: np.dtype, values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype == dtype:
        return np.atleast_1d(values)
    rec = np.zeros(len(values["timestamp_us"]), dtype)
    for key in dtype.names:
        if key in values:
            rec[key] = values[key]
    return rec


def encode_motion(values: Any) -> bytes:
    """DATASTREAM frames (one per row) of a ``MOTION_DTYPE`` array or a dict of its fields."""
    rec = _records(MOTION_DTYPE, values)
    return b"".join(encode_message(MsgType.STREAM, MsgId.DATASTREAM, r.tobytes()) for r in rec)


def encode_raw(values: Any) -> bytes:
    rec = _records(RAW_DTYPE, values)
    return b"".join(encode_message(MsgType.STREAM, MsgId.RAW_DATA, r.tobytes()) for r in rec)


def encode_spectrogram(values: Any) -> bytes:
    """SPECTROGRAM frames of a ``SPECTROGRAM_DTYPE`` array or ``{"bins", "timestamp_us"}``."""
    rec = _records(SPECTROGRAM_DTYPE, values)
    return b"".join(encode_message(MsgType.STREAM, MsgId.SPECTROGRAM, r.tobytes())
                    for r in rec)


def encode_button(button: int, action: int, timestamp: float) -> bytes:
    return encode_message(MsgType.RESPONSE, MsgId.BUTTON_EVENT,
                          _BUTTON.pack(button, action, timestamp))


def encode_device_info(info: DeviceInfo) -> bytes:
    mac = bytes(int(b, 16) for b in info.mac.split(":"))
    return encode_message(MsgType.RESPONSE, MsgId.DEVICE_INFO, _DEVICE_INFO.pack(
        *info.firmware, info.board.encode("ascii"), mac, info.serial.encode("ascii")))


def encode_battery(status: BatteryStatus) -> bytes:
    return encode_message(MsgType.RESPONSE, MsgId.BATTERY_STATUS,
                          _BATTERY.pack(status.voltage, status.percentage, status.charging))


def device_info_request() -> bytes:
    return encode_message(MsgType.REQUEST, MsgId.DEVICE_INFO)


def battery_request() -> bytes:
    """BATTERY_STATUS request (no payload): the ring answers with a 12-byte status."""
    return encode_message(MsgType.REQUEST, MsgId.BATTERY_STATUS)


def api_mode_request() -> bytes:
    return encode_message(MsgType.REQUEST, MsgId.DEVICE_MODE, bytes([DeviceMode.API]))


def config_request(datastream: Datastream, spectrogram: bool, sample_rate: float) -> bytes:
    """MODIFY_API_CONFIG (the 8-byte form every firmware takes)."""
    return encode_message(MsgType.REQUEST, MsgId.MODIFY_API_CONFIG,
                          _CONFIG.pack(datastream, bool(spectrogram), sample_rate))


def parse_config(payload: bytes) -> tuple[Datastream, bool, float]:
    """``(datastream, spectrogram, sample_rate)`` of a MODIFY_API_CONFIG payload."""
    ds, spec, rate = _CONFIG.unpack_from(payload)
    return Datastream(ds), bool(spec), rate


def recenter_request() -> bytes:
    return encode_message(MsgType.REQUEST, MsgId.RECENTER)
