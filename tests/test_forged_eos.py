"""An ``eos`` (or any frame) from a node the spec does not wire in is counted and ignored: it never
ends an input or a node. Checked on a real graph node process fed over a real socket, on the
Subscriber alone, and on the feeders (plain objects)."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
import zmq

from genki_signals.bus.codec import decode, encode
from genki_signals.bus.sockets import Subscriber
from genki_signals.frames import Topic
from genki_signals.nodes.merge import feeder_for
from proc_helpers import GraphNodeProcess

pytestmark = pytest.mark.timeout(120)


def frame(t0: float, x: np.ndarray) -> dict:
    return {"timestamp": t0 + np.arange(len(x)) / 1000.0, "x": x}


@pytest.fixture
def node(tmp_path):
    n = GraphNodeProcess(tmp_path)
    yield n
    n.close()


def test_forged_eos_from_an_unknown_node_id_never_ends_the_node(node):
    node.computes()
    before = node.heartbeat_stats().get("unexpected", 0)
    for forger in ("intruder", "up2", ""):  # on the wired node's own topic
        node.up.send_multipart(encode("up/main", {}, node_id=forger, seq=0, kind="eos"))
    # a frame of an unwired node id is counted and not computed
    node.up.send_multipart(encode("up/main", frame(node.mutator.t, np.full(4, 7.0)), node_id="intruder",
                                  seq=0))
    with pytest.raises(subprocess.TimeoutExpired):  # the bug: it exited 0 within 3 s
        node.proc.wait(timeout=3.0)
    node.computes()
    stats = node.heartbeat_stats()
    assert stats["unexpected"] - before == 4, stats
    while node.out.poll(0):  # the intruder's 7s were never doubled into the output
        msg = decode(node.out.recv_multipart())
        assert not np.any(msg.frame.get("y", np.zeros(1)) == 14.0)
    # the wired node's own eos still ends the node, with exit 0 (so on-failure does not restart)
    node.up.send_multipart(encode("up/main", {}, node_id="up", seq=node.mutator.seq, kind="eos"))
    bye = node.wait_for("bye")
    assert bye["reason"] == "eos"
    assert node.proc.wait(timeout=10) == 0


def test_subscriber_edge_takes_only_its_node(tmp_path):
    ctx = zmq.Context()
    try:
        pub = ctx.socket(zmq.XPUB)
        pub.bind(f"ipc://{tmp_path}/p")
        sub = Subscriber(context=ctx)
        sub.connect(f"ipc://{tmp_path}/p", ["up/"], node="up")
        assert pub.poll(5000)
        pub.recv()
        ok = frame(0.0, np.zeros(2))
        pub.send_multipart(encode("up/main", ok, node_id="other", seq=0))  # forged id
        pub.send_multipart(encode("up/main", {}, node_id="other", seq=1, kind="eos"))
        pub.send_multipart(encode("up/main", ok, node_id="up", seq=0))
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 1 and time.monotonic() < deadline:
            msg = sub.recv(timeout=0.2)
            if msg is not None:
                got.append(msg)
        assert [(m.node_id, m.kind) for m in got] == [("up", "data")]
        assert sub.stats.unexpected == 2
        assert list(sub.upstreams) == [("up", "up/main")]  # the forger left no trace
        sub.close()
    finally:
        ctx.destroy(linger=0)


def message(node: str, kind: str, seq: int = 0):
    """A real decoded bus message of ``node`` on ``<node>/main``."""
    data = frame(0.0, np.zeros(2)) if kind == "data" else {}
    return decode(encode(f"{node}/main", data, node_id=node, seq=seq, kind=kind))


@pytest.mark.parametrize("mode", ["merged", "arrival", "raw"])
def test_feeders_ignore_inputs_the_spec_does_not_wire(mode):
    feeder = feeder_for(mode, ["a"])
    assert feeder.receive(Topic("b"), message("b", "eos"), 0.0) == []
    assert feeder.receive(Topic("b"), message("b", "data", 1), 0.0) == []
    assert feeder.unexpected == 2 and not feeder.ended
    feeder.receive(Topic("a"), message("a", "eos"), 0.0)
    feeder.ready(0.0)
    assert feeder.ended


def test_genki_top_counts_unexpected_and_oversized_as_errors():
    from genki_signals.launch.tools import format_top

    d = {"topology": "t", "address": "ipc://x", "nodes": [
        {"id": "g", "kind": "graph", "state": "ready", "restarts": 0,
         "stats": {"unexpected": 3, "oversized": 2, "decode_errors": 1, "frame_errors": 4}}]}
    lines = format_top(d).splitlines()
    column = lines[1].index("errors") + len("errors")  # right-aligned under its header
    assert lines[2].startswith("g ")
    assert lines[2][:column].split()[-1] == "10"
