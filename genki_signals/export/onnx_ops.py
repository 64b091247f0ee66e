"""ONNX emitters: one function per exportable operator type.

An emitter adds the nodes computing one operator for one chunk and returns the name of its
output tensor. Streams inside an exported graph are float64 ``(n, *sample_shape)`` with a
dynamic ``n`` (``n = 0`` included); the carried state is declared with ``OnnxBuilder.state``
and its next value given with ``OnnxBuilder.set_state``. Each emitter follows the Python
operator's own definition (see its docstring) so that chunk after chunk, the state fed back,
the model streams like the operator.

Which operators export, and how (``docs/export.md`` has the table):

* elementwise maths and shape operators: the matching ONNX ops;
* ``Differentiate``, ``Integrate``, ``SampleRate``, ``Delay``, ``MovingAverage``: carried last
  samples / tails, vectorised per chunk (``CumSum`` over the carried tail plus the chunk);
* ``LowPass``, ``HighPass``, ``BandPass``, ``ExponentialMovingAverage``: second-order sections
  run sample by sample in an ONNX ``Scan`` (the recursion has no closed vectorised form);
* ``GaussianSmooth``: a ``Conv`` over the carried tail plus the chunk;
* ``FourierTransform``: frames gathered from the carried buffer plus the chunk, and one
  ``MatMul`` by a real DFT matrix with the window and detrend folded in (no ``DFT`` op: a matmul
  runs on every ONNX runtime and is exact to float64 rounding);
* ``Inference`` (stateless, or stateful with a dynamic time axis): the model's graph inlined,
  its names prefixed with the operator's, its recurrent states carried as the operator's state;
* ``Combine``: its inner operators, states named ``combine.inner``.

Not exported (the error says why): event operators (events are not streams), orientation
operators, ``WindowedInference`` and models that must be stepped one sample per run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from genki_signals.export.builder import INT64_MAX, ExportError, OnnxBuilder
from genki_signals.signals import arithmetic as ar
from genki_signals.signals import calculus as ca
from genki_signals.signals import combine as co
from genki_signals.signals import filters as fi
from genki_signals.signals import inference as inf
from genki_signals.signals import shape as sh
from genki_signals.signals import spectral as sp
from genki_signals.signals.base import Operator

__all__ = ["EMITTERS", "NOT_EXPORTABLE", "emit"]

DOUBLE, FLOAT, INT64, BOOL = 11, 1, 7, 9

Shape = tuple[int, ...]
Emitter = Callable[[OnnxBuilder, Any, list[str], list[Shape], Shape], str]


# ----------------------------------------------------------------- arithmetic
def _scale(b: OnnxBuilder, op: ar.Scale, xs, shapes, out) -> str:
    y = b.node("Mul", [xs[0], b.const(op.factor)])
    return b.node("Add", [y, b.const(op.offset)])


def _fold(onnx_op: str) -> Emitter:
    def emit_fold(b: OnnxBuilder, op, xs, shapes, out) -> str:
        if len(set(shapes)) > 1:
            raise ExportError(f"{op.describe()}: inputs have different shapes {shapes}")
        y = xs[0]
        for x in xs[1:]:
            y = b.node(onnx_op, [y, x])
        return y
    return emit_fold


def _unary(onnx_op: str) -> Emitter:
    return lambda b, op, xs, shapes, out: b.node(onnx_op, [xs[0]])


def _pow(b: OnnxBuilder, op: ar.Pow, xs, shapes, out) -> str:
    return b.node("Pow", [xs[0], b.const(float(op.exponent))])


def _log(b: OnnxBuilder, op: ar.Log, xs, shapes, out) -> str:
    y = b.node("Log", [xs[0]])
    if op.base is None or op.base == math.e:
        return y
    return b.node("Mul", [y, b.const(1.0 / math.log(op.base))])


def _clip(b: OnnxBuilder, op: ar.Clip, xs, shapes, out) -> str:
    y = xs[0]
    if op.minimum is not None:
        y = b.node("Max", [y, b.const(float(op.minimum))])
    if op.maximum is not None:
        y = b.node("Min", [y, b.const(float(op.maximum))])
    return y


# ----------------------------------------------------------------- shape
def _extract(b: OnnxBuilder, op: sh.ExtractDimension, xs, shapes, out) -> str:
    if not shapes[0]:
        raise ExportError(f"{op.describe()}: input '{op.input}' has no channel axis")
    return b.node("Gather", [xs[0], b.i64(op.dim)], axis=1)


def _concatenate(b: OnnxBuilder, op: sh.Concatenate, xs, shapes, out) -> str:
    parts = [b.node("Unsqueeze", [x, b.i64([1])]) if not s else x for x, s in zip(xs, shapes)]
    ndim = len(out)
    axis = op.axis + 1 if op.axis >= 0 else op.axis + ndim + 1
    return b.node("Concat", parts, axis=axis)


def _stack(b: OnnxBuilder, op: sh.Stack, xs, shapes, out) -> str:
    ndim = len(out)
    axis = op.axis + 1 if op.axis >= 0 else op.axis + ndim + 1
    parts = [b.node("Unsqueeze", [x, b.i64([axis])]) for x in xs]
    return b.node("Concat", parts, axis=axis)


def _reshape(b: OnnxBuilder, op: sh.Reshape, xs, shapes, out) -> str:
    if 0 in out:
        raise ExportError(f"{op.describe()}: a per-sample shape with a 0-sized axis {out} "
                          f"is not exportable")
    return b.node("Reshape", [xs[0], b.i64([0, *out])])


def _norm(b: OnnxBuilder, op: sh.Norm, xs, shapes, out) -> str:
    size = math.prod(shapes[0])
    flat = b.node("Reshape", [xs[0], b.i64([0, size])])
    if op.ord == 2:
        return b.node("Sqrt", [b.reduce("ReduceSum", b.node("Mul", [flat, flat]), [1])])
    mag = b.node("Abs", [flat])
    if op.ord == 1:
        return b.reduce("ReduceSum", mag, [1])
    if math.isinf(op.ord):
        return b.reduce("ReduceMax", mag, [1])
    p = float(op.ord)
    total = b.reduce("ReduceSum", b.node("Pow", [mag, b.const(p)]), [1])
    return b.node("Pow", [total, b.const(1.0 / p)])


# ----------------------------------------------------------------- calculus
def _prev(b: OnnxBuilder, x: str, last: str) -> tuple[str, str]:
    """(``x`` shifted one row down with ``last`` on top, the new last row)."""
    ext = b.concat_rows(b.unsqueeze0(last), x)
    return b.rows_slice(ext, 0, -1), b.last_row(ext)


def _channel_col(b: OnnxBuilder, t: str, t_shape: Shape, x_shape: Shape) -> str:
    """A ``(n,)`` "with respect to" stream reshaped to broadcast over the input's channels."""
    if t_shape or not x_shape:
        if t_shape and t_shape != x_shape:
            raise ExportError(f"with-respect-to stream shape {t_shape} does not match {x_shape}")
        return t
    return b.node("Reshape", [t, b.i64([-1] + [1] * len(x_shape))])


