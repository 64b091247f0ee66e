"""Combine: a named sub-graph of operators used as one operator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genki_signals.errors import GraphError, OperatorError
from genki_signals.signals.base import Event, Operator
from genki_signals.signals.plan import index_operators, plan_steps

__all__ = ["Combine"]


class Combine(Operator):
    """Run a small graph of operators as a single operator with one output.

    ``inputs`` are the outer streams the sub-graph reads (in call order); ``output`` names the
    inner stream returned (default: the last operator's). Inner names are private: only the
    combined result appears in the outer graph, under this operator's ``name``::

        s.Combine([s.Sum("a", "b", name="ab"), s.Scale("ab", factor=0.5, name="mean")],
                  inputs=["a", "b"], name="mean_ab")

    Why: a reusable block (a band-power estimate, a feature extractor) is named and serialised
    as one unit. Operators on a new timeline are not allowed inside: the output must stay on the
    inputs' timeline. Events raised by inner operators are this operator's events (their rows
    are rows of this operator's output, since every inner stream is on the same timeline).
    """

    def __init__(self, operators: Sequence[Operator | Mapping[str, Any]], inputs: Sequence[str],
                 output: str | None = None, name: str | None = None) -> None:
        if isinstance(inputs, str) or not isinstance(inputs, Sequence) or not inputs:
            raise OperatorError(f"Combine '{name}': field 'inputs' must be a non-empty list "
                                f"of stream names, got {inputs!r}")
        super().__init__(inputs, name)
        if isinstance(operators, (str, Mapping)) or not isinstance(operators, Sequence) \
                or not operators:
            raise self._fail("operators", "must be a non-empty list of operators")
        ops = []
        for i, op in enumerate(operators):
            try:
                ops.append(op if isinstance(op, Operator) else Operator.from_dict(op))
            except OperatorError as exc:
                raise self._fail("operators", f"item {i}: {exc}") from exc
        try:  # planned as a SignalGraph plans (signals/plan.py), without importing graph.py
            steps = plan_steps(index_operators(ops), frozenset(self.inputs))
        except GraphError as exc:
            raise self._fail("operators", f"do not form a valid graph over inputs "
                                          f"{list(self.inputs)}: {exc}") from exc
        bad = [o.describe() for o in ops if o.new_timeline]
        if bad:
            raise self._fail("operators", f"may not change the rate ({', '.join(bad)})")
        self.operators = ops
        self._order = [step.op for step in steps]  # execution (topological) order
        self.emits_events = any(o.emits_events for o in ops)
        names = [op.name for op in self._order]
        self.output = output if output is not None else names[-1]
        if self.output not in names:
            raise self._fail("output", f"names no inner operator: {self.output!r} "
                                       f"(have: {', '.join(names)})")

    def _step(self, *chunks: np.ndarray) -> np.ndarray:
        values = dict(zip(self.inputs, chunks))
        for op in self._order:
            values[op.name] = op(*[values[k] for k in op.inputs])
        return values[self.output]

    def pop_events(self) -> list[Event]:
        if not self.emits_events:
            return []
        events = [e for o in self._order if o.emits_events for e in o.pop_events()]
        return sorted(events, key=lambda e: e.row)

    def reset(self) -> None:
        super().reset()
        for op in self._order:
            op.reset()

    def state_dict(self) -> dict[str, Any]:
        """The inner operators' states, keyed by inner name (stateless ones included, empty)."""
        return {op.name: op.state_dict() for op in self._order}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = {op.name for op in self._order}
        if not isinstance(state, Mapping) or set(state) != names:
            have = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise self._fail("state", f"must hold one entry per inner operator "
                                      f"({', '.join(sorted(names))}), got {have}")
        for op in self._order:
            op.load_state_dict(state[op.name])
