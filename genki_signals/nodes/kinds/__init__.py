"""Node kinds: one module per kind in this package, each holding everything about its kind.

A kind module, named ``<kind>.py`` (or ``<kind>_<type>.py`` for one type of a kind with types,
such as ``sink_csv.py``), defines ``KIND = NodeKind(...)``: the spec's ``kind`` name (and, for sinks, the
``params.type`` it answers), its typed params class (``genki_signals.params``), whether it takes
inputs and publishes, the default queue policy of its input edges, an optional static
``outputs(params, ctx)`` hook (checks beyond the params' types, and the streams the node
publishes given its upstreams), and ``build(params, config) -> NodeLogic``. The spec checker
(``launch/spec.py``), ``genki schema`` and the node process (``python -m genki_signals.nodes``)
all use this registry; nothing else lists kinds. A kind is found by its name, a sink type by
``params.type``: checking a spec or starting a node imports only the modules of the kinds and
types it names (``kind_info``, ``select_kind``: a demo spec never imports the LSL, Foxglove or
ONNX kinds), while ``node_kinds()`` (``genki schema``, the "known: ..." of an unknown kind)
imports them all. Kind modules keep their heavy imports (logic classes, scipy, ONNX Runtime)
inside ``build`` and ``outputs`` (and may give ``params`` as a function that makes the class on
first use), so a node process imports only its own kind's dependencies.

Adding a kind: one new module here plus its tests (docs/topology-spec.md, "Adding a node kind").
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Problem, is_params_class, parse
from genki_signals.spec_paths import PathPolicy

__all__ = ["NodeKind", "KindContext", "Upstream", "Sample", "node_kinds", "entries_of",
           "kind_names", "kind_info", "is_kind", "select_kind", "parse_node_params", "build_logic",
           "Outputs"]

Policy = Literal["latest", "drop_oldest", "lossless"]
MAIN = "main"  # the timeline name of a node's main timeline

Outputs = tuple[list[Problem], "dict[str, str] | None"]
"""A kind's static check: problems (paths from ``params`` or ``inputs``) and what the node
publishes (stream -> timeline), or None when that cannot be known."""


Sample = tuple[tuple[int, ...], str]
"""What one sample of a stream is: its per-sample shape and its dtype (``np.dtype.str``)."""


@dataclass(frozen=True)
class Upstream:
    """An input as a kind's check sees it: its node and what it publishes (None: unknown)."""

    node: str
    streams: Mapping[str, str] | None  # stream -> timeline, None when the upstream is broken
    samples: Mapping[str, Sample] | None = None
    """stream -> per-sample shape and dtype, when the upstream declares them (the dry run's
    input, ``nodes/dry_run.py``); None when not known."""


@dataclass(frozen=True)
class KindContext:
    """What a kind's ``outputs`` hook gets besides its params: node id, inputs, spec directory,
    and where the spec's paths may point (``paths``; the ``InputPath``/``OutputPath`` params
    types check themselves against it while the spec is parsed)."""

    node_id: str
    upstreams: tuple[Upstream, ...]
    spec_dir: Path | None
    reported: tuple[str, ...] = ()  # params paths already reported by the parser: skip them
    paths: PathPolicy | None = None  # None: paths are not checked (in-process use)
    published_samples: dict[str, Sample] = field(default_factory=dict)
    """Filled by the ``outputs`` hook when it knows them: the per-sample shape and dtype of
    each stream the node publishes (a source's declared shapes, a replay's recorded ones, a
    graph's dry-run results), for the dry run of the nodes downstream."""

    @property
    def streams_known(self) -> bool:
        return all(u.streams is not None for u in self.upstreams)

    @property
    def input_nodes(self) -> list[str]:
        """The input node ids that exist (a broken input shows as ``?``)."""
        return [u.node for u in self.upstreams if u.node != "?"]

    def available(self) -> dict[str, str]:
        """Every stream name on the inputs -> the first input node providing it."""
        out: dict[str, str] = {}
        for u in self.upstreams:
            for name in u.streams or {}:
                out.setdefault(name, u.node)
        return out

    def missing_streams(self, keys: Any, path: str) -> list[Problem]:
        """A problem for each of ``keys`` that no input publishes (none while unknown)."""
        return [p for i, key in enumerate(keys or ())
                if (p := self.missing_stream(key, f"{path}[{i}]")) is not None]

    def missing_stream(self, key: str, path: str) -> Problem | None:
        """A problem when no input publishes ``key`` (None while the inputs are unknown)."""
        if not self.streams_known or key in (available := self.available()):
            return None
        return Problem(path, f"stream '{key}' is not published upstream "
                             f"(available: {', '.join(available)})")

    def resolve(self, path: str) -> Path:
        """A path from the spec, relative to the spec file's directory."""
        if self.paths is not None:
            return self.paths.resolve(path)
        p = Path(path).expanduser()
        return p if p.is_absolute() or self.spec_dir is None else self.spec_dir / p

    def check_path(self, path: str, *, must_exist: bool) -> str | None:
        """What is wrong with a path the spec gives (see ``genki_signals.spec_paths``)."""
        return None if self.paths is None else self.paths.check(path, must_exist=must_exist)[1]


