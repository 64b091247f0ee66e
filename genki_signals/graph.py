"""SignalGraph: a validated DAG of operators over named streams.

The graph resolves every operator input to a source key or to another operator's output, orders
the operators topologically and rejects cycles, missing inputs and duplicate names before anything
runs (all problems are reported at once). ``process(frame)`` runs one chunk through every operator
and returns the frame extended with every derived stream.

Timelines. Source keys live on the frame's main timeline (``timestamp``). An operator with
``new_timeline`` (a windowed FFT without upsampling) starts a timeline of its own, named after its
output; operators downstream of it stay on that timeline, and every key of such a timeline carries
its timestamps as a ``K.timestamp`` companion (see ``genki_signals.frames``). An operator whose
inputs are on different timelines is rejected: joining rates is an aligner's job, never an accident.
"""

from __future__ import annotations

import graphlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from genki_signals.errors import GraphError, OperatorError
from genki_signals.frames import COMPANION_SUFFIX, TIMESTAMP, Frame, companion, is_companion
from genki_signals.signals.base import Operator

MAIN = ""
"""Name of the main timeline (the source's ``timestamp``)."""


@dataclass(frozen=True)
class _Step:
    """One operator in execution order, with where its output's timestamps come from."""

    op: Operator
    timeline: str  # of the output: MAIN, or the name of the operator that started it
    input_timeline: str  # of the inputs (differs from ``timeline`` for new-timeline operators)


