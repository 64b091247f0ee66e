"""specs/wave-swipe.yaml end to end, as processes, against the virtual ring.

The shipped spec runs under ``genki launch`` (a source, an inference and a printer process).
The ring runs in this test process on bumble's virtual radio; the source node reaches it over
HCI on loopback TCP because the test sets ``GENKI_WAVE_TRANSPORT`` (the documented test-only
hook) before launching, and finds it by name as it would a real ring. The ring rests, then
swipes once: the printer shows exactly one swipe event, after the swipe, and none while still.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from proc_helpers import REPO, LauncherProcess

from genki_signals.data_sources.wave.source import TRANSPORT_ENV
from genki_signals.data_sources.wave.virtual import VirtualRing, swipe_motion
from genki_signals.testing.onnx_builders import make_swipe_cnn

pytestmark = pytest.mark.timeout(120)

SPEC = REPO / "specs" / "wave-swipe.yaml"
EVENT = re.compile(r"EVENT swipes/events t=([0-9.]+)\s+trigger=swipe\s+class=swipe")
PROBABILITY = re.compile(r"swipes/swipe_probability t=[0-9.]+ n=\d+\s+swipe_probability=")


@pytest.fixture
def ring():
    with VirtualRing(motion=swipe_motion(())) as ring:  # at rest
        yield ring


def launch_against(ring: VirtualRing, spec, run_dir, monkeypatch, *args: str) -> LauncherProcess:
    """``genki launch`` with every wave source pointed at ``ring`` (test-only env hook)."""
    monkeypatch.setenv(TRANSPORT_ENV, ring.transport)
    return LauncherProcess(spec, run_dir, *args)


def wait(predicate, timeout: float, what: str, lp: LauncherProcess) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline or lp.proc.poll() is not None:
            raise AssertionError(f"timed out waiting for {what}:\n{lp.output}")
        time.sleep(0.05)


@pytest.mark.process
def test_the_wave_swipe_spec_emits_the_scripted_swipe_and_nothing_while_still(
        ring, tmp_path, monkeypatch):
    lp = launch_against(ring, SPEC, tmp_path / "run", monkeypatch, "--duration", "60")
    try:
        wait(lambda: ring.config is not None and len(ring.sent) > 0, 60, "the ring streaming",
             lp)
        # still: three windows (hop 0.96 s) of rest, all scored, none an event
        still_from = len(ring.sent)
        wait(lambda: len(ring.sent) > still_from + 350, 30, "3.5 s of rest", lp)
        wait(lambda: len(PROBABILITY.findall(lp.output)) >= 2, 30, "scored windows", lp)
        assert EVENT.findall(lp.output) == [], lp.output

        swipe_at = ring.device_us(ring.clock()) * 1e-6 + 0.3
        ring.motion = swipe_motion((swipe_at,))
        wait(lambda: EVENT.findall(lp.output), 20, "the swipe event", lp)
        wait(lambda: ring.device_us(ring.clock()) * 1e-6 > swipe_at + 3.0, 20, "3 s after", lp)
        lp.interrupt()
        assert lp.wait_exit(timeout=30) == 0, lp.output
    finally:
        lp.kill_all()
    assert len(EVENT.findall(lp.output)) == 1, lp.output
    assert "Wave ring: connected to" in lp.output and "firmware 1.7.4" in lp.output


def test_the_shipped_swipe_model_is_the_one_the_builder_makes(tmp_path):
    make_swipe_cnn(tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == \
        (REPO / "specs" / "models" / "swipe_cnn.onnx").read_bytes()


def test_the_swipe_model_scores_rest_low_and_a_whole_swipe_high(tmp_path):
    import numpy as np
    import onnxruntime as ort

    make_swipe_cnn(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    motion = swipe_motion((0.5,))
    t = np.arange(128) / 100.0
    rows = [motion(x) for x in t]
    swipe = np.array([[*r["linacc"], *r["gyro"]] for r in rows], dtype=np.float32)
    rest = np.zeros_like(swipe)
    probs = session.run(None, {"x": np.stack([rest, swipe])})[0]
    # an independent numpy reference of the documented function
    scale = np.array([100, 100, 100, 1, 1, 1.0])
    smooth = np.stack([np.convolve(swipe[:, i], np.ones(5) / 5, "valid") for i in range(6)], 1)
    activity = (np.abs(smooth) * scale).mean(axis=0).sum()
    expected = 1 / (1 + np.exp(-(0.1 * activity - 4)))
    assert probs[0, 1] == pytest.approx(1 / (1 + np.exp(4)), abs=1e-6)
    assert probs[1, 1] == pytest.approx(expected, abs=1e-5) and probs[1, 1] > 0.9


@pytest.mark.process
def test_launch_without_an_adapter_fails_before_start_naming_node_and_reason(tmp_path,
                                                                             monkeypatch):
    if any(Path("/sys/class/bluetooth").glob("hci*")):
        pytest.skip("this machine has a Bluetooth adapter: nothing to refuse")
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    lp = LauncherProcess(REPO / "specs" / "wave-motion.yaml", tmp_path / "run", "--duration",
                         "5")
    try:
        assert lp.wait_exit(timeout=60) == 1
    finally:
        lp.kill_all()
    assert "node 'ring' (wave): no Bluetooth adapter" in lp.output, lp.output
    assert "started node" not in lp.output, lp.output  # nothing was started


@pytest.mark.process
def test_a_recording_of_the_ring_holds_its_device_info_in_the_metadata(ring, tmp_path,
                                                                       monkeypatch):
    """The ring's identity is known only once it connects, after the recording's head is
    written: the recorder adds it to the file's metadata (``genki.device.<node>``)."""
    from genki_signals.record.format import META_DEVICE
    from genki_signals.record.inspect import format_summary, inspect_recording
    from genki_signals.record.reader import Recording

    spec = tmp_path / "wave-record.yaml"
    spec.write_text(
        "name: wave-record\n"
        "nodes:\n"
        "  - {id: ring, kind: source, params: {type: wave, name: Wave}}\n"
        "  - {id: rec, kind: recorder, inputs: [ring], params: {path: ring.mcap}}\n")
    lp = launch_against(ring, spec, tmp_path / "run", monkeypatch, "--duration", "60")
    try:
        wait(lambda: len(ring.sent) > 100, 60, "1 s of streaming", lp)
        lp.interrupt()
        assert lp.wait_exit(timeout=30) == 0, lp.output
    finally:
        lp.kill_all()
    with Recording(tmp_path / "ring.mcap") as rec:
        topics = {m.topic for m in rec.messages()}  # a whole pass meets every metadata record
        assert {"ring/main", "ring/device"} <= topics, topics
        device = rec.metadata.get(META_DEVICE + "ring")
    assert device == ring.info.as_dict() == {"firmware": "1.7.4", "board": "wave-v2",
                                             "mac": "f0:f0:f0:f0:f0:01",
                                             "serial": "VIRTUAL0001"}, device
    text = format_summary(inspect_recording(tmp_path / "ring.mcap"))
    assert f"device ring: firmware {device['firmware']}" in text, text
