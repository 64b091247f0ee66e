import sys
from pathlib import Path

# Shared test helpers (streaming.py, ...) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))


import pytest  # noqa: E402

from proc_helpers import LauncherProcess  # noqa: E402


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
