"""Test and benchmark support that ships with the package.

Third-party operator and node authors get the same checks the project's own tests use:

* ``streaming``: the operator contract, chunked streaming equals the one-shot result
  (``assert_streams_like_batch``, ``random_splits``, ``run_chunked``);
* ``frames``: synthetic frame builders;
* ``onnx_builders``: small ONNX models with deterministic weights (needs the ``onnx`` package);
* ``clock_probe``: ``ClockProbe``, a custom node that publishes what its clock says;
* ``headless``: a headless Chromium driven over the DevTools protocol (screenshots, in-page
  measurements of a dashboard).

Nothing else in ``genki_signals`` imports this package (see ``docs/architecture.md``); import the
submodule you need, e.g. ``from genki_signals.testing.streaming import assert_streams_like_batch``.
"""
