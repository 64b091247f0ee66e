"""Portable signal graphs: a SignalGraph exported as one streaming ONNX model.

``SignalGraph.to_onnx`` (a thin hook) calls ``to_onnx`` here. ``OnnxStream`` runs an exported
model chunk by chunk in ONNX Runtime, carrying its state, as a host would.
"""

from genki_signals.export.builder import ExportError
from genki_signals.export.onnx_export import build_model, initial_state, to_onnx
from genki_signals.export.runner import OnnxStream

__all__ = ["ExportError", "OnnxStream", "build_model", "initial_state", "to_onnx"]
