"""Typed params: a spec's mapping parsed into a frozen dataclass, with every problem named.

A node kind or a source type declares its params as a frozen dataclass made with ``@params``,
with field types from this module (``Int``, ``Float``, ``Str``, ``Bool``, ``Literal[...]``,
``tuple[...]``, ``dict[Str, ...]``, nested params classes, ``X | None``) and bounds or a one-line
doc with ``Field`` (``Annotated[Float, Field(gt=0, description="a number > 0 (Hz)")]``)::

    @params
    class PrinterParams:
        type: Literal["printer"]
        keys: Names | None = None
        every: Annotated[Int, Field(ge=1)] = 1

    value, problems = parse(PrinterParams, {"type": "printer", "every": 0}, "params")
    # value None, problems [Problem('params.every', 'must be an integer >= 1, got 0')]

The rules: unknown keys are rejected; ``bool`` is never an integer or a number and a string is
never a number (strict scalars); numbers are finite; ``Literal`` choices and bounds are
enforced; every problem is collected (not the first one only) and names its field path
(``params.sources.sine_0.frequency``). The messages use the spec checker's vocabulary:
``missing required field``, ``unknown field (allowed: a, b)``, ``must be <what>, got <value>``,
where <what> is the field's ``description`` or is made from its type and bounds.

A check that types cannot express can run as part of parsing: a ``pydantic.AfterValidator``
(or ``WrapValidator``) that raises ``invalid(message)``, reported verbatim at its path; ``parse``
hands it a ``context`` (the spec checker passes the node's upstream streams). ``salvage`` parses
and, on problems, also returns what remains valid, so further checks still run on the rest.

Validation is pydantic v2 (choice and measurements: docs/decisions.md): its dataclasses collect
every error with its location, forbid extra keys and generate a JSON Schema (``schema``), which
``genki schema`` prints for editors. This module maps pydantic's errors onto the declared field
types to word them.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, Union

import annotated_types as at
import pydantic
import pydantic.dataclasses
import pydantic_core
from pydantic import Field, Strict
from pydantic.fields import FieldInfo

__all__ = ["params", "parse", "salvage", "unreported", "invalid", "dump", "schema", "Problem",
           "Field", "Int", "Float", "Str", "Bool", "Name", "Names", "strict", "what",
           "is_params_class", "field_names", "InputPath", "OutputPath"]

Int = Annotated[int, Strict()]
"""An integer; ``true``/``false`` and ``1.0`` are not integers."""

Float = Annotated[float, Strict()]
"""A finite number (an integer is accepted; ``true``/``false`` and strings are not)."""
Str = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), Field(min_length=1)]
"""A non-empty string (a stream, node or timeline name)."""
Names = Annotated[tuple[Name, ...], Field(min_length=1,
                                          description="a non-empty list of stream names")]
"""A non-empty list of stream names."""


def _spec_path(must_exist: bool) -> Any:
    """A validator: in the spec checker (a context with a ``paths`` policy) the path must stay
    where the spec may point (``genki_signals.spec_paths``); elsewhere (the node process
    re-reading its checked params) it is taken as it is."""

    def check(value: str, info: pydantic.ValidationInfo) -> str:
        policy = getattr(info.context, "paths", None)
        if policy is not None:
            _, problem = policy.check(value, must_exist=must_exist)
            if problem is not None:
                raise invalid(problem)
        return value

    return pydantic.AfterValidator(check)


InputPath = Annotated[str, Strict(), Field(
    min_length=1, description="the path of an existing file (relative to the spec's folder)"),
    _spec_path(must_exist=True)]
"""A file the node reads (a recording, a model): inside the spec's folder, existing, regular."""
OutputPath = Annotated[str, Strict(), Field(
    min_length=1, description="a file path (relative to the spec's folder)"),
    _spec_path(must_exist=False)]
"""A file the node writes (a recording, a CSV): inside the spec's folder; if it exists, a
regular file."""

_CONFIG = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)

P = TypeVar("P")


