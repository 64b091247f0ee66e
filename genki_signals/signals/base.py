"""The operator contract: what every derived signal is.

An operator is a plain, causal, stateful function over chunks of named streams::

    op = MovingAverage("sample_rate", length=10, name="smooth_sample_rate")
    y = op(x_chunk)          # x_chunk: array (n, ...) time-first; y: array (n, ...)
    op.reset()               # back to the state right after construction

Contract (checked by tests/test_operators_streaming.py for every registered operator):

* ``inputs`` names the streams it reads, ``name`` the stream it writes.
* ``op(*chunks)`` takes one time-first array per input (all with the same ``n``) and returns one
  array. Feeding a signal in any chunking (empty and one-sample chunks included) gives exactly
  the one-shot result: state is carried explicitly between calls.
* Operators whose output lives on a *new timeline* (a windowed FFT without upsampling) set
  ``new_timeline = True``; after each call ``op.emitted`` holds, for every output row, the index
  in the input chunk of the sample that completed it. The graph takes those samples' timestamps
  as the new stream's timestamps (the time of the last sample of each window).
* Parameters are the constructor's keyword arguments, stored under the same attribute names and
  validated at construction. ``to_dict()`` / ``Operator.from_dict()`` round-trip them through
  JSON exactly; unknown keys are errors.
"""

from __future__ import annotations

import inspect
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from genki_signals.errors import OperatorError

OPERATORS: dict[str, type["Operator"]] = {}
"""Registry of operator types by name: what ``from_dict`` and spec validation look up."""

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INPUT_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.timestamp)?$")
"""An input may also name a stream's own timestamps, ``K.timestamp`` (see frames.py)."""


