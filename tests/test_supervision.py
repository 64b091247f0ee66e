"""Supervision with real processes and real signals: no orphans on any signal or launcher death,
a closed output pipe is not a crash, a second launch leaves the running topology alone, and a
node killed as unresponsive is restarted by the default policy."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from genki_signals.bus import control
from proc_helpers import counter_rate, env_with_tests_on_path, heartbeat_stat

pytestmark = pytest.mark.timeout(90)

CHAIN = """
    name: {name}
    nodes:
      - id: signals
        kind: source
        params:
          type: Sampler
          sample_rate: 100
          sources: {{x: {{type: SineWave, frequency: 2}}}}
      - id: derived
        kind: graph
        inputs: [signals]
        params:
          operators:
            - {{type: Scale, input: x, factor: 2.0, name: y}}
      - id: out
        kind: sink
        inputs: [{{node: derived, policy: lossless}}]
        params: {{type: "null"}}
"""


def chain_spec(tmp_path: Path, name: str, extra_nodes: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(CHAIN.format(name=name))
                    + textwrap.indent(textwrap.dedent(extra_nodes), "  "))
    return path


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_all_gone(procs: list[psutil.Process], within: float) -> list[psutil.Process]:
    deadline = time.monotonic() + within
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(procs)


@pytest.mark.process
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 0), (signal.SIGTERM, 143),
                                       (signal.SIGHUP, 129)])
def test_stop_signal_stops_the_topology_cleanly(tmp_path, launcher_factory, sig, code):
    lp = launcher_factory(chain_spec(tmp_path, f"sig{int(sig)}"))
    d = lp.wait_ready()
    nodes = lp.remember_children()  # the nodes and the fork server: all must go
    assert len(d["nodes"]) == 3 and {n["pid"] for n in d["nodes"]} <= {p.pid for p in nodes}
    run_dir = Path(lp.address[len("ipc://"):]).parent
    lp.proc.send_signal(sig)  # the launcher alone, as kill(1) or systemd would
    assert lp.wait_exit(timeout=30) == code, lp.output
    assert wait_all_gone(nodes, within=2.0) == [], lp.output
    assert f"[launch] stopping: received {sig.name}" in lp.output
    assert "[launch] stopped" in lp.output
    assert not run_dir.exists()


@pytest.mark.process
def test_sigkill_of_the_launcher_leaves_no_node_behind(tmp_path, launcher_factory):
    # 'stuck' ignores SIGTERM and blocks in its logic: only the hard deadline ends it
    spec = chain_spec(tmp_path, "orphans", """
      - id: stuck
        kind: custom
        params: {class: "bad_nodes:IgnoresStopAfterReady"}
    """)
    lp = launcher_factory(spec)
    d = lp.wait_ready()
    nodes = lp.remember_children()  # the nodes and the fork server: all must go
    assert len(d["nodes"]) == 4 and {n["pid"] for n in d["nodes"]} <= {p.pid for p in nodes}
    lp.proc.kill()
    t0 = time.monotonic()
    lp.wait_exit(timeout=10)
    left = wait_all_gone(nodes, within=2.0)
    assert left == [], f"alive {time.monotonic() - t0:.2f} s after SIGKILL: " \
                       f"{[p.cmdline() for p in left]}\n{lp.output}"


def launch_cmd(spec: Path, run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "genki_signals.cli", "launch", str(spec), "--run-dir",
            str(run_dir), *args]


def wait_directory(address: str, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = control.request(address, "directory", timeout=0.5)
        except TimeoutError:
            d = None
        if d is not None and predicate(d):
            return d
        time.sleep(0.1)
    raise AssertionError(f"no directory matching within {timeout} s at {address}")


def all_ready(d: dict) -> bool:
    return bool(d["nodes"]) and all(n["state"] == "ready" for n in d["nodes"])


@pytest.mark.process
def test_launch_piped_to_head_stops_cleanly_after_head_left(tmp_path):
    """``genki launch ... | head -n 1``: the reader leaves early, then Ctrl-C."""
    spec = chain_spec(tmp_path, "pipe_head")
    run_dir = tmp_path / "run"
    head = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    launcher = subprocess.Popen(launch_cmd(spec, run_dir), stdout=head.stdin,
                                stderr=subprocess.PIPE, text=True, env=env_with_tests_on_path(),
                                start_new_session=True)
    head.stdin.close()
    try:
        wait_directory(f"ipc://{run_dir / 'control'}", all_ready, 30)
        nodes = psutil.Process(launcher.pid).children()
        assert head.wait(timeout=10) == 0  # it read its line and left
        os.kill(launcher.pid, signal.SIGINT)
        _, err = launcher.communicate(timeout=30)
        assert launcher.returncode == 0, err
        assert "Traceback" not in err and "BrokenPipeError" not in err, err
        assert wait_all_gone(nodes, within=2.0) == []
        assert not run_dir.exists()
    finally:
        for p in (launcher, head):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


@pytest.mark.process
def test_ctrl_c_of_launch_piped_to_tee_is_a_clean_stop(tmp_path):
    """``genki launch ... | tee log`` in a shell; Ctrl-C reaches the whole job, so tee dies with
    the launcher's last lines still to come."""
    spec = chain_spec(tmp_path, "pipe_tee")
    run_dir = tmp_path / "run"
    status, err_path = tmp_path / "status", tmp_path / "stderr"
    cmd = " ".join(launch_cmd(spec, run_dir))
    job = subprocess.Popen(
        ["bash", "-c", f"{{ {cmd} 2> {err_path}; echo $? > {status}; }} | tee {tmp_path / 'log'}"],
        stdout=subprocess.DEVNULL, env=env_with_tests_on_path(), start_new_session=True)
    try:
        d = wait_directory(f"ipc://{run_dir / 'control'}", all_ready, 30)
        launcher = next(p for p in psutil.Process(job.pid).children(recursive=True)
                        if "launch" in p.cmdline())
        nodes = launcher.children(recursive=True)  # the nodes and the fork server
        assert len(d["nodes"]) == 3 and {n["pid"] for n in d["nodes"]} <= {p.pid for p in nodes}
        os.killpg(job.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground job
        psutil.wait_procs([launcher], timeout=30)
        job.wait(timeout=30)
        err = err_path.read_text()
        assert status.read_text().strip() == "0", err
        assert "Traceback" not in err and "BrokenPipeError" not in err, err
        assert wait_all_gone(nodes, within=2.0) == []
        assert not run_dir.exists()
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=10)


