"""Every registered operator keeps the streaming contract of ``signals/base.py``.

The test iterates the whole operator registry (``OPERATORS``) and runs the streaming-equals-batch
check (``streaming.assert_streams_like_batch``: random chunkings with empty and one-sample chunks,
``reset()`` and a JSON round trip) on every shipped operator, with an input builder per operator
below. An operator without a case in ``CASES`` fails the test: adding an operator means adding
its case here. The numerical references of each operator live in its own ``test_ops_*.py``.

Operators that raise events are also checked for events: the events of every chunking, stamped
with global sample indices, equal those of one batch and agree with the operator's output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from genki_signals.testing.streaming import assert_streams_like_batch, random_splits

import genki_signals.signals as s
from genki_signals.errors import OperatorError
from genki_signals.signals.base import OPERATORS, Operator, StatefulOperator

N = 200
RATE = 100.0


def shipped_operators() -> list[str]:
    """Registered operator types defined by the library (tests may register their own)."""
    return sorted(k for k, cls in OPERATORS.items() if cls.__module__.startswith("genki_signals."))


# ------------------------------------------------------------------ input builders
def walk(channels: int = 3, seed: int = 0, n: int = N) -> np.ndarray:
    """A zero-mean random walk ``(n, channels)``: crosses zero, drifts, has structure."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(n, channels)), axis=0) * 0.2
    return x - x.mean(axis=0)


