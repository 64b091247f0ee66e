"""The torch backend: ``SignalGraph.to_torch`` streams like the Python graph, and its
``torch.onnx`` export agrees with the direct ONNX export.

Marked ``torch``: these tests need the ``torch`` extra and FAIL (never skip) without it; CI runs
them in their own step after ``pip install -e '.[torch]'`` (``pytest -m torch``).
"""

from __future__ import annotations

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.export import ExportError, OnnxStream
from genki_signals.graph import SignalGraph
from genki_signals.testing.streaming import random_splits

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def torch():
    try:
        import torch
    except ImportError:
        pytest.fail("the torch tests need PyTorch: pip install 'genki-signals[torch]' "
                    "(or deselect them with -m 'not torch')")
    return torch


def graph() -> SignalGraph:
    return SignalGraph([
        s.Sum("sine_0", "sine_1", name="composite_sine"),
        s.Sum("composite_sine", "noise", name="wave_with_noise"),
        s.FourierTransform("wave_with_noise", window_size=32, window_overlap=16,
                           name="wave_spectrum"),
        s.SampleRate("timestamp", name="sample_rate"),
        s.MovingAverage("sample_rate", length=10, name="smooth_sample_rate"),
        s.LowPass("wave_with_noise", cutoff=8.0, sample_rate=100.0, name="low"),
        s.Differentiate("accel", sig_b="timestamp", name="jerk"),
        s.Norm("jerk", name="jerk_norm"),
        s.ExtractDimension("accel", dim=[0, 2], name="xz"),
        s.Concatenate(["xz", "low"], name="features"),
        s.ExponentialMovingAverage("features", alpha=0.3, name="smooth_features"),
    ])


OUTPUTS = ["wave_spectrum", "smooth_sample_rate", "low", "jerk_norm", "smooth_features"]
INPUTS = {"sine_0": (), "sine_1": (), "noise": (), "timestamp": (), "accel": (3,)}


def data(n: int = 240) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.5, 1.5, n)) / 100.0
    return {"sine_0": np.sin(2 * np.pi * 3 * t), "sine_1": 0.5 * np.sin(2 * np.pi * 17 * t),
            "noise": rng.normal(size=n), "timestamp": t,
            "accel": np.cumsum(rng.normal(size=(n, 3)), axis=0)}


def test_torch_module_streams_like_the_graph(torch):
    g, d = graph(), data()
    module = g.to_torch(INPUTS, OUTPUTS)
    assert isinstance(module, torch.nn.Module)
    for lengths in random_splits(240, np.random.default_rng(1), count=4):
        g.reset()
        state = module.initial_state()
        start, ref, got = 0, {k: [] for k in OUTPUTS}, {k: [] for k in OUTPUTS}
        for k in lengths:
            chunk = {name: x[start:start + k] for name, x in d.items()}
            out, state = module({n: torch.from_numpy(v) for n, v in chunk.items()}, state)
            py = g.process(chunk)
            for name in OUTPUTS:
                ref[name].append(py[name])
                got[name].append(out[name].numpy())
            start += k
        for name in OUTPUTS:
            np.testing.assert_allclose(np.concatenate(got[name]), np.concatenate(ref[name]),
                                       rtol=1e-9, atol=1e-9, err_msg=f"{name}, {lengths[:10]}")


def test_torch_state_names_match_the_onnx_export(torch, tmp_path):
    g = graph()
    module = g.to_torch(INPUTS, OUTPUTS)
    path = g.to_onnx(tmp_path / "g.onnx", inputs=INPUTS, outputs=OUTPUTS)
    onnx_state = OnnxStream(path).state
    torch_state = module.initial_state()
    assert set(torch_state) == set(onnx_state)
    for k, v in onnx_state.items():
        np.testing.assert_array_equal(torch_state[k].numpy(), v, err_msg=k)


