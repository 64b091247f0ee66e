"""The source types a topology spec can name: typed params, static checks, construction.

A source node's ``params`` name a ``type`` from ``SOURCE_TYPES``. The spec checker parses them
into the type's params class (``genki_signals.params``: unknown keys, types and bounds, every
problem with its path such as ``params.sources.sine_0.frequency``) and runs its ``check``
without starting anything; the node process calls ``build`` on the same parsed params.

To add a source type (an entry in the old style maps over directly: its keys become fields):
1. a params class with ``@params``: ``type: Literal["Name"]`` first, then its fields (bounds with
   ``Field``), and ``update_rate: UpdateRate = 25.0`` (the node's publish rate);
2. ``streams(p) -> [TIMESTAMP, *names]`` and ``build(p) -> Source`` (import the source inside);
3. optionally ``check(p) -> list[Problem]`` (what types cannot say) and ``preflight(p)``;
4. one entry below: ``"Name": SourceType(Params, streams, build, check, doc, preflight)``, or,
   for a source type whose parts live in its own module, ``_entry(module, "Params", ...)``
   (imported when a spec first names the type).
A function a ``Sampler`` can sample is one ``SAMPLER_FUNCTIONS`` entry; its params class is made
from the constructor's signature (classes are imported when a spec first needs them).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import numpy as np
import pydantic

from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.frames import TIMESTAMP
from genki_signals.params import (Field, Float, Problem, Str, invalid, params, salvage,
                                  strict, unreported)

__all__ = ["SOURCE_TYPES", "SAMPLER_FUNCTIONS", "SourceType", "UpdateRate",
           "check_source_params", "parse_source_params", "build_source", "source_streams",
           "source_samples", "preflight_source"]

STREAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""Stream names a spec may give: what an operator can read (``Operator`` input names)."""

UpdateRate = Annotated[Float, Field(gt=0, description="a number > 0")]
"""A source node's publish rate (frames/s); every source type's params has it."""


@dataclass(frozen=True)
class SourceType:
    """One ``params.type`` of a source node: its params class, streams, checks and builder."""

    params: Callable[[], type] | type
    """The params class (or a function making it, for classes built on first use)."""
    streams: Callable[[Any], list[str]]
    """The output stream names (``timestamp`` first) of valid params."""
    build: Callable[[Any], Source]
    """Construct the source from parsed params (not started)."""
    check: Callable[[Any], list[Problem]] | None = None
    """Problems the params' types cannot express (paths from ``params``)."""
    doc: str = ""
    preflight: Callable[[Any], str | None] | None = None
    """Optional, for device sources: what stops the source running on this machine (parsed
    params -> a problem or None); for the launcher before it starts anything, never for
    ``genki validate``."""
    samples: Callable[[Any], dict[str, tuple[tuple[int, ...], str]]] | None = None
    """Optional: each stream's per-sample shape and dtype (``np.dtype.str``) for valid params,
    without side effects (no device opened); what the dry run of a graph downstream feeds it
    (``genki_signals.nodes.dry_run``). None: not declared, no dry run downstream."""

    def params_class(self) -> type:
        return self.params if isinstance(self.params, type) else self.params()


SAMPLER_FUNCTIONS: dict[str, str] = {
    "SineWave": "genki_signals.data_sources.synthetic:SineWave",
    "SquareWave": "genki_signals.data_sources.synthetic:SquareWave",
    "TriangleWave": "genki_signals.data_sources.synthetic:TriangleWave",
    "RandomNoise": "genki_signals.data_sources.synthetic:RandomNoise",
    "GestureScript": "genki_signals.data_sources.trajectory:GestureScript",
}
"""Functions of time a ``Sampler`` entry may name: ``type`` -> ``module:class``."""


def _load(qualname: str) -> Any:
    module, _, attr = qualname.partition(":")
    return getattr(importlib.import_module(module), attr)