def _differentiate(b: OnnxBuilder, op: ca.Differentiate, xs, shapes, out) -> str:
    x, name = xs[0], b.scope
    flag, after = b.started(name, x)
    last = b.state(name, "last_x", np.zeros(shapes[0]))
    first = b.first_or(x, last)
    last_eff = b.where_started(flag, last, first)  # before the stream: x[-1] = x[0], so y[0] = 0
    prev, new_last = _prev(b, x, last_eff)
    y = b.node("Sub", [x, prev])
    b.set_state(name, "last_x", new_last)
    if len(xs) == 2:
        t = xs[1]
        last_t = b.state(name, "last_b", np.zeros(shapes[1]))
        t_first = b.first_or(t, last_t)
        t_eff = b.where_started(flag, last_t, b.node("Sub", [t_first, b.const(1.0)]))
        prev_t, new_t = _prev(b, t, t_eff)  # first step: db = 1 keeps y[0] = 0
        dt = b.node("Sub", [t, prev_t])
        y = b.node("Div", [y, _channel_col(b, dt, shapes[1], shapes[0])])
        b.set_state(name, "last_b", new_t)
    b.set_state(name, "started", after)
    return y


def _first_row_mask(b: OnnxBuilder, x: str, flag: str, sample: Shape) -> str:
    """A ``(n, 1, ...)`` column: ``flag`` at row 0, 1 elsewhere (drops the first increment)."""
    idx = b.node("Range", [b.i64(0), b.scalar(b.rows(x)), b.i64(1)])
    is0 = b.node("Equal", [idx, b.i64(0)])
    col = b.node("Where", [is0, flag, b.const(1.0)])
    return b.node("Reshape", [col, b.i64([-1] + [1] * len(sample))])


