"""Typed source params: a frozen dataclass per source type, parsed from a spec's mapping.

``parse_params(MouseParams, params)`` checks a node's ``params`` against the dataclass's fields
(unknown keys, missing required fields, each value against its type hint: ``bool``, ``int``,
``float``, ``str``, ``list[str]``, ``X | None``), then calls the dataclass's own ``problems()``
for checks that need several fields or a closed set of values. It returns the instance, or None
and the problems, each as ``field 'params.<name>': <what is wrong>`` (the registry's format).
Nothing is started and no device is touched: this is what ``genki validate`` runs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["parse_params"]

P = TypeVar("P")


def _field(path: str, message: str) -> str:
    return f"field '{path}': {message}"


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit ``hint``, or None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            return None if type(None) in options else "must not be null"
        problems = [_type_problem(value, o) for o in options if o is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if value is None:
        return "must not be null"
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if hint is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else f"must be an integer, got {value!r}"
    if hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value)
        return None if ok else f"must be a number, got {value!r}"
    if hint is str:
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, (list, tuple)):
            return f"must be a list, got {value!r}"
        for i, v in enumerate(value):
            problem = _type_problem(v, item)
            if problem:
                return f"item {i}: {problem}"
        return None
    raise TypeError(f"parse_params: unsupported type hint {hint!r}")


def parse_params(cls: type[P], params: Any, path: str = "params",
                 ignore: tuple[str, ...] = ("type",)) -> tuple[P | None, list[str]]:
    """Check ``params`` against the frozen dataclass ``cls``; ``(instance or None, problems)``.

    Keys in ``ignore`` (the registry's ``type``) are allowed and not passed on. A list value is
    stored as a tuple (the dataclass is frozen and hashable).
    """
    if not isinstance(params, Mapping):
        return None, [_field(path, f"must be a mapping, got {params!r}")]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    problems: list[str] = []
    allowed = [*ignore, *fields]
    for key in params:
        if key not in allowed:
            problems.append(_field(f"{path}.{key}", f"unknown field (allowed: "
                                                    f"{', '.join(allowed)})"))
    kwargs: dict[str, Any] = {}
    unknown = len(problems)
    for name, f in fields.items():
        if name not in params:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(_field(f"{path}.{name}", "missing required field"))
            continue
        value = params[name]
        problem = _type_problem(value, hints[name])
        if problem:
            problems.append(_field(f"{path}.{name}", problem))
            continue
        if isinstance(value, list):
            value = tuple(value)
        if hints[name] is float and value is not None:
            value = float(value)
        kwargs[name] = value
    if len(problems) > unknown:  # a field did not parse: its own checks would only repeat it
        return None, problems
    instance = cls(**kwargs)
    own = getattr(instance, "problems", None)
    if own is not None:
        problems += [_field(f"{path}.{name}", message) for name, message in own()]
    return (None, problems) if problems else (instance, [])
