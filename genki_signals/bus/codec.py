"""Wire format of the bus: one frame <-> one ZeroMQ multipart message. Never pickle.

Message layout (format version 1)::

    part 0   topic     UTF-8 bytes; SUB sockets filter on its prefix
    part 1   header    msgpack map, exactly these keys (plus the optional ``acq``):
               "v"       int     format version, currently 1
               "node"    str     id of the publishing node (at most 256 characters)
               "seq"     int     sequence number, uint64, per (node, topic), +1 per message
               "kind"    str     "data" | "event" | "eos"
               "t"       float   publish time, float64 seconds on the publisher's clock
               "acq"     float   optional: acquisition time (leader clock) of the oldest sample
                                 this frame derives from; receivers report now - acq as the
                                 frame's age (absent in frames and recordings made before it)
               "fields"  list    one entry per frame key: [name, dtype, shape, where]
                                   name   str   the frame key, unique within the message
                                   dtype  str   numpy ``dtype.str``, one of ALLOWED_DTYPES
                                                (bool, int/uint 8-64, float 16-64, complex
                                                64/128, either byte order): no object, void,
                                                unicode or platform-dependent long double;
                                                fixed-width bytes ``|S<n>`` (n <= 9999) carry
                                                short labels such as event class names
                                   shape  list  of non-negative ints, C order
                                   where  bin   the raw C-order bytes, inline in the header,
                                          | int or the index i of the part ``2 + i`` that holds them,
                                          | list or ``["shm", pid, fd, token, slot, generation]``: a
                                                slot of the publisher's shared-memory ring
                                                (``bus.shm``; only between processes on one host)
    part 2+  buffers   raw C-order bytes of the large fields, each referenced by exactly one field

Why two places for array bytes: a separate part costs per-part overhead in ZeroMQ and pyzmq but
avoids copies (sent with ``copy=False``, decoded with ``np.frombuffer`` on the received frame),
while inline ``bin`` costs copies but no extra part. ``tools/bench_bus_codec.py`` times
encode + ipc send/recv + decode on this machine (2 cores, pyzmq 27.3, libzmq 4.3.5): inline is
20-35% faster up to 4 KiB (5-15% when the I/O-thread wake-up dominates the round trip), the two
are even around 16-32 KiB, zero-copy wins from 64 KiB in most runs (from 32-128 KiB in all) and
is 4-9x faster from 1 MiB. pyzmq copies parts under its ``copy_threshold`` (64 KiB) even with
``copy=False``, which is why the crossover sits there. Hence ``INLINE_MAX_BYTES = 32 KiB``: a
field whose ``nbytes`` is at most that travels inline.

The header is written with msgspec's MessagePack encoder and read on the fast path with its
decoder: the same wire format as msgpack-python (the bytes are identical, ``tests/test_bus_codec``
checks it), 2x faster to encode and a little faster to decode (``tools/bench_header_codec.py``).
The careful path below still uses msgpack-python, whose errors it reports.

Decoding is defensive: the bytes may come from anywhere that can connect. Every malformation
(bad msgpack, wrong types, missing or extra keys, unknown version or kind, a disallowed dtype,
a shape that does not match its bytes, truncated or unreferenced parts, a message larger than
``max_bytes``) raises ``DecodeError`` naming the fault, and no other exception escapes
``decode``. Sizes are checked before any allocation. Decoded arrays are read-only views (of the
received frames, or of the header's ``bin`` bytes): copy them to write. A view keeps its frame
alive.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgpack
import msgspec
import numpy as np
import zmq

from genki_signals.errors import GenkiError

VERSION = 1
KINDS = frozenset({"data", "event", "eos"})
INLINE_MAX_BYTES = 32 * 1024
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_NDIM = 32
MAX_NODE_ID_LEN = 256
# Receivers count a sequence jump larger than this as one reset (a restarted or forged
# publisher), not as lost messages: 2**32 messages is 50 days of a 1 kHz stream lost without one
# message getting through.
MAX_GAP = 1 << 32

_HEADER_KEYS = frozenset({"v", "node", "seq", "kind", "t", "fields"})
_OPTIONAL_KEYS = frozenset({"acq"})
_SEQ_LIMIT = 2**64


def _allowed_dtypes() -> frozenset[str]:
    codes = ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
    out = set()
    for code in codes:
        for order in "<>":
            out.add(np.dtype(order + code).str)  # '|b1', '<f8', '>f8', ...
    return frozenset(out)


ALLOWED_DTYPES = _allowed_dtypes()
_BYTES_DTYPE = re.compile(r"\|S([1-9][0-9]{0,3})")  # fixed-width bytes up to 9999 (event labels)


def dtype_allowed(dtype_str: object) -> bool:
    """Plain numeric/bool dtypes, or fixed-width bytes ``|S<n>`` (class names of events)."""
    return isinstance(dtype_str, str) and (dtype_str in ALLOWED_DTYPES
                                           or _BYTES_DTYPE.fullmatch(dtype_str) is not None)


# Hot-path caches. Decoding: allowed dtype string -> np.dtype (|S<n> entries are added on first
# use, at most 9999 of them). Encoding: np.dtype -> its wire string, only for allowed dtypes
# (bounded: a dtype carrying metadata is a distinct key, hence the cap).
_DTYPES: dict[str, np.dtype] = {s: np.dtype(s) for s in ALLOWED_DTYPES}
_WIRE_STR: dict[np.dtype, str] = {}
_WIRE_STR_CAP = 4096


def _dtype_str(dtype: np.dtype) -> str | None:
    """``dtype.str`` if that dtype may go on the wire, else None (cached per dtype)."""
    s = _WIRE_STR.get(dtype)
    if s is None:
        s = dtype.str
        if not dtype_allowed(s):
            return None
        if len(_WIRE_STR) < _WIRE_STR_CAP:
            _WIRE_STR[dtype] = s
    return s


def _dtype_of(dtype_str: object) -> np.dtype | None:
    """The np.dtype of an allowed wire dtype string, else None (never raises)."""
    if type(dtype_str) is not str:
        return None
    dt = _DTYPES.get(dtype_str)
    if dt is None and _BYTES_DTYPE.fullmatch(dtype_str) is not None:
        dt = _DTYPES[dtype_str] = np.dtype(dtype_str)
    return dt


# msgspec's MessagePack encoder/decoder (see the module docstring); one of each per process.
_pack_header = msgspec.msgpack.Encoder().encode
_unpack_header = msgspec.msgpack.Decoder().decode


class DecodeError(GenkiError, ValueError):
    """Bytes received from the bus are not a valid message; the message says what is wrong."""


class EncodeError(GenkiError, ValueError):
    """A frame cannot be put on the wire (bad topic, kind, key or dtype)."""


@dataclass(slots=True)
class Message:
    """A decoded bus message."""

    topic: str
    node_id: str
    seq: int
    kind: str
    publish_time: float
    frame: dict[str, np.ndarray] = field(default_factory=dict)
    parts: list[Any] | None = field(default=None, repr=False, compare=False)
    """The received multipart parts, when the receiver kept them (recorders store them as is)."""
    acquired: float | None = None
    """Leader-clock acquisition time of the oldest sample the frame derives from (header
    ``acq``); None when the publisher did not say (older publishers and recordings)."""


Part = bytes | memoryview | np.ndarray


def encode(
    topic: str,
    frame: Mapping[str, Any],
    *,
    node_id: str,
    seq: int,
    kind: str = "data",
    publish_time: float | None = None,
    inline_max: int = INLINE_MAX_BYTES,
    acquired: float | None = None,
    shm: Any = None,
) -> list[Part]:
    """Encode one frame as the parts of a multipart message (see the module docstring).

    Large fields are returned as 1-d uint8 views of the (C-contiguous) arrays, so sending them with
    ``copy=False`` copies nothing. ``publish_time`` defaults to ``time.monotonic()``; the node
    runner passes topology-clock time. ``inline_max`` exists for benchmarks. ``acquired``: the
    header's optional ``acq`` (see the module docstring), left out when None. ``shm``: a
    ``bus.shm.ShmWriter``; fields of at least its ``threshold`` bytes go into its ring.
    """
    if not isinstance(topic, str):
        raise EncodeError(f"topic must be a str, got {type(topic).__name__}")
    if kind not in KINDS:
        raise EncodeError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not isinstance(node_id, str) or len(node_id) > MAX_NODE_ID_LEN:
        raise EncodeError(f"node_id must be a str of at most {MAX_NODE_ID_LEN} characters")
    if (type(seq) is not int and (isinstance(seq, bool) or not isinstance(seq, int))) or not (
        0 <= seq < _SEQ_LIMIT
    ):
        raise EncodeError(f"seq must be an int in [0, 2**64), got {seq!r}")
    t = time.monotonic() if publish_time is None else float(publish_time)
    fields: list[tuple[Any, ...]] = []
    buffers: list[Part] = []
    for name, value in frame.items():
        if type(name) is not str and not isinstance(name, str):
            raise EncodeError(f"frame keys must be str, got {name!r}")
        arr = value if type(value) is _ndarray else np.asarray(value)
        dtype = arr.dtype
        dtype_str = _WIRE_STR.get(dtype)
        if dtype_str is None:
            dtype_str = _dtype_str(dtype)
            if dtype_str is None:
                raise EncodeError(
                    f"field '{name}': dtype {dtype.str!r} cannot go on the wire "
                    "(only bool, int, uint, float and complex)"
                )
        # tuples go on the wire as msgpack arrays, like lists
        if arr.nbytes <= inline_max:  # tobytes() writes C order whatever the layout
            fields.append((name, dtype_str, arr.shape, arr.tobytes()))
            continue
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr).reshape(arr.shape)  # keeps 0-d arrays 0-d
        if shm is not None and arr.nbytes >= shm.threshold and \
                (ref := shm.put(arr, topic.encode("utf-8"))) is not None:
            where: int | list = ref
        else:
            if shm is not None and shm.owns(arr):  # a loan the ring did not take: its slot
                arr = arr.copy()  # will be reused, so the socket gets a copy
            where = len(buffers)
            buffers.append(arr.reshape(-1).view(np.uint8))
        fields.append((name, dtype_str, arr.shape, where))
    header = {"v": VERSION, "node": node_id, "seq": seq, "kind": kind, "t": t, "fields": fields}
    if acquired is not None:
        acq = float(acquired)
        if not math.isfinite(acq):
            raise EncodeError(f"acquired must be a finite number, got {acquired!r}")
        header["acq"] = acq
    return [topic.encode("utf-8"), _pack_header(header), *buffers]



def encode_eos(
    topic: str, *, node_id: str, seq: int, publish_time: float | None = None
) -> list[Part]:
    """An end-of-stream message: no fields, kind ``eos``."""
    return encode(topic, {}, node_id=node_id, seq=seq, kind="eos", publish_time=publish_time)


def decode(parts: Sequence[Any], *, max_bytes: int = DEFAULT_MAX_BYTES,
           shm: ShmResolver | None = None) -> Message:
    """Decode the parts of a received multipart message; raise only ``DecodeError``.

    ``parts`` may hold ``bytes``, ``memoryview``, ``zmq.Frame`` (from ``copy=False`` receives;
    not copied) or any object exposing a C-contiguous buffer. ``shm`` resolves shared-memory
    references (``bus.shm.ShmReader.resolver``); without it they are a ``DecodeError``.
    """
    try:
        msg = _decode_fast(parts, max_bytes, shm)
    except DecodeError:  # only the shm resolver raises it here: its verdict is final
        raise
    except Exception:  # never trusted: the careful path below names the fault
        msg = None
    if msg is not None:
        return msg
    return decode_careful(parts, max_bytes, shm)


def decode_careful(parts: Any, max_bytes: int, shm: ShmResolver | None = None) -> Message:
    """``decode``'s careful path alone: the Message, or ``DecodeError`` naming the fault."""
    try:
        return _decode(parts, max_bytes, shm)
    except DecodeError:
        raise
    except Exception as exc:  # safety net: msgpack and numpy raise many types
        raise DecodeError(f"malformed message ({type(exc).__name__}: {exc})") from exc


