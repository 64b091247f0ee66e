"""Deterministic ONNX test/demo models, built with ``onnx.helper`` (no downloads).

Each builder writes one ``.onnx`` file and returns its weights as float32 numpy arrays, so a test
can compute the same function independently in numpy::

    w = make_gru("gru.onnx", features=2, hidden=16, classes=4, seed=0)
    s.Inference("velocity", "gru.onnx", stateful=True)

Models (``N`` = dynamic batch, ``T`` = dynamic time):

* ``make_gru``: ``x (1, T, F)`` + state ``h (1, 1, H)`` -> ``probs (1, T, C)`` +
  ``h_out (1, 1, H)``; an ONNX ``GRU`` followed by ``softmax(y @ W_out + b_out)`` at every
  step. ``dynamic_time=False`` fixes ``T = 1`` (a model that must be stepped sample by sample).
* ``make_cnn``: ``x (N, W, F)`` -> ``probs (N, C)``: Conv1d (no padding) + Relu + global average
  pool over time + Gemm + Softmax. ``channels_first=True`` takes ``x (N, F, W)`` instead (the
  layout a PyTorch ``Conv1d`` export has).
* ``make_mlp``: ``x (N, F)`` -> ``probs (N, C)``: Gemm + Relu + Gemm + Softmax.

``batch=1`` makes the batch dimension a fixed 1 instead of dynamic (to test per-sample fallbacks).
Models use opset 17 and IR version 8 so that any onnxruntime from 1.14 on loads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

OPSET = 17
IR_VERSION = 8

__all__ = ["make_gru", "make_cnn", "make_mlp", "make_motion_gru", "MOTION_CLASSES", "write_all"]


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("building test models needs the 'onnx' package "
                          "(pip install onnx)") from exc
    return onnx


def _save(nodes, name, inputs, outputs, weights: Mapping[str, np.ndarray], path) -> None:
    """Assemble a graph with ``weights`` as initializers, check it and write it to ``path``."""
    onnx = _onnx()
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="genki_signals",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _batch_dim(batch: int | None) -> int | str:
    return "N" if batch is None else int(batch)


def make_gru(path, features: int = 2, hidden: int = 16, classes: int = 4, seed: int = 0, *,
             linear_before_reset: bool = True, dynamic_time: bool = True,
             weights: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A GRU classifier; returns ``{"W", "R", "Wb", "Rb", "W_out", "b_out"}``.

    ONNX conventions (gate order z, r, h): ``W (3H, F)``, ``R (3H, H)``, biases ``Wb, Rb (3H,)``;
    ``W_out (H, C)``, ``b_out (C,)``. ``linear_before_reset=True`` is PyTorch's GRU. ONNX's GRU is
    time-major (``layout=0``, and onnxruntime does not implement ``layout=1``), so the graph
    transposes ``(1, T, F)`` to ``(T, 1, F)`` and back. ``weights`` overrides any of the random
    weights (e.g. hand-made ones for a demo).
    """
    from onnx import TensorProto, helper

    F, H, C = features, hidden, classes
    rng = np.random.default_rng(seed)
    w = {
        "W": _f32(rng.normal(0, 1 / np.sqrt(F), (3 * H, F))),
        "R": _f32(rng.normal(0, 1 / np.sqrt(H), (3 * H, H))),
        "Wb": _f32(rng.normal(0, 0.1, 3 * H)),
        "Rb": _f32(rng.normal(0, 0.1, 3 * H)),
        "W_out": _f32(rng.normal(0, 1 / np.sqrt(H), (H, C))),
        "b_out": _f32(rng.normal(0, 0.1, C)),
    }
    for k, v in (weights or {}).items():
        if k not in w or np.shape(v) != w[k].shape:
            raise ValueError(f"make_gru: weight {k!r} must be one of {list(w)} with its shape")
        w[k] = _f32(v)
    T: int | str = "T" if dynamic_time else 1
    init = {
        "gru_W": w["W"][None], "gru_R": w["R"][None],
        "gru_B": np.concatenate([w["Wb"], w["Rb"]])[None],
        "W_out": w["W_out"], "b_out": w["b_out"],
        "axes_y": np.array([1, 2], dtype=np.int64), "axes_0": np.array([0], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_tm"], perm=[1, 0, 2]),           # (T, 1, F)
        helper.make_node("GRU", ["x_tm", "gru_W", "gru_R", "gru_B", "", "h"], ["y", "h_out"],
                         hidden_size=H, linear_before_reset=int(linear_before_reset)),
        helper.make_node("Squeeze", ["y", "axes_y"], ["y2"]),                     # (T, H)
        helper.make_node("MatMul", ["y2", "W_out"], ["logits0"]),
        helper.make_node("Add", ["logits0", "b_out"], ["logits"]),                # (T, C)
        helper.make_node("Softmax", ["logits"], ["p"], axis=-1),
        helper.make_node("Unsqueeze", ["p", "axes_0"], ["probs"]),                # (1, T, C)
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, F]),
              helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 1, H])]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, T, C]),
               helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 1, H])]
    _save(nodes, "gru_classifier", inputs, outputs, init, path)
    return w


