"""Helpers for tests that run real launcher and node processes.

Every process started here is tracked and killed (with its whole process tree) at teardown, so
a failing test never leaves orphans behind. ``LauncherProcess`` runs ``genki launch``;
``GraphNodeProcess`` runs one graph node with the test as its launcher and its upstream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import zmq

from genki_signals.bus import control
from genki_signals.bus.codec import decode, encode
from genki_signals.bus.fuzz import Mutator
from genki_signals.bus.shm import ShmReader
from genki_signals.nodes.config import InputEdge, NodeConfig

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


def node_entry(d: dict, node: str) -> dict:
    """``node``'s entry in a launcher's directory."""
    return next(n for n in d["nodes"] if n["id"] == node)


def heartbeat_stat(d: dict, node: str, key: str) -> tuple[float, int]:
    """(when ``node``'s last heartbeat arrived, on this machine's monotonic clock; its counter
    ``key`` in that heartbeat)."""
    n = node_entry(d, node)
    return time.monotonic() - n["heartbeat_age"], n["stats"][key]


def counter_rate(lp: LauncherProcess, node: str, key: str, seconds: float
                 ) -> tuple[float, dict]:
    """``node``'s counter ``key`` per second over about ``seconds``: the counts of two
    heartbeats that far apart over the times they arrived (not the times the directory was
    asked). Returns the rate and the second directory."""
    t0, n0 = heartbeat_stat(lp.wait_for(lambda d: d, 5, "directory"), node, key)
    time.sleep(seconds)
    d = lp.wait_for(lambda d: d, 5, "directory")
    t1, n1 = heartbeat_stat(d, node, key)
    return (n1 - n0) / (t1 - t0), d


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class GraphNodeProcess:
    """A graph node (``y = 2 * x``) in its own process, fed over real sockets by the test.

    The test plays the node's launcher (a ROUTER on its control endpoint: ``wait_for`` reads
    heartbeats and other control messages), its upstream node ``up`` (an XPUB that never drops:
    ``send``) and its downstream (a SUB on its output: ``computes``). ``mutator`` numbers the
    upstream's frames: valid ones (``send_valid``) and the broken ones a fuzz test sends share
    one sequence. Used by the bus fuzz and forged-eos tests; ``close()`` kills the process.
    """

    def __init__(self, tmp_path: Path, ready_timeout: float = 60.0) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind(f"ipc://{tmp_path}/control")
        self.up = self.ctx.socket(zmq.XPUB)
        self.up.setsockopt(zmq.XPUB_NODROP, 1)  # every message reaches the node
        self.up.setsockopt(zmq.SNDTIMEO, 10_000)
        self.up.bind(f"ipc://{tmp_path}/up")
        self.out = self.ctx.socket(zmq.SUB)  # the node's output, read by the test
        self.out.setsockopt(zmq.SUBSCRIBE, b"")
        self.shm = ShmReader()  # large outputs come through the node's shared-memory ring
        self.mutator = Mutator("up/", "up", seed=1, big_every=500)
        self.stats: dict = {}
        config = NodeConfig(
            id="g", kind="graph",
            params={"operators": [{"type": "Scale", "input": "x", "factor": 2.0, "name": "y"}]},
            control_endpoint=f"ipc://{tmp_path}/control", publish_endpoint=f"ipc://{tmp_path}/g",
            inputs=(InputEdge(node="up", endpoint=f"ipc://{tmp_path}/up", topics=("up/",),
                              policy="drop_oldest", maxlen=1000, streams=("timestamp", "x")),),
            heartbeat_interval=0.2)
        path = tmp_path / "g.json"
        path.write_text(config.to_json())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genki_signals.nodes", "--config", str(path)],
            env=env_with_tests_on_path(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.wait_for("ready", timeout=ready_timeout)  # generous: the cores are shared
        self.out.connect(f"ipc://{tmp_path}/g")
        assert self.up.poll(30_000), "the node never subscribed"
        self.up.recv()

    def wait_for(self, msg_type: str, timeout: float = 15.0, where=lambda m: True) -> dict:
        """The next control message of ``msg_type`` (matching ``where``); heartbeats on the way
        update ``stats``. The node must stay alive unless ``bye`` is awaited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.router.poll(100):
                msg = control.unpack(self.router.recv_multipart()[1])
                if msg and msg["type"] == "heartbeat":
                    self.stats = msg["stats"]
                if msg and msg["type"] == msg_type and where(msg):
                    return msg
            assert self.proc.poll() is None or msg_type == "bye", \
                f"node exited ({self.proc.returncode}):\n{self.proc.stdout.read()}"
        raise AssertionError(f"no {msg_type!r} within {timeout} s; last stats {self.stats}")

    def send(self, parts) -> None:
        self.up.send_multipart(parts)

    def send_valid(self, x: np.ndarray) -> None:
        """A well-formed frame of ``x`` (1 kHz timestamps), the upstream's next seq."""
        m = self.mutator
        self.send(encode("up/main", {"timestamp": m.t + np.arange(len(x)) / 1000.0, "x": x},
                         node_id="up", seq=m.seq))
        m.seq += 1
        m.t += len(x) / 1000.0

    def computes(self) -> None:
        """A valid frame still comes out doubled (sent again each 0.5 s: the first may precede
        the output subscription)."""
        while self.out.poll(0):
            self.out.recv_multipart()
        x = np.arange(4, dtype=np.float64) + time.monotonic()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.send_valid(x)
            resend = time.monotonic() + 0.5
            while time.monotonic() < resend:
                if self.out.poll(100):
                    msg = decode(self.out.recv_multipart(), shm=self.shm.resolver(None))
                    if msg.kind == "data" and np.array_equal(msg.frame.get("y"), 2 * x):
                        return
        raise AssertionError(f"no output for a valid frame; stats {self.stats}")

    def heartbeat_stats(self) -> dict:
        """The counters of a heartbeat sent from now on (queued ones are skipped; the first
        heartbeat after them may have been on its way, so the second is taken)."""
        while self.router.poll(0):
            self.router.recv_multipart()
        self.wait_for("heartbeat")
        return self.wait_for("heartbeat")["stats"]

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> int:
        """Ask the node to stop, as its launcher would; its exit code."""
        self.router.send_multipart([b"g", control.pack("stop")])
        return self.proc.wait(timeout=15)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.ctx.destroy(linger=0)
