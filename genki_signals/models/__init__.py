"""Models for tests and demos.

``onnx_builders`` writes small ONNX models (GRU classifier, 1-D CNN, MLP) with deterministic
weights, so tests and example specs need no downloaded weights. It needs the ``onnx`` package;
running the models needs only ``onnxruntime``.
"""