@dataclass(frozen=True)
class NodeKind:
    """Everything about one node kind (or one sink type)."""

    kind: str  # the spec's ``kind``
    params: Any  # a ``genki_signals.params.params`` class, or a function making it on first use
    build: Callable[[Any, NodeConfig], NodeLogic]
    inputs: Literal["none", "required", "optional"]  # "none": a producer (a source)
    publishes: bool  # False: nothing may read from it and it binds no endpoint (a sink)
    doc: str
    type: str | None = None  # the ``params.type`` this entry answers (sinks), else None
    type_aliases: tuple[Any, ...] = ()  # other values of ``params.type`` meaning this type
    outputs: Callable[[Any, KindContext], Outputs] | None = None
    default_policy: Policy = "drop_oldest"  # an input edge's policy when the spec names none
    order: float = 100  # place in listings ("known: ..."); new kinds sort after, by name

    @property
    def params_class(self) -> type:
        """The params class (made now if ``params`` is a function making it)."""
        cls = self.params if isinstance(self.params, type) else self.params()
        if not is_params_class(cls):
            raise TypeError(f"kind '{self.kind}': params must be a genki_signals.params class, "
                            f"got {cls!r}")
        return cls

    def check(self, params: Any, ctx: KindContext) -> Outputs:
        """The ``outputs`` hook, or: a sink publishes nothing, others publish what is unknown."""
        if self.outputs is not None:
            return self.outputs(params, ctx)
        return [], ({} if not self.publishes else None)


def _module_names() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]


@functools.cache
def _entries(module_name: str) -> tuple[NodeKind, ...]:
    """The ``KIND`` (or the list ``KINDS``) of one kind module."""
    module = importlib.import_module(f"{__name__}.{module_name}")
    entries = getattr(module, "KINDS", [getattr(module, "KIND", None)])
    for kind in entries:
        if not isinstance(kind, NodeKind):
            raise TypeError(f"{module.__name__} must define KIND = NodeKind(...) or a list "
                            f"KINDS of them")
    return tuple(entries)


def _sorted(entries: list[NodeKind]) -> tuple[NodeKind, ...]:
    return tuple(sorted(entries, key=lambda k: (k.order, k.kind, k.type or "")))


@functools.cache
def node_kinds() -> tuple[NodeKind, ...]:
    """Every kind module's entries, in listing order (imports every kind module)."""
    found = _sorted([k for name in _module_names() for k in _entries(name)])
    for name in _module_names():
        for k in _entries(name):
            if name != k.kind and not (k.type is not None and name == f"{k.kind}_{k.type}"):
                raise TypeError(f"{__name__}.{name}: an entry of kind '{k.kind}'"
                                + (f" type '{k.type}'" if k.type else "") + " belongs in "
                                f"{k.kind}{f'_{k.type}' if k.type else ''}.py (the module a "
                                f"spec naming it imports)")
    for k in found:
        first = kind_info(k.kind)
        if (k.inputs, k.publishes, k.default_policy) != \
                (first.inputs, first.publishes, first.default_policy):
            raise TypeError(f"kind '{k.kind}': every type must agree on inputs, publishes "
                            f"and default_policy")
    return found


