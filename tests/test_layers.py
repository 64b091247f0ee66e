"""Imports point down only: every module of genki_signals belongs to a layer, and may import its
own layer and the layers below it, never one above (docs/architecture.md draws the picture).

The walk reads every ``.py`` file with ``ast`` and counts, as imports:

* ``import x`` / ``from x import y`` anywhere, **including inside functions** (a lazy import is
  still a dependency; it only hides a cycle from an import-time check);
* string targets that name a module of the package, as given to ``importlib.import_module``
  or ``python -m`` and stored in registries (``"genki_signals.data_sources.synthetic:SineWave"``
  in ``data_sources/registry.py``, ``f"genki_signals.clocksync.{name}"`` in a lazy
  ``__getattr__``).

Layers are assigned by package, so a new module in an existing package needs no edit here; a
new top-level module or package fails ``test_every_module_has_a_layer`` until it gets a row.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import genki_signals

PACKAGE = "genki_signals"
PACKAGE_ROOT = Path(genki_signals.__file__).resolve().parent.parent  # holds genki_signals/

# Which layer a module is in: the longest dotted prefix found here wins ("genki_signals" itself
# only matches the package's own __init__).
LAYER_OF: dict[str, str] = {
    "genki_signals": "core",  # __version__ and the package docstring
    "genki_signals.errors": "core",
    "genki_signals.frames": "core",
    "genki_signals.clock": "core",
    "genki_signals.specfile": "core",
    "genki_signals.params": "core",  # typed params parsing, once it exists
    "genki_signals.spec_paths": "core",  # where a spec's file paths may point
    "genki_signals.signals": "signals",
    "genki_signals.graph": "graph",
    # Export sits with the graph: SignalGraph.to_onnx is a lazy hook into it (same layer), and
    # it reads operators and graphs only.
    "genki_signals.export": "graph",
    "genki_signals.sklearn": "graph",
    "genki_signals.buffers": "buffers",
    "genki_signals.bus": "bus",
    "genki_signals.clocksync": "clocksync",
    "genki_signals.record": "record",
    "genki_signals.data_sources": "data_sources",
    "genki_signals.system": "system",
    "genki_signals.plot": "plot",
    # The plot sink is a node kind (a NodeLogic over the plot library), so it sits with the
    # nodes although its file lives beside the plot code it drives. A layer assignment, not an
    # exception: it imports nodes.logic and plot/, and only nodes/ and launch/ import it.
    "genki_signals.plot.node": "nodes",
    "genki_signals.nodes": "nodes",
    # The live Foxglove view: a sink node kind plus its attach verb, like plot/node.py.
    "genki_signals.foxglove": "nodes",
    "genki_signals.launch": "launch",
    "genki_signals.testing": "testing",
    "genki_signals.demo": "cli",
    "genki_signals.cli": "cli",
    "genki_signals.__main__": "cli",  # python -m genki_signals: the genki command
}

# What each layer rests on directly; a layer may import these and everything below them.
RESTS_ON: dict[str, set[str]] = {
    "core": set(),
    "signals": {"core"},
    "graph": {"signals"},
    "buffers": {"core"},
    "bus": {"core"},
    "clocksync": {"bus"},
    "record": {"bus", "buffers"},
    "data_sources": {"signals", "clocksync", "record"},
    "system": {"graph", "buffers", "data_sources", "record"},
    "plot": {"buffers", "bus"},
    "nodes": {"graph", "data_sources", "plot"},
    "launch": {"nodes"},
    "testing": {"launch", "system"},
    "cli": {"launch", "system"},
}

# Imports allowed to point up: (importing module, imported module) -> why. At most one.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("genki_signals.buffers", "genki_signals.plot.notebook"):
        "DataBuffer.plot(key, plot_type=...) is the seed notebook's API; the import is lazy, "
        "inside the method, so a DataBuffer without the plot extra still works",
}

_MODULE_STRING = re.compile(r"genki_signals(\.\w+)+(:[\w.]+)?")


@dataclass(frozen=True)
class Edge:
    importer: str
    target: str
    path: Path
    line: int
    how: str  # "import", "import in a function", "string"

    def where(self) -> str:
        return f"{self.path}:{self.line} ({self.how})"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve_from(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _ImportCollector(ast.NodeVisitor):
    """Every import and module-naming string of one file, with whether it sits in a function."""

    def __init__(self, importer: str, is_package: bool, modules: set[str], path: Path,
                 package: str) -> None:
        self.importer, self.is_package, self.modules = importer, is_package, modules
        self.path, self.package = path, package
        self.depth = 0
        self.edges: list[Edge] = []

    def _add(self, target: str, node: ast.AST, how: str) -> None:
        if target == self.package or target.startswith(self.package + "."):
            if how != "string" and self.depth:
                how = "import in a function"
            self.edges.append(Edge(self.importer, target, self.path, node.lineno, how))

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve_from(node, self.importer, self.is_package)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.modules else base, node, "import")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            self._add(node.value.partition(":")[0], node, "string")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        # f"genki_signals.clocksync.{name}": the fixed prefix names the package it loads from
        head = node.values[0] if node.values else None
        if isinstance(head, ast.Constant) and isinstance(head.value, str) and \
                re.fullmatch(r"genki_signals(\.\w+)*\.", head.value):
            self._add(head.value.rstrip("."), node, "string")
        self.generic_visit(node)


@functools.cache
def import_edges(root: Path, package: str = PACKAGE) -> tuple[Edge, ...]:
    """Every import edge inside ``package`` (a directory under ``root``)."""
    files = sorted((root / package).rglob("*.py"))
    modules = {module_name(p, root) for p in files}
    edges: list[Edge] = []
    for path in files:
        collector = _ImportCollector(module_name(path, root), path.name == "__init__.py",
                                     modules, path.relative_to(root), package)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges += collector.edges
    return tuple(edges)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYER_OF and (n > 1 or len(parts) == 1):
            return LAYER_OF[prefix]
    return None


def below(layer: str) -> set[str]:
    """Every layer ``layer`` may import (its own excluded)."""
    seen: set[str] = set()
    todo = list(RESTS_ON[layer])
    while todo:
        lower = todo.pop()
        if lower not in seen:
            seen.add(lower)
            todo += RESTS_ON[lower]
    return seen


def upward_imports(edges: Iterable[Edge]) -> list[str]:
    """One line per import that points up (or names a module outside every layer)."""
    problems = []
    for e in edges:
        src, dst = layer_of(e.importer), layer_of(e.target)
        if src is None or dst is None:
            problems.append(f"{e.where()}: {e.importer} -> {e.target}: "
                            f"{e.importer if src is None else e.target} belongs to no layer")
        elif dst != src and dst not in below(src) and \
                (e.importer, e.target) not in ALLOWED_UPWARD:
            problems.append(f"{e.where()}: {e.importer} ({src}) imports {e.target} ({dst}), "
                            f"a layer above it")
    return list(dict.fromkeys(problems))  # one line per import statement, not per name


# ---------------------------------------------------------------------------------- the rules
def test_imports_point_down_only():
    problems = upward_imports(import_edges(PACKAGE_ROOT))
    assert not problems, "imports that point up (see docs/architecture.md):\n  " + \
        "\n  ".join(problems)


def test_every_module_has_a_layer():
    files = sorted((PACKAGE_ROOT / PACKAGE).rglob("*.py"))
    missing = [module_name(p, PACKAGE_ROOT) for p in files
               if layer_of(module_name(p, PACKAGE_ROOT)) is None]
    assert not missing, f"modules in no layer (add a row to LAYER_OF): {missing}"


def test_at_most_one_allowed_exception_and_it_is_real():
    assert len(ALLOWED_UPWARD) <= 1
    edges = {(e.importer, e.target): e for e in import_edges(PACKAGE_ROOT)}
    for pair, why in ALLOWED_UPWARD.items():
        assert pair in edges, f"stale exception, no such import any more: {pair}"
        assert why
        # and it points up indeed (else it needs no exception)
        assert layer_of(pair[1]) not in below(layer_of(pair[0])) | {layer_of(pair[0])}
        assert edges[pair].how == "import in a function", "the seed hook must stay lazy"


def test_layer_table_has_no_cycle():
    assert set(LAYER_OF.values()) == set(RESTS_ON)
    for layer in RESTS_ON:
        assert RESTS_ON[layer] <= set(RESTS_ON), f"{layer} rests on an unknown layer"
        assert layer not in below(layer), f"{layer} rests on itself through {below(layer)}"


def test_walk_sees_lazy_imports_and_registry_strings():
    """The real package's hidden edges are found, so the rules above are not vacuous."""
    edges = {(e.importer, e.target, e.how) for e in import_edges(PACKAGE_ROOT)}
    assert ("genki_signals.data_sources.registry", "genki_signals.data_sources.synthetic",
            "string") in edges  # SAMPLER_FUNCTIONS
    assert ("genki_signals.launch.launcher", "genki_signals.nodes", "string") in edges  # -m
    assert ("genki_signals.buffers", "genki_signals.plot.notebook",
            "import in a function") in edges


