"""The dry run: a graph node's logic run in-process on zero frames of its inputs' declared shapes.

Names and wiring are checked statically (``nodes/kinds/graph.py``); shapes and dtypes are not
declared per operator, so a graph that reshapes a scalar to ``[2]`` used to pass ``genki
validate`` and then skip every frame at run time. Before any process starts, the spec checker
now feeds the graph's real logic (``GraphNodeLogic``, the operators the check already built)
one frame of ``ROWS`` zero samples per input topic, with the per-sample shapes and dtypes that
the upstream nodes declare (``Upstream.samples``: a source's shapes, a replay's recorded ones,
an aligner's, an upstream graph's dry-run results), and reports the first operator that fails,
naming it.

It has no side effects: the operators are fresh objects made for the check and thrown away
(model sessions included); nothing is read or written, no thread or process starts. An input
whose shapes are not declared (a Wave ring or LSL source, a custom node) is not dry-run: the
check says nothing rather than guess.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from genki_signals.frames import TIMESTAMP, Topic
from genki_signals.nodes.kinds import Sample, Upstream
from genki_signals.params import Problem

__all__ = ["ROWS", "zero_frames", "dry_run_graph"]

ROWS = 64
"""Samples per zero frame: enough for most windows to complete once (a window that does not
complete still checks its input's shape), few enough to cost little at every launch."""

RATE = 1000.0  # Hz of the zero frames' timestamps: increasing, as operators may require


def zero_frames(upstream: Upstream, rows: int = ROWS) -> list[tuple[Topic, dict[str, np.ndarray]]]:
    """One zero frame per timeline the upstream publishes, as it would arrive on its topic."""
    assert upstream.streams is not None and upstream.samples is not None
    by_timeline: dict[str, dict[str, np.ndarray]] = {}
    for name, timeline in upstream.streams.items():
        if name == TIMESTAMP:
            continue
        shape, dtype = upstream.samples[name]
        by_timeline.setdefault(timeline, {})[name] = np.zeros((rows, *shape), dtype=dtype)
    t = np.arange(rows, dtype=np.float64) / RATE
    return [(Topic(upstream.node, timeline), {TIMESTAMP: t, **arrays})
            for timeline, arrays in by_timeline.items()]


def declared(upstreams: Sequence[Upstream]) -> bool:
    """Whether every input declares the shape of every stream it publishes."""
    return all(u.streams is not None and u.samples is not None
               and all(n in u.samples for n in u.streams if n != TIMESTAMP) for u in upstreams)


def dry_run_graph(operators: Sequence[Any], upstreams: Sequence[Upstream],
                  index: dict[str, int]) -> tuple[list[Problem], dict[str, Sample] | None]:
    """Run ``operators`` (fresh, built for the check) as a graph node would, on zero frames.

    Returns the problem of the first failing operator (at ``params.operators[i]``), and the
    per-sample shape and dtype of every data stream the node published (None when the inputs'
    shapes are not all declared, or on a problem).
    """
    from genki_signals.nodes.graph_node import GraphNodeLogic

    if not declared(upstreams):
        return [], None
    logic = GraphNodeLogic(list(operators), upstreams={u.node: list(u.streams or ())
                                                       for u in upstreams})
    published: dict[str, Sample] = {TIMESTAMP: ((), np.dtype(np.float64).str)}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # zeros make 0/0 and log(0): not the check's business
        for upstream in upstreams:
            for topic, frame in zero_frames(upstream):
                try:
                    outputs = logic.on_frame(topic, frame, 0.0)
                except Exception as exc:  # noqa: BLE001 - any failure is the problem to report
                    return [_problem(exc, operators, index, topic)], None
                for out in outputs:
                    if out.kind == "data":
                        for name, arr in out.frame.items():
                            published.setdefault(name, (tuple(arr.shape[1:]), arr.dtype.str))
    return [], published


def _problem(exc: Exception, operators: Sequence[Any], index: dict[str, int],
             topic: Topic) -> Problem:
    text = str(exc)
    where = "params.operators"
    for op in operators:  # the operator's own errors start with its description
        if op.describe() in text:
            where = f"params.operators[{index[op.name]}]"
            break
    if where == "params.operators":
        text = f"{type(exc).__name__}: {text}"
    return Problem(where, f"dry run on zero samples of {topic}: {text}")
