"""Shape operators: pick, join, rearrange and reduce the per-sample axes of streams.

All of them are stateless and act on the *per-sample* shape: a chunk is ``(n, *sample_shape)``
and axis numbers below count the per-sample axes only (``axis=0`` is the first axis after
time, negative axes count from the end), so the time axis can never be touched by mistake.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from genki_signals.errors import OperatorError
from genki_signals.signals.base import Operator

__all__ = ["Concatenate", "ExtractDimension", "Norm", "Reshape", "Stack"]


def _check_input_list(cls: type, inputs: Any, name: Any) -> list[str]:
    """A list-valued ``inputs`` must be a real list: a bare string would split into letters."""
    if isinstance(inputs, str) or not isinstance(inputs, Sequence) or not inputs:
        raise OperatorError(f"{cls.__name__} '{name if name is not None else '?'}': field "
                            f"'inputs' must be a non-empty list of stream names, got {inputs!r}")
    return list(inputs)


def _array_axis(op: Operator, axis: int, sample_ndim: int, what: str) -> int:
    """Per-sample ``axis`` (valid for ``sample_ndim`` axes) -> axis of the time-first array."""
    if not -sample_ndim <= axis < sample_ndim:
        raise OperatorError(f"{op.describe()}: field 'axis' {axis} is out of range for {what}")
    return axis + 1 if axis >= 0 else axis


class ExtractDimension(Operator):
    """Pick channel(s) of the first per-sample axis: ``x[:, dim]``.

    ``dim`` is an int (the axis disappears: ``(n, 3) -> (n,)``) or a list of ints (the axis is
    kept: ``x[:, [0, 2]]`` gives ``(n, 2)``). Negative indices count from the end.

    A tuple is an error: the original library passed ``dim`` straight to numpy, which reads a
    tuple as ONE nested index (``dim=(0, 1)`` meant ``x[:, 0, 1]``), while a list picks several
    channels. Rather than silently change what old code computes, a tuple is rejected with a
    message saying what to write instead.
    """

    def __init__(self, input: str, name: str | None = None, *, dim: int | list[int]) -> None:
        super().__init__([input], name)
        self.input = input
        if isinstance(dim, tuple) and dim:
            nested = "".join(f", {d!r}" for d in dim)
            chained = " then ".join(f"ExtractDimension(dim={d!r})" for d in dim)
            raise self._fail("dim", f"is a tuple {dim!r}: the original library read a tuple as "
                                    f"one nested index (x[:{nested}]), not as a list of "
                                    f"channels. Write a list, dim={list(dim)!r}, to pick "
                                    f"channels (x[:, {list(dim)!r}]); for the nested element "
                                    f"chain {chained}")
        if isinstance(dim, (list, tuple)):
            if not dim:
                raise self._fail("dim", "must be an integer or a non-empty list of integers, "
                                        "got []")
            self.dim: int | list[int] = [self.check_int("dim", d) for d in dim]
        else:
            self.dim = self.check_int("dim", dim)

    backends = frozenset({"numpy", "torch"})

    def _step_xp(self, xp: Any, x: Any) -> Any:
        if x.ndim < 2:
            raise OperatorError(f"{self.describe()}: input '{self.input}' must have shape "
                                f"at least 2 dimension(s), got {tuple(x.shape)}")
        size = x.shape[1]
        dims = self.dim if isinstance(self.dim, list) else [self.dim]
        if any(not -size <= d < size for d in dims):
            raise OperatorError(f"{self.describe()}: field 'dim' {self.dim!r} is out of range "
                                f"for input '{self.input}' with shape {tuple(x.shape)}")
        if isinstance(self.dim, list):
            return xp.take(x, xp.asarray([d % size for d in dims]), axis=1)
        return x[:, self.dim]

    def _step(self, x: np.ndarray) -> np.ndarray:
        self.check_ndim(self.input, x, minimum=2)
        size = x.shape[1]
        dims = self.dim if isinstance(self.dim, list) else [self.dim]
        if any(not -size <= d < size for d in dims):
            raise OperatorError(f"{self.describe()}: field 'dim' {self.dim!r} is out of range "
                                f"for input '{self.input}' with shape {x.shape}")
        return x[:, self.dim]


class Concatenate(Operator):
    """Join streams along an existing per-sample axis: ``np.concatenate(chunks, axis)``.

    1-D inputs ``(n,)`` are treated as one channel ``(n, 1)``, so scalars and vectors mix:
    ``Concatenate(['linacc', 'gyro'])`` with two ``(n, 3)`` streams gives ``(n, 6)``. The other
    per-sample axes must agree.
    """

    def __init__(self, inputs: list[str], name: str | None = None, *, axis: int = -1) -> None:
        super().__init__(_check_input_list(type(self), inputs, name), name)
        self.axis = self.check_int("axis", axis)

    backends = frozenset({"numpy", "torch"})

    def _step_xp(self, xp: Any, *chunks: Any) -> Any:
        chunks = tuple(c[:, None] if c.ndim == 1 else c for c in chunks)
        if len({c.ndim for c in chunks}) > 1:
            raise OperatorError(f"{self.describe()}: inputs must have the same number of "
                                f"dimensions, got {self._shapes(chunks)}")
        axis = _array_axis(self, self.axis, chunks[0].ndim - 1, f"inputs {self._shapes(chunks)}")
        return xp.concat(chunks, axis=axis)

    def _step(self, *chunks: np.ndarray) -> np.ndarray:
        chunks = tuple(c[:, None] if c.ndim == 1 else c for c in chunks)
        ndims = {c.ndim for c in chunks}
        if len(ndims) > 1:
            raise OperatorError(f"{self.describe()}: inputs must have the same number of "
                                f"dimensions, got {self._shapes(chunks)}")
        axis = _array_axis(self, self.axis, chunks[0].ndim - 1, f"inputs {self._shapes(chunks)}")
        try:
            return np.concatenate(chunks, axis=axis)
        except ValueError:
            raise OperatorError(f"{self.describe()}: input shapes {self._shapes(chunks)} may only "
                                f"differ along axis {self.axis}") from None

    def _shapes(self, chunks: Sequence[np.ndarray]) -> str:
        return ", ".join(f"{k}: {c.shape}" for k, c in zip(self.inputs, chunks))


class Stack(Operator):
    """Join same-shaped streams along a new per-sample axis: ``np.stack(chunks, axis)``.

    Two ``(n,)`` streams give ``(n, 2)``; three ``(n, 3)`` streams give ``(n, 3, 3)`` with
    ``axis=-1`` (the input index last) or ``axis=0`` (first). ``axis`` ranges over the
    *output's* per-sample axes.
    """

    def __init__(self, inputs: list[str], name: str | None = None, *, axis: int = -1) -> None:
        super().__init__(_check_input_list(type(self), inputs, name), name)
        self.axis = self.check_int("axis", axis)

    def _step(self, *chunks: np.ndarray) -> np.ndarray:
        shapes = {c.shape for c in chunks}
        if len(shapes) > 1:
            listing = ", ".join(f"{k}: {c.shape}" for k, c in zip(self.inputs, chunks))
            raise OperatorError(f"{self.describe()}: inputs must have the same shape, "
                                f"got {listing}")
        axis = _array_axis(self, self.axis, chunks[0].ndim, f"the stacked shape "
                                                            f"{chunks[0].shape[1:]} + 1 axis")
        return np.stack(chunks, axis=axis)


class Reshape(Operator):
    """Give every sample a new shape: ``x.reshape((n, *shape))``.

    ``shape`` is the per-sample shape; one entry may be ``-1`` (inferred from the sample size,
    also for empty chunks). ``[]`` makes one-element samples scalars.
    """

    def __init__(self, input: str, name: str | None = None, *, shape: list[int]) -> None:
        super().__init__([input], name)
        self.input = input
        if isinstance(shape, str) or not isinstance(shape, Sequence):
            raise self._fail("shape", f"must be a list of integers, got {shape!r}")
        self.shape = [self.check_int("shape", d) for d in shape]
        if any(d < -1 for d in self.shape) or self.shape.count(-1) > 1:
            raise self._fail("shape", f"must hold sizes >= 0 and at most one -1, got {shape!r}")

    def _step(self, x: np.ndarray) -> np.ndarray:
        size = math.prod(x.shape[1:])
        known = math.prod(d for d in self.shape if d != -1)
        shape = list(self.shape)
        if -1 in shape and known and size % known == 0:
            shape[shape.index(-1)] = size // known
        if math.prod(shape) != size or -1 in shape:
            raise OperatorError(f"{self.describe()}: input '{self.input}' with per-sample shape "
                                f"{x.shape[1:]} cannot be reshaped to {self.shape}")
        return x.reshape((x.shape[0], *shape))


class Norm(Operator):
    """Vector norm of each sample over all its per-sample axes: ``(n, ...) -> (n,)``.

    ``ord`` is the vector norm order of ``np.linalg.norm`` (``(sum |x|**ord)**(1/ord)``; ``2``:
    Euclidean length, ``1``: sum of magnitudes, ``inf``: largest magnitude). For an ``(n,)``
    input it is ``|x|``. Typical use: the magnitude of an acceleration or gyro vector, which
    does not depend on how the sensor is held.
    """

    def __init__(self, input: str, name: str | None = None, *, ord: float = 2) -> None:
        super().__init__([input], name)
        self.input = input
        if (isinstance(ord, bool) or not isinstance(ord, numbers.Real) or math.isnan(ord)
                or ord <= 0):
            raise self._fail("ord", f"must be a number > 0 (or inf), got {ord!r}")
        self.ord = ord

    backends = frozenset({"numpy", "torch"})

    def _step_xp(self, xp: Any, x: Any) -> Any:
        flat = xp.reshape(xp.astype(x, xp.float64), (x.shape[0], math.prod(x.shape[1:])))
        if self.ord == 2:
            return xp.sqrt(xp.sum(flat * flat, axis=1))
        mag = xp.abs(flat)
        if math.isinf(self.ord):
            return xp.max(mag, axis=1)
        return xp.sum(mag ** float(self.ord), axis=1) ** (1.0 / float(self.ord))

    def _step(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))
        if self.ord == 2 and flat.dtype.kind != "c":
            return np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=float))
        return np.linalg.norm(flat, ord=self.ord, axis=1)
