"""Export a SignalGraph (the part computing the requested outputs) as one streaming ONNX model.

The model's inputs are one chunk of each input stream (``(n, *sample_shape)``, dynamic ``n``)
and every carried state; its outputs are the requested streams and the states after the chunk.
Calling it chunk after chunk, the states fed back, streams like the Python graph. The states are
listed in the model's metadata (``genki.state``, JSON) with their initial values, so a
host needs nothing but the model file::

    meta = json.loads(session.get_modelmeta().custom_metadata_map["genki.state"])
    state = {s["input"]: np.array(s["initial"], dtype=s["dtype"]) for s in meta}
    for chunk in chunks:
        out = session.run(None, {"accel": chunk, **state})
        names = [o.name for o in session.get_outputs()]
        state = {s["input"]: out[names.index(s["output"])] for s in meta}

Inside, every stream is float64 (as in the Python operators), so the model agrees with the
graph to float64 rounding on the same inputs; inputs are declared float32 by default (float64
for ``timestamp``, whose epoch seconds float32 cannot hold) and outputs are float32 by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genki_signals.export.builder import ExportError, OnnxBuilder
from genki_signals.export.onnx_ops import DOUBLE, emit
from genki_signals.frames import TIMESTAMP, is_companion

__all__ = [
    "DEFAULT_OPSET",
    "INPUTS_KEY",
    "OUTPUTS_KEY",
    "STATE_KEY",
    "InputSpec",
    "build_model",
    "to_onnx",
]

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(17, 22)
STATE_KEY = "genki.state"
INPUTS_KEY = "genki.inputs"
OUTPUTS_KEY = "genki.outputs"

InputSpec = (Mapping[str, Any] | Sequence[str | tuple[str, Sequence[int]]])
"""Input streams: names (scalar samples), or ``{name: sample_shape}`` / ``{name: (shape,
dtype)}``, or ``(name, sample_shape)`` pairs."""


def _parse_inputs(inputs: InputSpec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    if isinstance(inputs, str):
        raise ExportError(f"inputs must be a list or mapping of stream names, got {inputs!r}")
    items: Iterable[Any] = inputs.items() if isinstance(inputs, Mapping) else \
        [(i, ()) if isinstance(i, str) else tuple(i) for i in inputs]
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for name, spec in items:
        default = np.dtype(np.float64 if name == TIMESTAMP else np.float32)
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], (str, type,
                                                                               np.dtype)):
            shape, dtype = spec[0], np.dtype(spec[1])
        else:
            shape, dtype = spec, default
        try:
            shape = tuple(int(d) for d in shape)
        except TypeError:
            raise ExportError(f"input '{name}': per-sample shape must be a list of ints, "
                              f"got {spec!r}") from None
        if dtype not in (np.float32, np.float64):
            raise ExportError(f"input '{name}': dtype must be float32 or float64, got {dtype}")
        out[str(name)] = (shape, dtype)
    return out


def _needed(graph: Any, outputs: Sequence[str], inputs: Mapping[str, Any]) -> list[Any]:
    """The operators the outputs depend on, in execution order; checks every input is given."""
    ops = {op.name: op for op in graph.operators}
    need: set[str] = set()
    stack = list(outputs)
    missing: list[str] = []
    while stack:
        name = stack.pop()
        if name in need or name in inputs:
            continue
        if is_companion(name):
            raise ExportError(f"stream '{name}': timestamp companions of new timelines are not "
                              f"exportable inputs")
        if name not in ops:
            missing.append(name)
            continue
        need.add(name)
        stack.extend(ops[name].inputs)
    if missing:
        raise ExportError(f"stream(s) {', '.join(sorted(set(missing)))} are neither operator "
                          f"outputs of the graph nor listed in inputs "
                          f"({', '.join(inputs) or 'none'})")
    return [op for op in graph.operators if op.name in need]


def build_model(graph: Any, inputs: InputSpec, outputs: Sequence[str], opset: int | None = None,
                output_dtype: Any = np.float32) -> Any:
    """The ``onnx.ModelProto`` streaming ``outputs`` of ``graph`` from ``inputs``."""
    import onnx
    from onnx import helper

    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported (use {SUPPORTED_OPSETS.start}-"
                          f"{SUPPORTED_OPSETS.stop - 1})")
    if isinstance(outputs, str) or not outputs:
        raise ExportError(f"outputs must be a non-empty list of stream names, got {outputs!r}")
    specs = _parse_inputs(inputs)
    out_dtype = np.dtype(output_dtype)
    b = OnnxBuilder(opset)
    values: dict[str, tuple[str, tuple[int, ...]]] = {}
    graph_inputs = []
    for name, (shape, dtype) in specs.items():
        elem = helper.np_dtype_to_tensor_dtype(dtype)
        graph_inputs.append(helper.make_tensor_value_info(name, elem, ["n", *shape]))
        values[name] = (b.node("Cast", [name], f"{name}_f64", to=DOUBLE), shape)
    for op in _needed(graph, list(outputs), specs):
        ins = [values[k] for k in op.inputs]
        values[op.name] = emit(b, op, [v[0] for v in ins], [v[1] for v in ins])
    graph_outputs = []
    out_elem = helper.np_dtype_to_tensor_dtype(out_dtype)
    for name in outputs:
        tensor, shape = values[name]
        b.add(helper.make_node("Cast", [tensor], [name], name=f"output/{name}", to=out_elem))
        rows = "n" if graph.timeline_of(name) == "" or name not in graph else f"n_{name}"
        graph_outputs.append(helper.make_tensor_value_info(name, out_elem, [rows, *shape]))
    for slot in b.states:
        elem = helper.np_dtype_to_tensor_dtype(slot.initial.dtype)
        graph_inputs.append(helper.make_tensor_value_info(slot.input, elem,
                                                          list(slot.initial.shape)))
        graph_outputs.append(helper.make_tensor_value_info(slot.output_name, elem,
                                                           list(slot.initial.shape)))
    g = helper.make_graph(b.nodes, "genki_signals_graph", graph_inputs, graph_outputs,
                          initializer=b.initializers)
    model = helper.make_model(g, producer_name="genki_signals",
                              opset_imports=[helper.make_opsetid("", opset)] + [
                                  helper.make_opsetid(d, v) for d, v in b.domains.items()])
    model.ir_version = min(model.ir_version, 8 if opset <= 17 else 9 if opset <= 20 else 10)
    helper.set_model_props(model, {
        STATE_KEY: json.dumps([s.describe() for s in b.states]),
        INPUTS_KEY: json.dumps({k: {"shape": list(s), "dtype": str(d)}
                                for k, (s, d) in specs.items()}),
        OUTPUTS_KEY: json.dumps(list(outputs)),
        "genki.graph": graph.to_json(),
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def to_onnx(graph: Any, path: str | Path, inputs: InputSpec, outputs: Sequence[str],
            opset: int | None = None, output_dtype: Any = np.float32) -> Path:
    """Write the streaming ONNX model of ``graph`` to ``path`` (see the module docstring)."""
    import onnx

    model = build_model(graph, inputs, outputs, opset, output_dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def initial_state(model_or_session: Any) -> dict[str, np.ndarray]:
    """The states to feed with the first chunk, read from a model's metadata."""
    if hasattr(model_or_session, "get_modelmeta"):
        meta = model_or_session.get_modelmeta().custom_metadata_map
    else:
        meta = {p.key: p.value for p in model_or_session.metadata_props}
    return {s["input"]: np.array(s["initial"], dtype=s["dtype"])
            for s in json.loads(meta[STATE_KEY])}
