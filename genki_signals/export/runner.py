"""``OnnxStream``: run an exported graph model chunk by chunk, carrying its state."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genki_signals.export.onnx_export import INPUTS_KEY, STATE_KEY, initial_state

__all__ = ["OnnxStream"]


class OnnxStream:
    """An exported model as a streaming function: ``outputs = stream(chunks)``.

    What any host does with the model file, in Python: read the states' initial values from
    the metadata, feed them with each chunk, keep the returned states for the next one.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self._states = json.loads(meta[STATE_KEY])
        self._inputs = {k: np.dtype(v["dtype"]) for k, v in json.loads(meta[INPUTS_KEY]).items()}
        names = [o.name for o in self.session.get_outputs()]
        state_outs = {s["output"] for s in self._states}
        self.output_names = [n for n in names if n not in state_outs]
        self._fetch = self.output_names + [s["output"] for s in self._states]
        self.reset()

    def reset(self) -> None:
        """Back to the initial state (a new stream)."""
        self.state = initial_state(self.session)

    def __call__(self, chunks: Mapping[str, Any]) -> dict[str, np.ndarray]:
        feed = {k: np.asarray(chunks[k], dtype=d) for k, d in self._inputs.items()}
        res = self.session.run(self._fetch, {**feed, **self.state})
        k = len(self.output_names)
        self.state = {s["input"]: v for s, v in zip(self._states, res[k:])}
        return dict(zip(self.output_names, res[:k]))