# ------------------------------------------------------------------ the checker can fail
def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_checker_fails_on_upward_imports_at_module_level_in_functions_and_in_strings(tmp_path):
    """A tiny package with the real layer names: every kind of upward import is reported."""
    _write(tmp_path, "genki_signals/__init__.py", "")
    _write(tmp_path, "genki_signals/errors.py", "class GenkiError(Exception): ...\n")
    _write(tmp_path, "genki_signals/graph.py", "from genki_signals.signals import base\n")
    _write(tmp_path, "genki_signals/signals/__init__.py", "")
    _write(tmp_path, "genki_signals/signals/base.py",
           "from genki_signals.errors import GenkiError\n"  # down: fine
           "from genki_signals.graph import SignalGraph\n")  # up, module level
    _write(tmp_path, "genki_signals/bus/__init__.py", "")
    _write(tmp_path, "genki_signals/bus/codec.py",
           "def encode():\n"
           "    from ..launch import spec\n"  # up, relative, inside a function
           "    return spec\n")
    _write(tmp_path, "genki_signals/record/__init__.py", "")
    _write(tmp_path, "genki_signals/record/reader.py",
           "import importlib\n"
           "KINDS = {'x': 'genki_signals.nodes.kinds:Thing'}\n"  # up, registry string
           "def load(name):\n"
           "    return importlib.import_module(f'genki_signals.plot.{name}')\n")  # up, f-string
    _write(tmp_path, "genki_signals/launch/__init__.py", "")
    _write(tmp_path, "genki_signals/launch/spec.py", "import genki_signals.bus.codec\n")  # down
    _write(tmp_path, "genki_signals/nodes/__init__.py", "")
    _write(tmp_path, "genki_signals/nodes/kinds.py", "")
    _write(tmp_path, "genki_signals/plot/__init__.py", "")

    problems = upward_imports(import_edges(tmp_path))
    assert len(problems) == 4, "\n".join(problems)
    text = "\n".join(problems)
    assert "signals/base.py:2 (import): genki_signals.signals.base (signals) imports " \
           "genki_signals.graph (graph)" in text
    assert "bus/codec.py:2 (import in a function): genki_signals.bus.codec (bus) imports " \
           "genki_signals.launch.spec (launch)" in text
    assert "record/reader.py:2 (string): genki_signals.record.reader (record) imports " \
           "genki_signals.nodes.kinds (nodes)" in text
    assert "record/reader.py:4 (string): genki_signals.record.reader (record) imports " \
           "genki_signals.plot (plot)" in text


def test_checker_names_a_module_in_no_layer(tmp_path):
    _write(tmp_path, "genki_signals/__init__.py", "")
    _write(tmp_path, "genki_signals/errors.py", "")
    _write(tmp_path, "genki_signals/newthing.py", "from genki_signals import errors\n")
    problems = upward_imports(import_edges(tmp_path))
    assert problems == ["genki_signals/newthing.py:1 (import): genki_signals.newthing -> "
                        "genki_signals.errors: genki_signals.newthing belongs to no layer"]