def _integrate(b: OnnxBuilder, op: ca.Integrate, xs, shapes, out) -> str:
    x, name, sample = xs[0], b.scope, shapes[0]
    flag, after = b.started(name, x)
    if len(xs) == 2:
        t = xs[1]
        last_t = b.state(name, "last_t", np.zeros(shapes[1]))
        t_eff = b.where_started(flag, last_t, b.first_or(t, last_t))  # dt[0] = 0 at start
        prev_t, new_t = _prev(b, t, t_eff)
        dt: str | None = _channel_col(b, b.node("Sub", [t, prev_t]), shapes[1], sample)
        b.set_state(name, "last_t", new_t)
    else:
        dt = None
    if op.method == "trapezoid":
        last = b.state(name, "last_x", np.zeros(sample))
        prev, new_last = _prev(b, x, last)
        inc = b.node("Mul", [b.node("Add", [x, prev]), b.const(0.5)])
        b.set_state(name, "last_x", new_last)
    else:
        inc = x
    if dt is not None:
        inc = b.node("Mul", [inc, dt])
    inc = b.node("Mul", [inc, _first_row_mask(b, x, flag, sample)])
    acc = b.state(name, "acc", np.zeros(sample))
    y = b.node("Add", [b.node("CumSum", [inc, b.i64(0)]), acc])
    b.set_state(name, "acc", b.last_row(b.concat_rows(b.unsqueeze0(acc), y)))
    b.set_state(name, "started", after)
    return y


def _sample_rate(b: OnnxBuilder, op: ca.SampleRate, xs, shapes, out) -> str:
    last = b.state(b.scope, "last", np.full(shapes[0], np.nan))
    prev, new_last = _prev(b, xs[0], last)
    b.set_state(b.scope, "last", new_last)
    return b.node("Div", [b.const(1.0), b.node("Sub", [xs[0], prev])])


def _delay(b: OnnxBuilder, op: ca.Delay, xs, shapes, out) -> str:
    if op.samples == 0:
        return b.node("Identity", [xs[0]])
    held = b.state(b.scope, "held", np.full((op.samples, *shapes[0]), float(op.fill)))
    ext = b.concat_rows(held, xs[0])
    n = b.rows(xs[0])
    b.set_state(b.scope, "held", b.rows_slice(ext, n, INT64_MAX))
    return b.rows_slice(ext, 0, n)


def _window_sums(b: OnnxBuilder, values: str, L: int) -> str:
    """Sums of the windows of ``L`` rows ending at each chunk row of ``ext = tail + chunk``."""
    c = b.node("CumSum", [values, b.i64(0)])
    return b.node("Sub", [b.rows_slice(c, L, INT64_MAX), b.rows_slice(c, 0, -L)])


