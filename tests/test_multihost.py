"""One spec over several hosts: network namespaces joined by a bridge, sshd in them, one command.

Host ``a`` (namespace 0) runs ``genki launch SPEC``; host ``b`` (namespace 1) is started by it
over ssh; namespace 2 is a third machine that attaches an echo and a plot buffer by the
launching host's tcp address. Everything runs as real processes (sshd, ssh, launchers, nodes);
every namespace, sshd and process is removed by PID at the end (tests/netns_helpers.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from netns_helpers import NetLab

from genki_signals.bus.security import new_keys
from genki_signals.clocksync.sync import TEST_CLOCK_ENV
from genki_signals.launch.hosts import DEFAULT_PORTS
from genki_signals.specfile import load_spec_file

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
pytestmark = [pytest.mark.multihost, pytest.mark.process]
START_TIMEOUT = 150.0  # s: two cores shared with other work; imports alone take seconds


@pytest.fixture
def lab(tmp_path):
    lab = NetLab(tmp_path, 3)
    try:
        yield lab
    finally:
        lab.close()


class Launch:
    """``genki launch SPEC`` inside namespace 0, its output collected line by line."""

    def __init__(self, lab: NetLab, spec: Path, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [*lab.prefix(0), sys.executable, "-m", "genki_signals.cli", "launch", str(spec),
             "--grace", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}", **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float, after: int = 0) -> int:
        """Index of the first line from ``after`` on containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i
            if self.proc.poll() is not None and not any(text in ln for ln in self.lines):
                time.sleep(0.3)  # let the reader catch up
                if not any(text in ln for ln in self.lines[after:]):
                    pytest.fail(f"launcher exited ({self.proc.returncode}) before {text!r}:\n"
                                f"{self.output}")
            time.sleep(0.1)
        pytest.fail(f"no {text!r} within {timeout:g} s:\n{self.output}")

    def interrupt(self) -> None:
        os.kill(self.proc.pid, signal.SIGINT)  # Ctrl-C

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def make_keys(tmp: Path) -> dict[str, dict[str, str]]:
    """Key pairs (genki keys new) for hosts a and b and for a viewer on the third machine."""
    out = {}
    for name in ("a", "b", "viewer"):
        public, secret = new_keys(name, tmp / "keys")
        out[name] = {"public": str(public), "secret_file": str(secret)}
    return out


def two_hosts(lab: NetLab, ssh: dict, keys: dict) -> dict:
    """The spec's hosts: a (runs `genki launch`), b (over ssh), both with CURVE keys; the
    viewer's key may read."""
    return {
        "hosts": {
            "a": {"start": "local", "address": lab.address(0), "keys": keys["a"]},
            "b": {"address": lab.address(1), "ssh": ssh, "python": sys.executable,
                  "env": {"PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"}, "keys": keys["b"]},
        },
        "access": {"read": [keys["viewer"]["public"]]},
    }


def viewer_args(keys: dict) -> list[str]:
    return ["--key", keys["viewer"]["secret_file"], "--server-key", keys["a"]["public"]]


