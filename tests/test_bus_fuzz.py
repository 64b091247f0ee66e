"""Fuzzing a real graph node process over a real socket: Hypothesis-generated messages and a
bounded mutation loop (the long soak is tools/fuzz_soak.py). The node must not crash, must keep
computing valid frames, count what it skipped, stay within 1.5x its idle RSS and stop cleanly."""

from __future__ import annotations

import subprocess
import sys
import time

import msgpack
import numpy as np
import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genki_signals.bus import control
from genki_signals.bus.codec import encode
from genki_signals.bus.fuzz import Mutator
from genki_signals.nodes.config import InputEdge, NodeConfig
from proc_helpers import env_with_tests_on_path

pytestmark = pytest.mark.timeout(240)


class GraphNode:
    """A graph node process; the test plays its launcher (ROUTER) and its upstream (XPUB)."""

    def __init__(self, tmp_path) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind(f"ipc://{tmp_path}/control")
        self.up = self.ctx.socket(zmq.XPUB)
        self.up.setsockopt(zmq.XPUB_NODROP, 1)  # every message reaches the node
        self.up.setsockopt(zmq.SNDTIMEO, 10_000)
        self.up.bind(f"ipc://{tmp_path}/up")
        self.out = self.ctx.socket(zmq.SUB)  # the node's output, read by the test
        self.out.setsockopt(zmq.SUBSCRIBE, b"")
        config = NodeConfig(
            id="g", kind="graph",
            params={"operators": [{"type": "Scale", "input": "x", "factor": 2.0, "name": "y"}]},
            control_endpoint=f"ipc://{tmp_path}/control", publish_endpoint=f"ipc://{tmp_path}/g",
            inputs=(InputEdge(node="up", endpoint=f"ipc://{tmp_path}/up", topics=("up/",),
                              policy="drop_oldest", maxlen=1000, streams=("timestamp", "x")),),
            heartbeat_interval=0.2)
        path = tmp_path / "g.json"
        path.write_text(config.to_json())
        self.proc = subprocess.Popen([sys.executable, "-m", "genki_signals.nodes", "--config",
                                      str(path)], env=env_with_tests_on_path(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.stats: dict = {}
        self.control("ready")
        self.out.connect(f"ipc://{tmp_path}/g")
        assert self.up.poll(10_000), "the node never subscribed"
        self.up.recv()
        self.mutator = Mutator("up/", "up", seed=1, big_every=500)

    def control(self, msg_type: str, timeout: float = 15.0, where=lambda m: True) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.router.poll(100):
                _, data = self.router.recv_multipart()
                msg = control.unpack(data)
                if msg and msg["type"] == "heartbeat":
                    self.stats = msg["stats"]
                if msg and msg["type"] == msg_type and where(msg):
                    return msg
            assert self.proc.poll() is None, f"node exited:\n{self.proc.stdout.read()}"
        raise AssertionError(f"no {msg_type!r} within {timeout} s; last stats {self.stats}")

    def send(self, parts) -> None:
        self.up.send_multipart(parts)

    def computes(self) -> None:
        """A valid frame still comes out doubled (sent again each 0.5 s: the first may precede
        the output subscription)."""
        from genki_signals.bus.codec import decode
        from genki_signals.bus.shm import ShmReader

        self.shm = getattr(self, "shm", None) or ShmReader()

        while self.out.poll(0):
            self.out.recv_multipart()
        x = np.arange(4, dtype=np.float64) + time.monotonic()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            t0 = self.mutator.t
            self.send(encode("up/main", {"timestamp": t0 + np.arange(4) / 1000.0, "x": x},
                             node_id="up", seq=self.mutator.seq))
            self.mutator.seq += 1
            self.mutator.t += 0.004
            resend = time.monotonic() + 0.5
            while time.monotonic() < resend:
                if self.out.poll(100):
                    # large outputs come through the node's shared-memory ring (bus.shm)
                    msg = decode(self.out.recv_multipart(), shm=self.shm.resolver(None))
                    if "y" in msg.frame and np.array_equal(msg.frame["y"], 2 * x):
                        return
        raise AssertionError(f"no output for a valid frame; stats {self.latest_stats()}")

    def latest_stats(self) -> dict:
        """The counters of the newest heartbeat (those queued before it are skipped)."""
        t = time.monotonic() + 1.5
        while time.monotonic() < t:
            if self.router.poll(100):
                m = control.unpack(self.router.recv_multipart()[1])
                if m and m["type"] == "heartbeat":
                    self.stats = m["stats"]
        return self.stats

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> int:
        self.router.send_multipart([b"g", control.pack("stop")])
        return self.proc.wait(timeout=15)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.ctx.destroy(linger=0)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    n = GraphNode(tmp_path_factory.mktemp("fuzz"))
    yield n
    n.close()


header_values = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                          st.floats(), st.text(max_size=20), st.binary(max_size=20))
headers = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["v", "node", "seq", "kind", "t", "fields", "x"]),
                    st.one_of(header_values, st.lists(st.lists(header_values, max_size=5),
                                                      max_size=4)),
                    max_size=7).map(lambda d: msgpack.packb(d, use_bin_type=True)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(topic=st.binary(max_size=30).map(lambda b: b"up/" + b), header=headers,
       rest=st.lists(st.binary(max_size=100), max_size=3))
def test_hypothesis_messages_never_end_the_node(node, topic, header, rest):
    node.send([topic, header, *rest])
    assert node.proc.poll() is None


def test_node_still_computes_after_the_hypothesis_messages(node):
    node.computes()
    assert node.latest_stats()["decode_errors"] > 0


def test_mutation_loop_keeps_the_node_computing_with_bounded_memory(node):
    node.computes()
    for _ in range(2000):
        node.send(node.mutator.valid())
    node.computes()
    idle = node.rss()
    for i in range(30_000):
        node.send(next(node.mutator))
        if i % 10_000 == 0:
            node.computes()
    node.computes()
    stats = node.latest_stats()  # the node has caught up: computes() saw the last frame
    assert stats["frame_errors"] + stats["decode_errors"] > 10_000, stats
    assert stats["gaps"] < 2**40  # forged sequence numbers count as resets, not as 1e19 gaps
    assert stats["resets"] > 0
    assert node.rss() <= 1.5 * idle, (node.rss(), idle)
    assert node.stop() == 0