def _moving_average(b: OnnxBuilder, op: ca.MovingAverage, xs, shapes, out) -> str:
    """NaN-skipping windowed mean: the tail starts as NaN (missing), which gives the warm-up."""
    L = op.length
    tail = b.state(b.scope, "tail", np.full((L, *shapes[0]), np.nan))
    ext = b.concat_rows(tail, xs[0])
    b.set_state(b.scope, "tail", b.rows_slice(ext, -L, INT64_MAX))
    nan = b.node("IsNaN", [ext])
    pos = b.node("IsInf", [ext], detect_negative=0)
    neg = b.node("IsInf", [ext], detect_positive=0)
    missing = b.node("Or", [nan, b.node("Or", [pos, neg])])
    zero = b.const(0.0)
    values = b.node("Where", [missing, zero, ext])
    sums = _window_sums(b, values, L)
    counts = _window_sums(b, b.node("Cast", [b.node("Not", [missing])], to=DOUBLE), L)

    def any_in_window(mask: str) -> str:
        return b.node("Greater", [_window_sums(b, b.node("Cast", [mask], to=DOUBLE), L), zero])

    has = b.node("Greater", [counts, zero])
    safe = b.node("Where", [has, counts, b.const(1.0)])
    y = b.node("Where", [has, b.node("Div", [sums, safe]), b.const(np.nan)])
    p, q = any_in_window(pos), any_in_window(neg)
    y = b.node("Where", [p, b.const(np.inf), y])
    y = b.node("Where", [q, b.const(-np.inf), y])
    return b.node("Where", [b.node("And", [p, q]), b.const(np.nan), y])


# ----------------------------------------------------------------- filters
def _sos_scan(b: OnnxBuilder, x: str, sample: Shape, sos: np.ndarray, zi: str) -> tuple[str, str]:
    """Run second-order sections (direct form II transposed, as ``scipy.signal.sosfilt``) over
    the chunk in an ONNX ``Scan``, one step per sample. ``zi``: ``(S, 2, *sample)``. Returns
    (output, next zi)."""
    from onnx import TensorProto, helper, numpy_helper

    S = sos.shape[0]
    shape = list(sample)
    parts = b.node("Split", [b.node("Reshape", [zi, b.i64([2 * S, *shape] if shape else [2 * S])])],
                   "z", outputs=2 * S, axis=0, num_outputs=2 * S) if b.opset >= 18 else \
        b.node("Split", [b.node("Reshape", [zi, b.i64([2 * S, *shape] if shape else [2 * S])])],
               "z", outputs=2 * S, axis=0)
    parts = [parts] if isinstance(parts, str) else parts
    zs = [b.node("Squeeze", [p, b.i64([0])]) for p in parts]

    body_nodes, consts = [], {}

    def c(v: float) -> str:
        key = f"k{len(consts)}"
        consts[key] = v
        body_nodes.append(helper.make_node("Constant", [], [key], value=numpy_helper.from_array(
            np.array(v, dtype=np.float64), key)))
        return key

    count = [0]

    def nd(op_type: str, ins: list[str]) -> str:
        count[0] += 1
        out = f"v{count[0]}"
        body_nodes.append(helper.make_node(op_type, ins, [out]))
        return out

    v = "x_t"
    z_next: list[str] = []
    for s in range(S):
        b0, b1, b2, _, a1, a2 = (float(t) for t in sos[s])
        z0, z1 = f"z{2 * s}", f"z{2 * s + 1}"
        y = nd("Add", [nd("Mul", [v, c(b0)]), z0])
        n0 = nd("Add", [nd("Sub", [nd("Mul", [v, c(b1)]), nd("Mul", [y, c(a1)])]), z1])
        n1 = nd("Sub", [nd("Mul", [v, c(b2)]), nd("Mul", [y, c(a2)])])
        z_next += [n0, n1]
        v = y
    # Carried states, then scan outputs: y and every state after each step.
    outs = [nd("Identity", [z]) for z in z_next] + [nd("Identity", [v])] + \
        [nd("Identity", [z]) for z in z_next]
    tensor = lambda name: helper.make_tensor_value_info(name, TensorProto.DOUBLE, shape)
    body = helper.make_graph(
        body_nodes, "sos_step",
        [tensor(f"z{i}") for i in range(2 * S)] + [tensor("x_t")],
        [tensor(o) for o in outs])
    # ONNX Runtime's Scan fails on a zero-length sequence, so the chunk gets one extra row;
    # its output is dropped and the state taken after the chunk's own n rows.
    n = b.rows(x)
    padded = b.concat_rows(x, b.const(np.zeros((1, *sample))))
    res = b.node("Scan", [*zs, padded], "scan", outputs=4 * S + 1, body=body,
                 num_scan_inputs=1)
    y = b.rows_slice(res[2 * S], 0, n)
    at_n = b.scalar(n)
    after = [b.node("Gather", [b.concat_rows(b.unsqueeze0(z0), steps), at_n], axis=0)
             for z0, steps in zip(zs, res[2 * S + 1:])]
    zi_next = b.node("Reshape", [b.node("Concat", [b.unsqueeze0(z) for z in after], axis=0),
                                 b.i64([S, 2, *shape])])
    return y, zi_next