def split_demo(lab: NetLab, tmp: Path, ssh: dict, name: str, keys: dict) -> Path:
    """specs/demo.yaml over two hosts: the source and the printer on b, the rest on a."""
    spec = load_spec_file(REPO / "specs" / "demo.yaml")
    spec["name"] = name
    spec.update(two_hosts(lab, ssh, keys))
    for node in spec["nodes"]:
        if node["id"] in ("signals", "printer"):
            node["host"] = "b"
        if node["id"] == "dashboard":
            node["params"]["port"] = 0
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def in_namespace(lab: NetLab, i: int, code: str, timeout: float = 90.0) -> str:
    out = subprocess.run([*lab.prefix(i), sys.executable, "-c", code], check=False,
                         capture_output=True,
                         text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def settle_zero_processes(lab: NetLab, i: int, keep: set[int], timeout: float = 15.0) -> set:
    deadline = time.monotonic() + timeout
    left = lab.pids(i) - keep
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = lab.pids(i) - keep
    return left


ATTACH = """
import json, sys, time
import numpy as np
from genki_signals.plot.remote import RemoteBuffer
buf = RemoteBuffer({address!r}, topics=["signals/main", "derived/main"], timeout=10,
                   key={key!r}, server_key={server_key!r})
assert buf.wait_for(["sine_0", "composite_sine", "wave_with_noise"], timeout=60), buf.stats
time.sleep(3)
out = {{k: np.asarray(buf[k]).tolist() for k in
       ["sine_0", "sine_1", "noise", "composite_sine", "wave_with_noise"]}}
out["t_source"] = np.asarray(buf.timestamps("sine_0")).tolist()
out["t_derived"] = np.asarray(buf.timestamps("composite_sine")).tolist()
out["directory_hosts"] = buf.directory.get("hosts")
buf.close()
print(json.dumps(out))
"""


@dataclass
class SplitDemo:
    """specs/demo.yaml running over hosts a and b (namespaces 0 and 1; 2 is a third machine)."""

    lab: NetLab
    run: Launch
    keys: dict
    keep_b: set[int]  # b's sshd: it stays when b's share stops

    @property
    def address(self) -> str:
        return f"tcp://{self.lab.address(0)}:{DEFAULT_PORTS}"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """One split demo for the module's tests, in order: attach from a third machine, lose and
    restore the link to b, then Ctrl-C (which ends it: it must be the last). Starting two
    hosts over ssh is most of each test's time, so they share one start."""
    tmp = tmp_path_factory.mktemp("split")
    lab = NetLab(tmp, 3)
    run = None
    try:
        ssh = lab.start_sshd(1)
        keys = make_keys(tmp)
        run = Launch(lab, split_demo(lab, tmp, ssh, f"mh{uuid.uuid4().hex[:6]}", keys))
        yield SplitDemo(lab, run, keys, {lab.sshd[1].pid})
    finally:
        if run is not None:
            run.kill()
        lab.close()


@pytest.mark.timeout(400)
def test_demo_split_over_two_hosts_one_command_attach_from_a_third(split, tmp_path):
    lab, run, keys, address = split.lab, split.run, split.keys, split.address
    run.wait_for("all hosts ready", START_TIMEOUT)
    # remote logs come back prefixed with host and node
    run.wait_for("[b/printer] derived/main", 60)
    # a third machine: an echo and a plot buffer, by the launching host's address
    echo = subprocess.run(
        [*lab.prefix(2), sys.executable, "-m", "genki_signals.cli", "echo", address,
         "derived/", "-n", "5", *viewer_args(keys)], check=False, capture_output=True, text=True, timeout=90,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert echo.returncode == 0, echo.stderr
    frames = [ln for ln in echo.stdout.splitlines() if ln.startswith("derived/main")]
    assert len(frames) == 5 and all("wave_with_noise=" in ln for ln in frames), echo.stdout
    # no key, or a key not on the spec's access list: nothing (CURVE + allow-list)
    intruder = new_keys("intruder", tmp_path / "keys")[1]
    for args in ([], ["--key", str(intruder), "--server-key", keys["a"]["public"]]):
        refused = subprocess.run(
            [*lab.prefix(2), sys.executable, "-m", "genki_signals.cli", "echo", address,
             "derived/", "-n", "1", *args], check=False, capture_output=True, text=True, timeout=90,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert refused.returncode == 1 and "derived/main" not in refused.stdout, refused
    got = json.loads(in_namespace(lab, 2, ATTACH.format(
        address=address, key=keys["viewer"]["secret_file"], server_key=keys["a"]["public"])))
    hosts = {h["name"]: h["state"] for h in got["directory_hosts"]}
    assert hosts == {"a": "up", "b": "up"}
    got = {k: np.array(v) for k, v in got.items() if k != "directory_hosts"}
    # source on b -> graph on a -> viewer on c, matched sample by sample by timestamp
    t, i_src, i_der = np.intersect1d(got["t_source"], got["t_derived"],
                                     return_indices=True)
    assert len(t) > 100, (len(got["t_source"]), len(got["t_derived"]))
    s0, s1, noise = (got[k][i_src] for k in ("sine_0", "sine_1", "noise"))
    composite, wave = got["composite_sine"][i_der], got["wave_with_noise"][i_der]
    np.testing.assert_allclose(composite, s0 + s1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wave, composite + noise, rtol=1e-12, atol=1e-12)
    # the source's sines, checked independently: amplitude 5 at 3 Hz, 2 at 7 Hz, 100 Hz
    assert np.median(np.diff(t)) == pytest.approx(0.01, rel=1e-3)
    assert np.max(np.abs(s0)) == pytest.approx(5, rel=0.01)
    assert np.max(np.abs(s1)) == pytest.approx(2, rel=0.01)
    spectrum = np.abs(np.fft.rfft(s0[-256:] - s0[-256:].mean()))
    assert np.fft.rfftfreq(256, 0.01)[np.argmax(spectrum)] == pytest.approx(3, abs=0.4)


@pytest.mark.timeout(500)
def test_link_to_a_host_lost_then_back_its_share_restarts(split):
    lab, run = split.lab, split.run
    run.wait_for("all hosts ready", START_TIMEOUT)
    run.wait_for("[b/printer] derived/main", 60)
    first_pid = int(next(ln for ln in reversed(run.lines)
                         if "starting host 'b' over ssh" in ln).rsplit("pid ", 1)[1])
    lab.link(1, up=False)  # the ssh link (and every other) to b is gone
    down = run.wait_for("host 'b' down", 30)
    # the rest keeps running: a's nodes are alive and the launcher serves its directory
    assert run.proc.poll() is None
    # b's sshd drops the dead session (ClientAlive, about 3 s): b's share stops
    assert settle_zero_processes(lab, 1, split.keep_b, timeout=30) == set(), run.output
    lab.link(1, up=True)
    up = run.wait_for("host 'b' up", START_TIMEOUT, after=down)
    printed = run.wait_for("[b/printer] derived/main", 60, after=up)
    assert printed > up
    second_pid = int(next(ln for ln in reversed(run.lines)
                          if "starting host 'b' over ssh" in ln).rsplit("pid ", 1)[1])
    assert second_pid != first_pid


@pytest.mark.timeout(200)
def test_ctrl_c_stops_every_host_and_leaves_nothing_in_any_namespace(split):
    lab, run = split.lab, split.run
    run.wait_for("all hosts ready", START_TIMEOUT)
    run.interrupt()
    assert run.proc.wait(timeout=60) == 0, run.output
    assert "[b/launch] stopped" in run.output, run.output
    assert "[launch] every host stopped" in run.output
    assert settle_zero_processes(lab, 0, set()) == set(), run.output
    assert settle_zero_processes(lab, 1, split.keep_b) == set(), run.output
    assert settle_zero_processes(lab, 2, set()) == set()


PROBE = {"class": "genki_signals.testing.clock_probe:ClockProbe", "args": {"rate": 50}}
SKEWS = {"skew_plus": 200, "skew_minus": -200}  # node id -> injected drift (ppm), offset 3 s
CLOCK_NODES = [{"id": node, "kind": "custom", "host": "b", "params": PROBE}
               for node in (*SKEWS, "honest")]

CLOCK_ATTACH = """
import json, time
from genki_signals.bus.directory import directory
from genki_signals.bus.security import publisher_keys, remote_access
from genki_signals.bus.sockets import Subscriber
access = remote_access({key!r}, {server_key!r})
d = directory({address!r}, timeout=10, access=access)
sub = Subscriber()
for topic, info in d["topics"].items():
    sub.connect(info["endpoint"], [topic], policy="drop_oldest", maxlen=10_000,
                security=publisher_keys(access, info["endpoint"], info["public_key"]))
rows = {{topic: [] for topic in d["topics"]}}
warm = time.monotonic() + 6.0  # the drift fit settles over the first bursts
end = warm + 4.0
while time.monotonic() < end:
    msg = sub.recv(0.1)
    if msg is None or msg.kind != "data" or time.monotonic() < warm:
        continue
    f = msg.frame
    rows[msg.topic].append([f["timestamp"][0], f["monotonic"][0], f["read_span"][0],
                            f["uncertainty"][0]])
d = directory({address!r}, timeout=10, access=access)
sub.close()
print(json.dumps({{"rows": rows, "origin": d["clock_origin"],
                   "stats": {{n["id"]: n["stats"] for n in d["nodes"]}}}}))
"""


@pytest.mark.timeout(400)
def test_clock_across_hosts_with_injected_offset_and_skew(lab, tmp_path):
    """Followers on host b, their clocks offset by 3 s and skewed by +200 and -200 ppm (one
    node each, in one launch), follow the launcher's clock on host a over tcp: p99 error
    <= 50 us, the reported uncertainty covers the truth. (The namespaces share
    CLOCK_MONOTONIC, so the truth is known exactly.)"""
    ssh = lab.start_sshd(1)
    keys = make_keys(tmp_path)
    spec = {"name": f"mhclock{uuid.uuid4().hex[:6]}", **two_hosts(lab, ssh, keys),
            "nodes": CLOCK_NODES}
    path = tmp_path / "clock.json"
    path.write_text(json.dumps(spec))
    run = Launch(lab, path, env={TEST_CLOCK_ENV: json.dumps(
        {node: {"offset": 3.0, "drift_ppm": ppm} for node, ppm in SKEWS.items()})})
    try:
        run.wait_for("all hosts ready", START_TIMEOUT)
        address = f"tcp://{lab.address(0)}:{DEFAULT_PORTS}"
        got = json.loads(in_namespace(lab, 2, CLOCK_ATTACH.format(
            address=address, key=keys["viewer"]["secret_file"], server_key=keys["a"]["public"])))
        top = subprocess.run([*lab.prefix(2), sys.executable, "-m", "genki_signals.cli", "top",
                              address, "-n", "1", *viewer_args(keys)], check=False, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        run.interrupt()
        run.proc.wait(timeout=60)
    finally:
        run.kill()
    assert top.returncode == 0, top.stderr
    h = got["stats"]["honest"]
    assert abs(h["clock_drift_ppm"]) < 20  # the same kernel clock
    for node, drift_ppm in SKEWS.items():
        # genki top from a third machine: each node's host, clock offset and uncertainty
        row = next(ln.split() for ln in top.stdout.splitlines() if ln.startswith(f"{node} "))
        assert row[-3] == "b" and float(row[-1]) > 0, top.stdout
        assert abs(float(row[-2]) - got["stats"][node]["clock_offset"] * 1e3) < 50, top.stdout
        a = np.array(got["rows"][f"{node}/main"])
        assert len(a) > 100, run.output
        a = a[a[:, 2] < 100e-6]  # drop the rare reading preempted between its two clocks
        err = a[:, 0] - (a[:, 1] - got["origin"])  # leader time estimate - truth
        p99 = np.percentile(np.abs(err), 99)
        print(f"clock across hosts, drift {drift_ppm:+d} ppm, offset 3 s: {len(err)} samples, "
              f"p99 |error| {p99 * 1e6:.1f} us, max {np.abs(err).max() * 1e6:.1f} us, "
              f"median uncertainty {np.median(a[:, 3]) * 1e6:.1f} us")
        assert p99 <= 50e-6, (node, p99, got["stats"][node])
        assert np.all(np.abs(err) <= a[:, 3]), (node, np.abs(err).max(), a[:, 3].min())
        s = got["stats"][node]
        assert s["clock_role"] == "follower"
        assert s["clock_drift_ppm"] == pytest.approx(-drift_ppm, abs=20)
        # Each host counts from its own share's origin (the offset absorbs that); two nodes of
        # one host differ by the injected offset (and the drift since: ms)
        assert h["clock_offset"] - s["clock_offset"] == pytest.approx(3.0, abs=20e-3)


@pytest.mark.timeout(300)
def test_manual_host_started_by_hand_on_loopback(tmp_path):
    """`genki launch SPEC --host NAME` starts one share by hand; the launching host finds it
    (deterministic ports), data crosses both ways over tcp, and each stops on Ctrl-C."""
    name = f"mhman{uuid.uuid4().hex[:6]}"
    spec = {"name": name,
            "hosts": {"a": {"start": "local", "address": "127.0.0.1", "ports": 47500},
                      "b": {"start": "manual", "address": "127.0.0.1", "ports": 47600}},
            "nodes": [
                {"id": "signals", "kind": "source", "host": "b",
                 "params": {"type": "Sampler", "sample_rate": 100, "update_rate": 25,
                            "sources": {"x": {"type": "SineWave", "frequency": 2}}}},
                {"id": "derived", "kind": "graph",
                 "inputs": [{"node": "signals", "policy": "lossless"}],
                 "params": {"operators": [{"type": "MovingAverage", "input": "x", "name": "y",
                                           "length": 4}]}},
                {"id": "printer", "kind": "sink", "host": "b", "inputs": ["derived"],
                 "params": {"type": "printer", "keys": ["y"], "every": 25}}]}
    path = tmp_path / "manual.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO), "GENKI_RUN_TOKEN": uuid.uuid4().hex}
    procs = []
    try:
        for extra in ([], ["--host", "b"]):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "genki_signals.cli", "launch", str(path), *extra],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                start_new_session=True))
        lines: list[list[str]] = [[], []]
        for proc, out in zip(procs, lines):
            threading.Thread(target=lambda p=proc, o=out: o.extend(
                ln.rstrip("\n") for ln in p.stdout), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not (
                any("manual host 'b' up" in ln for ln in lines[0])
                and any("[printer] derived/main" in ln for ln in lines[1])):
            time.sleep(0.2)
        assert any("manual host 'b' up" in ln for ln in lines[0]), lines
        assert any("[printer] derived/main" in ln for ln in lines[1]), lines  # b -> a -> b
        for proc in procs:
            os.kill(proc.pid, signal.SIGINT)
        assert [p.wait(timeout=60) for p in procs] == [0, 0], lines
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