def make_cnn(path, window: int = 32, features: int = 3, channels: int = 8, kernel: int = 5,
             classes: int = 3, seed: int = 0, *, channels_first: bool = False,
             batch: int | None = None) -> dict[str, np.ndarray]:
    """A 1-D CNN window classifier; returns ``{"conv_W", "conv_b", "W_out", "b_out"}``.

    ``conv_W (Ch, F, K)``, ``conv_b (Ch,)`` (valid convolution, stride 1), ``W_out (Ch, C)``,
    ``b_out (C,)``: ``probs = softmax(mean_t(relu(conv(x))) @ W_out + b_out)``.
    """
    from onnx import TensorProto, helper

    W, F, Ch, K, C = window, features, channels, kernel, classes
    if K > W:
        raise ValueError(f"make_cnn: kernel ({K}) must be <= window ({W})")
    rng = np.random.default_rng(seed)
    w = {
        "conv_W": _f32(rng.normal(0, 1 / np.sqrt(F * K), (Ch, F, K))),
        "conv_b": _f32(rng.normal(0, 0.1, Ch)),
        "W_out": _f32(rng.normal(0, 1 / np.sqrt(Ch), (Ch, C))),
        "b_out": _f32(rng.normal(0, 0.1, C)),
    }
    N = _batch_dim(batch)
    nodes = [] if channels_first else [
        helper.make_node("Transpose", ["x"], ["x_cf"], perm=[0, 2, 1])]         # (N, F, W)
    nodes += [
        helper.make_node("Conv", ["x" if channels_first else "x_cf", "conv_W", "conv_b"],
                         ["conv"], kernel_shape=[K]),                             # (N, Ch, W-K+1)
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),               # (N, Ch, 1)
        helper.make_node("Flatten", ["pooled"], ["feat"], axis=1),                # (N, Ch)
        helper.make_node("Gemm", ["feat", "W_out", "b_out"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    shape = [N, F, W] if channels_first else [N, W, F]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [N, C])]
    _save(nodes, "cnn_classifier", inputs, outputs, w, path)
    return w


def make_mlp(path, features: int = 4, hidden: int = 16, classes: int = 3, seed: int = 0, *,
             batch: int | None = None) -> dict[str, np.ndarray]:
    """A per-sample MLP classifier; returns ``{"W1", "b1", "W2", "b2"}``.

    ``probs = softmax(relu(x @ W1 + b1) @ W2 + b2)`` with ``W1 (F, H)``, ``W2 (H, C)``.
    """
    from onnx import TensorProto, helper

    F, H, C = features, hidden, classes
    rng = np.random.default_rng(seed)
    w = {
        "W1": _f32(rng.normal(0, 1 / np.sqrt(F), (F, H))),
        "b1": _f32(rng.normal(0, 0.1, H)),
        "W2": _f32(rng.normal(0, 1 / np.sqrt(H), (H, C))),
        "b2": _f32(rng.normal(0, 0.1, C)),
    }
    N = _batch_dim(batch)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, F])]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [N, C])]
    _save(nodes, "mlp_classifier", inputs, outputs, w, path)
    return w


MOTION_CLASSES = ["background", "motion"]