def _run_sos(b: OnnxBuilder, op: Any, x: str, sample: Shape, sos: np.ndarray,
             zi_unit: np.ndarray) -> str:
    """A filter with steady-state start: ``zi = zi_unit * x[0]`` on the stream's first chunk."""
    S = sos.shape[0]
    flag, after = b.started(b.scope, x)
    zi = b.state(b.scope, "zi", np.zeros((S, 2, *sample)))
    unit = b.const(zi_unit.reshape(zi_unit.shape + (1,) * len(sample)))
    start = b.node("Mul", [unit, b.first_or(x, b.const(np.zeros(sample)))])
    zi_eff = b.where_started(flag, zi, start)
    y, zi_next = _sos_scan(b, x, sample, sos, zi_eff)
    b.set_state(b.scope, "zi", b.where_started(after, zi_next, zi))
    b.set_state(b.scope, "started", after)
    return y


def _butterworth(b: OnnxBuilder, op: fi._SOSFilter, xs, shapes, out) -> str:
    return _run_sos(b, op, xs[0], shapes[0], op._sos, op._zi_unit)


def _ema(b: OnnxBuilder, op: ca.ExponentialMovingAverage, xs, shapes, out) -> str:
    a = float(op.alpha)
    sos = np.array([[a, 0.0, 0.0, 1.0, a - 1.0, 0.0]])
    return _run_sos(b, op, xs[0], shapes[0], sos, np.array([[1.0 - a, 0.0]]))


def _gaussian(b: OnnxBuilder, op: fi.GaussianSmooth, xs, shapes, out) -> str:
    x, name, sample, r = xs[0], b.scope, shapes[0], op._radius
    flag, after = b.started(name, x)
    tail = b.state(name, "tail", np.zeros((2 * r, *sample)))
    first = b.first_or(x, b.const(np.zeros(sample)))
    fill = b.node("Expand", [b.unsqueeze0(first), b.i64([2 * r, *sample])])
    tail_eff = b.where_started(flag, tail, fill)
    ext = b.concat_rows(tail_eff, x)                       # (2r + n, *sample)
    # Frames of the kernel's length ending at each chunk row, times the kernel: a MatMul
    # (ONNX Runtime has no float64 Conv).
    K = 2 * r + 1
    rows = b.node("Range", [b.i64(0), b.scalar(b.rows(x)), b.i64(1)])
    idx = b.node("Add", [b.node("Unsqueeze", [rows, b.i64([1])]), b.i64(np.arange(K)[None])])
    frames = b.node("Gather", [ext, idx], axis=0)          # (n, K, *sample)
    nd = len(sample)
    if nd:
        frames = b.node("Transpose", [frames], perm=[0, *range(2, 2 + nd), 1])
    y = b.node("MatMul", [frames, b.const(op._w[:, None])])  # (n, *sample, 1)
    y = b.node("Squeeze", [y, b.i64([-1])])
    b.set_state(name, "tail", b.where_started(
        after, b.rows_slice(ext, -2 * r, INT64_MAX), tail))
    b.set_state(name, "started", after)
    return y


