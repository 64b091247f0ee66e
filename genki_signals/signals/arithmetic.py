"""Arithmetic operators: stateless, elementwise maths on streams.

Every operator here works sample by sample on any time-first ``(n, ...)`` chunk, so it needs no
state and any chunking trivially gives the one-shot result. Outputs are float64 (complex inputs
stay complex). Operators that combine several streams (``Sum``, ``Difference``, ``Multiply``)
require every input to have the same per-sample shape: silently broadcasting ``(n,)`` against
``(n, 3)`` hides wiring mistakes, so a mismatch is an error naming the offending input.

Invalid maths (``Log`` of a negative number, ``Pow`` of a negative base to a fractional
exponent) gives NaN or ``-inf`` as in numpy, with numpy's ``RuntimeWarning``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from genki_signals.errors import OperatorError
from genki_signals.signals.base import Operator

__all__ = ["Abs", "Clip", "Difference", "Exp", "Log", "Multiply", "Pow", "Scale", "Sum"]

_F64 = np.dtype(np.float64)


def _as_float(op: Operator, out: np.ndarray, chunks: tuple[np.ndarray, ...]) -> np.ndarray:
    """Cast a result that is not float64 (ints, bools, float32) to float64; keep complex."""
    kind = out.dtype.kind
    if kind in "biuf":
        return out.astype(np.float64)
    if kind == "c":
        return out
    raise _not_numbers(op, chunks)


def _not_numbers(op: Operator, chunks: tuple[np.ndarray, ...]) -> OperatorError:
    listing = ", ".join(f"'{k}': {c.dtype}" for k, c in zip(op.inputs, chunks))
    return OperatorError(f"{op.describe()}: inputs must be numbers, got dtype(s) {listing}")


def _as_float_xp(xp: Any, op: Operator, out: Any) -> Any:
    """The array-API version of ``_as_float``: float64 out (complex kept)."""
    if xp.isdtype(out.dtype, "complex floating") or out.dtype == xp.float64:
        return out
    if xp.isdtype(out.dtype, ("bool", "integral", "real floating")):
        return xp.astype(out, xp.float64)
    raise OperatorError(f"{op.describe()}: inputs must be numbers, got dtype {out.dtype}")


class _Unary(Operator, abstract=True):
    """One input, one elementwise function ``_apply`` (``_apply_xp`` on torch tensors)."""

    def __init__(self, input: str, name: str | None) -> None:
        super().__init__([input], name)
        self.input = input

    def _apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        raise NotImplementedError

    def _step_xp(self, xp: Any, x: Any) -> Any:
        if not xp.isdtype(x.dtype, ("bool", "integral", "real floating", "complex floating")):
            raise _not_numbers(self, (x,))
        return _as_float_xp(xp, self, self._apply_xp(xp, x))

    def _step(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self._apply(x)
        except TypeError:  # numpy's UFuncTypeError for strings, objects...
            raise _not_numbers(self, (x,)) from None
        return out if out.dtype is _F64 else _as_float(self, out, (x,))


class _Nary(Operator, abstract=True):
    """Several same-shaped inputs folded with one binary ufunc."""

    _ufunc: ClassVar[np.ufunc]  # set by subclasses
    backends = frozenset({"numpy", "torch"})

    def _step_xp(self, xp: Any, *chunks: Any) -> Any:
        for c in chunks[1:]:
            if c.shape != chunks[0].shape:
                raise self._mismatch(chunks)
        fn = getattr(xp, self._ufunc.__name__)  # add, multiply, subtract: array-API names
        out = fn(chunks[0], chunks[1])
        for c in chunks[2:]:
            out = fn(out, c)
        return _as_float_xp(xp, self, out)

    def _step(self, *chunks: np.ndarray) -> np.ndarray:
        shape = chunks[0].shape
        for c in chunks[1:]:
            if c.shape != shape:
                raise self._mismatch(chunks)
        try:
            out = self._ufunc(chunks[0], chunks[1])
            for c in chunks[2:]:
                out = self._ufunc(out, c)
        except TypeError:
            raise _not_numbers(self, chunks) from None
        return out if out.dtype is _F64 else _as_float(self, out, chunks)

    def _mismatch(self, chunks: tuple[np.ndarray, ...]) -> OperatorError:
        first = self.inputs[0]
        bad = next(k for k, c in zip(self.inputs, chunks) if c.shape != chunks[0].shape)
        listing = ", ".join(f"'{k}': {c.shape}" for k, c in zip(self.inputs, chunks))
        return OperatorError(f"{self.describe()}: input '{bad}' must have the same shape as "
                             f"input '{first}' (no broadcasting), got {listing}")


def _check_inputs(op: Operator, inputs: tuple[str, ...]) -> None:
    if len(inputs) < 2:
        raise op._fail("inputs", f"must name at least 2 streams, got {list(inputs)!r}")


class Scale(_Unary):
    """Affine map of every element: ``y = factor * x + offset``.

    Unit conversions (degrees to radians, g to m/s^2), sign flips, calibration offsets.
    """

    def __init__(self, input: str, name: str | None = None, *, factor: float = 1.0,
                 offset: float = 0.0) -> None:
        super().__init__(input, name)
        self.factor = self.check_number("factor", factor)
        self.offset = self.check_number("offset", offset)
        self._factor, self._offset = float(factor), float(offset)

    backends = frozenset({"numpy", "torch"})

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        return xp.astype(x, xp.float64) * self._factor + self._offset

    def _apply(self, x: np.ndarray) -> np.ndarray:
        out = x * self._factor  # a new float array: safe to add in place
        out += self._offset
        return out


class Sum(_Nary):
    """Elementwise sum of two or more same-shaped streams: ``y = x0 + x1 + ...``."""

    _ufunc = np.add

    def __init__(self, *inputs: str, name: str | None = None) -> None:
        super().__init__(inputs, name)
        _check_inputs(self, self.inputs)


class Multiply(_Nary):
    """Elementwise product of two or more same-shaped streams: ``y = x0 * x1 * ...``."""

    _ufunc = np.multiply

    def __init__(self, *inputs: str, name: str | None = None) -> None:
        super().__init__(inputs, name)
        _check_inputs(self, self.inputs)


class Difference(_Nary):
    """Elementwise difference of two same-shaped streams: ``y = a - b``."""

    _ufunc = np.subtract

    def __init__(self, a: str, b: str, name: str | None = None) -> None:
        super().__init__([a, b], name)
        self.a = a
        self.b = b


class Abs(_Unary):
    """Elementwise magnitude ``y = |x|`` (the modulus for complex input, so always real)."""

    def __init__(self, input: str, name: str | None = None) -> None:
        super().__init__(input, name)

    backends = frozenset({"numpy", "torch"})

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        return xp.abs(x)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return np.abs(x)


class Pow(_Unary):
    """Elementwise power ``y = x ** exponent``, computed in float64 (``np.float_power``).

    Float maths means integer inputs may take negative exponents (``2 ** -1 = 0.5``); a negative
    base with a fractional exponent gives NaN, and ``0 ** negative`` gives ``inf``.
    """

    def __init__(self, input: str, name: str | None = None, *, exponent: float = 2.0) -> None:
        super().__init__(input, name)
        self.exponent = self.check_number("exponent", exponent)

    backends = frozenset({"numpy", "torch"})

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        return xp.pow(xp.astype(x, xp.float64), float(self.exponent))

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return np.float_power(x, self.exponent)


class Exp(_Unary):
    """Elementwise natural exponential ``y = e ** x``."""

    def __init__(self, input: str, name: str | None = None) -> None:
        super().__init__(input, name)

    backends = frozenset({"numpy", "torch"})

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        return xp.exp(xp.astype(x, xp.float64))

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)


class Log(_Unary):
    """Elementwise logarithm ``y = log(x) / log(base)``; ``base=None`` is the natural log.

    Bases 2 and 10 use ``np.log2`` / ``np.log10`` (exact on powers of the base). ``log(0)`` is
    ``-inf`` and the log of a negative number NaN, as in numpy (decibels: ``Log`` base 10, then
    ``Scale`` by 10 or 20).
    """

    def __init__(self, input: str, name: str | None = None, *, base: float | None = None) -> None:
        super().__init__(input, name)
        if base is not None:
            self.check_number("base", base, minimum=0, strict_min=True)
            if base == 1:
                raise self._fail("base", "must not be 1 (log base 1 is undefined)")
        self.base = base
        self._log: Callable[[np.ndarray], np.ndarray]
        if base is None or base == math.e:
            self._log = np.log
        elif base == 2:
            self._log = np.log2
        elif base == 10:
            self._log = np.log10
        else:
            scale = 1.0 / math.log(base)
            self._log = lambda x: np.multiply(np.log(x), scale)

    backends = frozenset({"numpy", "torch"})

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        x = xp.astype(x, xp.float64)
        if self.base == 2:
            return xp.log2(x)
        if self.base == 10:
            return xp.log10(x)
        y = xp.log(x)
        return y if self.base is None or self.base == math.e else y / math.log(self.base)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return self._log(x)


class Clip(_Unary):
    """Limit every element to ``[minimum, maximum]``: ``y = min(max(x, minimum), maximum)``.

    Either bound may be None (no limit on that side) but not both; ``minimum <= maximum``.
    NaN stays NaN.
    """

    def __init__(self, input: str, name: str | None = None, *, minimum: float | None = None,
                 maximum: float | None = None) -> None:
        super().__init__(input, name)
        if minimum is None and maximum is None:
            raise self._fail("minimum", "or 'maximum' must be given (Clip needs at least "
                                        "one bound)")
        if minimum is not None:
            self.check_number("minimum", minimum)
        if maximum is not None:
            self.check_number("maximum", maximum)
        if minimum is not None and maximum is not None and minimum > maximum:
            raise self._fail("minimum", f"must be <= maximum ({maximum!r}), got {minimum!r}")
        self.minimum = minimum
        self.maximum = maximum

    backends = frozenset({"numpy", "torch"})

    def _apply_xp(self, xp: Any, x: Any) -> Any:
        if xp.isdtype(x.dtype, "complex floating"):
            raise OperatorError(f"{self.describe()}: input '{self.input}' must be real to be "
                                f"clipped, got dtype {x.dtype}")
        return xp.clip(xp.astype(x, xp.float64), min=self.minimum, max=self.maximum)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        if x.dtype.kind == "c":
            raise OperatorError(f"{self.describe()}: input '{self.input}' must be real to be "
                                f"clipped, got dtype {x.dtype}")
        return np.clip(x, self.minimum, self.maximum)