def _as_bytes_view(part: Any, index: int) -> memoryview:
    buf = getattr(part, "buffer", None)  # zmq.Frame
    try:
        view = buf if isinstance(buf, memoryview) else memoryview(part)
    except TypeError:
        raise DecodeError(f"part {index} is not a buffer ({type(part).__name__})") from None
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        if not view.c_contiguous:
            raise DecodeError(f"part {index} is not a contiguous buffer")
        view = view.cast("B")
    return view


_Frame = zmq.Frame
ShmResolver = Callable[[Any, np.dtype, int], np.ndarray]
"""(reference, dtype, nbytes) -> 1-d array of ``nbytes`` bytes; raises ``DecodeError``."""


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    """The header's schema for the fast path: msgspec checks keys and types while it decodes
    (a missing, extra or mistyped key fails, and ``_decode`` then names the fault)."""

    v: int
    node: Annotated[str, msgspec.Meta(max_length=MAX_NODE_ID_LEN)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    kind: Literal["data", "event", "eos"]
    t: float
    fields: list[tuple[str, str, Annotated[list[int], msgspec.Meta(max_length=MAX_NDIM)],
                       bytes | int | list[Any]]]
    acq: float | msgspec.UnsetType = msgspec.UNSET


_unpack_typed_header = msgspec.msgpack.Decoder(_Header).decode


def _decode_fast(parts: Any, max_bytes: int, shm: ShmResolver | None = None) -> Message | None:
    """Decode a well-formed message quickly; None on any anomaly (then ``_decode`` reports it).

    Accepts exactly what ``_decode`` accepts and returns the same result (msgspec validates
    the header against ``_Header``; an int time is read as a float, as ``_decode`` does);
    anything unusual (empty arrays, duplicate or unreferenced parts, oversized messages, parts
    that are neither ``zmq.Frame`` nor ``bytes``, ...) is left to the careful path.
    """
    if type(parts) is not list:
        return None
    nbuf = len(parts) - 2
    if nbuf == 0:  # the common small message: everything inline
        p0, p1 = parts
        tp = type(p0)
        if (tp is not _Frame and tp is not bytes) or \
                ((tp := type(p1)) is not _Frame and tp is not bytes) or \
                len(p0) + len(p1) > max_bytes:
            return None
    else:
        total = 0
        for p in parts:
            tp = type(p)
            if tp is not _Frame and tp is not bytes:
                return None
            total += len(p)
        if nbuf < 0 or total > max_bytes:
            return None
    header = _unpack_typed_header(parts[1])
    t = header.t
    acq = header.acq
    if header.v != VERSION or not _isfinite(t):
        return None
    if acq is _UNSET:
        acq = None
    elif not _isfinite(acq):
        return None
    used = 0
    frame: dict[str, np.ndarray] = {}
    for name, dtype_str, shape, where in header.fields:
        if name in frame:
            return None
        dtype = _DTYPES.get(dtype_str)
        if dtype is None:
            dtype = _dtype_of(dtype_str)  # |S<n> not seen yet, or not allowed
            if dtype is None:
                return None
        if len(shape) == 1:
            n = shape[0]
            if n <= 0:  # 0: empty arrays take the careful path
                return None
        else:
            n = 1
            for d in shape:
                if d <= 0:
                    return None
                n *= d
        nbytes = n * dtype.itemsize
        if nbytes > max_bytes:
            return None
        tw = type(where)
        if tw is bytes:
            if len(where) != nbytes:
                return None
            arr = _frombuffer(where, dtype)  # read-only already: bytes are immutable
        elif tw is int:
            if not 0 <= where < nbuf:
                return None
            bit = 1 << where
            if used & bit:
                return None
            used |= bit
            buf = parts[where + 2]
            if len(buf) != nbytes:
                return None
            arr = _frombuffer(buf, dtype)
            arr.flags.writeable = False  # a received zmq.Frame's buffer is writable
        elif shm is not None:  # a list: a shared-memory reference
            arr = shm(where, dtype, nbytes)
        else:
            return None
        if len(shape) != 1:
            arr = arr.reshape(shape)
        frame[name] = arr
    if used != (1 << nbuf) - 1:
        return None
    topic = parts[0]
    topic = (topic.bytes if type(topic) is _Frame else topic).decode("utf-8")
    msg = Message(topic, header.node, header.seq, header.kind, t, frame)  # 6 arguments: 2x
    if acq is not None:  # faster to construct than 8 (CPython 3.11); most frames carry no acq
        msg.acquired = acq
    return msg


_UNSET = msgspec.UNSET

decode_fast = _decode_fast
"""``decode``'s fast path alone, for a receive loop (one call less): the Message, or None when
anything is unusual (then call ``decode_careful``, which names the fault). Raises
``DecodeError`` (the shared-memory resolver's final verdict) and, on input it was not written
for, any other exception (then call ``decode_careful`` too)."""
_isfinite = math.isfinite
_frombuffer = np.frombuffer
_ndarray = np.ndarray


def _decode(parts: Sequence[Any], max_bytes: int, shm: ShmResolver | None = None) -> Message:
    if not isinstance(parts, Sequence) or isinstance(parts, (bytes, bytearray, str)):
        raise DecodeError(f"expected a list of message parts, got {type(parts).__name__}")
    if len(parts) < 2:
        raise DecodeError(f"expected at least 2 parts (topic, header), got {len(parts)}")
    views = [_as_bytes_view(p, i) for i, p in enumerate(parts)]
    total = sum(v.nbytes for v in views)
    if total > max_bytes:
        raise DecodeError(f"message of {total} bytes exceeds the limit of {max_bytes} bytes")
    try:
        topic = bytes(views[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("topic is not valid UTF-8") from None
    try:
        header = msgpack.unpackb(views[1], raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:
        raise DecodeError(f"header is not valid msgpack ({type(exc).__name__}: {exc})") from None
    _check_header(header)
    buffers = views[2:]
    used = [False] * len(buffers)
    frame: dict[str, np.ndarray] = {}
    for i, entry in enumerate(header["fields"]):
        name, arr, index = _decode_field(i, entry, buffers, max_bytes, shm)
        if name in frame:
            raise DecodeError(f"field {_short(name)} appears twice")
        if index is not None:
            if used[index]:
                raise DecodeError(f"field {_short(name)}: part {index + 2} is referenced twice")
            used[index] = True
        frame[name] = arr
    unused = [i + 2 for i, u in enumerate(used) if not u]
    if unused:
        raise DecodeError(f"parts {unused} are not referenced by any field")
    return Message(
        topic=topic,
        node_id=header["node"],
        seq=header["seq"],
        kind=header["kind"],
        publish_time=float(header["t"]),
        frame=frame,
        acquired=None if "acq" not in header else float(header["acq"]),
    )


def _short(x: Any, limit: int = 60) -> str:
    """repr of a received value, cut to ``limit`` characters for error messages."""
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_header(header: Any) -> None:
    if not isinstance(header, dict):
        raise DecodeError(f"header must be a map, got {type(header).__name__}")
    keys = set(header)
    if "v" in header and header["v"] != VERSION:
        raise DecodeError(
            f"unsupported wire format version {_short(header['v'])} (this build reads {VERSION})"
        )
    if not _HEADER_KEYS <= keys <= _HEADER_KEYS | _OPTIONAL_KEYS:
        missing = ", ".join(sorted(_HEADER_KEYS - keys)) or "none"
        extra = ", ".join(sorted(map(_short, keys - _HEADER_KEYS - _OPTIONAL_KEYS))) or "none"
        raise DecodeError(f"header keys wrong: missing {missing}; unexpected {extra}")
    if not _is_int(header["v"]):
        raise DecodeError(f"version must be an int, got {_short(header['v'])}")
    node = header["node"]
    if not isinstance(node, str) or len(node) > MAX_NODE_ID_LEN:
        raise DecodeError(f"node id must be a str of at most {MAX_NODE_ID_LEN} characters")
    seq = header["seq"]
    if not _is_int(seq) or not 0 <= seq < _SEQ_LIMIT:
        raise DecodeError(f"sequence number must be a uint64, got {_short(seq)}")
    if not isinstance(header["kind"], str) or header["kind"] not in KINDS:
        raise DecodeError(f"unknown kind {_short(header['kind'])} (expected one of {sorted(KINDS)})")
    t = header["t"]
    if not isinstance(t, (float, int)) or isinstance(t, bool) or not math.isfinite(t):
        raise DecodeError(f"publish time must be a finite number, got {_short(t)}")
    if not isinstance(header["fields"], list):
        raise DecodeError(f"fields must be a list, got {type(header['fields']).__name__}")
    if "acq" in header:
        acq = header["acq"]
        if not isinstance(acq, (float, int)) or isinstance(acq, bool) or not math.isfinite(acq):
            raise DecodeError(f"acquisition time must be a finite number, got {_short(acq)}")


def _decode_field(
    i: int, entry: Any, buffers: list[memoryview], max_bytes: int,
    shm: ShmResolver | None = None,
) -> tuple[str, np.ndarray, int | None]:
    """Check one header field entry; return (name, array, index of the part used or None)."""
    if not isinstance(entry, list) or len(entry) != 4:
        raise DecodeError(f"field {i}: expected [name, dtype, shape, where]")
    name, dtype_str, shape, where = entry
    if not isinstance(name, str):
        raise DecodeError(f"field {i}: name must be a str, got {type(name).__name__}")
    what = f"field {_short(name)}"
    if not dtype_allowed(dtype_str):
        raise DecodeError(
            f"{what}: dtype {_short(dtype_str)} not allowed (only bool, int, uint, float, complex, |S<n>)"
        )
    dtype = np.dtype(dtype_str)
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(_is_int(d) and d >= 0 for d in shape)
    ):
        raise DecodeError(
            f"{what}: shape must be a list of at most {MAX_NDIM} non-negative ints, got {_short(shape)}"
        )
    # Sizes in Python ints (no overflow) before any allocation; zero dims are left out of the
    # bound so numpy never sees a shape whose other dims overflow.
    if math.prod(d for d in shape if d) * dtype.itemsize > max_bytes:
        raise DecodeError(f"{what}: shape {_short(shape)} of {dtype_str} exceeds the limit of {max_bytes} bytes")
    nbytes = math.prod(shape) * dtype.itemsize
    index: int | None = None
    if isinstance(where, bytes):
        buf: memoryview | bytes = where
    elif _is_int(where):
        if not 0 <= where < len(buffers):
            raise DecodeError(
                f"{what}: refers to part {where + 2}, but the message has {len(buffers) + 2} parts"
            )
        index = where
        buf = buffers[where]
    elif isinstance(where, list):
        if shm is None:
            raise DecodeError(f"{what}: a shared-memory reference, which this subscriber cannot "
                              "read (only ipc:// connections resolve them)")
        if nbytes == 0:
            raise DecodeError(f"{what}: an empty array in shared memory")
        arr = shm(where, dtype, nbytes)
        if arr.nbytes != nbytes:
            raise DecodeError(f"{what}: shared memory returned {arr.nbytes} bytes, not {nbytes}")
        return name, arr.reshape(shape), None
    else:
        raise DecodeError(
            f"{what}: where must be bin, a part index or a shared-memory reference, "
            f"got {type(where).__name__}")
    size = buf.nbytes if isinstance(buf, memoryview) else len(buf)
    if size != nbytes:
        raise DecodeError(f"{what}: shape {shape} of {dtype_str} needs {nbytes} bytes, got {size}")
    arr = np.empty(shape, dtype=dtype) if nbytes == 0 else np.frombuffer(buf, dtype=dtype).reshape(shape)
    arr.flags.writeable = False
    return name, arr, index
