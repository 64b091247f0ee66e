"""``GraphTransformer``: a SignalGraph as a scikit-learn transformer.

Features computed by the live graph drop into a ``Pipeline``, so a model is trained on exactly
what the graph computes at run time (and, exported with ``SignalGraph.to_onnx``, deployed with
it)::

    from sklearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    features = GraphTransformer(graph, inputs=["x"], outputs=["low_power", "high_power"])
    model = make_pipeline(features, LogisticRegression()).fit([recording], labels)

``X`` is one recording, a mapping ``{stream: time-first array}`` (``load_recording(path)[topic]``
is one), or a list of recordings. ``transform`` runs the graph over each recording in one batch,
from a fresh state (``reset_per_recording=True``, the default) or carrying the state from one
recording to the next (consecutive pieces of one stream), and returns one row per sample: the
outputs' per-sample values flattened and side by side, ``(n_samples, n_features)``.
``fit`` does nothing: the graph has no parameters to learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from genki_signals.errors import GraphError
from genki_signals.frames import TIMESTAMP
from genki_signals.graph import SignalGraph

__all__ = ["GraphTransformer"]


class GraphTransformer(TransformerMixin, BaseEstimator):
    """Run ``graph`` (a SignalGraph or its ``to_dict`` spec) over recordings; features out."""

    def __init__(self, graph: SignalGraph | Mapping[str, Any], inputs: Sequence[str],
                 outputs: Sequence[str], reset_per_recording: bool = True) -> None:
        self.graph = graph
        self.inputs = inputs
        self.outputs = outputs
        self.reset_per_recording = reset_per_recording

    def __sklearn_clone__(self) -> GraphTransformer:
        # A SignalGraph holds a lock and model sessions, which deepcopy cannot copy: a clone
        # gets a graph rebuilt from the spec (fresh state, same operators).
        return GraphTransformer(self._spec(), list(self.inputs), list(self.outputs),
                                self.reset_per_recording)

    def _spec(self) -> dict[str, Any]:
        return self.graph.to_dict() if isinstance(self.graph, SignalGraph) else dict(self.graph)

    def fit(self, X: Any, y: Any = None) -> GraphTransformer:
        """Nothing to learn; checks the graph builds and computes the outputs."""
        graph = SignalGraph.from_dict(self._spec())
        missing = [o for o in self.outputs if o not in graph]
        if missing:
            raise GraphError(f"GraphTransformer: output(s) {', '.join(missing)} are not "
                             f"operator outputs (have: {', '.join(graph.outputs)})")
        new = [o for o in self.outputs if graph.timeline_of(o) != ""]
        if new:
            raise GraphError(f"GraphTransformer: output(s) {', '.join(new)} are on a new "
                             f"timeline (a windowed FFT without upsampling): their rows are not "
                             f"the input's samples; use upsample=True")
        return self

    def transform(self, X: Any) -> np.ndarray:
        self.fit(X)
        recordings = [X] if isinstance(X, Mapping) else list(X)
        graph = SignalGraph.from_dict(self._spec())
        rows = []
        for i, rec in enumerate(recordings):
            if not isinstance(rec, Mapping):
                raise GraphError(f"GraphTransformer: recording {i} must be a mapping of stream "
                                 f"name to array, got {type(rec).__name__}")
            missing = [k for k in self.inputs if k not in rec]
            if missing:
                raise GraphError(f"GraphTransformer: recording {i} has no stream(s) "
                                 f"{', '.join(missing)} (has: {', '.join(rec)})")
            frame = {k: np.asarray(rec[k]) for k in self.inputs}
            n = len(frame[self.inputs[0]])
            if TIMESTAMP not in frame:
                frame[TIMESTAMP] = np.asarray(rec.get(TIMESTAMP, np.arange(n, dtype=float)))
            if self.reset_per_recording:
                graph.reset()
            out = graph.process(frame)
            rows.append(np.column_stack([np.asarray(out[k], dtype=float).reshape(n, -1)
                                         for k in self.outputs]))
        return np.concatenate(rows) if rows else np.empty((0, 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output stream names (a stream with several values per sample is one name each
        with its flat index, known after a transform; here the stream names)."""
        return np.asarray(list(self.outputs), dtype=object)