def _kind_modules(kind: str) -> list[str]:
    """The module names that may hold entries of ``kind``: ``<kind>`` first, then
    ``<kind>_<type>`` in name order."""
    names = _module_names()
    return [n for n in names if n == kind] + sorted(n for n in names
                                                     if n.startswith(f"{kind}_"))


@functools.cache
def entries_of(kind: str) -> tuple[NodeKind, ...]:
    """The entries of one kind, importing only its modules: ``<kind>.py`` and
    ``<kind>_<type>.py`` (every type of the kind)."""
    return _sorted([k for n in _kind_modules(kind) for k in _entries(n) if k.kind == kind])


def kind_names() -> list[str]:
    """The kind names a spec may use, in listing order (imports every kind module)."""
    return list(dict.fromkeys(k.kind for k in node_kinds()))


@functools.cache
def kind_info(kind: str) -> NodeKind:
    """An entry of ``kind``: what every type of that kind shares (inputs, publishes, default
    policy; ``node_kinds`` checks that they agree). Imports the kind's modules in the order of
    ``_kind_modules`` until one holds an entry of it, so a spec check imports one module per
    kind it names, not every sink type (KeyError if none)."""
    for name in _kind_modules(kind):
        for entry in _entries(name):
            if entry.kind == kind:
                return entry
    raise KeyError(kind)


def is_kind(kind: Any) -> bool:
    """Whether a spec may name ``kind`` (imports only that kind's modules, see ``kind_info``)."""
    if not isinstance(kind, str):
        return False
    try:
        kind_info(kind)
    except KeyError:
        return False
    return True


def _types(kind: str) -> list[NodeKind]:
    return [k for k in entries_of(kind) if k.type is not None]


def _type_entry(kind: str, type_name: str) -> NodeKind | None:
    """The entry of one type of a kind from its own module ``<kind>_<type>.py`` alone (None if
    there is no such module or it does not answer ``type_name``)."""
    module = f"{kind}_{type_name}"
    if not type_name.isidentifier() or module not in _module_names():
        return None
    return next((k for k in _entries(module) if k.kind == kind and k.type == type_name), None)


def select_kind(kind: str, params: Any) -> tuple[NodeKind | None, Any, list[Problem]]:
    """The entry for ``kind`` (by ``params.type`` for a kind with types), the params with a
    type alias made canonical, and the problem when no entry fits.

    A type named by its canonical name imports only its own module; an alias, a missing or
    unknown type (the error lists every type) imports every type of the kind."""
    if kind_info(kind).type is None:
        return kind_info(kind), params, []
    if isinstance(params, Mapping) and isinstance(params.get("type"), str):
        entry = _type_entry(kind, params["type"])
        if entry is not None:
            return entry, params, []
    types = _types(kind)
    names = [t.type for t in types]
    if not isinstance(params, Mapping):
        for t in types:  # already parsed (a NodeConfig made in-process)
            if isinstance(params, t.params_class):
                return t, params, []
        return None, params, [Problem("params", f"must be a mapping with a 'type' "
                                                f"({', '.join(names)}), got {params!r}")]
    if "type" not in params:
        return None, params, [Problem("params.type",
                                      f"missing required field (known: {', '.join(names)})")]
    for t in types:
        if params["type"] == t.type:
            return t, params, []
        if params["type"] in t.type_aliases:
            return t, {**params, "type": t.type}, []
    return None, params, [Problem("params.type", f"unknown {kind} type {params['type']!r} "
                                                 f"(known: {', '.join(names)})")]


def parse_node_params(config: NodeConfig) -> tuple[NodeKind, Any]:
    """The entry and typed params of a node config (raises ValueError naming the node)."""
    try:
        kind_info(config.kind)
    except KeyError:
        raise ValueError(f"node '{config.id}': unknown kind {config.kind!r}") from None
    params = config.params
    entry, data, problems = select_kind(config.kind, params)
    if entry is not None and not isinstance(data, entry.params_class):
        params, problems = parse(entry.params_class, data)
    if problems:
        raise ValueError(f"node '{config.id}': " + "; ".join(
            f"{p.message} (field '{p.path}')" for p in problems))
    return entry, params  # type: ignore[return-value]


def build_logic(config: NodeConfig) -> NodeLogic:
    """The logic object for a node (raises ValueError for an unknown kind or bad params)."""
    entry, params = parse_node_params(config)
    return entry.build(params, config)
