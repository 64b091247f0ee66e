"""``SignalGraph.to_torch``: a graph as a PyTorch ``nn.Module`` that streams like the graph.

``forward(chunks, state) -> (outputs, new_state)``: ``chunks`` maps each input stream to a
``(n, *sample_shape)`` tensor, ``state`` holds every operator's carried state under the same
names as the ONNX export (``<operator>.state.<field>``; ``module.initial_state()`` gives the
start). Computation is float64, as in the Python operators; outputs are float64 tensors. The
module mirrors the ONNX emitters (``onnx_ops.py``) operator by operator, so the two exports
cross-check each other (``torch.onnx`` of this module vs the direct export).

Operators with a torch implementation are listed in ``TORCH_OPS``; any other raises
``ExportError`` naming the operator. The IIR filters loop over samples in Python (correct,
slow: the torch module is for training and export, not for the live path).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from genki_signals.export.builder import ExportError
from genki_signals.export.onnx_export import _needed, _parse_inputs
from genki_signals.export.onnx_ops import _dft_matrix, probe_shape
from genki_signals.signals import arithmetic as ar
from genki_signals.signals import calculus as ca
from genki_signals.signals import filters as fi
from genki_signals.signals import shape as sh
from genki_signals.signals import spectral as sp

__all__ = ["TORCH_OPS", "to_torch"]


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ExportError("SignalGraph.to_torch needs PyTorch: pip install "
                          "'genki-signals[torch]'") from exc
    return torch


class _State:
    """The state dicts of one forward call, scoped to one operator."""

    def __init__(self, torch: Any, name: str, old: Mapping[str, Any], new: dict[str, Any],
                 initial: dict[str, np.ndarray] | None) -> None:
        self.torch, self.name, self.old, self.new, self.initial = torch, name, old, new, initial

    def get(self, field: str, init: np.ndarray) -> Any:
        key = f"{self.name}.state.{field}"
        if self.initial is not None:
            self.initial[key] = np.asarray(init, dtype=np.float64)
        if key in self.old:
            return self.old[key]
        return self.torch.as_tensor(np.asarray(init, dtype=np.float64))

    def set(self, field: str, value: Any) -> None:
        self.new[f"{self.name}.state.{field}"] = value


def _prev(t, x, last):
    ext = t.cat([last[None], x])
    return ext[:-1], ext[-1]


def _first(t, x, fallback):
    return x[0] if x.shape[0] else fallback


def _started(t, st: _State, x):
    flag = st.get("started", np.array(0.0))
    st.set("started", flag.clamp(min=1.0) if x.shape[0] else flag)
    return flag > 0


def _differentiate(t, op, xs, shapes, st):
    x = xs[0]
    started = _started(t, st, x)
    last = st.get("last_x", np.zeros(shapes[0]))
    prev, new_last = _prev(t, x, t.where(started, last, _first(t, x, last)))
    st.set("last_x", new_last)
    y = x - prev
    if len(xs) == 2:
        b = xs[1]
        last_b = st.get("last_b", np.zeros(shapes[1]))
        prev_b, new_b = _prev(t, b, t.where(started, last_b, _first(t, b, last_b) - 1.0))
        st.set("last_b", new_b)
        db = b - prev_b
        if not shapes[1] and shapes[0]:
            db = db.reshape((-1,) + (1,) * len(shapes[0]))
        y = y / db
    return y


def _sample_rate(t, op, xs, shapes, st):
    prev, new_last = _prev(t, xs[0], st.get("last", np.full(shapes[0], np.nan)))
    st.set("last", new_last)
    return 1.0 / (xs[0] - prev)


def _delay(t, op, xs, shapes, st):
    if op.samples == 0:
        return xs[0]
    ext = t.cat([st.get("held", np.full((op.samples, *shapes[0]), float(op.fill))), xs[0]])
    n = xs[0].shape[0]
    st.set("held", ext[n:])
    return ext[:n]


def _window_sums(t, v, L):
    c = t.cumsum(v, 0)
    return c[L:] - c[:c.shape[0] - L]


def _moving_average(t, op, xs, shapes, st):
    L = op.length
    ext = t.cat([st.get("tail", np.full((L, *shapes[0]), np.nan)), xs[0]])
    st.set("tail", ext[ext.shape[0] - L:])
    nan, pos, neg = t.isnan(ext), ext == math.inf, ext == -math.inf
    missing = nan | pos | neg
    sums = _window_sums(t, t.where(missing, t.zeros_like(ext), ext), L)
    counts = _window_sums(t, (~missing).double(), L)
    y = t.where(counts > 0, sums / t.where(counts > 0, counts, t.ones_like(counts)),
                t.full_like(sums, math.nan))
    p = _window_sums(t, pos.double(), L) > 0
    q = _window_sums(t, neg.double(), L) > 0
    y = t.where(p, t.full_like(y, math.inf), y)
    y = t.where(q, t.full_like(y, -math.inf), y)
    return t.where(p & q, t.full_like(y, math.nan), y)


def _sos(t, st, x, sample, sos, zi_unit):
    started = _started(t, st, x)
    S = sos.shape[0]
    zi = st.get("zi", np.zeros((S, 2, *sample)))
    unit = t.as_tensor(zi_unit.reshape(zi_unit.shape + (1,) * len(sample)))
    z = t.where(started, zi, unit * _first(t, x, t.zeros(sample, dtype=t.float64)))
    z = [[z[s, 0], z[s, 1]] for s in range(S)]
    rows = []
    for i in range(x.shape[0]):  # direct form II transposed, as scipy.signal.sosfilt
        v = x[i]
        for s in range(S):
            b0, b1, b2, _, a1, a2 = (float(c) for c in sos[s])
            y = b0 * v + z[s][0]
            z[s] = [b1 * v - a1 * y + z[s][1], b2 * v - a2 * y]
            v = y
        rows.append(v)
    if x.shape[0]:
        st.set("zi", t.stack([t.stack(p) for p in z]))
        return t.stack(rows)
    st.set("zi", zi)
    return x * 0.0


def _butterworth(t, op, xs, shapes, st):
    return _sos(t, st, xs[0], shapes[0], op._sos, op._zi_unit)


def _ema(t, op, xs, shapes, st):
    a = float(op.alpha)
    return _sos(t, st, xs[0], shapes[0], np.array([[a, 0, 0, 1, a - 1, 0]]),
                np.array([[1 - a, 0.0]]))


def _fourier(t, op, xs, shapes, st):
    x, trail = xs[0], shapes[0]
    W, hop, F = op.window_size, op.hop, op.n_bins
    ext = t.cat([st.get("buffer", np.zeros((W - 1, *trail))), x])
    nxt = st.get("next", np.array(float(W)))
    n, need = x.shape[0], int(nxt.item())
    st.set("buffer", ext[ext.shape[0] - (W - 1):])
    st.set("next", t.as_tensor(float(need - n if n < need else hop - (n - need) % hop),
                               dtype=t.float64))
    starts = t.arange(need - 1, n, hop) if need - 1 < n else t.zeros(0, dtype=t.long)
    frames = ext[starts[:, None] + t.arange(W)[None]]                 # (k, W, *trail)
    nt = len(trail)
    if nt:
        frames = frames.permute(0, *range(2, 2 + nt), 1)
    ri = frames @ t.as_tensor(_dft_matrix(op))
    spec = t.sqrt(ri[..., :F] ** 2 + ri[..., F:] ** 2)
    if nt:
        spec = spec.permute(0, 1 + nt, *range(1, 1 + nt))
    if not op.upsample:
        return spec
    every = t.cat([st.get("last", np.zeros((1, F, *trail))), spec])
    st.set("last", every[-1:])
    d = t.arange(n) - (need - 1)
    return every[t.where(d < 0, t.zeros_like(d), d // hop + 1)]


def _norm(t, op, xs, shapes, st):
    flat = xs[0].reshape(xs[0].shape[0], math.prod(shapes[0]))
    if op.ord == 2:
        return t.sqrt((flat * flat).sum(1))
    if math.isinf(op.ord):
        return flat.abs().amax(1) if flat.shape[0] else flat.sum(1)
    return (flat.abs() ** float(op.ord)).sum(1) ** (1.0 / float(op.ord))


def _concatenate(t, op, xs, shapes, st):
    parts = [x[:, None] if not s else x for x, s in zip(xs, shapes)]
    return t.cat(parts, dim=op.axis + 1 if op.axis >= 0 else op.axis)


def _fold(fn):
    def emit(t, op, xs, shapes, st):
        y = xs[0]
        for x in xs[1:]:
            y = fn(y, x)
        return y
    return emit


def _log(t, op, xs, shapes, st):
    y = t.log(xs[0])
    return y if op.base is None or op.base == math.e else y / math.log(op.base)


TORCH_OPS: dict[type, Callable[..., Any]] = {
    ar.Scale: lambda t, op, xs, sh_, st: xs[0] * op.factor + op.offset,
    ar.Sum: _fold(lambda a, b: a + b), ar.Multiply: _fold(lambda a, b: a * b),
    ar.Difference: _fold(lambda a, b: a - b),
    ar.Abs: lambda t, op, xs, sh_, st: xs[0].abs(),
    ar.Exp: lambda t, op, xs, sh_, st: t.exp(xs[0]),
    ar.Pow: lambda t, op, xs, sh_, st: t.pow(xs[0], float(op.exponent)),
    ar.Log: _log,
    ar.Clip: lambda t, op, xs, sh_, st: t.clamp(xs[0], op.minimum, op.maximum),
    sh.ExtractDimension: lambda t, op, xs, sh_, st: xs[0][:, op.dim],
    sh.Concatenate: _concatenate, sh.Norm: _norm,
    ca.Differentiate: _differentiate, ca.SampleRate: _sample_rate, ca.Delay: _delay,
    ca.MovingAverage: _moving_average, ca.ExponentialMovingAverage: _ema,
    fi.LowPass: _butterworth, fi.HighPass: _butterworth, fi.BandPass: _butterworth,
    sp.FourierTransform: _fourier,
}


def to_torch(graph: Any, inputs: Any, outputs: Sequence[str]) -> Any:
    """An ``nn.Module`` streaming ``outputs`` of ``graph`` from ``inputs`` (see module doc)."""
    torch = _torch()
    specs = _parse_inputs(inputs)
    ops = _needed(graph, list(outputs), specs)
    for op in ops:
        if type(op) not in TORCH_OPS:
            raise ExportError(f"{op.describe()}: has no torch implementation (torch supports: "
                              f"{', '.join(sorted(c.__name__ for c in TORCH_OPS))})")
    shapes = {k: v[0] for k, v in specs.items()}
    for op in ops:
        shapes[op.name] = probe_shape(op, [shapes[k] for k in op.inputs])

    class GraphModule(torch.nn.Module):
        """``forward(chunks, state) -> (outputs, new_state)``; see ``to_torch``."""

        def __init__(self) -> None:
            super().__init__()
            self.inputs, self.outputs = list(specs), list(outputs)

        def _run(self, chunks, state, initial=None):
            values = {k: torch.as_tensor(chunks[k]).to(torch.float64) for k in specs}
            new: dict[str, Any] = {}
            for op in ops:
                st = _State(torch, op.name, state, new, initial)
                values[op.name] = TORCH_OPS[type(op)](
                    torch, op, [values[k] for k in op.inputs], [shapes[k] for k in op.inputs],
                    st)
            return {k: values[k] for k in outputs}, new

        def forward(self, chunks: Mapping[str, Any], state: Mapping[str, Any]):
            return self._run(chunks, state)

        def initial_state(self) -> dict[str, Any]:
            """Every state tensor at the start of a stream."""
            initial: dict[str, np.ndarray] = {}
            empty = {k: torch.zeros((0, *shapes[k]), dtype=torch.float64) for k in specs}
            self._run(empty, {}, initial)
            return {k: torch.as_tensor(v) for k, v in initial.items()}

    return GraphModule()
