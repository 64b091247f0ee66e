"""Nodes forked from the launcher's pre-warmed fork server (``genki_signals.launch.forkserver``):
real ``genki launch`` processes, real signals. Where a node came from is read from the process
tree (its parent is the fork server, whose parent is the launcher), never from a mock."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time

import psutil
import pytest
from proc_helpers import LauncherProcess
from test_supervision import chain_spec, wait_all_gone

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def pids(d: dict) -> dict[str, int]:
    return {n["id"]: n["pid"] for n in d["nodes"]}


def fork_server_of(launcher_pid: int) -> psutil.Process:
    servers = [p for p in psutil.Process(launcher_pid).children()
               if "genki_signals.launch.forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1, [p.cmdline() for p in psutil.Process(launcher_pid).children()]
    return servers[0]


def test_nodes_and_restarts_come_from_one_fork_server_that_goes_with_the_stop(
        tmp_path, launcher_factory):
    spec = chain_spec(tmp_path, "forked", """
      - id: pinned
        kind: sink
        inputs: [signals]
        cpu: [0]
        params: {type: "null"}
    """)
    lp = launcher_factory(spec)
    d = lp.wait_ready()
    server = fork_server_of(lp.proc.pid)
    for node_id, pid in pids(d).items():
        proc = psutil.Process(pid)
        assert proc.ppid() == server.pid, node_id  # forked, not a new interpreter
        assert " ".join(proc.cmdline()).startswith(  # its title, as if spawned
            "python -m genki_signals.nodes --config"), proc.cmdline()
        assert os.getsid(pid) == pid  # its own session and process group, as before
    assert psutil.Process(pids(d)["pinned"]).cpu_affinity() == [0]
    # a node killed with -9 comes back from the same server
    os.kill(pids(d)["derived"], signal.SIGKILL)
    d = lp.wait_for(lambda d: d if next(n for n in d["nodes"] if n["id"] == "derived")
                    ["restarts"] == 1 and all(n["state"] == "ready" for n in d["nodes"])
                    else None, 30, "derived restarted")
    assert psutil.Process(pids(d)["derived"]).ppid() == server.pid
    lp.wait_for(lambda d: next(n for n in d["nodes"] if n["id"] == "out")["stats"]
                .get("samples", 0) > 0, 15, "the sink receiving after the restart")
    everything = lp.remember_children()
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
    assert wait_all_gone(everything, within=2.0) == [], lp.output  # no fork server left
    assert not any(p.status() == psutil.STATUS_ZOMBIE for p in everything if p.is_running())


def test_spawn_start_method_starts_each_node_as_a_new_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("GENKI_NODE_START", "spawn")
    lp = LauncherProcess(chain_spec(tmp_path, "spawned"), tmp_path / "run")
    try:
        d = lp.wait_ready(timeout=90)  # a new interpreter per node: slow on a loaded machine
        for pid in pids(d).values():
            assert psutil.Process(pid).ppid() == lp.proc.pid
        assert not any("forkserver" in " ".join(p.cmdline())
                       for p in psutil.Process(lp.proc.pid).children())
        lp.interrupt()
        assert lp.wait_exit(timeout=30) == 0, lp.output
    finally:
        lp.kill_all()


def test_launcher_with_threads_uses_a_fresh_fork_server_and_leaves_nothing(tmp_path):
    """A launcher embedded in a program that already runs threads must not fork itself: its
    fork server is a new interpreter that imports the node modules, and still forks nodes."""
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import load_topology

    spec = load_topology(chain_spec(tmp_path, "threaded"))
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)
    busy.start()
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    launcher = Launcher(spec, run_dir=tmp_path / "run", out=Out())
    started: list[psutil.Process] = []
    try:
        launcher.start()
        assert launcher.fork_server.how == "exec"
        server = psutil.Process(launcher.fork_server.pid)
        assert "-m genki_signals.launch.forkserver" in " ".join(server.cmdline())
        assert server.ppid() == os.getpid()
        started = [server, *server.children()]
        for node in launcher.nodes.values():
            assert getattr(node.proc, "forked", False)
            assert psutil.Process(node.proc.pid).ppid() == server.pid
        deadline = time.monotonic() + 30
        while not launcher.nodes["out"].stats.get("samples") and time.monotonic() < deadline:
            launcher._service(0.05)
        assert launcher.nodes["out"].stats.get("samples"), "".join(lines)
    finally:
        launcher.stop()
        stop.set()
    assert wait_all_gone(started, within=3.0) == [], "".join(lines)
    assert all(n.state in ("stopped", "exited") for n in launcher.nodes.values()), \
        [(n.spec.id, n.state, n.exit_cause) for n in launcher.nodes.values()]


def test_node_output_and_a_bad_config_error_reach_the_launcher(tmp_path, launcher_factory):
    """stdout/stderr of a forked node are the launcher's pipes, prefixed with the node id; a
    node that cannot start fails the launch with its message (as a spawned node would)."""
    spec = tmp_path / "bad.yaml"
    spec.write_text(textwrap.dedent("""
        name: badforked
        nodes:
          - id: broken
            kind: custom
            params: {class: "bad_nodes:CrashesInInit"}
    """))
    lp = launcher_factory(spec)
    code = lp.wait_exit(timeout=60)
    assert code == 1, lp.output
    assert "[broken] node 'broken': cannot start" in lp.output, lp.output


def test_the_supervision_loop_sleeps_long_and_a_forked_nodes_exit_wakes_it(tmp_path):
    """Every node forked: a round of the launcher's loop may wait ``SUPERVISION_TICK`` (idle
    cost), and a node's exit, reported by the fork server, ends the wait at once (restarts are
    as prompt as with a short tick). Heartbeats every 30 s: nothing else wakes the loop."""
    from genki_signals.launch.launcher import POLL_TICK, SUPERVISION_TICK, Launcher
    from genki_signals.launch.spec import load_topology

    assert SUPERVISION_TICK > POLL_TICK
    spec = load_topology(chain_spec(tmp_path, "woken"))
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    launcher = Launcher(spec, run_dir=tmp_path / "run", out=Out(), heartbeat_interval=30.0)
    started: list[psutil.Process] = []
    try:
        launcher.start()
        server = psutil.Process(launcher.fork_server.pid)
        started = [server, *server.children()]
        assert launcher._supervision_timeout(None) == SUPERVISION_TICK
        assert launcher._supervision_timeout(time.monotonic() + 0.01) <= 0.01  # `end` is due
        quiet_until = time.monotonic() + 3.0  # start-up log lines are read
        while time.monotonic() < quiet_until:
            launcher._service(0.1)
        # a wake-up from another thread ends a long wait
        timer = threading.Timer(0.2, launcher._wake)
        timer.start()
        t0 = time.monotonic()
        launcher._service(5.0)
        assert 0.15 < time.monotonic() - t0 < 2.0
        timer.join()
        # a killed node's exit report from the fork server ends it too
        node = launcher.nodes["derived"]
        os.kill(node.proc.pid, signal.SIGKILL)
        t0 = time.monotonic()
        while node.state == "ready" and time.monotonic() - t0 < 10:
            launcher._service(5.0)
        assert node.state != "ready"
        assert time.monotonic() - t0 < 2.0, "".join(lines)
    finally:
        launcher.stop()
    assert wait_all_gone(started, within=3.0) == [], "".join(lines)
