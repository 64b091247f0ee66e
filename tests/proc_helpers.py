"""Helpers for tests that run real launcher and node processes.

Every process started here is tracked and killed (with its whole process tree) at teardown, so
a failing test never leaves orphans behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from genki_signals.bus import control

TESTS_DIR = Path(__file__).parent
REPO = TESTS_DIR.parent


def env_with_tests_on_path() -> dict[str, str]:
    """Node processes can import tests/bad_nodes.py (custom node kinds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LauncherProcess:
    """``genki launch`` in a subprocess, its output collected in the background."""

    def __init__(self, spec: Path, run_dir: Path, *args: str) -> None:
        self.address = f"ipc://{run_dir / 'control'}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genki_signals.cli", "launch", str(spec),
             "--run-dir", str(run_dir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env_with_tests_on_path(), start_new_session=True)
        self.lines: list[str] = []
        self._known: dict[int, psutil.Process] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def directory(self, timeout: float = 1.0) -> dict | None:
        try:
            return control.request(self.address, "directory", timeout=timeout)
        except (TimeoutError, OSError):
            return None

    def wait_for(self, predicate, timeout: float, what: str):
        """Poll the directory until ``predicate(directory)`` is truthy; fail with the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited ({self.proc.returncode}) while waiting "
                                     f"for {what}:\n{self.output}")
            d = self.directory(timeout=0.5)
            if d is not None:
                self.remember_children()
                result = predicate(d)
                if result:
                    return result
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output}")

    def wait_ready(self, timeout: float = 30.0) -> dict:
        return self.wait_for(lambda d: d if d["nodes"] and all(
            n["state"] == "ready" for n in d["nodes"]) else None, timeout, "all nodes ready")

    def remember_children(self) -> list[psutil.Process]:
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self._known.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass
        return list(self._known.values())

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def interrupt(self) -> None:
        self.remember_children()
        self.proc.send_signal(signal.SIGINT)

    def kill_all(self) -> None:
        procs = self.remember_children()
        for p in [*procs, psutil.Process(self.proc.pid) if self.proc.poll() is None else None]:
            if p is None:
                continue
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def alive_children(self) -> list[psutil.Process]:
        return [p for p in self._known.values() if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