# ------------------------------------------------------------------ sampler functions
def _function_params(type_name: str) -> type:
    """A params class from the function class's constructor: ``type`` plus its arguments."""
    cls = _load(SAMPLER_FUNCTIONS[type_name])
    hints = typing.get_type_hints(cls.__init__)
    namespace: dict[str, Any] = {"__module__": __name__, "__annotations__": {
        "type": Literal[type_name]}}  # type: ignore[valid-type]
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        namespace["__annotations__"][name] = strict(hints.get(name, Any))
        if p.default is not p.empty:
            namespace[name] = tuple(p.default) if isinstance(p.default, list) else p.default
    made = params(type(f"{type_name}Params", (), namespace))
    # the constructor's own checks (bounds, choices) run as part of parsing
    return Annotated[made, pydantic.WrapValidator(functools.partial(_constructs, cls))]


def _constructs(cls: type, raw: Any, handler: Any) -> Any:
    spec = handler(raw)  # types first; then the constructor, on the values as written
    kwargs = {k: v for k, v in raw.items() if k != "type"}
    try:
        cls(**kwargs)
    except (SourceParameterError, ValueError, TypeError) as exc:
        # point at the field the constructor's message names
        named = [k for k in re.findall(r"'([A-Za-z_]\w*)'", str(exc)) if k in kwargs]
        raise invalid(str(exc), named[0] if named else None) from None
    return spec


def _stream_name(name: str) -> str:
    if not STREAM_NAME.match(name) or name == TIMESTAMP:
        raise invalid(f"bad stream name {name!r} (letters, digits, underscore; "
                      f"not '{TIMESTAMP}')")
    return name


def _function_args(spec: Any) -> dict[str, Any]:
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "type"}


# ------------------------------------------------------------------ Sampler
@functools.cache
def _sampler_params() -> type:
    functions = tuple(_function_params(name) for name in SAMPLER_FUNCTIONS)
    function = Annotated[Union[functions], Field(discriminator="type")]  # type: ignore[valid-type]
    name = Annotated[Str, pydantic.AfterValidator(_stream_name)]
    sources = Annotated[dict[name, function], Field(  # type: ignore[valid-type]
        min_length=1, description="a non-empty mapping of stream name -> {type: ...}")]

    # built here, not with a class statement: the function classes are known only now
    return params(type("SamplerParams", (), {
        "__module__": __name__,
        "__doc__": "Functions of time sampled at sample_rate (sources: stream name -> function).",
        "__annotations__": {"type": Literal["Sampler"],
                            "sample_rate": Annotated[Float, Field(gt=0)],
                            "update_rate": UpdateRate, "sources": sources},
        "update_rate": 25.0}))


def _sampler_streams(p: Any) -> list[str]:
    return [TIMESTAMP, *p.sources]


