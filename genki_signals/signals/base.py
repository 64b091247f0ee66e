"""The operator contract: what every derived signal is.

An operator is a plain, causal, stateful function over chunks of named streams::

    op = MovingAverage("sample_rate", length=10, name="smooth_sample_rate")
    y = op(x_chunk)          # x_chunk: array (n, ...) time-first; y: array (n, ...)
    op.reset()               # back to the state right after construction

Contract (checked for every registered operator by tests/test_ops_registry.py, which fails
when an operator has no test case there):

* ``inputs`` names the streams it reads, ``name`` the stream it writes.
* ``op(*chunks)`` takes one time-first array per input (all with the same ``n``) and returns one
  array. Feeding a signal in any chunking (empty and one-sample chunks included) gives exactly
  the one-shot result: state is carried explicitly between calls.
* Operators with carried state derive from ``StatefulOperator``: the state is built from the
  first non-empty chunk, in one place (``_reset_for``), and the per-call work is ``_process``.
* Operators whose output lives on a *new timeline* (a windowed FFT without upsampling) set
  ``new_timeline = True``; after each call ``op.emitted`` holds, for every output row, the index
  in the input chunk of the sample that completed it. The graph takes those samples' timestamps
  as the new stream's timestamps (the time of the last sample of each window).
* Any operator may raise events (a detected gesture): it sets ``emits_events = True`` and
  ``pop_events()`` returns the ``Event`` records of its most recent call. Whoever runs the
  operator (a graph node) collects them without knowing the operator's class.
* Parameters are the constructor's keyword arguments, stored under the same attribute names and
  validated at construction. ``to_dict()`` / ``Operator.from_dict()`` round-trip them through
  JSON exactly; unknown keys are errors. ``node_defaults`` names parameters a node may fill from
  its own settings when a spec leaves them out (``with_node_defaults``).
"""

from __future__ import annotations

import inspect
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from genki_signals.errors import OperatorError
from genki_signals.signals.state import copy_state

OPERATORS: dict[str, type[Operator]] = {}
"""Registry of operator types by name: what ``from_dict`` and spec validation look up."""

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INPUT_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.timestamp)?$")
"""An input may also name a stream's own timestamps, ``K.timestamp`` (see frames.py)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event raised by an operator, as ``Operator.pop_events()`` returns it.

    ``row`` is the index of the output row (of the operator's most recent call) at which the
    event happened; the graph node stamps it with that row's timestamp and publishes it on
    ``<node>/events`` with the columns ``timestamp``, ``trigger`` (the operator's name),
    ``class`` (``class_name``), ``class_index`` and ``score``.
    """

    row: int
    class_name: str
    """What happened, e.g. the gesture class that fired."""
    class_index: int
    """Its index among the operator's classes (-1 when the operator has none)."""
    score: float
    """How strongly: the class's score at ``row`` (NaN when the operator has none)."""