class Operator:
    """Base class of every operator. Subclasses implement ``_step`` and, if stateful, ``reset``."""

    new_timeline: bool = False
    """True when the output is a new, slower stream with its own timestamps."""

    _abstract: ClassVar[bool] = True

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._abstract = abstract
        if not abstract:
            if cls.__name__ in OPERATORS and OPERATORS[cls.__name__] is not cls:
                raise TypeError(f"operator type {cls.__name__!r} is registered twice")
            OPERATORS[cls.__name__] = cls

    def __init__(self, inputs: Sequence[str], name: str | None) -> None:
        self.inputs: tuple[str, ...] = tuple(inputs)
        for i, input_name in enumerate(self.inputs):
            if not isinstance(input_name, str) or not INPUT_PATTERN.match(input_name):
                raise OperatorError(
                    f"{type(self).__name__}: input {i} must be a stream name "
                    f"(letters, digits, underscore; or NAME.timestamp), got {input_name!r}"
                )
        if name is None:
            name = f"{_snake(type(self).__name__)}_{'_'.join(self.inputs)}"
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise OperatorError(
                f"{type(self).__name__}: field 'name' must be a stream name "
                f"(letters, digits, underscore), got {name!r}"
            )
        self.name: str = name
        self.emitted: np.ndarray = np.empty(0, dtype=np.intp)

    # ------------------------------------------------------------------ running
    def __call__(self, *chunks: Any) -> np.ndarray:
        if len(chunks) != len(self.inputs):
            raise OperatorError(
                f"{self.describe()}: expected {len(self.inputs)} input chunk(s) "
                f"({', '.join(self.inputs)}), got {len(chunks)}"
            )
        if len(chunks) == 1:  # the hot path: keep it to a type check and a dimension check
            a = chunks[0]
            if type(a) is not np.ndarray:
                a = np.asarray(a)
            if a.ndim == 0:
                raise self._scalar_error(self.inputs[0])
            return self._step(a)
        arrays = [c if type(c) is np.ndarray else np.asarray(c) for c in chunks]
        n = arrays[0].shape[0] if arrays[0].ndim else None
        for input_name, a in zip(self.inputs, arrays):
            if a.ndim == 0:
                raise self._scalar_error(input_name)
            if a.shape[0] != n:
                counts = ", ".join(f"{k}: {x.shape[0] if x.ndim else 0}"
                                   for k, x in zip(self.inputs, arrays))
                raise OperatorError(
                    f"{self.describe()}: inputs have different numbers of samples ({counts})")
        return self._step(*arrays)

    def _scalar_error(self, input_name: str) -> OperatorError:
        return OperatorError(f"{self.describe()}: input '{input_name}' must be time-first with "
                             f"shape (n, ...), got a scalar")

    def _step(self, *chunks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Return to the state right after construction (stateless operators: nothing to do)."""
        self.emitted = np.empty(0, dtype=np.intp)

    # ------------------------------------------------------------ serialising
    @classmethod
    def parameter_names(cls) -> list[str]:
        """Constructor argument names, in order: what ``to_dict`` writes besides ``type``."""
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: ``{"type": ..., <constructor args>...}``."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for key in self.parameter_names():
            out[key] = to_jsonable(getattr(self, key))
        return out

    @staticmethod
    def from_dict(spec: Mapping[str, Any]) -> "Operator":
        """Build an operator from ``to_dict`` output; unknown types or keys are errors."""
        if not isinstance(spec, Mapping):
            raise OperatorError(f"operator spec must be a mapping, got {type(spec).__name__}")
        type_name = spec.get("type")
        if type_name not in OPERATORS:
            known = ", ".join(sorted(OPERATORS))
            raise OperatorError(f"unknown operator type {type_name!r} (known: {known})")
        cls = OPERATORS[type_name]
        params = inspect.signature(cls.__init__).parameters
        label = f"{type_name} '{spec.get('name', '?')}'"
        unknown = sorted(set(spec) - set(params) - {"type"})
        if unknown:
            raise OperatorError(
                f"{label}: unknown field(s) {', '.join(map(repr, unknown))} "
                f"(allowed: {', '.join(p for p in params if p != 'self')})"
            )
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        has_var = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
        for p in params.values():
            if p.name == "self":
                continue
            if p.name not in spec and p.kind is not inspect.Parameter.VAR_POSITIONAL \
                    and p.default is inspect.Parameter.empty:
                raise OperatorError(f"{label}: missing required field '{p.name}'")
            value = spec.get(p.name, p.default)
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                value = spec.get(p.name, [])
                if not isinstance(value, list):
                    raise OperatorError(f"{label}: field '{p.name}' must be a list")
                args.extend(value)
            elif p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and has_var:
                args.append(value)  # must precede *varargs positionally
            elif p.name in spec:
                kwargs[p.name] = value
        try:
            return cls(*args, **kwargs)
        except OperatorError:
            raise
        except TypeError as exc:
            raise OperatorError(f"{label}: {exc}") from exc

    # ---------------------------------------------------------------- helpers
    def describe(self) -> str:
        """``Type 'name'``: how messages refer to this operator."""
        return f"{type(self).__name__} '{self.name}'"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"

    def _fail(self, field: str, message: str) -> OperatorError:
        return OperatorError(f"{self.describe()}: field '{field}' {message}")

    def check_int(self, field: str, value: Any, minimum: int | None = None) -> int:
        """Validate an integer parameter (bools rejected), optionally ``>= minimum``."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise self._fail(field, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self._fail(field, f"must be >= {minimum}, got {value!r}")
        return int(value)

    def check_number(self, field: str, value: Any, minimum: float | None = None,
                     maximum: float | None = None, strict_min: bool = False) -> float:
        """Validate a real, finite parameter within optional bounds."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise self._fail(field, f"must be a finite number, got {value!r}")
        if minimum is not None and (value <= minimum if strict_min else value < minimum):
            raise self._fail(field, f"must be {'>' if strict_min else '>='} {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self._fail(field, f"must be <= {maximum}, got {value!r}")
        return float(value) if not isinstance(value, numbers.Integral) else value

    def check_choice(self, field: str, value: Any, choices: Iterable[Any]) -> Any:
        """Validate that a parameter is one of a closed set of values."""
        choices = list(choices)
        if value not in choices:
            raise self._fail(field, f"must be one of {choices!r}, got {value!r}")
        return value

    def check_bool(self, field: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self._fail(field, f"must be true or false, got {value!r}")
        return value

    def check_ndim(self, input_name: str, chunk: np.ndarray, minimum: int = 1,
                   exact: int | None = None, trailing: tuple[int, ...] | None = None) -> None:
        """Raise a clear error naming the input when a chunk has the wrong shape."""
        ok = chunk.ndim >= minimum if exact is None else chunk.ndim == exact
        if ok and trailing is not None:
            ok = chunk.shape[chunk.ndim - len(trailing):] == trailing and chunk.ndim > len(trailing)
        if not ok:
            want = (f"(n, {', '.join(map(str, trailing))})" if trailing is not None
                    else f"{exact} dimension(s)" if exact is not None
                    else f"at least {minimum} dimension(s)")
            raise OperatorError(
                f"{self.describe()}: input '{input_name}' must have shape {want}, "
                f"got {chunk.shape}"
            )


def to_jsonable(value: Any) -> Any:
    """Convert tuples, numpy scalars and arrays to plain JSON types (recursively)."""
    if isinstance(value, Operator):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
