"""Events are part of the operator contract: the graph node publishes any operator's events.

``GraphNodeLogic`` collects ``pop_events()`` from every operator with ``emits_events`` and stamps
each event with the timestamp of its output row, on the main timeline or a new one. These tests
use an operator defined here (the node cannot know its class) and the shipped ``EventTrigger``
on a new timeline, and check the published frames against plain numpy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import genki_signals.signals as s
from genki_signals.nodes import graph_node
from genki_signals.nodes.graph_node import GraphNodeLogic
from genki_signals.signals.base import Event, Operator

RATE = 100.0


class Peaks(Operator, abstract=True):
    """Test operator (kept out of the registry): an event at every sample above ``level`` whose
    predecessor was not, with the sample's value as score."""

    emits_events = True

    def __init__(self, input: str, name: str, level: float) -> None:
        super().__init__([input], name)
        self.level = level
        self.reset()

    def reset(self) -> None:
        super().reset()
        self._above = False
        self._events: list[Event] = []

    def _step(self, x: np.ndarray) -> np.ndarray:
        above = np.concatenate([[self._above], x > self.level])
        rising = np.flatnonzero(above[1:] & ~above[:-1])
        self._above = bool(above[-1])
        self._events = [Event(int(i), "peak", 7, float(x[i])) for i in rising]
        return above[1:].astype(float)

    def pop_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events


def frames(x: np.ndarray, size: int):
    t = np.arange(len(x)) / RATE
    return [{"timestamp": t[i:i + size], "x": x[i:i + size]} for i in range(0, len(x), size)]


def published_events(logic: GraphNodeLogic, parts) -> list[dict[str, np.ndarray]]:
    got = []
    for f in parts:
        for out in logic.on_frame("src/main", f, now=0.0):
            if out.kind == "event":
                assert out.timeline == "events"
                got.append(out.frame)
    return got


def test_node_publishes_events_of_an_operator_it_does_not_know():
    x = np.sin(2 * np.pi * 1.3 * np.arange(400) / RATE) + 0.1 * np.cos(np.arange(400))
    logic = GraphNodeLogic([Peaks("x", "peaks", level=0.8)], upstreams={"src": ["timestamp", "x"]})
    got = published_events(logic, frames(x, 7))
    above = x > 0.8
    rows = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    assert len(rows) >= 4
    ts = np.concatenate([g["timestamp"] for g in got])
    np.testing.assert_array_equal(ts, rows / RATE)
    np.testing.assert_array_equal(np.concatenate([g["score"] for g in got]), x[rows])
    assert all((g["trigger"] == b"peaks").all() and (g["class"] == b"peak").all()
               and (g["class_index"] == 7).all() for g in got)


def test_event_trigger_on_a_new_timeline_is_stamped_with_window_ends():
    """EventTrigger downstream of a windowed FFT: event rows index the FFT's own timeline."""
    t = np.arange(1200) / RATE
    x = np.where((t % 4) < 2, np.sin(2 * np.pi * 10 * t), 0.0)  # 10 Hz bursts every 4 s
    ops = [s.FourierTransform("x", name="spec", window_size=20, window_overlap=10,
                              upsample=False),
           s.ExtractDimension("spec", dim=[2], name="bin"),  # the 10 Hz bin
           s.EventTrigger("bin", None, name="burst", threshold=4.0, release=1.0)]
    logic = GraphNodeLogic([op.to_dict() for op in ops], upstreams={"src": ["timestamp", "x"]})
    got = published_events(logic, frames(x, 13))
    # Reference: window ends every 10 samples from sample 19; magnitude of bin 2 (10 Hz).
    ends = np.arange(19, len(x), 10)
    window = np.hanning(21)[:-1]  # scipy's periodic Hann of 20
    mags = np.array([abs(np.fft.rfft(x[e - 19:e + 1] * window)[2]) for e in ends])
    state, fired = False, []
    for e, m in zip(ends, mags):
        if not state and m > 4.0:
            fired.append((t[e], m))
        state = m > 4.0 or (state and m >= 1.0)
    assert len(fired) == 3  # bursts at 0, 4 and 8 s
    np.testing.assert_allclose(np.concatenate([g["timestamp"] for g in got]),
                               [f[0] for f in fired])
    np.testing.assert_allclose(np.concatenate([g["score"] for g in got]),
                               [f[1] for f in fired], rtol=1e-9)
    assert all((g["class"] == b"0").all() for g in got)


def test_combine_forwards_the_events_of_its_inner_operators():
    x = np.sin(2 * np.pi * 0.9 * np.arange(300) / RATE)
    inner = s.Combine([s.Scale("x", factor=2.0, name="x2"),
                       s.EventTrigger("x2", None, name="ev", threshold=1.5, release=0.0)],
                      inputs=["x"], output="ev", name="block")
    assert inner.emits_events
    logic = GraphNodeLogic([inner.to_dict()], upstreams={"src": ["timestamp", "x"]})
    got = published_events(logic, frames(x, 9))
    rows = np.flatnonzero((2 * x > 1.5) & ~np.concatenate([[False], 2 * x[:-1] > 1.5]))
    np.testing.assert_array_equal(np.concatenate([g["timestamp"] for g in got]), rows / RATE)
    assert all((g["trigger"] == b"block").all() for g in got)


def test_graph_node_imports_no_operator_module():
    tree = ast.parse(Path(graph_node.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    signals = {m for m in imported if m and m.startswith("genki_signals.signals")}
    assert signals == {"genki_signals.signals.base"}, signals