class Operator:
    """Base class of every operator. Subclasses implement ``_step`` and, if stateful, ``reset``."""

    new_timeline: bool = False
    """True when the output is a new, slower stream with its own timestamps."""

    emits_events: bool = False
    """True when ``pop_events()`` may return events; whoever runs operators skips the others."""

    node_defaults: ClassVar[tuple[str, ...]] = ()
    """Parameters a node fills from its own settings when the spec leaves them out or null
    (model operators: ``threads``, ``base_dir``); see ``with_node_defaults``."""

    backends: ClassVar[frozenset[str]] = frozenset({"numpy"})
    """Array libraries the operator computes on: ``"numpy"`` always; ``"torch"`` when it
    implements ``_step_xp`` (array API, via ``array-api-compat``), so a torch tensor in gives a
    torch tensor out. Any other tensor is refused with an error naming the operator."""

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
                if _is_tensor(a):
                    return self._call_tensor(chunks)
                a = np.asarray(a)
            if a.ndim == 0:
                raise self._scalar_error(self.inputs[0])
            return self._step(a)
        if any(_is_tensor(c) for c in chunks):
            return self._call_tensor(chunks)
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

    def _call_tensor(self, chunks: tuple[Any, ...]) -> Any:
        """Chunks that are not numpy arrays but tensors of another array library (torch)."""
        kind = type(next(c for c in chunks if _is_tensor(c))).__module__.split(".")[0]
        if kind not in self.backends:
            raise OperatorError(f"{self.describe()}: does not support {kind} tensors "
                                f"(backends: {', '.join(sorted(self.backends))}); convert "
                                f"the input to a numpy array first")
        import array_api_compat

        xp = array_api_compat.array_namespace(*chunks)
        for input_name, c in zip(self.inputs, chunks):
            if c.ndim == 0:
                raise self._scalar_error(input_name)
        n = chunks[0].shape[0]
        if any(c.shape[0] != n for c in chunks):
            counts = ", ".join(f"{k}: {c.shape[0]}" for k, c in zip(self.inputs, chunks))
            raise OperatorError(
                f"{self.describe()}: inputs have different numbers of samples ({counts})")
        return self._step_xp(xp, *chunks)

    def _step_xp(self, xp: Any, *chunks: Any) -> Any:
        """The array-API version of ``_step`` (operators listing a tensor backend)."""
        raise NotImplementedError

    def _scalar_error(self, input_name: str) -> OperatorError:
        return OperatorError(f"{self.describe()}: input '{input_name}' must be time-first with "
                             f"shape (n, ...), got a scalar")

    def _step(self, *chunks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Return to the state right after construction (stateless operators: nothing to do)."""
        self.emitted = np.empty(0, dtype=np.intp)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The carried state as plain data (numbers, strings, lists, numpy arrays), enough for
        a *fresh* operator with the same parameters to continue the stream exactly where this
        one is (``load_state_dict``): what a checkpoint stores. Copies, never views. Stateless
        operators have none: ``{}``. ``signals.state.encode_state`` turns it into bytes."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state_dict`` of an operator with the same parameters (raises
        ``OperatorError`` naming the operator and field when it does not fit)."""
        if not isinstance(state, Mapping):
            raise OperatorError(f"{self.describe()}: state must be a mapping, "
                                f"got {type(state).__name__}")
        if state:
            raise OperatorError(f"{self.describe()}: has no carried state, got field(s) "
                                f"{', '.join(map(repr, sorted(state)))}")

    def pop_events(self) -> list[Event]:
        """The events raised by the most recent call, then forgets them.

        Each call replaces the events not yet popped, so nothing accumulates when nobody
        collects them (an operator run in a notebook). Only operators with ``emits_events``
        return any.
        """
        return []

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
    def from_dict(spec: Mapping[str, Any]) -> Operator:
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


class StatefulOperator(Operator, abstract=True):
    """An operator whose carried state is shaped by its input stream: the state is built in one
    place, ``_reset_for``, only when the input's signature changes.

    The signature is the *first* input's per-sample shape and dtype, ``(x.shape[1:],
    x.dtype)``; further inputs (a ``with_respect_to`` timestamp stream) are checked by the
    operator itself. ``_step`` is the template (``__call__`` inlines it for one-input operators,
    the hot path), and subclasses implement the hooks instead::

        if signature changed:   _check_input(x)        every new signature, empty chunks too
                                _reset_for(x, *more)    only for the first non-empty chunk
        if x is empty:          return _empty_result(x)
        return _process(x, *more)                       the per-call work, state already built

    What a signature change means, exactly:

    * before any data (after construction or ``reset()``): an empty chunk is validated and
      answered with ``_empty_result`` but fixes nothing; the first non-empty chunk fixes the
      per-sample shape and builds the state from it (``x[0]`` is available);
    * a different per-sample shape afterwards is an error (a stream keeps the shape of its
      samples; ``reset()`` starts a new stream);
    * a different dtype with the same shape is validated again and keeps the state (state is
      held in float64 or the model's dtype, so it does not depend on the input's dtype).

    The hot path costs one shape comparison, one dtype identity check and one length check.
    """

    _kinds: ClassVar[str] = "biuf"
    """Accepted numpy dtype kinds of the first input (the default ``_check_input``)."""

    state_fields: ClassVar[tuple[str, ...]] = ()
    """The attributes that carry the stream's state across calls (``"_zi"``), which
    ``state_dict`` stores under their names without the leading underscore (``"zi"``). Whatever
    ``_reset_for`` derives from the sample shape alone (buffers' capacity, broadcast shapes) is
    not listed: loading a state rebuilds it with ``_reset_for`` on a zero sample, then sets
    these fields. Operators whose state is part of a bigger buffer override ``_export_state`` /
    ``_import_state`` instead."""

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(abstract=abstract, **kwargs)
        if "_step" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: a StatefulOperator implements _process (and "
                            f"_reset_for), not _step, which is the template")

    def reset(self) -> None:
        super().reset()
        self._sample_shape: tuple[int, ...] | None = None  # fixed by the first non-empty chunk
        self._input_dtype: np.dtype | None = None                 # of the last chunk seen

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """The per-sample shape of the input stream, or None before its first sample."""
        return self._sample_shape

    def _step(self, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
        if x.shape[1:] != self._sample_shape or x.dtype is not self._input_dtype:
            self._new_signature(x, more)
        if x.shape[0] == 0:
            return self._empty_result(x)
        return self._process(x, *more)

    def __call__(self, *chunks: Any) -> np.ndarray:
        # The hot path of a one-input operator: Operator.__call__'s checks and the _step template
        # above, inlined (one Python call and the *more packing less per chunk).
        if len(chunks) != 1 or len(self.inputs) != 1:
            return super().__call__(*chunks)
        x = chunks[0]
        if type(x) is not np.ndarray:
            if _is_tensor(x):
                return self._call_tensor(chunks)
            x = np.asarray(x)
        if x.ndim == 0:
            raise self._scalar_error(self.inputs[0])
        if x.shape[1:] != self._sample_shape or x.dtype is not self._input_dtype:
            self._new_signature(x, ())
        if x.shape[0] == 0:
            return self._empty_result(x)
        return self._process(x)

    def _new_signature(self, x: np.ndarray, more: tuple[np.ndarray, ...]) -> None:
        self._check_input(x)
        if self._sample_shape is None:
            if x.shape[0] == 0:
                return  # nothing known yet: an empty chunk fixes nothing
            self._reset_for(x, *more)
            self._sample_shape = x.shape[1:]
        self._input_dtype = x.dtype

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """``sample_shape`` and ``input_dtype`` of the stream (None before its first sample),
        then, once the stream has started, one entry per state field (see ``state_fields``)."""
        started = self._sample_shape is not None
        out: dict[str, Any] = {
            "sample_shape": list(self._sample_shape) if started else None,
            "input_dtype": self._input_dtype.str if started and self._input_dtype is not None
            else None,
        }
        if started:
            out.update(copy_state(self._export_state()))
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise OperatorError(f"{self.describe()}: state must be a mapping, "
                                f"got {type(state).__name__}")
        shape, dtype = state.get("sample_shape"), state.get("input_dtype")
        expected = {"sample_shape", "input_dtype"}
        if shape is not None:
            expected |= set(self._state_keys())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise OperatorError(
                f"{self.describe()}: state does not fit this operator"
                + (f"; missing field(s) {', '.join(map(repr, missing))}" if missing else "")
                + (f"; unknown field(s) {', '.join(map(repr, extra))}" if extra else ""))
        self.reset()
        if shape is None:
            return
        if not isinstance(shape, (list, tuple)) or not all(
                isinstance(d, (int, np.integer)) and d >= 0 for d in shape):
            raise OperatorError(f"{self.describe()}: state field 'sample_shape' must be a "
                                f"list of sizes, got {shape!r}")
        try:
            input_dtype = np.dtype(dtype if dtype is not None else np.float64)
        except TypeError:
            raise OperatorError(f"{self.describe()}: state field 'input_dtype' is not a "
                                f"dtype: {dtype!r}") from None
        zero = np.zeros((1, *(int(d) for d in shape)), dtype=input_dtype)
        self._check_input(zero)
        self._reset_for(zero)  # what the shape alone determines (buffers, broadcast shapes)
        self._sample_shape = zero.shape[1:]
        self._input_dtype = input_dtype if dtype is not None else None  # validated above
        self._import_state({k: copy_state(v) for k, v in state.items()
                            if k not in ("sample_shape", "input_dtype")})

    def _state_keys(self) -> tuple[str, ...]:
        """The state's field names besides the shape and dtype (``state_fields`` by default)."""
        return tuple(f.lstrip("_") for f in self.state_fields)

    def _export_state(self) -> dict[str, Any]:
        """The carried state, once the stream has started (``state_fields`` by default)."""
        return {f.lstrip("_"): getattr(self, f) for f in self.state_fields}

    def _import_state(self, state: dict[str, Any]) -> None:
        """Set the carried state after ``_reset_for`` rebuilt the rest. The default sets each
        field, checking that an array field gets an array with the same trailing shape."""
        for f in self.state_fields:
            value, current = state[f.lstrip("_")], getattr(self, f, None)
            if isinstance(current, np.ndarray) and (
                    not isinstance(value, np.ndarray) or value.shape[1:] != current.shape[1:]
                    or value.ndim != current.ndim):
                got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                raise OperatorError(f"{self.describe()}: state field '{f.lstrip('_')}' must "
                                    f"be an array shaped like {current.shape}, got {got}")
            setattr(self, f, value)

    # ------------------------------------------------------------------- hooks
    def _check_input(self, x: np.ndarray) -> None:
        """Validate a chunk with a new signature: by default the per-sample shape must not
        change once known, and the dtype kind must be one of ``_kinds``."""
        if self._sample_shape is not None and x.shape[1:] != self._sample_shape:
            raise self._shape_changed(x)
        if x.dtype.kind not in self._kinds:
            raise OperatorError(f"{self.describe()}: input '{self.inputs[0]}' must be real "
                                f"numbers, got dtype {x.dtype}")

    def _shape_changed(self, x: np.ndarray) -> OperatorError:
        want = ", ".join(map(str, ("n",) + (self._sample_shape or ())))
        return OperatorError(f"{self.describe()}: input '{self.inputs[0]}' must keep the shape "
                             f"of its earlier chunks ({want}), got {x.shape}")

    def _reset_for(self, x: np.ndarray, *more: np.ndarray) -> None:
        """Build the carried state from the stream's first non-empty chunk (all inputs)."""

    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        """The output for an empty chunk: by default float64 ``(0, *x.shape[1:])``. New-timeline
        operators also set ``emitted`` here."""
        return np.empty(x.shape)

    def _process(self, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
        """The per-call work on a non-empty chunk; the state exists."""
        raise NotImplementedError


def with_node_defaults(spec: Mapping[str, Any], **defaults: Any) -> dict[str, Any]:
    """A copy of an operator spec with the node's settings filled in: each parameter the
    operator type lists in ``node_defaults`` that the spec leaves out (or null) gets the value
    in ``defaults``, unless that is None. Unknown types are left for ``from_dict`` to report."""
    spec = dict(spec)
    type_name = spec.get("type")
    cls = OPERATORS.get(type_name) if isinstance(type_name, str) else None
    for key in cls.node_defaults if cls is not None else ():
        if defaults.get(key) is not None and spec.get(key) is None:
            spec[key] = defaults[key]
    return spec


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


def _is_tensor(a: Any) -> bool:
    """A torch (or other array-library) tensor: has a dtype and a shape, and is not numpy's."""
    return (not isinstance(a, (np.ndarray, np.generic)) and hasattr(a, "__array_namespace__")
            or type(a).__module__.startswith("torch"))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