# ----------------------------------------------------------------- spectral
def _dft_matrix(op: sp.FourierTransform) -> np.ndarray:
    """``(W, 2F)``: [Re | Im] of rfft, with the window and the detrend projection folded in."""
    W = op.window_size
    k = np.arange(op.n_bins)
    j = np.arange(W)
    angle = 2 * np.pi * np.outer(j, k) / W
    dft = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    proj = np.eye(W)
    if op.detrend in ("constant", "linear"):
        proj -= np.full((W, W), 1.0 / W)
    if op.detrend == "linear":
        proj -= np.outer(op._t, op._t) / op._tt
    return proj @ (op._win[:, None] * dft)


def _fourier(b: OnnxBuilder, op: sp.FourierTransform, xs, shapes, out) -> str:
    x, name, trail = xs[0], b.scope, shapes[0]
    W, hop, F = op.window_size, op.hop, op.n_bins
    buf = b.state(name, "buffer", np.zeros((W - 1, *trail)))
    nxt = b.state(name, "next", np.array(float(W)))   # samples still needed to end a window
    ext = b.concat_rows(buf, x)
    b.set_state(name, "buffer", b.rows_slice(ext, -(W - 1), INT64_MAX) if W > 1 else buf)
    n = b.scalar(b.rows(x))
    need = b.node("Cast", [nxt], to=INT64)
    i0 = b.node("Sub", [need, b.i64(1)])              # chunk row of the first window end
    starts = b.node("Range", [i0, n, b.i64(hop)])     # (k,) window starts in ext
    idx = b.node("Add", [b.node("Unsqueeze", [starts, b.i64([1])]), b.i64(np.arange(W)[None])])
    frames = b.node("Gather", [ext, idx], axis=0)     # (k, W, *trail)
    m = b.const(_dft_matrix(op))
    nt = len(trail)
    if nt:
        frames = b.node("Transpose", [frames], perm=[0, *range(2, 2 + nt), 1])
    ri = b.node("MatMul", [frames, m])                # (k, *trail, 2F)
    re, im = b.node("Split", [ri, b.i64([F, F])], outputs=2, axis=-1)
    spec = b.node("Sqrt", [b.node("Add", [b.node("Mul", [re, re]), b.node("Mul", [im, im])])])
    if nt:
        spec = b.node("Transpose", [spec], perm=[0, 1 + nt, *range(1, 1 + nt)])  # (k, F, *trail)
    short = b.node("Less", [n, need])
    left = b.node("Sub", [need, n])
    phase = b.node("Sub", [b.i64(hop), b.node("Mod", [b.node("Sub", [n, need]), b.i64(hop)])])
    b.set_state(name, "next", b.node("Cast", [b.node("Where", [short, left, phase])], to=DOUBLE))
    if not op.upsample:
        return spec
    last = b.state(name, "last", np.zeros((1, F, *trail)))
    every = b.concat_rows(last, spec)                 # (k + 1, F, *trail)
    rows = b.node("Range", [b.i64(0), n, b.i64(1)])
    d = b.node("Sub", [rows, i0])
    seen = b.node("Add", [b.node("Div", [d, b.i64(hop)]), b.i64(1)])
    pick = b.node("Where", [b.node("Less", [d, b.i64(0)]), b.i64(0), seen])
    b.set_state(name, "last", b.rows_slice(every, -1, INT64_MAX))
    return b.node("Gather", [every, pick], axis=0)