def timestamps(seed: int = 1, n: int = N) -> np.ndarray:
    """Increasing timestamps around ``RATE`` Hz with jitter (never repeated)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.uniform(0.5, 1.5, n)) / RATE


def quaternions(seed: int = 2, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def class_scores(classes: int = 4, seed: int = 3, n: int = N) -> np.ndarray:
    a = np.cumsum(np.random.default_rng(seed).normal(size=(n, classes)), axis=0) * 0.5
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Case:
    """One way to run an operator: how to build it and what to feed it (one array per input).

    ``models`` is the directory of the test ONNX models; ``tol`` loosens the comparison for
    float32 model outputs."""

    make: Callable[[dict], Operator]
    inputs: Callable[[], list[np.ndarray]]
    tol: float = 1e-9


A, B = walk(3, seed=10), walk(3, seed=11)
CLASSES = ["background", "square", "circle", "triangle"]

CASES: dict[str, list[Case]] = {
    # arithmetic
    "Scale": [Case(lambda m: s.Scale("x", factor=2.5, offset=-1.0), lambda: [A])],
    "Sum": [Case(lambda m: s.Sum("a", "b"), lambda: [A, B])],
    "Multiply": [Case(lambda m: s.Multiply("a", "b"), lambda: [A, B])],
    "Difference": [Case(lambda m: s.Difference("a", "b"), lambda: [A, B])],
    "Abs": [Case(lambda m: s.Abs("x"), lambda: [A])],
    "Pow": [Case(lambda m: s.Pow("x", exponent=3.0), lambda: [A])],
    "Exp": [Case(lambda m: s.Exp("x"), lambda: [A])],
    "Log": [Case(lambda m: s.Log("x"), lambda: [np.abs(A) + 0.1])],
    "Clip": [Case(lambda m: s.Clip("x", minimum=-0.5, maximum=0.5), lambda: [A])],
    # calculus
    "Integrate": [
        Case(lambda m: s.Integrate("x", with_respect_to="timestamp"), lambda: [A, timestamps()]),
        Case(lambda m: s.Integrate("x", method="rectangle"), lambda: [A]),
    ],
    "Differentiate": [
        Case(lambda m: s.Differentiate("x", sig_b="timestamp"), lambda: [A, timestamps()]),
        Case(lambda m: s.Differentiate("x"), lambda: [A]),
    ],
    "SampleRate": [Case(lambda m: s.SampleRate("timestamp"), lambda: [timestamps()])],
    "MovingAverage": [Case(lambda m: s.MovingAverage("x", length=7), lambda: [A])],
    "ExponentialMovingAverage": [Case(lambda m: s.ExponentialMovingAverage("x", alpha=0.3),
                                      lambda: [A])],
    "Delay": [Case(lambda m: s.Delay("x", samples=5, fill=1.5), lambda: [A])],
    # filters
    "LowPass": [Case(lambda m: s.LowPass("x", cutoff=10.0, sample_rate=RATE), lambda: [A])],
    "HighPass": [Case(lambda m: s.HighPass("x", cutoff=5.0, sample_rate=RATE), lambda: [A])],
    "BandPass": [Case(lambda m: s.BandPass("x", low=2.0, high=20.0, sample_rate=RATE),
                      lambda: [A])],
    "GaussianSmooth": [Case(lambda m: s.GaussianSmooth("x", sigma=1.5), lambda: [A])],
    # spectral
    "FourierTransform": [
        Case(lambda m: s.FourierTransform("x", window_size=16, window_overlap=6,
                                          upsample=False), lambda: [A]),
        Case(lambda m: s.FourierTransform("x", window_size=16, window_overlap=8,
                                          detrend="linear"), lambda: [A]),
    ],
    # shape
    "ExtractDimension": [Case(lambda m: s.ExtractDimension("x", dim=[0, 2]), lambda: [A])],
    "Concatenate": [Case(lambda m: s.Concatenate(["a", "b"]), lambda: [A, B[:, 0]])],
    "Stack": [Case(lambda m: s.Stack(["a", "b"]), lambda: [A, B])],
    "Reshape": [Case(lambda m: s.Reshape("x", shape=[1, 3]), lambda: [A])],
    "Norm": [Case(lambda m: s.Norm("x"), lambda: [A])],
    # orientation
    "QuaternionToEuler": [Case(lambda m: s.QuaternionToEuler("q"), lambda: [quaternions()])],
    "GravityFromQuaternion": [Case(lambda m: s.GravityFromQuaternion("q", g=9.81),
                                   lambda: [quaternions()])],
    "Rotate": [Case(lambda m: s.Rotate("v", "q"), lambda: [A, quaternions()])],
    # events
    "ZeroCrossing": [Case(lambda m: s.ZeroCrossing("x"), lambda: [A])],
    "Threshold": [Case(lambda m: s.Threshold("x", high=0.3, low=-0.3), lambda: [A])],
    "EventTrigger": [
        Case(lambda m: s.EventTrigger("p", "timestamp", threshold=0.6, release=0.4,
                                      refractory=0.05, classes=CLASSES),
             lambda: [class_scores(), timestamps()]),
        Case(lambda m: s.EventTrigger("p", None, threshold=0.6), lambda: [class_scores()]),
    ],
    # composition
    "Combine": [Case(lambda m: s.Combine([s.Sum("a", "b", name="ab"),
                                          s.MovingAverage("ab", length=4, name="smooth"),
                                          s.EventTrigger("smooth", None, name="ev",
                                                         threshold=0.2)],
                                         inputs=["a", "b"], output="smooth"),
                     lambda: [A, B])],
    # models (float32 outputs)
    "Inference": [
        Case(lambda m: s.Inference("x", str(m["mlp"])), lambda: [walk(4, seed=4)], tol=1e-6),
        Case(lambda m: s.Inference("v", str(m["gru"]), stateful=True), lambda: [walk(2, seed=5)],
             tol=1e-5),
    ],
    "WindowedInference": [Case(lambda m: s.WindowedInference("x", str(m["cnn"]), window_size=16,
                                                             window_overlap=5),
                               lambda: [walk(3, seed=6)], tol=1e-6)],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    from genki_signals.testing.onnx_builders import make_cnn, make_gru, make_mlp

    d = tmp_path_factory.mktemp("registry_models")
    make_mlp(d / "mlp.onnx", features=4, hidden=8, classes=3, seed=4)
    make_gru(d / "gru.onnx", features=2, hidden=8, classes=4, seed=1)
    make_cnn(d / "cnn.onnx", window=16, features=3, channels=4, kernel=5, classes=3, seed=3)
    return {"mlp": d / "mlp.onnx", "gru": d / "gru.onnx", "cnn": d / "cnn.onnx"}


# ------------------------------------------------------------------ the contract
def test_every_shipped_operator_has_a_case():
    missing = sorted(set(shipped_operators()) - set(CASES))
    assert not missing, (f"operators without a streaming case in tests/test_ops_registry.py: "
                         f"{missing}; add an input builder to CASES for each")
    stale = sorted(set(CASES) - set(OPERATORS))
    assert not stale, f"CASES names operators that are not registered: {stale}"


@pytest.mark.parametrize("type_name", sorted(set(shipped_operators()) | set(CASES)))
def test_streams_like_batch(type_name, request):
    if type_name not in CASES:
        pytest.fail(f"{type_name} has no case in CASES (tests/test_ops_registry.py)")
    for case in CASES[type_name]:
        needs_models = type_name in ("Inference", "WindowedInference")
        models = request.getfixturevalue("models") if needs_models else {}
        make = functools.partial(case.make, models)
        op = make()
        assert type(op).__name__ == type_name
        inputs = case.inputs()
        assert len(inputs) == len(op.inputs), f"{op.describe()}: case feeds the wrong inputs"
        out = assert_streams_like_batch(make, inputs, rtol=case.tol, atol=case.tol)
        assert len(out) > 0 or op.new_timeline
        if op.emits_events:
            check_events(make, inputs)


def chunked_events(op: Operator, inputs: list[np.ndarray], lengths: list[int]):
    """Run ``op`` over ``inputs`` in chunks; return (events with global rows, output)."""
    events, outs, start = [], [], 0
    for k in lengths:
        y = op(*[x[start:start + k] for x in inputs])
        events += [(start + e.row, e.class_name, e.class_index, e.score)
                   for e in op.pop_events()]
        assert op.pop_events() == [], f"{op.describe()}: pop_events() must clear"
        outs.append(np.asarray(y))
        start += k
    return events, np.concatenate(outs)


def check_events(make: Callable[[], Operator], inputs: list[np.ndarray]) -> None:
    batch, out = chunked_events(make(), inputs, [len(inputs[0])])
    assert batch, f"{make().describe()}: the case raises no event; make its input cross"
    for lengths in random_splits(len(inputs[0]), np.random.default_rng(1)):
        events, _ = chunked_events(make(), inputs, lengths)
        assert [e[:3] for e in events] == [e[:3] for e in batch], \
            f"events differ for chunking {lengths[:12]}..."
        np.testing.assert_allclose([e[3] for e in events], [e[3] for e in batch], rtol=1e-9)
    if out.ndim == 1 and out.dtype.kind == "i":  # EventTrigger: out[i] is the class that fired
        fired = [(int(i), int(out[i])) for i in np.flatnonzero(out >= 0)]
        assert [(row, index) for row, _, index, _ in batch] == fired


# ------------------------------------------------------------------ the stateful base
def test_stateful_operators_implement_process_not_step():
    with pytest.raises(TypeError, match=r"implements _process .* not _step"):
        class Bad(StatefulOperator, abstract=True):
            def _step(self, x):
                return x


class CountsResets(StatefulOperator, abstract=True):
    """Records every state rebuild (abstract: kept out of the registry)."""

    def __init__(self) -> None:
        super().__init__(["x"], "counts")
        self.rebuilds: list[tuple] = []
        self.reset()

    def _reset_for(self, x, *more):
        self.rebuilds.append((x.shape[1:], x.dtype))

    def _process(self, x):
        return np.asarray(x, dtype=float)


def test_state_is_built_once_per_stream():
    op = CountsResets()
    assert op(np.empty((0, 3))).shape == (0, 3)      # empty before data: nothing built
    assert op.sample_shape is None and op.rebuilds == []
    op(np.zeros((2, 3)))
    op(np.zeros((1, 3)))
    op(np.zeros((4, 3), dtype=np.float32))            # same shape, new dtype: state kept
    op(np.zeros((4, 3), dtype=np.int16))
    op(np.empty((0, 3)))
    assert op.rebuilds == [((3,), np.dtype(np.float64))] and op.sample_shape == (3,)
    with pytest.raises(OperatorError, match=r"'counts': input 'x' must keep the shape of its "
                                            r"earlier chunks \(n, 3\), got \(2, 4\)"):
        op(np.zeros((2, 4)))
    with pytest.raises(OperatorError, match=r"input 'x' must be real numbers, got dtype complex"):
        op(np.zeros((2, 3), dtype=complex))
    op.reset()                                        # a new stream: a new shape is fine
    op(np.zeros((2, 5)))
    assert op.rebuilds[-1] == ((5,), np.dtype(np.float64)) and len(op.rebuilds) == 2
