"""A real node process driven by the test: the test plays launcher (control ROUTER) and upstream
(a raw ZeroMQ XPUB that sends both garbage and valid frames)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from genki_signals.bus import control
from genki_signals.bus.codec import decode, encode, encode_eos
from genki_signals.nodes.config import InputEdge, NodeConfig
from proc_helpers import env_with_tests_on_path

pytestmark = pytest.mark.timeout(60)


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


# ------------------------------------------------------------ input modes, one process each
def two_input_node(tmp_path, ctx, mode: str):
    """A ``probe_nodes:Seer`` node of ``mode`` reading upstreams ``a`` and ``b`` (raw XPUBs
    played by the test); returns (process, control ROUTER, {name: XPUB})."""
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/control")
    ups = {}
    for name in ("a", "b"):
        ups[name] = ctx.socket(zmq.XPUB)
        ups[name].bind(f"ipc://{tmp_path}/{name}")
    config = NodeConfig(
        id="seer", kind="custom", params={"class": "probe_nodes:Seer", "args": {"mode": mode}},
        control_endpoint=f"ipc://{tmp_path}/control",
        inputs=tuple(InputEdge(node=n, endpoint=f"ipc://{tmp_path}/{n}", topics=(f"{n}/",))
                     for n in ups),
        heartbeat_interval=0.1, extra={"max_lag": None})  # merged: wait for every input
    return start_node(tmp_path, config), router, ups


def seen(out: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith("SEEN ")]
    assert len(lines) == 1, out
    return json.loads(lines[0][5:])


@pytest.mark.process
@pytest.mark.parametrize("mode", ["merged", "arrival", "raw"])
def test_each_input_mode_sees_frames_in_its_own_order(tmp_path, ctx, mode):
    """b's frames (later timestamps) arrive before a's: ``merged`` sees them in timestamp order,
    ``arrival`` and ``raw`` in arrival order; ``arrival`` also gets eos and ticks, ``raw`` the
    messages themselves with their parts (eos included)."""
    proc, router, ups = two_input_node(tmp_path, ctx, mode)
    seq = {"a": 0, "b": 0}

    def send(name, t0):
        for i in range(5):
            frame = {"timestamp": np.array([t0 + i * 0.1]), "x": np.ones(1)}
            ups[name].send_multipart(encode(f"{name}/main", frame, node_id=name, seq=seq[name]))
            seq[name] += 1

    def delivered(count, seen_count):  # the node received `count` frames, its logic saw ...
        next_control(router, "heartbeat", where=lambda m: m["stats"]["frames_in"] == count
                     and m["stats"]["seen"] == seen_count)

    try:
        next_control(router, "ready")
        for up in ups.values():
            assert up.poll(5000)  # the node's subscription arrived
            up.recv()
        send("b", 1.0)
        delivered(5, 0 if mode == "merged" else 5)
        send("a", 0.0)
        delivered(10, 5 if mode == "merged" else 10)  # merged: a's are due, b's wait for a
        for name in ("a", "b"):
            ups[name].send_multipart(encode_eos(f"{name}/main", node_id=name, seq=seq[name]))
        out, _ = proc.communicate(timeout=30)  # every input ended: the node exits by itself
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        router.close(0)
        for up in ups.values():
            up.close(0)
    got = seen(out)
    a = [0.0, 0.1, 0.2, 0.3, 0.4]
    b = [1.0, 1.1, 1.2, 1.3, 1.4]
    if mode == "merged":
        assert got["calls"] == [["data", f"{t}/main", "Topic", pytest.approx(v)]
                                for t, vs in (("a", a), ("b", b)) for v in vs]
        assert got["ticks"] == 0
    elif mode == "arrival":
        assert got["calls"][:10] == [["data", f"{t}/main", "Topic", pytest.approx(v)]
                                     for t, vs in (("b", b), ("a", a)) for v in vs]
        assert sorted(map(tuple, got["calls"][10:])) == [("eos", "a/main", "Topic"),
                                                         ("eos", "b/main", "Topic")]
        assert got["ticks"] >= 10  # after every frame at least
    else:
        assert got["calls"][:10] == [["message", f"{t}/main", "data", pytest.approx(v), True]
                                     for t, vs in (("b", b), ("a", a)) for v in vs]
        assert sorted(map(tuple, got["calls"][10:])) == [("message", "a/main", "eos", None, True),
                                                         ("message", "b/main", "eos", None, True)]
        assert got["ticks"] == 0


@pytest.mark.process
def test_a_logic_declaring_an_unknown_input_mode_is_refused_naming_it(tmp_path, ctx):
    proc, router, ups = two_input_node(tmp_path, ctx, "sometimes")
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        router.close(0)
        for up in ups.values():
            up.close(0)
    assert proc.returncode == 2, out
    assert ("node 'seer': cannot start: ValueError: probe_nodes.Seer declares input_mode "
            "'sometimes'; expected one of 'timed', 'merged', 'arrival', 'raw'") in out


# ------------------------------------------------------------ per-frame age
@pytest.mark.process
def test_frame_age_through_a_hop_with_a_known_delay(tmp_path, ctx):
    """Frames acquired ``K`` before they are sent go through a node that sleeps ``D`` per
    frame: the node reports the age of what it receives as K (plus the hop) and of what it
    emits as K + D, and passes the acquisition time on unchanged. The test and the node read
    the same clock (one host's CLOCK_MONOTONIC from the config's origin; no leader: the
    clock's uncertainty is zero), so the only slack is the hop and the scheduler."""
    K, D, N = 0.200, 0.050, 20
    slack = 0.015  # one ipc hop + wake-ups on a loaded 2-core machine
    origin = time.monotonic()
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/control")
    upstream = ctx.socket(zmq.XPUB)
    upstream.bind(f"ipc://{tmp_path}/up")
    out = ctx.socket(zmq.SUB)
    out.setsockopt(zmq.SUBSCRIBE, b"")
    config = NodeConfig(
        id="sleeper", kind="custom", params={"class": "probe_nodes:Sleeper",
                                             "args": {"delay": D}},
        control_endpoint=f"ipc://{tmp_path}/control", publish_endpoint=f"ipc://{tmp_path}/out",
        inputs=(InputEdge(node="up", endpoint=f"ipc://{tmp_path}/up", topics=("up/",)),),
        clock_origin=origin, heartbeat_interval=0.5)
    proc = start_node(tmp_path, config)
    try:
        next_control(router, "ready")
        assert upstream.poll(5000)
        upstream.recv()
        out.connect(f"ipc://{tmp_path}/out")
        time.sleep(0.3)  # the output subscription reaches the node
        sent, received = [], []
        for i in range(N):
            now = time.monotonic() - origin
            acquired = now - K
            # timestamps on another base than the acquisition time: the header's acq counts
            frame = {"timestamp": np.array([acquired + 0.1 + 0.001 * j for j in range(4)]),
                     "x": np.arange(4.0) + i}
            upstream.send_multipart(encode("up/main", frame, node_id="up", seq=i,
                                           publish_time=now, acquired=acquired))
            sent.append(acquired)
            assert out.poll(5000), f"no output for frame {i}"
            msg = decode(out.recv_multipart())
            received.append((msg.acquired, time.monotonic() - origin - msg.acquired))
        assert [a for a, _ in received] == sent  # the acquisition time passes through exactly
        ages_seen_downstream = np.array([age for _, age in received])
        assert np.all(ages_seen_downstream >= K + D)
        assert np.median(ages_seen_downstream) <= K + D + 2 * slack
        beat = next_control(router, "heartbeat", where=lambda m: np.isfinite(
            m["stats"].get("age_out_p50", float("nan"))))["stats"]
        assert K <= beat["age_in_p50"] <= K + slack, beat
        assert K + D <= beat["age_out_p50"] <= K + D + slack, beat
        assert beat["age_in_p99"] >= beat["age_in_p50"]
        router.send_multipart([b"sleeper", control.pack("stop")])
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# ------------------------------------------------------------ linger (NodeLogic.linger)
def wake_ups(handed: list[list[float]], gap: float = 0.008) -> list[int]:
    """Sizes of the runs of frames handed together (calls less than ``gap`` s apart)."""
    sizes: list[int] = []
    last = None
    for when, _ in handed:
        if last is None or when - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = when
    return sizes


def run_lingerer(tmp_path, ctx, linger: float, frames: int = 40, period: float = 0.02,
                 width: int = 1):
    """A ``probe_nodes:Lingerer`` fed ``frames`` frames ``period`` s apart by a raw XPUB;
    returns what it was handed and when."""
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/control")
    up = ctx.socket(zmq.XPUB)
    up.bind(f"ipc://{tmp_path}/up")
    config = NodeConfig(
        id="lingerer", kind="custom",
        params={"class": "probe_nodes:Lingerer", "args": {"linger": linger}},
        control_endpoint=f"ipc://{tmp_path}/control",
        inputs=(InputEdge(node="up", endpoint=f"ipc://{tmp_path}/up", topics=("up/",),
                          policy="drop_oldest", maxlen=1000),),
        heartbeat_interval=0.1)
    proc = start_node(tmp_path, config)
    try:
        next_control(router, "ready")
        assert up.poll(5000)  # the node's subscription arrived
        up.recv()
        for i in range(frames):
            frame = {"timestamp": np.array([i * period]), "x": np.ones(width)}
            up.send_multipart(encode("up/main", frame, node_id="up", seq=i))
            time.sleep(period)
        next_control(router, "heartbeat", where=lambda m: m["stats"]["seen"] == frames)
        router.send_multipart([b"lingerer", control.pack("stop")])
        out, _ = proc.communicate(timeout=10)  # a stop is answered while lingering
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        router.close(0)
        up.close(0)
    lines = [ln for ln in out.splitlines() if ln.startswith("HANDED ")]
    assert len(lines) == 1, out
    return json.loads(lines[0][7:])


@pytest.mark.process
def test_a_lingering_logic_gets_every_frame_in_order_a_batch_per_linger(tmp_path, ctx):
    """linger 0.25 s, 40 frames over 0.8 s: every frame, in order, the first at once and the
    rest in a few batches (one wake-up per linger); linger 0: one wake-up per frame."""
    handed = run_lingerer(tmp_path, ctx, linger=0.25)
    assert [ts for _, ts in handed] == pytest.approx([i * 0.02 for i in range(40)])
    sizes = wake_ups(handed)
    assert sizes[0] <= 2, sizes  # the first frame is not held back
    assert len(sizes) <= 7, sizes  # 0.8 s / 0.25 s, plus the first: ~5 (not 40)
    gaps = np.diff([handed[sum(sizes[:k])][0] for k in range(len(sizes))])
    assert gaps.min() >= 0.2, gaps  # batches are a linger apart

    (tmp_path / "plain").mkdir()
    plain = wake_ups(run_lingerer(tmp_path / "plain", ctx, linger=0.0))
    assert len(plain) >= 20, plain  # each frame as it comes


def test_a_lingering_logic_reads_a_fast_stream_at_once(tmp_path, ctx):
    """1.6 MB frames (over LINGER_FAST_BYTES): no linger after a read, so frames are handed
    as they come, not a linger apart (on a lossless edge the linger would hold the upstream's
    window shut)."""
    sizes = wake_ups(run_lingerer(tmp_path, ctx, linger=0.25, frames=12, period=0.05,
                                  width=200_000))
    assert sum(sizes) == 12 and len(sizes) >= 8, sizes  # lingering: 0.6 s / 0.25 s ~ 3