# ----------------------------------------------------------------- models
def _load_model_for(b: OnnxBuilder, op: inf.Inference):
    """The operator's model, checked for inlining and converted to the builder's opset."""
    import onnx

    if not op._whole_chunk:
        raise ExportError(f"{op.describe()}: not exportable: model '{op.model}' must be run one "
                          f"sample at a time (fixed batch or time dimension of 1); export a "
                          f"model with a dynamic batch (stateless) or time (stateful) axis")
    model = onnx.load(str(op.model_path))
    domains = {(o.domain or ""): o.version for o in model.opset_import}
    extra = set(domains) - {"", "ai.onnx", "ai.onnx.ml"}
    if extra:
        raise ExportError(f"{op.describe()}: not exportable: model '{op.model}' uses operator "
                          f"domains {sorted(extra)}")
    if "ai.onnx.ml" in domains:  # scikit-learn models converted by skl2onnx
        known = b.domains.setdefault("ai.onnx.ml", domains["ai.onnx.ml"])
        if known != domains["ai.onnx.ml"]:
            raise ExportError(f"{op.describe()}: model '{op.model}' uses ai.onnx.ml opset "
                              f"{domains['ai.onnx.ml']}, another model of the graph {known}")
    if domains.get("", domains.get("ai.onnx")) != b.opset:
        from onnx import version_converter
        try:
            model = version_converter.convert_version(model, b.opset)
        except Exception as exc:  # noqa: BLE001 - the converter raises many types
            raise ExportError(f"{op.describe()}: model '{op.model}' (opset "
                              f"{domains.get('')}) cannot be converted to opset {b.opset}: "
                              f"{exc}") from None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in model.graph.node for a in node.attribute):
        raise ExportError(f"{op.describe()}: not exportable: model '{op.model}' has nodes "
                          f"with subgraphs")
    return model


def _inference(b: OnnxBuilder, op: inf.Inference, xs, shapes, out) -> str:
    import onnx
    from onnx import helper, numpy_helper

    model = _load_model_for(b, op)
    g = model.graph
    prefix = f"{b.scope}/model/"
    ren = lambda s: prefix + s if s else s
    for init in g.initializer:
        t = onnx.TensorProto()
        t.CopyFrom(init)
        t.name = ren(init.name)
        b.initializers.append(t)
    dtype = op._model_dtype
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    data = b.node("Cast", [xs[0]], to=elem)
    if op.stateful:
        data = b.unsqueeze0(data)                       # (1, n, *S): the chunk as one sequence
    body = [helper.make_node("Identity", [data], [ren(op._data_name)], name=b.fresh("feed"))]
    states = []
    for name, init in zip(op._state_in, op._init):
        st = b.state(b.scope, name, init)
        states.append(st)
        body.append(helper.make_node("Identity", [st], [ren(name)], name=b.fresh("feed")))
    for node in g.node:
        copy = helper.make_node(node.op_type, [ren(i) for i in node.input],
                                [ren(o) for o in node.output], name=b.fresh(node.op_type),
                                domain=node.domain)
        copy.attribute.extend(node.attribute)
        body.append(copy)
    fetch = [op._out_name, *op._state_out]
    if not op.stateful:
        for node in body:
            b.add(node)
        return b.node("Cast", [ren(op._out_name)], to=DOUBLE)
    # ONNX Runtime aborts on a recurrent model run over an empty sequence, so an empty chunk
    # skips the model (If): no rows out, the states unchanged.
    types = {v.name: v.type.tensor_type.elem_type for v in g.output}
    then = helper.make_graph(body, f"{b.scope}_model", [], [
        helper.make_tensor_value_info(ren(o), types[o], None) for o in fetch])
    empty = np.zeros((1, 0, *out), dtype=helper.tensor_dtype_to_np_dtype(types[op._out_name]))
    skip_out = [b.fresh("skip") for _ in fetch]
    skip_nodes = [helper.make_node("Constant", [], [skip_out[0]],
                                   value=numpy_helper.from_array(empty, skip_out[0] + "_v"))]
    skip_nodes += [helper.make_node("Identity", [st], [o]) for st, o in zip(states, skip_out[1:])]
    skip = helper.make_graph(skip_nodes, f"{b.scope}_skip", [], [
        helper.make_tensor_value_info(o, types[f], None) for o, f in zip(skip_out, fetch)])
    some = b.node("Greater", [b.scalar(b.rows(xs[0])), b.i64(0)])
    res = b.node("If", [some], "model", outputs=len(fetch), then_branch=then, else_branch=skip)
    res = [res] if isinstance(res, str) else res
    for name, value in zip(op._state_in, res[1:]):
        b.set_state(b.scope, name, value)
    return b.node("Cast", [b.node("Squeeze", [res[0], b.i64([0])])], to=DOUBLE)