def test_operator_without_torch_implementation_is_named(torch):
    g = SignalGraph([s.GaussianSmooth("x", name="smooth")])
    with pytest.raises(ExportError, match="GaussianSmooth 'smooth': has no torch implementation"):
        g.to_torch(["x"], ["smooth"])


def test_torch_onnx_export_agrees_with_the_direct_export(torch, tmp_path):
    """``torch.onnx.export`` of the module (traced at a fixed chunk length of 8) and the direct
    export, run side by side in ONNX Runtime on 8-sample chunks, state carried by each."""
    import onnxruntime as ort

    g = SignalGraph([s.Sum("a", "b", name="ab"), s.Differentiate("ab", name="d"),
                     s.MovingAverage("d", length=5, name="m"), s.Norm("v", name="vn"),
                     s.Multiply("m", "vn", name="out")])
    inputs, outputs = {"a": (), "b": (), "v": (3,)}, ["out"]
    module = g.to_torch(inputs, outputs)
    state0 = module.initial_state()
    keys = sorted(state0)

    class Flat(torch.nn.Module):  # positional tensors in and out, as torch.onnx wants
        def forward(self, a, b, v, *state):
            out, new = module({"a": a, "b": b, "v": v}, dict(zip(keys, state)))
            return (out["out"], *[new[k] for k in keys])

    n = 8
    example = (torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
               torch.zeros(n, 3, dtype=torch.float64), *[state0[k] for k in keys])
    via_torch = tmp_path / "via_torch.onnx"
    torch.onnx.export(Flat(), example, str(via_torch), dynamo=False,
                      input_names=["a", "b", "v", *keys],
                      output_names=["out", *[k + ".next" for k in keys]], opset_version=17)
    direct = OnnxStream(g.to_onnx(tmp_path / "direct.onnx", inputs=inputs, outputs=outputs,
                                  output_dtype=np.float64))
    session = ort.InferenceSession(str(via_torch), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    state = {k: v.numpy() for k, v in state0.items()}
    feeds = {i.name for i in session.get_inputs()}  # torch.onnx drops unused inputs
    g.reset()
    for _ in range(6):  # float32-representable data: both models see exactly the same values
        chunk = {"a": rng.normal(size=n), "b": rng.normal(size=n), "v": rng.normal(size=(n, 3))}
        chunk = {k: v.astype(np.float32).astype(np.float64) for k, v in chunk.items()}
        res = session.run(None, {k: v for k, v in {**chunk, **state}.items() if k in feeds})
        state = dict(zip(keys, res[1:]))
        want = direct({k: v.astype(np.float32) for k, v in chunk.items()})["out"]
        ref = g.process({"timestamp": np.zeros(n), **chunk})["out"]
        np.testing.assert_allclose(want, ref, rtol=1e-12, atol=1e-12)
        # 1e-6, not 1e-12: torch.onnx's TorchScript exporter casts the 0-d operands of
        # torch.where (Differentiate's "started" choice) to float32 (Cast to=1 in its graph)
        np.testing.assert_allclose(res[0], want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- operators on torch tensors
def test_operators_claiming_torch_give_the_numpy_result(torch):
    from test_ops_registry import CASES

    from genki_signals.signals.base import OPERATORS

    claiming = sorted(t for t, cls in OPERATORS.items() if "torch" in cls.backends)
    assert {"Sum", "Scale", "Norm", "ExtractDimension", "Concatenate"} <= set(claiming)
    for type_name in claiming:
        for case in CASES[type_name]:
            inputs = case.inputs()
            want = case.make({})(*inputs)
            got = case.make({})(*[torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
            assert isinstance(got, torch.Tensor), type_name
            assert got.dtype == torch.float64, type_name
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12,
                                       err_msg=type_name)


def test_operator_without_torch_backend_names_itself(torch):
    op = s.MovingAverage("x", length=3, name="smooth")
    assert op.backends == frozenset({"numpy"})
    with pytest.raises(Exception, match=r"MovingAverage 'smooth': does not support torch "
                                        r"tensors \(backends: numpy\)"):
        op(torch.zeros(4))