@pytest.mark.process
def test_second_launch_is_refused_and_leaves_the_running_topology_alone(tmp_path,
                                                                       launcher_factory):
    spec = chain_spec(tmp_path, "twice")
    lp = launcher_factory(spec)
    lp.wait_ready()
    run_dir = Path(lp.address[len("ipc://"):]).parent
    before = sorted(p.name for p in run_dir.iterdir())
    second = subprocess.run(launch_cmd(spec, run_dir), capture_output=True, text=True,
                            timeout=60, env=env_with_tests_on_path())
    assert second.returncode == 1, second.stdout + second.stderr
    assert "is already running" in second.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before
    # attach tools keep working
    topics = subprocess.run([sys.executable, "-m", "genki_signals.cli", "topics", lp.address],
                            capture_output=True, text=True, timeout=30)
    assert topics.returncode == 0 and "derived/main" in topics.stdout, topics.stderr
    echo = subprocess.run([sys.executable, "-m", "genki_signals.cli", "echo", lp.address,
                           "derived/main", "-n", "3"], capture_output=True, text=True,
                          timeout=30)
    assert echo.returncode == 0, echo.stderr
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output


@pytest.mark.process
def test_unresponsive_node_is_killed_and_restarted_by_the_default_policy(tmp_path,
                                                                        launcher_factory):
    spec = tmp_path / "hang.yaml"
    spec.write_text(textwrap.dedent("""
        name: hang
        nodes:
          - id: hangs
            kind: custom
            params: {class: "bad_nodes:IgnoresStopAfterReady"}
    """))
    lp = launcher_factory(spec, "--grace", "0.5")
    lp.wait_ready()
    lp.wait_for(lambda d: d["nodes"][0]["restarts"] >= 1, 30, "a restart")
    out = lp.output
    assert "node 'hangs' unresponsive: no heartbeat for" in out
    assert "restarting in" in out and "(on-failure)" in out


STRAY = r"""
import sys, zmq
from genki_signals.bus import control
d = control.request(sys.argv[1], "directory", timeout=5)
node = next(n for n in d["nodes"] if n["id"] == "signals")
ctx = zmq.Context()
socks = []
for endpoint in (node["lossless_endpoint"], node["endpoint"]):  # both: it has no business
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 1)
    s.setsockopt(zmq.RCVBUF, 4096)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(endpoint)
    socks.append(s)
print("subscribed", flush=True)
import time
time.sleep(3600)
"""


