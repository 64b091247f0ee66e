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

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from genki_signals.errors import GraphError, OperatorError
from genki_signals.frames import TIMESTAMP, Frame, companion, is_companion
from genki_signals.signals.base import Operator
from genki_signals.signals.plan import MAIN, Step, index_operators, plan_steps

__all__ = ["MAIN", "SignalGraph"]


class SignalGraph:
    """An ordered, validated set of operators; the in-process engine of a graph node and System.

    ``source_keys`` (optional) are the stream names the source provides; with them, missing
    inputs are reported at construction. Without them, they are checked on the first frame.
    """

    def __init__(self, operators: Iterable[Operator] = (),
                 source_keys: Iterable[str] | None = None) -> None:
        self._ops: dict[str, Operator] = index_operators(operators)
        self._lock = threading.RLock()
        self._source_keys: frozenset[str] | None = None
        self._steps: list[Step] = []
        if source_keys is not None:
            self._source_keys = frozenset(source_keys)
        self._steps = plan_steps(self._ops, self._source_keys)

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
            self._steps = plan_steps(ops, self._source_keys)
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
            self._steps = plan_steps(ops, self._source_keys)
            return self._ops.pop(name)

    def validate(self, source_keys: Iterable[str]) -> None:
        """Check every input resolves given the source's keys (raises ``GraphError``)."""
        with self._lock:
            keys = frozenset(k for k in source_keys if not is_companion(k))
            self._steps = plan_steps(self._ops, keys)
            self._source_keys = keys

    def reset(self) -> None:
        """Reset every operator's state (e.g. before replaying a recording)."""
        for op in self._ops.values():
            op.reset()

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, dict[str, Any]]:
        """Every operator's carried state keyed by operator name (stateless ones: ``{}``):
        plain data a checkpoint stores (``signals.state.encode_state``) and a graph built from
        the same spec continues from (``load_state_dict``)."""
        with self._lock:
            return {name: op.state_dict() for name, op in self._ops.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load ``state_dict`` output into every operator. The operator names must be exactly
        this graph's; a state that does not fit an operator raises ``GraphError`` naming it,
        and then no operator keeps a partial state (all are reset)."""
        with self._lock:
            if not isinstance(state, Mapping):
                raise GraphError(f"graph state must be a mapping, got {type(state).__name__}")
            missing = sorted(set(self._ops) - set(state))
            extra = sorted(set(state) - set(self._ops))
            if missing or extra:
                raise GraphError(
                    "graph state does not fit this graph"
                    + (f"; no state for operator(s) {', '.join(missing)}" if missing else "")
                    + (f"; state for unknown operator(s) {', '.join(extra)}" if extra else ""))
            try:
                for name, op in self._ops.items():
                    op.load_state_dict(state[name])
            except OperatorError as exc:
                self.reset()
                raise GraphError(f"graph state does not fit operator '{name}': {exc}") from exc

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

    def to_onnx(self, path: Any, inputs: Any, outputs: list[str], opset: int | None = None,
                **options: Any) -> Any:
        """Write a streaming ONNX model of ``outputs`` computed from ``inputs`` (see
        ``genki_signals.export``: chunk + state in, outputs + next state out). ``inputs`` are
        stream names (scalar samples) or ``{name: sample_shape}``. Raises ``ExportError``
        naming the operator that cannot be exported."""
        from genki_signals.export import to_onnx  # same layer; lazy: onnx is optional

        return to_onnx(self, path, inputs, outputs, opset, **options)

    def to_torch(self, inputs: Any, outputs: list[str]) -> Any:
        """A PyTorch ``nn.Module``, ``forward(chunks, state) -> (outputs, new_state)``, that
        streams ``outputs`` like this graph (``genki_signals.export.torch_module``)."""
        # same layer; torch is optional, so imported on use
        from genki_signals.export.torch_module import to_torch

        return to_torch(self, inputs, outputs)

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
