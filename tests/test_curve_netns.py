"""CurveZMQ across two network namespaces joined by a veth pair (10.77.0.0/24, no route out).

Needs root and ``ip`` (Debian package iproute2): the tests fail, saying so, without them. The
namespaces, the veth pair and every process are created here and removed at teardown (processes
by their process group, namespaces by name). Peers run ``tests/curve_peers.py`` under
``ip netns exec``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genki_signals.bus.security import new_keys

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

TESTS = Path(__file__).parent
PEERS = TESTS / "curve_peers.py"
SPEC = TESTS / "specs" / "valid-minimal.yaml"
MARKER = "GENKI-PLAINTEXT-MARKER-7f3a"
A_ADDR, B_ADDR = "10.77.0.1", "10.77.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Namespaces:
    """Two namespaces ``a`` and ``b`` joined by veth ``va`` (10.77.0.1) / ``vb`` (10.77.0.2)."""

    def __init__(self, tag: str) -> None:
        self.a, self.b = f"gcA{tag}", f"gcB{tag}"
        self.va, self.vb = f"gca{tag}", f"gcb{tag}"
        self.procs: list[subprocess.Popen] = []

    def create(self) -> None:
        _ip("netns", "add", self.a)
        _ip("netns", "add", self.b)
        _ip("link", "add", self.va, "type", "veth", "peer", "name", self.vb)
        _ip("link", "set", self.va, "netns", self.a)
        _ip("link", "set", self.vb, "netns", self.b)
        _ip("-n", self.a, "addr", "add", f"{A_ADDR}/24", "dev", self.va)
        _ip("-n", self.b, "addr", "add", f"{B_ADDR}/24", "dev", self.vb)
        for ns, dev in ((self.a, self.va), (self.b, self.vb)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")

    def run(self, ns: str, *args: str) -> subprocess.Popen:
        """``curve_peers.py ARGS`` in namespace ``ns``, in its own process group."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(PEERS), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def wait_ready(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"peer not ready: {proc.args}\n{proc.stderr.read()}")


def result(proc: subprocess.Popen, timeout: float = 30.0) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, f"{proc.args} failed:\n{out}\n{err}"
    return json.loads(lines[-1])


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.fail("these tests create network namespaces: run them as root")
    if shutil.which("ip") is None:
        pytest.fail("`ip` not found: install the Debian package iproute2")
    ns = Namespaces(str(os.getpid() % 100000))
    try:
        ns.create()
        yield ns
    finally:
        ns.cleanup()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.a not in left and ns.b not in left


@pytest.fixture
def keydir(tmp_path):
    for name in ("srv", "ctl", "rd", "bad"):
        new_keys(name, tmp_path)
    return tmp_path


def test_curve_data_link_admits_listed_keys_only_and_is_encrypted_on_the_wire(netns, keydir):
    endpoint = f"tcp://{A_ADDR}:5555"
    sniffer = netns.run(netns.a, "sniff", netns.va, "6")
    wait_ready(sniffer)
    pub = netns.run(netns.a, "publish", str(keydir), endpoint, "curve", "5")
    wait_ready(pub)
    subs = {k: netns.run(netns.b, "subscribe", str(keydir), endpoint, k, "3")
            for k in ("ctl", "rd", "bad", "plain")}
    got = {k: result(p) for k, p in subs.items()}
    published = result(pub)
    wire = result(sniffer)
    assert got["ctl"]["frames"] > 100 and got["rd"]["frames"] > 100, got
    assert got["bad"]["frames"] == 0 and got["plain"]["frames"] == 0, got
    # the handshake failures seen by the socket monitors of the refused clients
    assert got["bad"]["refused"] >= 1 and got["plain"]["refused"] >= 1, got
    assert got["ctl"]["refused"] == 0 and got["rd"]["refused"] == 0, got
    assert published["refused"] >= 1, published  # the unlisted key, refused by the ZAP handler
    assert wire["packets"] > 100, wire
    assert wire["hits"] == 0, wire


def test_plain_link_shows_the_marker_on_the_wire(netns, keydir):
    """The control experiment: without CURVE the sniffer does find the marker."""
    endpoint = f"tcp://{A_ADDR}:5556"
    sniffer = netns.run(netns.a, "sniff", netns.va, "4")
    wait_ready(sniffer)
    pub = netns.run(netns.a, "publish", str(keydir), endpoint, "plain", "3")
    wait_ready(pub)
    got = result(netns.run(netns.b, "subscribe", str(keydir), endpoint, "plain", "2"))
    result(pub)
    wire = result(sniffer)
    assert got["frames"] > 100, got
    assert wire["hits"] > 0, wire


def test_remote_control_socket_refuses_read_keys_unknown_keys_and_plain_clients(netns, keydir,
                                                                                tmp_path):
    remote = f"tcp://{A_ADDR}:5600"
    la = netns.run(netns.a, "launcher", str(keydir), str(SPEC), str(tmp_path / "run"), remote,
                   "90")
    wait_ready(la, timeout=40)
    answers = {}
    for key in ("rd", "ctl", "plain", "bad"):  # one after the other: each claims node id src
        answers[key] = result(netns.run(netns.b, "control", str(keydir), remote, key))
    la.send_signal(signal.SIGTERM)  # `ip netns exec` execs: this is the launcher's pid
    out, err = la.communicate(timeout=40)
    stats = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert answers["rd"]["directory"] and answers["ctl"]["directory"], answers
    assert not answers["bad"]["directory"] and not answers["plain"]["directory"], answers
    # only the control key's message reached the launcher as node src's log line
    assert out.count(MARKER) == 1, out
    assert stats["refused_control"] == 1, stats  # the read key's
    assert stats["refused_keys"] >= 1, stats  # the unlisted key's handshakes
