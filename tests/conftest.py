from pathlib import Path

import pytest

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