def params(cls: type[P]) -> type[P]:
    """Make ``cls`` a frozen params dataclass that ``parse`` can read."""
    return pydantic.dataclasses.dataclass(frozen=True, kw_only=True, config=_CONFIG)(cls)


def strict(tp: Any) -> Any:
    """A plain annotation (``float``, ``int | None``, ``Sequence[float]``) in this module's
    strict vocabulary (``Float``, ``Int | None``, ``tuple[Float, ...]``)."""
    scalars = {int: Int, float: Float, str: Str, bool: Bool}
    if tp in scalars:
        return scalars[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        return Union[tuple(strict(a) for a in args)]  # type: ignore[return-value]
    if origin in (list, tuple, collections.abc.Sequence):
        return tuple[strict(args[0]), ...] if args else tuple[Any, ...]  # type: ignore[misc]
    return tp


def invalid(message: str, field: str | None = None) -> Exception:
    """What a validator (``pydantic.AfterValidator``) raises for a fault that types cannot
    express: reported as ``message`` verbatim, at the value's path (plus ``.field``)."""
    return pydantic_core.PydanticCustomError("genki", "{message}",
                                             {"message": message, "field": field})


@dataclasses.dataclass(frozen=True)
class Problem:
    """One fault in a spec: the field path (``params.every``) and what is wrong with it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"field '{self.path}': {self.message}"


def is_params_class(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "__pydantic_fields__") and \
        dataclasses.is_dataclass(tp)


def field_names(cls: type) -> list[str]:
    """The keys a spec writes for ``cls`` (a field's alias, such as ``class``, else its name)."""
    return list(_fields(cls))


def _fields(cls: type) -> dict[str, FieldInfo]:
    """Spec key -> field info."""
    return {info.alias or name: info
            for name, info in cls.__pydantic_fields__.items()}  # type: ignore[attr-defined]


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(tp)


def parse(cls: type[P] | Any, data: Any, path: str = "params", context: Any = None
          ) -> tuple[P | None, list[Problem]]:
    """``data`` as a ``cls``: ``(value, [])``, or ``(None, problems)`` naming each field path.

    ``context`` reaches validators (``pydantic.ValidationInfo.context``): a check that needs
    more than the value, such as the streams upstream, runs per item and is collected with the
    rest.
    """
    value, problems, _ = _validate(cls, data, path, context)
    return value, problems


def salvage(cls: type[P] | Any, data: Any, path: str = "params", context: Any = None
            ) -> tuple[P | None, list[Problem]]:
    """Like ``parse``, but with problems the value is what remains valid without the faulty
    keys (their defaults instead), or None when that is not a valid ``cls`` either.

    A checker runs its further checks on that remainder, so one bad field does not hide the
    problems of the others (and checks skip the fields already reported).
    """
    value, problems, locs = _validate(cls, data, path, context)
    if not problems or not isinstance(data, Mapping):
        return value, problems
    trimmed = _copy(data)
    for loc in locs:
        _drop(trimmed, loc)
    remainder, again, _ = _validate(cls, trimmed, path, context)
    return (remainder if not again else None), problems


def unreported(problems: list[Problem], reported: list[Problem]) -> list[Problem]:
    """``problems`` without those at (or below) a path already in ``reported``."""
    paths = [r.path for r in reported]
    return [p for p in problems
            if not any(p.path == q or p.path.startswith((q + ".", q + "[")) for q in paths)]


def _validate(cls: Any, data: Any, path: str, context: Any = None
              ) -> tuple[Any, list[Problem], list[tuple[Any, ...]]]:
    try:
        return _adapter(cls).validate_python(data, context=context), [], []
    except pydantic.ValidationError as exc:
        problems: list[Problem] = []
        locs = []
        errors = exc.errors(include_url=False)
        for error in errors:
            loc = error["loc"]
            if error["type"] == "too_short" and any(
                    e["loc"][:len(loc)] == loc and len(e["loc"]) > len(loc) for e in errors):
                continue  # a list counted short because an item failed: the item says why
            problem = _problem(cls, error, path)
            locs.append(error["loc"])
            if problem not in problems:  # one problem per field, however many union members
                problems.append(problem)
        return None, problems, locs


def dump(value: Any) -> Any:
    """A params object as JSON-ready data that ``parse`` reads back into an equal object."""
    return _adapter(type(value)).dump_python(value, mode="json", by_alias=True)


def schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a params type (field docs become ``description``)."""
    return _adapter(tp).json_schema(by_alias=True)


def _copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _drop(data: Any, loc: tuple[Any, ...]) -> None:
    """Remove the deepest key of ``loc`` found in ``data`` (union member tags are skipped)."""
    node, last = data, None
    for i, seg in enumerate(loc):
        if isinstance(node, Mapping) and seg in node:
            last, node = (node, seg), node[seg]
        elif isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            # a bad item: drop the whole list, unless a key inside the item is at fault
            last = last if i == len(loc) - 1 else None
            node = node[seg]
        # else: a union member's tag, not a key of the data
    if last is not None and isinstance(last[0], dict):
        del last[0][last[1]]


# ====================================================================== wording the errors
@dataclasses.dataclass
class _Spot:
    """Where an error's location leads in the declared types."""

    path: str
    tp: Any  # the annotation at the spot (Annotated kept)
    owner: type | None = None  # the params class whose field (or extra key) this is
    tag_field: str | None = None  # reached through a union tagged by this owner field
    union: Any = None  # a tagged union whose tag is missing or unknown here


def _problem(cls: Any, error: Mapping[str, Any], prefix: str) -> Problem:
    kind = error["type"]
    spot = _locate(cls, error["loc"], prefix)
    if kind == "genki":
        ctx = error["ctx"]
        return Problem(_join(spot.path, ctx["field"]) if ctx["field"] else spot.path,
                       ctx["message"])
    if kind == "missing":
        return Problem(spot.path, "missing required field")
    if kind in ("extra_forbidden", "unexpected_keyword_argument") and spot.owner is not None:
        allowed = [f for f in field_names(spot.owner) if f != spot.tag_field]
        return Problem(spot.path, f"unknown field (allowed: {', '.join(allowed)})")
    if kind in ("union_tag_invalid", "union_tag_not_found") and spot.union is not None:
        tag, tags = _tags(spot.union)
        known = f"(known: {', '.join(tags)})"
        if kind == "union_tag_not_found":
            return Problem(f"{spot.path}.{tag}", f"missing required field {known}")
        value = error.get("ctx", {}).get("tag")
        return Problem(f"{spot.path}.{tag}", f"unknown {tag} {value!r} {known}")
    return Problem(spot.path, f"must be {what(spot.tp)}, got {error['input']!r}")


def _locate(cls: Any, loc: tuple[Any, ...], prefix: str) -> _Spot:
    spot = _Spot(prefix, cls)
    segs = list(loc)
    while segs:
        seg = segs[0]
        if seg == "[key]":  # a dict key at fault: the path already names it
            return spot
        base, _ = _unwrap(spot.tp)
        origin = typing.get_origin(base)
        if _is_union(base) and len(_members(base)) == 1:  # X | None: an X, or null
            spot.tp = _members(base)[0]
            continue
        segs.pop(0)
        if is_params_class(base):
            spot.owner, spot.path = base, _join(spot.path, str(seg))
            fields = _fields(base)
            if seg not in fields:
                spot.tp = Any
                return spot
            info = fields[seg]
            spot.tp, spot.tag_field = Annotated[info.annotation, info], None
        elif origin in (list, tuple) and isinstance(seg, int):
            spot.path += f"[{seg}]"
            spot.tp = typing.get_args(base)[0]
        elif origin is dict:
            spot.path = _join(spot.path, str(seg))
            spot.tp = typing.get_args(base)[1]
        elif _is_union(base):
            member = _tagged_member(base, seg)
            if member is None:  # an untagged union: the error is about the field as a whole
                if _tags(base)[0] is not None:
                    spot.union = base
                return spot
            spot.tp, spot.tag_field = member, _tags(base)[0]
        else:
            return spot
    base, _ = _unwrap(spot.tp)
    if _is_union(base) and _tags(base)[0] is not None:
        spot.union = base
    return spot


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """The bare type and its metadata (bounds, FieldInfo) from any layers of ``Annotated``."""
    meta: list[Any] = []
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp = args[0]
        meta.extend(args[1:])
    flat: list[Any] = []
    for m in meta:
        if isinstance(m, FieldInfo):
            flat.append(m)
            flat.extend(m.metadata)
        else:
            flat.append(m)
    return tp, flat


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _members(tp: Any) -> list[Any]:
    return [m for m in typing.get_args(tp) if m is not type(None)]


def _tags(union: Any) -> tuple[str | None, list[str]]:
    """A union of params classes tagged by a ``Literal`` field: the field and its values."""
    members = [_unwrap(m)[0] for m in _members(union)]
    if not members or not all(is_params_class(m) for m in members):
        return None, []
    first = field_names(members[0])[0]
    tags: list[str] = []
    for m in members:
        args = typing.get_args(_unwrap(m.__pydantic_fields__[first].annotation)[0])
        tags.extend(str(a) for a in args)
    return first, tags


def _tagged_member(union: Any, tag: Any) -> Any | None:
    field, _ = _tags(union)
    if field is None:
        return None
    for m in _members(union):
        base = _unwrap(m)[0]
        if tag in typing.get_args(_unwrap(base.__pydantic_fields__[field].annotation)[0]):
            return m
    return None


def what(tp: Any) -> str:
    """What a value of type ``tp`` must be, in words: ``an integer >= 1``, ``one of a, b``."""
    base, meta = _unwrap(tp)
    for m in meta:
        if isinstance(m, FieldInfo) and m.description:
            return m.description
    if _is_union(base):
        tag, tags = _tags(base)
        if tag is not None:
            return f"a mapping with a '{tag}' ({', '.join(tags)})"
        return " or ".join(what(m) for m in _members(base))
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(base))
    if base is bool:
        return "true or false"
    if base in (int, float):
        return _bounded("an integer" if base is int else "a number", meta, base is int)
    if base is str:
        return "a non-empty string" if _bound(meta, at.MinLen) else "a string"
    if typing.get_origin(base) in (list, tuple):
        item = what(typing.get_args(base)[0])
        return ("a non-empty list" if _bound(meta, at.MinLen) else "a list") + f" of {item}"
    if typing.get_origin(base) is dict or base is dict:
        return "a mapping of names to values"
    if is_params_class(base):
        return f"a mapping ({', '.join(field_names(base))})"
    return getattr(base, "__name__", str(base))


def _bound(meta: list[Any], kind: type) -> Any:
    for m in meta:
        if isinstance(m, kind):
            return m
    return None


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, (int, float)) and math.isfinite(v) and \
        float(v).is_integer() else repr(v)


def _bounded(noun: str, meta: list[Any], integer: bool) -> str:
    lo = _bound(meta, at.Ge) or _bound(meta, at.Gt)
    hi = _bound(meta, at.Le) or _bound(meta, at.Lt)
    if lo is not None and hi is not None:
        low, high = getattr(lo, "ge", None), getattr(hi, "le", None)
        if integer and low is not None and high is not None:
            return f"{noun} in {_num(low)}..{_num(high)}"
        left = "[" if low is not None else "("
        right = "]" if high is not None else ")"
        low = low if low is not None else lo.gt
        high = high if high is not None else hi.lt
        return f"{noun} in {left}{_num(low)}, {_num(high)}{right}"
    for bound, attr, sign in ((lo, "ge", ">="), (lo, "gt", ">"), (hi, "le", "<="),
                              (hi, "lt", "<")):
        if bound is not None and hasattr(bound, attr):
            return f"{noun} {sign} {_num(getattr(bound, attr))}"
    return noun