def make_motion_gru(path) -> dict[str, np.ndarray]:
    """A hand-made stateful GRU that detects motion from speed (px/s): the gesture demo's model.

    One input feature (speed), one hidden unit, classes ``MOTION_CLASSES``. The update gate is
    fixed at sigmoid(2.2) = 0.9, so the state is an exponential average (about 10 samples) of
    ``tanh(0.02 * speed - 3)``: about -1 at rest, about +1 above 250 px/s. The output is
    ``softmax([0, 6 h])``: p(motion) is 0.0025 at rest and 0.9975 while drawing a 100 px shape
    in a second. A stand-in for a trained gesture model with the same interface (stateful,
    per-sample class probabilities), whose behaviour is known, so tests can expect events.
    """
    return make_gru(path, features=1, hidden=1, classes=2, weights={
        "W": [[0.0], [0.0], [0.02]], "R": [[0.0], [0.0], [0.0]],
        "Wb": [2.2, 0.0, -3.0], "Rb": [0.0, 0.0, 0.0],
        "W_out": [[0.0, 6.0]], "b_out": [0.0, 0.0]})


def write_all(directory, seed: int = 0) -> dict[str, Path]:
    """Write the demo models (``gru.onnx``, ``cnn.onnx``, ``mlp.onnx``) to ``directory``.

    The GRU takes 2-D mouse-like velocity and scores 4 classes (background, square, triangle,
    circle), as in the seed notebook; the CNN takes windows of 128 samples of 3 channels and
    scores 3 classes, like the seed's swipe model.
    """
    d = Path(directory)
    paths = {"gru": d / "gru.onnx", "cnn": d / "cnn.onnx", "mlp": d / "mlp.onnx",
             "motion_gru": d / "motion_gru.onnx"}
    make_motion_gru(paths["motion_gru"])
    make_gru(paths["gru"], features=2, hidden=16, classes=4, seed=seed)
    make_cnn(paths["cnn"], window=128, features=3, channels=8, kernel=5, classes=3, seed=seed)
    make_mlp(paths["mlp"], features=4, hidden=16, classes=3, seed=seed)
    return paths


SWIPE_CLASSES = ["background", "swipe"]


def make_swipe_cnn(path, window: int = 128) -> dict[str, np.ndarray]:
    """A hand-made 1-D CNN that scores swipes of the Wave ring: the wave-swipe demo's model.

    Input ``x (N, window, 6)``: ``Concatenate(['linacc', 'gyro'])`` (g, deg/s). Conv1d, kernel
    5, 12 channels: a 5-tap moving average of each feature scaled by +s and -s (s = 100 for
    linacc, 1 for gyro: 1 g counts like 100 deg/s), so Relu + global average pool give the
    window's mean absolute activity per feature. Classes ``SWIPE_CLASSES``:
    ``softmax([0, 0.1 * sum(activity) - 4])``. At rest p(swipe) = 0.018; a 0.3 s swipe
    peaking at 400 deg/s with a 1.5 g push, whole in a 128-sample window at 100 Hz, gives
    about 0.98. A stand-in for a trained swipe model with the seed's interface (windows of
    linacc + gyro -> class probabilities) whose behaviour is known, so tests can expect events.
    """
    from onnx import TensorProto, helper

    F, K, C = 6, 5, 2
    scale = np.array([100.0, 100.0, 100.0, 1.0, 1.0, 1.0])
    conv_W = np.zeros((2 * F, F, K))
    for i in range(F):
        conv_W[2 * i, i, :] = scale[i] / K
        conv_W[2 * i + 1, i, :] = -scale[i] / K
    w = {"conv_W": _f32(conv_W), "conv_b": _f32(np.zeros(2 * F)),
         "W_out": _f32(np.stack([np.zeros(2 * F), np.full(2 * F, 0.1)], axis=1)),
         "b_out": _f32([0.0, -4.0])}
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_cf"], perm=[0, 2, 1]),           # (N, F, W)
        helper.make_node("Conv", ["x_cf", "conv_W", "conv_b"], ["conv"], kernel_shape=[K]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pooled"]),               # (N, 2F, 1)
        helper.make_node("Flatten", ["pooled"], ["feat"], axis=1),
        helper.make_node("Gemm", ["feat", "W_out", "b_out"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", window, F])]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", C])]
    _save(nodes, "swipe_cnn", inputs, outputs, w, path)
    return w
