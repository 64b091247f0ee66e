"""A SignalGraph exported to ONNX streams like the Python graph.

Every operator is either exportable or declared not exportable (``NOT_EXPORTABLE``, an error
naming the operator). For every exportable operator (the cases of tests/test_ops_registry.py)
and for the seed's chain plus a low-pass, Differentiate, Norm and the stateful GRU, the model
is run in ONNX Runtime chunk by chunk with its state fed back (``OnnxStream``: the state starts
from the model's metadata alone) on random chunkings, empty and one-sample chunks included,
and compared with the Python operators fed the same chunks. ``onnx.checker.check_model(
full_check=True)`` runs on every export (``build_model``).

Tolerances. Inputs are float32 (timestamps float64) and rounded to float32 before the Python
graph sees them too; inside the model every stream is float64 as in Python, and outputs are
float32. So the default tolerance is float32 output rounding, ``rtol = atol = 2e-6``;
``TOLERANCE`` lists the exceptions (with why).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from test_ops_registry import CASES, models, shipped_operators, timestamps, walk  # noqa: F401

import genki_signals.signals as s
from genki_signals.export import ExportError, OnnxStream, build_model
from genki_signals.export.onnx_ops import EMITTERS, NOT_EXPORTABLE
from genki_signals.graph import SignalGraph
from genki_signals.signals.base import OPERATORS
from genki_signals.testing.streaming import random_splits

DEFAULT_TOL = 2e-6
TOLERANCE = {
    # the models' own float32 arithmetic, same in Python and in the inlined graph but run by
    # differently fused kernels
    "Inference": 1e-5,
    # exp/log/pow of values up to ~e^3: float32 output rounding relative to the value
    "Exp": 1e-6, "Pow": 1e-6,
}
EXPORTABLE = sorted(t for t, cls in OPERATORS.items() if cls in EMITTERS)


def f32(x: np.ndarray, name: str) -> np.ndarray:
    """What a host feeds: float32 streams, float64 timestamps."""
    return np.asarray(x, dtype=np.float64 if name == "timestamp" else np.float32)


def stream_both(graph: SignalGraph, path, data: dict[str, np.ndarray], outputs: list[str],
                lengths: list[int]) -> tuple[dict, dict]:
    """Run the Python graph and the exported model over the same chunks; concatenated outputs."""
    model = OnnxStream(path)
    ref: dict[str, list] = {k: [] for k in outputs}
    got: dict[str, list] = {k: [] for k in outputs}
    n = len(next(iter(data.values())))
    graph.reset()
    start = 0
    for k in lengths:
        chunk = {name: x[start:start + k] for name, x in data.items()}
        frame = {name: np.asarray(x, dtype=np.float64) for name, x in chunk.items()}
        frame.setdefault("timestamp", np.arange(start, start + k, dtype=np.float64))
        py = graph.process(frame)
        out = model(chunk)
        for name in outputs:
            ref[name].append(np.asarray(py[name]))
            got[name].append(out[name])
        start += k
    assert start == n
    return ({k: np.concatenate(v) for k, v in ref.items()},
            {k: np.concatenate(v) for k, v in got.items()})


def assert_streams_like_graph(graph, tmp_path, data, outputs, tol=DEFAULT_TOL, count=4, seed=0):
    path = graph.to_onnx(tmp_path / "graph.onnx",
                         inputs={k: (v.shape[1:], v.dtype) for k, v in data.items()},
                         outputs=outputs)
    n = len(next(iter(data.values())))
    for lengths in random_splits(n, np.random.default_rng(seed), count=count):
        ref, got = stream_both(graph, path, data, outputs, lengths)
        for name in outputs:
            tol_k = tol[name] if isinstance(tol, dict) else tol
            assert got[name].shape == ref[name].shape, name
            np.testing.assert_allclose(got[name], ref[name], rtol=tol_k, atol=tol_k,
                                       err_msg=f"'{name}' differs, chunking {lengths[:12]}...")
    return path


# ---------------------------------------------------------------- every operator
def test_every_operator_is_exportable_or_declared_not():
    undeclared = sorted(t for t in shipped_operators()
                        if OPERATORS[t] not in EMITTERS and t not in NOT_EXPORTABLE)
    assert not undeclared, f"operators neither exportable nor in NOT_EXPORTABLE: {undeclared}"


@pytest.mark.parametrize("type_name", EXPORTABLE)
def test_exported_operator_streams_like_python(type_name, request, tmp_path):
    for i, case in enumerate(CASES[type_name]):
        needs_models = type_name in ("Inference", "WindowedInference")
        model_paths = request.getfixturevalue("models") if needs_models else {}
        op = case.make(model_paths)
        data = {name: f32(x, name) for name, x in zip(op.inputs, case.inputs())}
        graph = SignalGraph([op])
        case_dir = tmp_path / str(i)
        assert_streams_like_graph(graph, case_dir, data, [op.name],
                                  tol=TOLERANCE.get(type_name, DEFAULT_TOL), count=3)


@pytest.mark.parametrize("type_name", sorted(NOT_EXPORTABLE))
def test_not_exportable_operator_raises_naming_it(type_name, request, tmp_path):
    case = CASES[type_name][0]
    model_paths = request.getfixturevalue("models") if "Inference" in type_name else {}
    op = case.make(model_paths)
    graph = SignalGraph([op])
    inputs = {name: x.shape[1:] for name, x in zip(op.inputs, case.inputs())}
    with pytest.raises(ExportError, match=f"{type_name} '{op.name}': not exportable to ONNX: "
                                          f"{NOT_EXPORTABLE[type_name][:20]}"):
        graph.to_onnx(tmp_path / "x.onnx", inputs=inputs, outputs=[op.name])
    assert not (tmp_path / "x.onnx").exists()


def test_not_exportable_setting_raises_naming_operator(tmp_path):
    from genki_signals.testing.onnx_builders import make_gru

    make_gru(tmp_path / "stepped.onnx", features=2, hidden=4, classes=3, dynamic_time=False)
    graph = SignalGraph([s.Inference("v", str(tmp_path / "stepped.onnx"), stateful=True,
                                     name="probs")])
    with pytest.raises(ExportError, match=r"Inference 'probs': not exportable: model .* one "
                                          r"sample at a time"):
        graph.to_onnx(tmp_path / "x.onnx", inputs={"v": (2,)}, outputs=["probs"])


def test_missing_input_stream_is_named(tmp_path):
    graph = SignalGraph([s.Sum("a", "b", name="ab")])
    with pytest.raises(ExportError, match=r"stream\(s\) b are neither operator outputs"):
        graph.to_onnx(tmp_path / "x.onnx", inputs=["a"], outputs=["ab"])


# ---------------------------------------------------------------- the seed chain + more
N = 700


def seed_chain_graph(gru_path) -> SignalGraph:
    return SignalGraph([
        s.Sum("sine_0", "sine_1", name="composite_sine"),
        s.Sum("composite_sine", "noise", name="wave_with_noise"),
        s.FourierTransform("wave_with_noise", window_size=256, window_overlap=128,
                           name="wave_spectrum"),
        s.SampleRate("timestamp", name="sample_rate"),
        s.MovingAverage("sample_rate", length=10, name="smooth_sample_rate"),
        s.LowPass("wave_with_noise", cutoff=8.0, sample_rate=100.0, name="low"),
        s.Differentiate("accel", sig_b="timestamp", name="jerk"),
        s.Norm("jerk", name="jerk_norm"),
        s.ExtractDimension("accel", dim=[0, 1], name="accel_xy"),
        s.Inference("accel_xy", str(gru_path), stateful=True, name="gesture_probs"),
    ])


SEED_OUTPUTS = ["wave_with_noise", "wave_spectrum", "smooth_sample_rate", "low", "jerk_norm",
                "gesture_probs"]


def seed_data(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 1.76e9 + timestamps(seed=seed, n=n)  # epoch seconds: float32 could not hold them
    return {"sine_0": f32(5 * np.sin(2 * np.pi * 3 * t), ""),
            "sine_1": f32(2 * np.sin(2 * np.pi * 7 * t), ""),
            "noise": f32(rng.normal(size=n), ""),
            "timestamp": t,
            "accel": f32(walk(3, seed=seed + 1, n=n), "")}


def test_seed_chain_with_filter_derivative_norm_and_gru(tmp_path):
    from genki_signals.testing.onnx_builders import make_gru

    make_gru(tmp_path / "gru.onnx", features=2, hidden=8, classes=4, seed=1)
    graph = seed_chain_graph(tmp_path / "gru.onnx")
    tol = {k: DEFAULT_TOL for k in SEED_OUTPUTS}
    # 1/dt of jittered epoch timestamps: dt is known to ~1e-7 s in float64 (2^-22 at 1.76e9)
    tol["smooth_sample_rate"] = 1e-4
    tol["jerk_norm"] = 1e-4
    tol["gesture_probs"] = 1e-5
    path = assert_streams_like_graph(graph, tmp_path, seed_data(), SEED_OUTPUTS, tol=tol, count=5)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    states = json.loads(meta["genki.state"])
    names = {st["input"] for st in states}
    assert {"wave_spectrum.state.buffer", "low.state.zi", "jerk.state.last_x",
            "gesture_probs.state.h", "smooth_sample_rate.state.tail"} <= names
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    assert names <= inputs and {st["output"] for st in states} <= outputs
    # the python graph is not needed to run it: the GRU's weights are inside the file
    assert not any(i.endswith("gru.onnx") for i in inputs)


def test_state_is_carried_not_recomputed(tmp_path):
    """Feeding the initial state again mid-stream must change the output (the test can fail)."""
    graph = SignalGraph([s.LowPass("x", cutoff=5.0, sample_rate=100.0, name="lp")])
    path = graph.to_onnx(tmp_path / "lp.onnx", inputs=["x"], outputs=["lp"])
    x = f32(walk(1, n=200)[:, 0] + 3.0, "x")
    stream = OnnxStream(path)
    a = stream({"x": x[:100]})["lp"]
    b = stream({"x": x[100:]})["lp"]
    stream.reset()
    stream({"x": x[:100]})
    stream.reset()
    c = stream({"x": x[100:]})["lp"]
    ref = np.concatenate([a, b])
    np.testing.assert_allclose(ref, graph.process({"timestamp": np.arange(200.0),
                                                   "x": x.astype(float)})["lp"], rtol=2e-6,
                               atol=2e-6)
    assert not np.allclose(b, c, atol=1e-3)


def test_float64_outputs_and_opset_18(tmp_path):
    graph = SignalGraph([s.Norm("v", name="n", ord=np.inf), s.Scale("n", factor=2.0, name="m")])
    model = build_model(graph, {"v": (3,)}, ["m"], opset=18, output_dtype=np.float64)
    assert model.opset_import[0].version == 18
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    with pytest.raises(ExportError, match="opset 12 is not supported"):
        build_model(graph, {"v": (3,)}, ["m"], opset=12)


# ---------------------------------------------------------------- the CLI
@pytest.mark.process
def test_cli_exports_a_graph_node_of_a_spec(tmp_path):
    import pathlib

    spec = pathlib.Path(__file__).parent / "specs" / "valid-demo.json"
    out = tmp_path / "derived.onnx"
    res = subprocess.run([sys.executable, "-m", "genki_signals.cli", "export-graph", str(spec),
                          "derived", "--onnx", str(out), "--outputs",
                          "wave_spectrum,smooth_sample_rate"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    graph = SignalGraph.from_dict(json.loads(spec.read_text())["nodes"][1]["params"])
    data = seed_data(400)
    data = {k: data[k] for k in ("sine_0", "sine_1", "noise", "timestamp")}
    ref, got = stream_both(graph, out, data, ["wave_spectrum", "smooth_sample_rate"],
                           [37, 0, 1, 200, 162])
    np.testing.assert_allclose(got["wave_spectrum"], ref["wave_spectrum"], rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got["smooth_sample_rate"], ref["smooth_sample_rate"], rtol=1e-4)
    bad = subprocess.run([sys.executable, "-m", "genki_signals.cli", "export-graph", str(spec),
                          "printer", "--onnx", str(tmp_path / "x.onnx")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no graph node 'printer' (graph nodes: derived)" in bad.stderr
