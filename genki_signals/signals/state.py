"""Operator state as bytes: msgpack with numpy arrays as dtype/shape/raw bytes. Never pickle.

``Operator.state_dict()`` returns plain data (numbers, strings, bools, None, lists, dicts with
string keys, numpy arrays and numpy scalars); ``encode_state`` turns such a tree into bytes and
``decode_state`` back, bit for bit: an array keeps its dtype, shape and every bit of its values
(NaN payloads and signed zeros included), and a numpy scalar comes back as a numpy scalar of the
same dtype (so ``float64`` arithmetic on restored state is the arithmetic of the original).

Why here and not ``bus/codec.py``: that codec encodes a flat frame of arrays and lives above
``signals`` (which knows nothing of the bus). This one encodes a nested tree, with the same rule
for dtypes: numeric and bool only (no object, void or unicode arrays), so decoding bytes from a
damaged or foreign file can never build arbitrary objects. Every malformation raises
``StateError`` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from genki_signals.errors import GenkiError

__all__ = ["StateError", "copy_state", "decode_state", "encode_state"]

_EXT_ARRAY = 1   # payload: msgpack [dtype.str, shape, raw C-order bytes]
_EXT_SCALAR = 2  # payload: the same, for a numpy scalar (shape [])
_MAX_NDIM = 32
_KINDS = "biufc"


class StateError(GenkiError, ValueError):
    """Operator state that cannot be encoded, decoded or loaded."""


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise StateError(f"{where}: dtype {dtype} cannot be stored in a state "
                         f"(numeric and bool arrays only)")


def _pack_array(a: np.ndarray | np.generic, where: str) -> bytes:
    a = np.asarray(a)
    _check_dtype(a.dtype, where)
    return msgpack.packb([a.dtype.str, list(a.shape), np.ascontiguousarray(a).tobytes()])


def encode_state(state: Mapping[str, Any]) -> bytes:
    """Bytes of a state tree (see the module docstring for what a tree may hold)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return msgpack.ExtType(_EXT_ARRAY, _pack_array(obj, "state"))
        if isinstance(obj, np.generic):
            return msgpack.ExtType(_EXT_SCALAR, _pack_array(obj, "state"))
        raise StateError(f"state: cannot store a value of type {type(obj).__name__} "
                         f"({obj!r:.60})")

    if not isinstance(state, Mapping):
        raise StateError(f"state must be a mapping, got {type(state).__name__}")
    try:
        return msgpack.packb(state, default=default, use_bin_type=True, strict_types=True)
    except StateError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise StateError(f"state cannot be encoded: {exc}") from None


def _unpack_array(data: bytes) -> np.ndarray:
    try:
        dtype_str, shape, raw = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise StateError(f"malformed array in state: {exc}") from None
    if not isinstance(dtype_str, str) or not isinstance(shape, list) \
            or not isinstance(raw, bytes) or len(shape) > _MAX_NDIM \
            or not all(type(d) is int and d >= 0 for d in shape):
        raise StateError("malformed array in state: expected [dtype, shape, bytes]")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError:
        raise StateError(f"array in state has an unknown dtype {dtype_str!r}") from None
    _check_dtype(dtype, "array in state")
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != len(raw):
        raise StateError(f"array in state: shape {shape} of {dtype} needs "
                         f"{count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()  # writable, owned


def decode_state(data: bytes | memoryview) -> dict[str, Any]:
    """The state tree ``encode_state`` wrote; arrays come back writable and owned."""

    def ext_hook(code: int, payload: bytes) -> Any:
        if code == _EXT_ARRAY:
            return _unpack_array(payload)
        if code == _EXT_SCALAR:
            a = _unpack_array(payload)
            if a.shape != ():
                raise StateError("malformed scalar in state: it has a shape")
            return a[()]
        raise StateError(f"unknown extension type {code} in state")

    try:
        out = msgpack.unpackb(bytes(data), ext_hook=ext_hook, raw=False, strict_map_key=True)
    except StateError:
        raise
    except Exception as exc:
        raise StateError(f"state bytes cannot be decoded: {type(exc).__name__}: {exc}") \
            from None
    if not isinstance(out, dict):
        raise StateError(f"state bytes hold a {type(out).__name__}, not a mapping")
    return out


def copy_state(value: Any) -> Any:
    """A deep copy of a state value that shares no array with the operator (arrays copied)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, Mapping):
        return {k: copy_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_state(v) for v in value]
    return value