class SignalGraph:
    """An ordered, validated set of operators; the in-process engine of a graph node and System.

    ``source_keys`` (optional) are the stream names the source provides; with them, missing
    inputs are reported at construction. Without them, they are checked on the first frame.
    """

    def __init__(self, operators: Iterable[Operator] = (),
                 source_keys: Iterable[str] | None = None) -> None:
        self._ops: dict[str, Operator] = {}
        self._lock = threading.RLock()
        self._source_keys: frozenset[str] | None = None
        self._steps: list[_Step] = []
        ops = list(operators)
        problems = []
        for i, op in enumerate(ops):
            if not isinstance(op, Operator):
                problems.append(f"derived signal {i} is not an operator: {op!r}")
            elif op.name in self._ops:
                problems.append(f"{op.describe()}: duplicate name '{op.name}' "
                                f"(also {self._ops[op.name].describe()})")
            else:
                self._ops[op.name] = op
        if problems:
            raise GraphError("invalid signal graph:\n  " + "\n  ".join(problems))
        if source_keys is not None:
            self._source_keys = frozenset(source_keys)
        self._steps = self._plan(self._ops, self._source_keys)

    # ---------------------------------------------------------------- structure
    @property
    def operators(self) -> list[Operator]:
        """Operators in execution (topological) order."""
        return [s.op for s in self._steps]

    @property
    def outputs(self) -> list[str]:
        return [s.op.name for s in self._steps]

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __getitem__(self, name: str) -> Operator:
        return self._ops[name]

    def timeline_of(self, name: str) -> str:
        """The timeline a stream is on: ``""`` for the main one, else the root operator's name."""
        for step in self._steps:
            if step.op.name == name:
                return step.timeline
        return MAIN

    def add(self, op: Operator) -> None:
        """Add an operator (also while a System runs); the graph is re-validated first."""
        with self._lock:
            if not isinstance(op, Operator):
                raise GraphError(f"not an operator: {op!r}")
            if op.name in self._ops:
                raise GraphError(f"{op.describe()}: duplicate name '{op.name}' "
                                 f"(also {self._ops[op.name].describe()})")
            ops = {**self._ops, op.name: op}
            self._steps = self._plan(ops, self._source_keys)
            self._ops = ops

    def remove(self, name: str) -> Operator:
        """Remove an operator by output name; refused while other operators read its output."""
        with self._lock:
            if name not in self._ops:
                raise GraphError(f"no operator named '{name}' (have: {', '.join(self._ops)})")
            users = [o.describe() for o in self._ops.values() if name in o.inputs]
            if users:
                raise GraphError(f"cannot remove '{name}': used by {', '.join(users)}")
            ops = {k: v for k, v in self._ops.items() if k != name}
            self._steps = self._plan(ops, self._source_keys)
            return self._ops.pop(name)

    def validate(self, source_keys: Iterable[str]) -> None:
        """Check every input resolves given the source's keys (raises ``GraphError``)."""
        with self._lock:
            keys = frozenset(k for k in source_keys if not is_companion(k))
            self._steps = self._plan(self._ops, keys)
            self._source_keys = keys

    def reset(self) -> None:
        """Reset every operator's state (e.g. before replaying a recording)."""
        for op in self._ops.values():
            op.reset()

    # ---------------------------------------------------------------- running
    def process(self, frame: Mapping[str, np.ndarray]) -> Frame:
        """Run one chunk through the graph; returns the input frame plus every derived stream.

        Raises ``OperatorError`` naming the operator when one fails.
        """
        if TIMESTAMP not in frame:  # an empty read: nothing to compute
            return dict(frame)
        with self._lock:
            if self._source_keys is None or not self._source_keys.issuperset(
                    k for k in frame if not is_companion(k)):
                self.validate(frame.keys())
            values: Frame = dict(frame)
            for step in self._steps:
                op = step.op
                try:
                    y = op(*[values[k] for k in op.inputs])
                except OperatorError:
                    raise
                except Exception as exc:  # numpy/scipy errors: say which operator failed
                    raise OperatorError(f"{op.describe()} failed: {type(exc).__name__}: {exc}") \
                        from exc
                values[op.name] = y
                if op.new_timeline:
                    ts_key = (TIMESTAMP if step.input_timeline == MAIN
                              else companion(step.input_timeline))
                    values[companion(op.name)] = values[ts_key][op.emitted]
                elif step.timeline != MAIN:
                    values[companion(op.name)] = values[companion(step.timeline)]
            return values

    __call__ = process

    # ---------------------------------------------------------------- serialising
    def to_dict(self) -> dict[str, Any]:
        return {"operators": [op.to_dict() for op in self.operators]}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], source_keys: Iterable[str] | None = None
                  ) -> "SignalGraph":
        """Build from ``to_dict`` output; every bad operator spec is reported at once."""
        if not isinstance(spec, Mapping) or set(spec) != {"operators"} or \
                not isinstance(spec["operators"], list):
            raise GraphError("a signal graph spec is a mapping with exactly one key, "
                             "'operators', holding a list of operator specs")
        ops, problems = [], []
        for i, op_spec in enumerate(spec["operators"]):
            try:
                ops.append(Operator.from_dict(op_spec))
            except OperatorError as exc:
                problems.append(f"operators[{i}]: {exc}")
        if problems:
            raise GraphError("invalid signal graph:\n  " + "\n  ".join(problems))
        return cls(ops, source_keys=source_keys)

    @classmethod
    def from_json(cls, text: str, source_keys: Iterable[str] | None = None) -> "SignalGraph":
        return cls.from_dict(json.loads(text), source_keys=source_keys)

    # ---------------------------------------------------------------- planning
    @staticmethod
    def _plan(ops: Mapping[str, Operator], source_keys: frozenset[str] | None) -> list[_Step]:
        """Topological order and timelines; raises ``GraphError`` listing every problem."""
        problems: list[str] = []
        if source_keys is not None:
            for name, op in ops.items():
                if name in source_keys:
                    problems.append(f"{op.describe()}: output name '{name}' clashes with a "
                                    f"source key")
        known = set(ops) | (source_keys or set())
        known |= {companion(n) for n, o in ops.items() if o.new_timeline}
        if source_keys is not None:
            for op in ops.values():
                for i, input_name in enumerate(op.inputs):
                    if input_name not in known:
                        problems.append(
                            f"{op.describe()}: input {i} '{input_name}' is neither a source key "
                            f"nor an operator output (available: {', '.join(sorted(known))})")
        sorter = graphlib.TopologicalSorter(
            {name: [_base(i) for i in op.inputs if _base(i) in ops] for name, op in ops.items()})
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            problems.append("cycle: " + " -> ".join(
                f"{ops[n].describe()}" for n in cycle))
            order = []
        timelines: dict[str, str] = {}
        steps: list[_Step] = []
        for name in order:
            op = ops[name]
            input_lines = {i: timelines.get(_base(i), MAIN) for i in op.inputs}
            distinct = set(input_lines.values())
            if len(distinct) > 1:
                problems.append(
                    f"{op.describe()}: inputs are on different timelines ("
                    + ", ".join(f"'{k}' on {v or 'the main timeline'}"
                                for k, v in input_lines.items())
                    + "); align them first")
            input_line = next(iter(distinct)) if distinct else MAIN
            line = name if op.new_timeline else input_line
            timelines[name] = line
            steps.append(_Step(op, line, input_line))
        if problems:
            raise GraphError("invalid signal graph:\n  " + "\n  ".join(problems))
        return steps


def _base(name: str) -> str:
    """The stream a name refers to: ``K`` for ``K.timestamp``."""
    return name[: -len(COMPANION_SUFFIX)] if is_companion(name) else name
