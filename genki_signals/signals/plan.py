"""Planning operators over named streams: unique names, topological order, timelines.

The part of ``SignalGraph`` that needs nothing but the operators themselves.
``index_operators`` rejects non-operators and duplicate names; ``plan_steps`` resolves every
input to a source key or another operator's output, orders the operators topologically, rejects
cycles, and gives every output its timeline (see ``genki_signals.graph`` for what timelines
are). Every problem is reported at once, in one ``GraphError``.

Why here and not in ``graph.py``: ``Combine`` is an operator that runs a small graph, and
``graph.py`` imports the operators. Both plan with these functions, so ``signals/`` never
imports ``graph.py`` (``docs/architecture.md``).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from genki_signals.errors import GraphError
from genki_signals.frames import COMPANION_SUFFIX, companion, is_companion
from genki_signals.signals.base import Operator

__all__ = ["MAIN", "Step", "index_operators", "plan_steps"]

MAIN = ""
"""Name of the main timeline (the source's ``timestamp``)."""


@dataclass(frozen=True)
class Step:
    """One operator in execution order, with where its output's timestamps come from."""

    op: Operator
    timeline: str  # of the output: MAIN, or the name of the operator that started it
    input_timeline: str  # of the inputs (differs from ``timeline`` for new-timeline operators)


def index_operators(operators: Iterable[Operator]) -> dict[str, Operator]:
    """Operators by output name; raises ``GraphError`` listing every non-operator and duplicate."""
    ops: dict[str, Operator] = {}
    problems = []
    for i, op in enumerate(operators):
        if not isinstance(op, Operator):
            problems.append(f"derived signal {i} is not an operator: {op!r}")
        elif op.name in ops:
            problems.append(f"{op.describe()}: duplicate name '{op.name}' "
                            f"(also {ops[op.name].describe()})")
        else:
            ops[op.name] = op
    if problems:
        raise GraphError("invalid signal graph:\n  " + "\n  ".join(problems))
    return ops


def plan_steps(ops: Mapping[str, Operator], source_keys: frozenset[str] | None) -> list[Step]:
    """Topological order and timelines; raises ``GraphError`` listing every problem.

    Without ``source_keys`` (not known yet), inputs that are no operator's output are taken to
    be source keys and checked later.
    """
    problems: list[tuple[str | None, str]] = []  # (operator at fault, message)
    if source_keys is not None:
        for name, op in ops.items():
            if name in source_keys:
                problems.append((name, f"{op.describe()}: output name '{name}' clashes "
                                       f"with a source key"))
    known = set(ops) | (source_keys or set())
    known |= {companion(n) for n, o in ops.items() if o.new_timeline}
    if source_keys is not None:
        for op in ops.values():
            for i, input_name in enumerate(op.inputs):
                if input_name not in known:
                    problems.append((op.name, (
                        f"{op.describe()}: input {i} '{input_name}' is neither a source key "
                        f"nor an operator output (available: {', '.join(sorted(known))})")))
    sorter = graphlib.TopologicalSorter(
        {name: [_base(i) for i in op.inputs if _base(i) in ops] for name, op in ops.items()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        problems.append((None, "cycle: " + " -> ".join(
            f"{ops[n].describe()}" for n in cycle)))
        order = []
    timelines: dict[str, str] = {}
    steps: list[Step] = []
    for name in order:
        op = ops[name]
        input_lines = {i: timelines.get(_base(i), MAIN) for i in op.inputs}
        distinct = set(input_lines.values())
        if len(distinct) > 1:
            problems.append((name, (
                f"{op.describe()}: inputs are on different timelines ("
                + ", ".join(f"'{k}' on {v or 'the main timeline'}"
                            for k, v in input_lines.items())
                + "); align them first")))
        input_line = next(iter(distinct)) if distinct else MAIN
        line = name if op.new_timeline else input_line
        timelines[name] = line
        steps.append(Step(op, line, input_line))
    if problems:
        raise GraphError("invalid signal graph:\n  " + "\n  ".join(m for _, m in problems),
                         tuple(problems))
    return steps


def _base(name: str) -> str:
    """The stream a name refers to: ``K`` for ``K.timestamp``."""
    return name[: -len(COMPANION_SUFFIX)] if is_companion(name) else name
