"""The source types a topology spec can name: static checks, and construction in the node.

A source node's ``params`` name a ``type`` from ``SOURCE_TYPES``. The launcher calls
``check_source_params`` while validating the whole spec (nothing is started, no thread runs);
the node process calls ``build_source`` to make the ``Source`` it reads.

Each problem is a string ``field '<path>': <what is wrong>`` whose path starts at ``params``
(``params.sources.sine_0.frequency``), so the spec layer prefixes the file and node.

To add a source type, write a checker and a builder and add one ``SourceType`` entry; to add a
function a ``Sampler`` can sample, add one ``SAMPLER_FUNCTIONS`` entry (classes are imported
lazily, when a spec names them).

Device sources (``Mouse``, ``Keyboard``, ``Microphone``) also have a ``preflight``: the launcher
calls ``preflight_source`` for every source node before it starts any process, so a missing
device fails the launch at once, naming the node and the device (``genki validate`` never calls
it: validation touches no device).
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.frames import TIMESTAMP

__all__ = ["SOURCE_TYPES", "SAMPLER_FUNCTIONS", "SourceType", "check_source_params",
           "build_source", "preflight_source"]

STREAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""Stream names a spec may give: what an operator can read (``Operator`` input names)."""

Problems = list[str]


@dataclass(frozen=True)
class SourceType:
    """How a spec's ``params.type`` is checked statically and built inside the node process."""

    check: Callable[[Mapping[str, Any]], tuple[Problems, list[str]]]
    """Problems and the output stream names (``timestamp`` first)."""
    build: Callable[[Mapping[str, Any]], Source]
    """Construct the source from already-checked params."""
    doc: str = ""
    preflight: Callable[[Mapping[str, Any]], str | None] | None = None
    """Optional, for device sources: is the device there (checked-params -> a problem or
    None)? Called by the launcher before starting anything; must return promptly, open no
    stream and leave no thread behind."""


SAMPLER_FUNCTIONS: dict[str, str] = {
    "SineWave": "genki_signals.data_sources.synthetic:SineWave",
    "SquareWave": "genki_signals.data_sources.synthetic:SquareWave",
    "TriangleWave": "genki_signals.data_sources.synthetic:TriangleWave",
    "RandomNoise": "genki_signals.data_sources.synthetic:RandomNoise",
    "GestureScript": "genki_signals.data_sources.trajectory:GestureScript",
}
"""Functions of time a ``Sampler`` entry may name: ``type`` -> ``module:class``."""


def _field(path: str, message: str) -> str:
    return f"field '{path}': {message}"


def _load(qualname: str) -> Any:
    module, _, attr = qualname.partition(":")
    return getattr(importlib.import_module(module), attr)


def _lazy(qualname: str) -> Callable[..., Any]:
    """A function imported when first called (device modules stay unimported until needed)."""
    def call(*args: Any) -> Any:
        return _load(qualname)(*args)

    call.__qualname__ = call.__name__ = qualname
    return call


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_positive(params: Mapping[str, Any], key: str, path: str, problems: Problems,
                    required: bool) -> None:
    if key not in params:
        if required:
            problems.append(_field(f"{path}.{key}", "missing required field"))
        return
    value = params[key]
    if not _is_number(value) or value <= 0:
        problems.append(_field(f"{path}.{key}", f"must be a number > 0, got {value!r}"))


def _check_unknown(params: Mapping[str, Any], allowed: list[str], path: str,
                   problems: Problems) -> None:
    for key in params:
        if key not in allowed:
            problems.append(_field(f"{path}.{key}",
                                   f"unknown field (allowed: {', '.join(allowed)})"))


# ------------------------------------------------------------------ sampler functions
def _signature(cls: type) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                             inspect.Parameter.KEYWORD_ONLY)}


def _type_problem(value: Any, annotation: Any) -> str | None:
    """A message when ``value`` clearly does not fit a ``float``/``int``/``X | None`` hint."""
    hint = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = {p.strip() for p in hint.split("|")}
    if value is None:
        return None if "None" in parts or "Optional" in hint else "must not be null"
    if "float" in parts and not _is_number(value):
        return f"must be a number, got {value!r}"
    if "float" not in parts and "int" in parts and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        return f"must be an integer, got {value!r}"
    return None


def _check_function(name: str, spec: Any, path: str, problems: Problems) -> Any | None:
    """Check one ``sources`` entry; returns the constructed function when it is valid."""
    if not isinstance(spec, Mapping):
        problems.append(_field(path, f"must be a mapping with a 'type' "
                                     f"({', '.join(SAMPLER_FUNCTIONS)}), got {spec!r}"))
        return None
    type_name = spec.get("type")
    if type_name not in SAMPLER_FUNCTIONS:
        what = "missing required field" if "type" not in spec else f"unknown type {type_name!r}"
        problems.append(_field(f"{path}.type",
                               f"{what} (known: {', '.join(SAMPLER_FUNCTIONS)})"))
        return None
    cls = _load(SAMPLER_FUNCTIONS[type_name])
    params = _signature(cls)
    given = {k: v for k, v in spec.items() if k != "type"}
    _check_unknown(given, list(params), path, problems)
    kwargs, complete = {}, True
    for key, value in given.items():
        if key in params:
            message = _type_problem(value, params[key].annotation)
            if message:
                problems.append(_field(f"{path}.{key}", message))
                complete = False
            else:
                kwargs[key] = value
    for key, p in params.items():
        if p.default is inspect.Parameter.empty and key not in given:
            problems.append(_field(f"{path}.{key}", "missing required field"))
            complete = False
    if not complete:  # the constructor would only repeat these problems
        return None
    try:
        return cls(**kwargs)
    except (SourceParameterError, ValueError, TypeError) as exc:
        # The constructor's own validation: point at the field its message names.
        named = [k for k in re.findall(r"'([A-Za-z_]\w*)'", str(exc)) if k in kwargs]
        problems.append(_field(f"{path}.{named[0]}" if named else path, str(exc)))
        return None


