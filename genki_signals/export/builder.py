"""A small ONNX graph builder: unique names, constants, nodes, and the carried state.

``OnnxBuilder`` collects nodes and initializers for one exported graph. Every tensor that flows
between operators is float64 with a dynamic leading time axis; constants are initializers.
``StateSlot`` records one carried state tensor: its graph input (the state before a chunk), its
graph output (the state after it), its dtype, shape and initial value, which go into the
model's metadata so a host can start from the model file alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genki_signals.errors import GraphError

__all__ = ["INT64_MAX", "ExportError", "OnnxBuilder", "StateSlot"]

INT64_MAX = np.iinfo(np.int64).max


class ExportError(GraphError):
    """A graph cannot be exported: the message names the operator and the reason."""


@dataclass
class StateSlot:
    """One carried state tensor of one operator."""

    operator: str
    field: str
    initial: np.ndarray
    output: str | None = None  # set by ``OnnxBuilder.set_state``

    @property
    def input(self) -> str:
        return f"{self.operator}.state.{self.field}"

    @property
    def output_name(self) -> str:
        return f"{self.input}.next"

    def describe(self) -> dict[str, Any]:
        return {"operator": self.operator, "field": self.field, "input": self.input,
                "output": self.output_name, "dtype": str(self.initial.dtype),
                "shape": list(self.initial.shape), "initial": self.initial.tolist()}


@dataclass
class OnnxBuilder:
    """Nodes, initializers and states of the graph being exported."""

    opset: int
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    states: list[StateSlot] = field(default_factory=list)
    domains: dict[str, int] = field(default_factory=dict)  # opsets of other domains (ML ops)
    scope: str = "graph"
    _count: int = 0

    # ----------------------------------------------------------------- naming
    def fresh(self, hint: str = "t") -> str:
        self._count += 1
        return f"{self.scope}/{hint}_{self._count}"

    # -------------------------------------------------------------- constants
    def const(self, value: Any, dtype: Any = np.float64, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def i64(self, value: Any, hint: str = "i") -> str:
        return self.const(value, np.int64, hint)

    # ------------------------------------------------------------------ nodes
    def node(self, op_type: str, inputs: list[str], hint: str | None = None,
             outputs: int = 1, **attrs: Any) -> Any:
        """Add one node; returns its output name (or a list of them when ``outputs > 1``)."""
        from onnx import helper

        names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names,
                                           name=self.fresh(op_type), **attrs))
        return names[0] if outputs == 1 else names

    def add(self, node: Any) -> None:
        self.nodes.append(node)

    # -------------------------------------------------------------- state
    def state(self, operator: str, field: str, initial: np.ndarray) -> str:
        """Declare a carried state tensor; returns the graph input holding it."""
        slot = StateSlot(operator, field, np.asarray(initial))
        if any(s.input == slot.input for s in self.states):
            raise ExportError(f"state '{slot.input}' declared twice")
        self.states.append(slot)
        return slot.input

    def set_state(self, operator: str, field: str, value: str) -> None:
        """The tensor holding the state after this chunk (copied to the state's output)."""
        from onnx import helper

        slot = next(s for s in self.states if s.operator == operator and s.field == field)
        slot.output = slot.output_name
        self.nodes.append(helper.make_node("Identity", [value], [slot.output_name],
                                           name=self.fresh("state_out")))

    # ------------------------------------------------------- common idioms
    def rows(self, x: str) -> str:
        """The number of rows of ``x``: an int64 tensor of shape (1,)."""
        return self.node("Shape", [x], "n", start=0, end=1)

    def scalar(self, x: str) -> str:
        """A one-element tensor as a scalar (shape ())."""
        return self.node("Reshape", [x, self.i64([])], "scalar")

    def rows_slice(self, x: str, start: int | str, end: int | str) -> str:
        """``x[start:end]`` along time; ``start``/``end`` are ints or int64 (1,) tensors."""
        s = start if isinstance(start, str) else self.i64([start])
        e = end if isinstance(end, str) else self.i64([end])
        return self.node("Slice", [x, s, e, self.i64([0])], "rows")

    def concat_rows(self, *xs: str) -> str:
        return self.node("Concat", list(xs), "cat", axis=0)

    def unsqueeze0(self, x: str) -> str:
        return self.node("Unsqueeze", [x, self.i64([0])], "row")

    def last_row(self, ext: str) -> str:
        """``ext[-1]`` (callers make sure ``ext`` has a row: the carried one before the chunk)."""
        return self.node("Gather", [ext, self.i64(-1)], "last", axis=0)

    def started(self, operator: str, x: str) -> tuple[str, str]:
        """A 0/1 "stream has started" flag state: (flag before the chunk, flag after it)."""
        flag = self.state(operator, "started", np.array(0.0))
        some = self.node("Cast", [self.node("Greater", [self.rows(x), self.i64([0])])],
                         to=11)
        after = self.node("Max", [flag, self.scalar(some)])
        return flag, after

    def first_or(self, x: str, fallback: str) -> str:
        """``x[0]``, or ``fallback`` (one row, no time axis) when the chunk is empty."""
        return self.node("Gather", [self.concat_rows(x, self.unsqueeze0(fallback)),
                                    self.i64(0)], "first", axis=0)

    def where_started(self, flag: str, carried: str, first: str) -> str:
        """``carried`` once the stream has started, else ``first`` (the chunk's first row)."""
        cond = self.node("Greater", [flag, self.const(0.0)])
        return self.node("Where", [cond, carried, first])

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int = 0) -> str:
        """A Reduce* node with ``axes`` as attribute or input, as the opset wants."""
        input_axes = self.opset >= 18 or op_type == "ReduceSum"
        if input_axes:
            return self.node(op_type, [x, self.i64(axes)], keepdims=keepdims)
        return self.node(op_type, [x], axes=axes, keepdims=keepdims)
