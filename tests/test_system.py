"""System: a source plus a graph in-process, the notebook API."""

import subprocess
import sys
import time

import numpy as np
import pytest

import genki_signals.signals as s
from genki_signals.data_sources import Sampler, SineWave
from genki_signals.errors import GraphError, SystemStoppedError
from genki_signals.signals.base import Operator
from genki_signals.system import System

pytestmark = pytest.mark.timeout(30)


class FailsOnSecondChunk(Operator):
    """Test operator: raises on its second non-empty chunk."""

    def __init__(self, input: str, name: str | None = None) -> None:
        super().__init__([input], name)
        self.input = input
        self.calls = 0

    def _step(self, x):
        self.calls += len(x) > 0
        if self.calls >= 2:
            raise FloatingPointError("sensor went wild")
        return x


def read_for(system, seconds):
    frames, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        frames.append(system.read())
        time.sleep(0.02)
    return frames


def test_read_returns_source_keys_and_derived_streams():
    system = System(Sampler({"x": SineWave(frequency=1)}, sample_rate=200),
                    [s.Scale("x", factor=3.0, name="y")])
    with system:
        assert system.is_active
        frames = read_for(system, 0.2)
    assert not system.is_active
    x = np.concatenate([f["x"] for f in frames if f])
    y = np.concatenate([f["y"] for f in frames if f])
    assert len(x) > 20
    np.testing.assert_allclose(y, 3 * x)


def test_unknown_input_is_rejected_before_running():
    with pytest.raises(GraphError, match="input 0 'nope'"):
        System(Sampler({"x": SineWave()}, sample_rate=10), [s.Abs("nope", name="a")])


def test_operator_error_stops_the_system_and_is_raised_on_read_naming_the_operator():
    system = System(Sampler({"x": SineWave()}, sample_rate=500), [FailsOnSecondChunk("x",
                                                                                     name="bad")])
    system.start()
    with pytest.raises(SystemStoppedError,
                       match="FailsOnSecondChunk 'bad' failed: FloatingPointError: sensor"):
        read_for(system, 1.0)
    assert not system.is_active
    assert not system.data_source.is_active  # the source was stopped too
    with pytest.raises(SystemStoppedError, match="FailsOnSecondChunk 'bad'"):
        system.read()  # and every later read says so again


def test_add_and_remove_derived_signals_while_running():
    system = System(Sampler({"x": SineWave()}, sample_rate=200))
    with system:
        read_for(system, 0.05)
        system.add_derived_signal(s.Abs("x", name="ax"))
        later = [f for f in read_for(system, 0.1) if f and len(f["timestamp"])]
        assert later and all("ax" in f for f in later)
        system.remove_derived_signal("ax")
        after = [f for f in read_for(system, 0.1) if f and len(f["timestamp"])]
        assert after and all("ax" not in f for f in after)
    assert [op.name for op in system.derived_signals] == []


@pytest.mark.process
def test_a_running_system_does_not_keep_the_interpreter_alive():
    code = ("from genki_signals.system import System\n"
            "from genki_signals.data_sources import Sampler, SineWave\n"
            "System(Sampler({'x': SineWave()}, sample_rate=100)).start()\n"
            "print('main done')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 0 and "main done" in out.stdout