# ------------------------------------------------------------------ Sampler
_SAMPLER_KEYS = ["type", "sample_rate", "update_rate", "sources"]


def _check_sampler(params: Mapping[str, Any]) -> tuple[Problems, list[str]]:
    problems: Problems = []
    _check_unknown(params, _SAMPLER_KEYS, "params", problems)
    _check_positive(params, "sample_rate", "params", problems, required=True)
    _check_positive(params, "update_rate", "params", problems, required=False)
    sources = params.get("sources")
    names: list[str] = []
    if "sources" not in params:
        problems.append(_field("params.sources", "missing required field"))
    elif not isinstance(sources, Mapping) or not sources:
        problems.append(_field("params.sources", "must be a non-empty mapping of stream name "
                                                 f"-> {{type: ...}}, got {sources!r}"))
    else:
        for name, spec in sources.items():
            path = f"params.sources.{name}"
            if not isinstance(name, str) or not STREAM_NAME.match(name) or name == TIMESTAMP:
                problems.append(_field(path, f"bad stream name {name!r} (letters, digits, "
                                             f"underscore; not '{TIMESTAMP}')"))
                continue
            names.append(name)
            _check_function(name, spec, path, problems)
    return problems, [TIMESTAMP, *names]


def _build_sampler(params: Mapping[str, Any]) -> Source:
    from genki_signals.data_sources.sampler import Sampler

    functions = {name: _load(SAMPLER_FUNCTIONS[spec["type"]])(
                     **{k: v for k, v in spec.items() if k != "type"})
                 for name, spec in params["sources"].items()}
    # update_rate is the node's publish rate, not the Sampler's business.
    return Sampler(functions, sample_rate=params["sample_rate"])


_MOUSE = "genki_signals.data_sources.mouse"
_KEYBOARD = "genki_signals.data_sources.keyboard"
_MIC = "genki_signals.data_sources.microphone"


SOURCE_TYPES: dict[str, SourceType] = {
    "Sampler": SourceType(_check_sampler, _build_sampler,
                          "functions of time sampled at sample_rate (SineWave, RandomNoise...)"),
    "lsl": SourceType(_lazy("genki_signals.data_sources.lsl:check_lsl_params"),
                      _lazy("genki_signals.data_sources.lsl:build_lsl_source"),
                      "a Lab Streaming Layer stream (LSLSourceParams: name, content_type, "
                      "source_id, channels...; the lsl extra)"),
    "Mouse": SourceType(_lazy(f"{_MOUSE}:check_mouse_params"),
                        _lazy(f"{_MOUSE}:build_mouse_source"),
                        "the pointer via pynput, sampled at sample_rate (MouseParams)",
                        preflight=_lazy(f"{_MOUSE}:mouse_preflight")),
    "Keyboard": SourceType(_lazy(f"{_KEYBOARD}:check_keyboard_params"),
                           _lazy(f"{_KEYBOARD}:build_keyboard_source"),
                           "named keys (0/1 each) via pynput, sampled at sample_rate "
                           "(KeyboardParams)",
                           preflight=_lazy(f"{_KEYBOARD}:keyboard_preflight")),
    "Microphone": SourceType(_lazy(f"{_MIC}:check_mic_params"), _lazy(f"{_MIC}:build_mic_source"),
                             "an audio input via sounddevice, on its own clock (MicParams)",
                             preflight=_lazy(f"{_MIC}:mic_preflight")),
    "wave": SourceType(_lazy("genki_signals.data_sources.wave.params:check"),
                       _lazy("genki_signals.data_sources.wave.params:build"),
                       "the Genki Wave ring over Bluetooth LE (params: WaveParams)",
                       _lazy("genki_signals.data_sources.wave.params:preflight")),
}
"""Source types a spec's ``params.type`` may name."""


# ------------------------------------------------------------------ entry points
def check_source_params(params: Any) -> tuple[Problems, list[str]]:
    """Validate a source node's ``params`` without starting anything.

    Returns ``(problems, stream_names)``: every problem as ``field '<path>': <message>``, and the
    streams the source will produce (``timestamp`` first; meaningful only without problems).
    """
    if not isinstance(params, Mapping):
        return [_field("params", f"must be a mapping with a 'type', got {params!r}")], []
    type_name = params.get("type")
    if type_name not in SOURCE_TYPES:
        what = "missing required field" if "type" not in params else f"unknown source type " \
                                                                     f"{type_name!r}"
        return [_field("params.type", f"{what} (known: {', '.join(SOURCE_TYPES)})")], []
    return SOURCE_TYPES[type_name].check(params)


def preflight_source(params: Mapping[str, Any]) -> str | None:
    """Why the source of these (checked) params cannot run on this machine, or None.

    Only device source types have a preflight; the others always pass.
    """
    source_type = SOURCE_TYPES.get(params.get("type")) if isinstance(params, Mapping) else None
    if source_type is None or source_type.preflight is None:
        return None
    return source_type.preflight(params)


def build_source(params: Mapping[str, Any]) -> Source:
    """Construct the source a node's ``params`` describe (raises ``SourceParameterError``)."""
    problems, _ = check_source_params(params)
    if problems:
        raise SourceParameterError("invalid source params:\n  " + "\n  ".join(problems))
    return SOURCE_TYPES[params["type"]].build(params)
