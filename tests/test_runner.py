"""A real node process driven by the test: the test plays launcher (control ROUTER) and upstream
(a raw ZeroMQ XPUB that sends both garbage and valid frames)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from genki_signals.bus import control
from genki_signals.bus.codec import encode
from genki_signals.nodes.config import InputEdge, NodeConfig
from proc_helpers import env_with_tests_on_path

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def start_node(tmp_path, config: NodeConfig) -> subprocess.Popen:
    path = tmp_path / f"{config.id}.json"
    path.write_text(config.to_json())
    return subprocess.Popen([sys.executable, "-m", "genki_signals.nodes", "--config", str(path)],
                            env=env_with_tests_on_path(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def next_control(router: zmq.Socket, msg_type: str, timeout: float = 15.0, where=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if router.poll(100):
            _, data = router.recv_multipart()
            msg = control.unpack(data)
            if msg and msg["type"] == msg_type and (where is None or where(msg)):
                return msg
    raise AssertionError(f"no {msg_type!r} control message within {timeout} s")


@pytest.mark.process
def test_node_fed_garbage_keeps_running_and_counts_it(tmp_path, ctx):
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/control")
    upstream = ctx.socket(zmq.XPUB)
    upstream.bind(f"ipc://{tmp_path}/up")
    config = NodeConfig(
        id="sink", kind="sink", params={"type": "null"},
        control_endpoint=f"ipc://{tmp_path}/control",
        inputs=(InputEdge(node="up", endpoint=f"ipc://{tmp_path}/up", topics=("up/",),
                          policy="drop_oldest", maxlen=1000),),
        heartbeat_interval=0.2)
    proc = start_node(tmp_path, config)
    try:
        next_control(router, "ready")
        assert upstream.poll(5000)  # the node's subscription arrived
        upstream.recv()
        garbage = [[b"up/main", b"\x00\xff not msgpack"], [b"up/main"],
                   [b"up/main", b"\x93\x01\x02\x03", b"extra"], [b"up/main", b"", b"", b""]]
        samples = 0
        for i in range(20):
            for parts in garbage:
                upstream.send_multipart(parts)
            frame = {"timestamp": np.arange(5) / 100 + i * 0.05, "x": np.ones(5)}
            upstream.send_multipart(encode("up/main", frame, node_id="up", seq=i))
            samples += 5
        beat = next_control(router, "heartbeat", where=lambda m: m["stats"].get("samples") ==
                            samples and m["stats"].get("decode_errors", 0) >= 80)
        assert beat["stats"]["decode_errors"] == 80
        assert proc.poll() is None  # still running
        router.send_multipart([b"sink", control.pack("stop")])
        assert proc.wait(timeout=10) == 0
        next_control(router, "bye", where=lambda m: m["reason"] == "stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        router.close(0)
        upstream.close(0)


@pytest.mark.process
def test_node_with_bad_config_exits_with_a_clear_message(tmp_path):
    config = NodeConfig(id="bad", kind="sink", params={"type": "teapot"},
                        control_endpoint=f"ipc://{tmp_path}/control")
    proc = start_node(tmp_path, config)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "node 'bad': cannot start: ValueError: node 'bad': unknown sink type 'teapot'" in out
