"""The seed's gesture pipeline under the launcher: scripted motion gives events, stillness none."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

from genki_signals.launch.spec import load_topology
from genki_signals.specfile import SpecError
from genki_signals.testing.onnx_builders import make_motion_gru
from proc_helpers import REPO, LauncherProcess

pytestmark = pytest.mark.timeout(90)

PERIOD, DURATION = 1.0, 0.4

SPEC = """
name: {name}
nodes:
  - id: mouse
    kind: source
    params:
      type: Sampler
      sample_rate: 100
      sources:
        mouse_position: {{type: GestureScript, shape: {shape}, period: {period},
                          duration: {duration}, size: 100.0}}
  - id: gestures
    kind: inference
    inputs: [{{node: mouse, policy: lossless}}]
    params:
      threads: 1
      operators:
        - {{type: Differentiate, input: mouse_position, sig_b: timestamp, name: velocity}}
        - {{type: Norm, input: velocity, name: speed}}
        - {{type: Reshape, input: speed, shape: [1], name: feature}}
        - {{type: Inference, input: feature, model: motion_gru.onnx, stateful: true,
            name: probs}}
        - {{type: EventTrigger, input: probs, name: gesture, threshold: 0.8, release: 0.5,
            refractory: 0.3, classes: [background, motion]}}
  - id: printer
    kind: sink
    inputs: [{{node: gestures, policy: lossless}}]
    params: {{type: printer, keys: [probs], every: 10}}
"""

EVENT = re.compile(r"EVENT gestures/events t=([0-9.]+)\s+trigger=gesture\s+class=motion")
PROBS = re.compile(r"gestures/main t=[0-9.]+ n=\d+\s+probs=\[([0-9.e-]+) ([0-9.e-]+)\]")


def run(tmp_path, shape: str, seconds: float = 3.5) -> str:
    make_motion_gru(tmp_path / "motion_gru.onnx")
    spec = tmp_path / f"{shape}.yaml"
    spec.write_text(SPEC.format(name=f"gesture_{shape}", shape=shape, period=PERIOD,
                                duration=DURATION))
    lp = LauncherProcess(spec, tmp_path / f"run_{shape}", "--duration", str(seconds))
    try:
        assert lp.wait_exit(timeout=60) == 0, lp.output
        return lp.output
    finally:
        lp.kill_all()


@pytest.mark.process
def test_drawn_circles_give_one_event_each_at_the_start_of_the_motion(tmp_path):
    out = run(tmp_path, "circle")
    times = np.array([float(t) for t in EVENT.findall(out)])
    # the source may start mid-gesture (its first event then comes at once): judge the others
    times = times[1:]
    assert len(times) >= 2, out
    # each gesture starts at k*PERIOD + (PERIOD - DURATION); the GRU needs a few samples
    delay = np.mod(times - (PERIOD - DURATION), PERIOD)
    assert np.all(delay < 0.2), (times, out)
    assert np.all(np.diff(times) > PERIOD * 0.9)  # one event per gesture, no repeats


@pytest.mark.process
def test_a_still_pointer_gives_no_event(tmp_path):
    out = run(tmp_path, "none", seconds=2.5)
    assert EVENT.findall(out) == []
    probs = [float(p) for _, p in PROBS.findall(out)]
    assert len(probs) >= 5 and max(probs[1:]) < 0.01, out  # [0]: the GRU still warming up


def test_a_missing_or_wrong_model_is_a_validation_error_naming_node_and_model(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.format(name="bad", shape="circle", period=1.0, duration=0.4))
    with pytest.raises(SpecError, match=r"node 'gestures': field 'params.operators\[3\]'.*"
                                        r"motion_gru.onnx"):
        load_topology(spec)  # no model file next to the spec
    (tmp_path / "motion_gru.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(SpecError, match=r"(?s)node 'gestures'.*Inference 'probs'.*not.*ONNX"):
        load_topology(spec)


def test_the_shipped_gesture_model_is_the_one_the_builder_makes(tmp_path):
    make_motion_gru(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == \
        (REPO / "specs" / "models" / "motion_gru.onnx").read_bytes()
