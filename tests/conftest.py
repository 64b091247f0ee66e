from pathlib import Path

import pytest
import zmq

# tests/ is on sys.path through pytest's default (prepend) import mode: the helpers next to the
# tests (proc_helpers, bad_nodes) import as top-level modules. Support that ships with the
# package lives in genki_signals.testing.
from proc_helpers import LauncherProcess


@pytest.fixture
def launcher_factory(tmp_path):
    """Start ``genki launch`` subprocesses; every one (and its children) is killed at teardown."""
    started: list[LauncherProcess] = []

    def start(spec: Path, *args: str) -> LauncherProcess:
        lp = LauncherProcess(spec, tmp_path / f"run{len(started)}", *args)
        started.append(lp)
        return lp

    yield start
    for lp in started:
        lp.kill_all()


@pytest.fixture
def ctx():
    """A ZeroMQ context for the test, destroyed (linger 0) at teardown. test_bus_sockets.py has
    a stricter one that fails when a socket was left open."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)