def _sampler_samples(p: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each function evaluated (fresh objects, thrown away) at two times, as the Sampler
    would: its per-sample shape and dtype."""
    sampler = _build_sampler(p)  # constructed, never started: no thread
    frame = sampler.sample_at(np.arange(2, dtype=np.float64) / p.sample_rate)
    return {name: (tuple(v.shape[1:]), v.dtype.str) for name, v in frame.items()
            if name != TIMESTAMP}


def _build_sampler(p: Any) -> Source:
    from genki_signals.data_sources.sampler import Sampler

    functions = {name: _load(SAMPLER_FUNCTIONS[spec.type])(**_function_args(spec))
                 for name, spec in p.sources.items()}
    # update_rate is the node's publish rate, not the Sampler's business.
    return Sampler(functions, sample_rate=p.sample_rate)


# ------------------------------------------------------------------ sources in their own modules
def _lazy(qualname: str) -> Callable[..., Any]:
    """A function of another module, imported when first called: listing the types
    imports no source module, and checking a spec imports no hardware library (pynput,
    sounddevice, pylsl, bleak: those are imported by a source's ``start`` or ``preflight``)."""
    def call(*args: Any) -> Any:
        return _load(qualname)(*args)

    call.__qualname__ = call.__name__ = qualname
    return call


def _entry(module: str, params_class: str, streams: str, build: str, doc: str,
           check: str | None = None, preflight: str | None = None,
           samples: str | None = None) -> SourceType:
    """A ``SourceType`` whose parts live in ``genki_signals.data_sources.<module>``."""
    where = f"genki_signals.data_sources.{module}:"
    return SourceType(functools.cache(lambda: _load(where + params_class)), _lazy(where + streams),
                      _lazy(where + build), check and _lazy(where + check), doc,
                      preflight and _lazy(where + preflight), samples and _lazy(where + samples))


SOURCE_TYPES: dict[str, SourceType] = {
    "Sampler": SourceType(_sampler_params, _sampler_streams, _build_sampler, None,
                          "functions of time sampled at sample_rate (SineWave, RandomNoise...)",
                          samples=_sampler_samples),
    "lsl": _entry("lsl", "LSLSourceParams", "lsl_streams", "build_lsl_source",
                  "a Lab Streaming Layer stream (the lsl extra)", check="lsl_problems"),
    "Mouse": _entry("mouse", "MouseParams", "mouse_streams", "build_mouse_source",
                    "the pointer via pynput, sampled at sample_rate",
                    preflight="mouse_preflight", samples="mouse_samples"),
    "Keyboard": _entry("keyboard", "KeyboardParams", "keyboard_streams",
                       "build_keyboard_source",
                       "named keys (0/1 each) via pynput, sampled at sample_rate",
                       preflight="keyboard_preflight", samples="keyboard_samples"),
    "Microphone": _entry("microphone", "MicParams", "mic_streams", "build_mic_source",
                         "an audio input via sounddevice, on its own clock",
                         preflight="mic_preflight", samples="mic_samples"),
    "wave": _entry("wave.params", "WaveParams", "streams", "build",
                   "the Genki Wave ring over Bluetooth LE", check="check",
                   preflight="preflight"),
}
"""Source types a spec's ``params.type`` may name."""


# ------------------------------------------------------------------ entry points
def parse_source_params(data: Any) -> tuple[Any | None, list[Problem]]:
    """A source node's ``params`` as its type's params object, or None and every problem."""
    if not isinstance(data, Mapping):
        return None, [Problem("params", f"must be a mapping with a 'type', got {data!r}")]
    type_name = data.get("type")
    if type_name not in SOURCE_TYPES:
        what = "missing required field" if "type" not in data \
            else f"unknown source type {type_name!r}"
        return None, [Problem("params.type", f"{what} (known: {', '.join(SOURCE_TYPES)})")]
    source_type = SOURCE_TYPES[type_name]
    value, problems = salvage(source_type.params_class(), data)
    if value is not None and source_type.check is not None:
        problems += unreported(source_type.check(value), problems)
    return (value if not problems else None), problems


def check_source_params(data: Any) -> tuple[list[str], list[str]]:
    """Validate a source node's ``params`` without starting anything.

    Returns ``(problems, stream_names)``: every problem as ``field '<path>': <message>``, and the
    streams the source will produce (``timestamp`` first; empty when there are problems).
    """
    value, problems = parse_source_params(data)
    if value is None:
        return [str(p) for p in problems], []
    return [], source_streams(value)


def source_streams(p: Any) -> list[str]:
    """The streams of a parsed source params object (``timestamp`` first)."""
    return SOURCE_TYPES[p.type].streams(p)


def source_samples(p: Any) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """Each stream's per-sample shape and dtype for parsed params, when the type declares them
    (``SourceType.samples``), else None."""
    samples = SOURCE_TYPES[p.type].samples
    return samples(p) if samples is not None else None


def preflight_source(data: Any) -> str | None:
    """What stops the source of these params (parsed, or a mapping) from running on this
    machine (a missing device or display), or None. For the launcher, before it starts
    anything; never for ``genki validate``. Invalid params pass (the checker reports them)."""
    if isinstance(data, Mapping):
        data, _ = parse_source_params(data)
    if data is None:
        return None
    preflight = SOURCE_TYPES[data.type].preflight
    return preflight(data) if preflight is not None else None


def build_source(data: Any) -> Source:
    """Construct the source that params (parsed, or a mapping) describe (not started).

    Raises ``SourceParameterError`` listing every problem of invalid params.
    """
    if isinstance(data, Mapping):
        value, problems = parse_source_params(data)
        if value is None:
            raise SourceParameterError("invalid source params:\n  " +
                                       "\n  ".join(str(p) for p in problems))
        data = value
    return SOURCE_TYPES[data.type].build(data)