def _combine(b: OnnxBuilder, op: co.Combine, xs, shapes, out) -> str:
    values = dict(zip(op.inputs, zip(xs, shapes)))
    need, stack = set(), [op.output]  # only the inner operators the output depends on
    inner_ops = {o.name: o for o in op._order}
    while stack:
        name = stack.pop()
        if name in inner_ops and name not in need:
            need.add(name)
            stack.extend(inner_ops[name].inputs)
    for inner in (o for o in op._order if o.name in need):
        ins = [values[k] for k in inner.inputs]
        values[inner.name] = emit(b, inner, [v[0] for v in ins], [v[1] for v in ins],
                                  state_prefix=b.scope)
    return values[op.output][0]


EMITTERS: dict[type, Emitter] = {
    ar.Scale: _scale, ar.Sum: _fold("Add"), ar.Multiply: _fold("Mul"),
    ar.Difference: _fold("Sub"), ar.Abs: _unary("Abs"), ar.Exp: _unary("Exp"),
    ar.Pow: _pow, ar.Log: _log, ar.Clip: _clip,
    sh.ExtractDimension: _extract, sh.Concatenate: _concatenate, sh.Stack: _stack,
    sh.Reshape: _reshape, sh.Norm: _norm,
    ca.Differentiate: _differentiate, ca.Integrate: _integrate, ca.SampleRate: _sample_rate,
    ca.Delay: _delay, ca.MovingAverage: _moving_average, ca.ExponentialMovingAverage: _ema,
    fi.LowPass: _butterworth, fi.HighPass: _butterworth, fi.BandPass: _butterworth,
    fi.GaussianSmooth: _gaussian, sp.FourierTransform: _fourier,
    inf.Inference: _inference, co.Combine: _combine,
}

NOT_EXPORTABLE: dict[str, str] = {
    "EventTrigger": "it raises events, which are not streams an ONNX model can return",
    "Threshold": "it raises events, which are not streams an ONNX model can return",
    "ZeroCrossing": "it raises events, which are not streams an ONNX model can return",
    "WindowedInference": "windowed model runs are not exported yet (use FourierTransform-"
                         "style features or a stateful Inference)",
    "GravityFromQuaternion": "orientation operators are not exported yet",
    "QuaternionToEuler": "orientation operators are not exported yet",
    "Rotate": "orientation operators are not exported yet",
}


def emit(b: OnnxBuilder, op: Operator, xs: list[str], shapes: list[Shape],
         state_prefix: str | None = None) -> tuple[str, Shape]:
    """Emit one operator; returns (output tensor, per-sample output shape)."""
    kind = type(op).__name__
    emitter = EMITTERS.get(type(op))
    if emitter is None:
        why = NOT_EXPORTABLE.get(kind, "no ONNX emitter exists for this operator type")
        raise ExportError(f"{op.describe()}: not exportable to ONNX: {why}")
    out = probe_shape(op, shapes)
    # States and node names are scoped by the operator's name ("combine.inner" inside a Combine)
    saved, b.scope = b.scope, op.name if state_prefix is None else f"{state_prefix}.{op.name}"
    try:
        y = emitter(b, op, xs, shapes, out)
    finally:
        b.scope = saved
    return y, out


def probe_shape(op: Operator, shapes: list[Shape]) -> Shape:
    """The per-sample output shape, from a fresh copy of the operator run on one sample."""
    probe = Operator.from_dict(op.to_dict())
    with np.errstate(all="ignore"):
        y = probe(*[np.ones((1, *s)) for s in shapes])
    return tuple(y.shape[1:])