@pytest.mark.process
@pytest.mark.timeout(120)
def test_stopped_undeclared_subscriber_cannot_stall_a_lossless_publisher(tmp_path,
                                                                        launcher_factory):
    """A stray process subscribes to a 500 frames/s source's lossless and lossy endpoints and
    is suspended (SIGSTOP). Over 15 s the source's rate, as its declared lossless reader
    receives it, stays within 1 % of 500 samples/s (one sample per frame), nothing is lost on
    the lossless edge, the source never waits, and nothing is killed."""
    spec = tmp_path / "stall.yaml"
    spec.write_text(textwrap.dedent("""
        name: stall
        nodes:
          - id: signals
            kind: source
            params:
              type: Sampler
              sample_rate: 500
              update_rate: 500
              sources: {x: {type: SineWave, frequency: 2}}
          - id: out
            kind: sink
            inputs: [{node: signals, policy: lossless}]
            params: {type: "null"}
    """))
    lp = launcher_factory(spec)
    lp.wait_ready()
    stray = subprocess.Popen([sys.executable, "-c", STRAY, lp.address], stdout=subprocess.PIPE,
                             text=True, env=env_with_tests_on_path())
    try:
        assert stray.stdout.readline().strip() == "subscribed"
        time.sleep(1.0)  # its connections are up (or refused)
        stray.send_signal(signal.SIGSTOP)
        time.sleep(2.0)  # any queue toward it is full by now
        gaps0 = heartbeat_stat(lp.wait_for(lambda d: d, 5, "directory"), "out", "gaps")[1]
        # the source's samples, as its declared lossless reader received them
        rate, d = counter_rate(lp, "out", "samples", 15.0)
        assert rate == pytest.approx(500, rel=0.01), f"{rate:.1f} samples/s\n{lp.output}"
        assert heartbeat_stat(d, "out", "gaps")[1] == gaps0 == 0
        assert all(n["state"] == "ready" and n["restarts"] == 0 for n in d["nodes"]), d["nodes"]
        src = next(n for n in d["nodes"] if n["id"] == "signals")["stats"]
        assert src["stalls"] == 0
        assert "unresponsive" not in lp.output
    finally:
        stray.send_signal(signal.SIGCONT)
        stray.kill()
        stray.wait(timeout=10)
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output


@pytest.mark.process
@pytest.mark.timeout(120)
def test_stalled_declared_lossless_reader_blocks_but_never_gets_the_publisher_killed(
        tmp_path, launcher_factory):
    """A declared lossless reader stopped with SIGSTOP: the source waits (backpressure, as the
    spec asked), keeps heartbeating (never killed as unresponsive), resumes when the reader
    does, and a stop request ends it cleanly even while it waits."""
    spec = tmp_path / "declared.yaml"
    spec.write_text(textwrap.dedent("""
        name: declared
        nodes:
          - id: signals
            kind: source
            params:
              type: Sampler
              sample_rate: 1000
              update_rate: 1000
              sources: {x: {type: SineWave, frequency: 2}}
          - id: out
            kind: sink
            inputs: [{node: signals, policy: lossless}]
            params: {type: "null"}
    """))
    # grace 15: the suspended reader itself is killed as unresponsive only after 3 beats + 15 s
    lp = launcher_factory(spec, "--grace", "15")
    d = lp.wait_ready()
    reader = psutil.Process(next(n["pid"] for n in d["nodes"] if n["id"] == "out"))
    reader.suspend()
    try:
        lp.wait_for(lambda d: next(n for n in d["nodes"] if n["id"] == "signals")["stats"]
                    .get("stalls", 0) > 0, 10, "the source waiting for its lossless reader")
        t_blocked = time.monotonic()
        for _ in range(6):  # it waits for seconds, and heartbeats all along
            time.sleep(1.0)
            d = lp.wait_for(lambda d: d, 5, "directory")
            src = next(n for n in d["nodes"] if n["id"] == "signals")
            assert src["heartbeat_age"] < 2.0, (time.monotonic() - t_blocked, lp.output)
        frames = src["stats"]["frames_out"]
        time.sleep(1.0)
        d = lp.wait_for(lambda d: d, 5, "directory")
        src = next(n for n in d["nodes"] if n["id"] == "signals")
        assert src["stats"]["frames_out"] == frames  # really blocked (backpressure)
        assert src["state"] == "ready" and src["restarts"] == 0, lp.output
    finally:
        reader.resume()
    t0, n0 = heartbeat_stat(lp.wait_for(lambda d: d, 5, "directory"), "out", "samples")
    lp.wait_for(lambda d: heartbeat_stat(d, "out", "samples")[1] > n0 + 2000, 30,
                "the reader catching up")
    reader.suspend()  # stalled again, then a stop request
    lp.wait_for(lambda d: next(n for n in d["nodes"] if n["id"] == "signals")["stats"]
                ["stalls"] >= 2, 10, "the source waiting again")
    lp.interrupt()
    stopped = "node 'signals' exited with code 0"
    try:  # the source stops while its reader is still suspended ...
        deadline = time.monotonic() + 30
        while stopped not in lp.output and lp.proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped_while_suspended = stopped in lp.output
    finally:  # ... which then stops by itself, rather than being killed after the 15 s grace
        with contextlib.suppress(psutil.NoSuchProcess):
            reader.resume()
    assert stopped_while_suspended, lp.output
    assert lp.wait_exit(timeout=30) == 0, lp.output
    assert "unresponsive" not in lp.output, lp.output
    assert re.search(r"\[signals\] WARNING lossless reader 'out' of 'signals' has had no room "
                     r"for 5\.\d s: publishing waits \(on_stall: block\)", lp.output), lp.output
