"""Publisher/Subscriber over real sockets: ipc, tcp, inproc; policies; loss accounting; processes."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from genki_signals.bus import (
    BusError,
    BusStalledError,
    BusStats,
    EndpointError,
    Publisher,
    Subscriber,
    encode,
    free_tcp_endpoint,
    ipc_endpoint,
)
from genki_signals.bus.endpoints import IPC_PATH_MAX


@pytest.fixture
def ctx():
    """A context whose teardown fails, instead of hanging, when a test leaked a socket.

    pyzmq's own conftest does this: ``term()`` blocks while any socket is open, so it runs in a
    thread with a timeout; on timeout the sockets are destroyed and the test fails.
    """
    context = zmq.Context()
    yield context
    terminator = threading.Thread(target=context.term, daemon=True)
    terminator.start()
    terminator.join(timeout=5)
    if terminator.is_alive():
        context.destroy(linger=0)
        terminator.join(timeout=5)
        pytest.fail("zmq context did not terminate within 5 s: open sockets likely remain in "
                    "the test (close every socket, or register it with the `closing` fixture)")


@pytest.fixture
def closing():
    """Register Publishers/Subscribers/sockets; all closed on teardown."""
    items = []
    yield items.append
    for item in reversed(items):
        item.close(0) if isinstance(item, zmq.Socket) else item.close()


def _frame(n=4, big=False):
    frame = {"timestamp": np.arange(n, dtype=np.float64), "acc": np.ones((n, 3), np.float32)}
    if big:
        frame["image"] = np.arange(n * 64 * 64, dtype=np.uint16).reshape(n, 64, 64)
    return frame


def _recv_all(sub, timeout=0.2):
    out = []
    while (msg := sub.recv(timeout)) is not None:
        out.append(msg)
    return out


def _endpoint(kind, tmp_path):
    return ipc_endpoint(tmp_path, "pub") if kind == "ipc" else "tcp://127.0.0.1:*"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["ipc", "tcp"])
def test_pubsub_roundtrip(kind, tmp_path, closing):
    pub = Publisher(_endpoint(kind, tmp_path), "src", sndhwm=100)
    closing(pub)
    sub = Subscriber()
    closing(sub)
    sub.connect(pub.endpoint, ["imu"])
    assert pub.endpoint.startswith(kind + "://")
    assert pub.wait_for_subscribers("imu", timeout=5)
    frames = [_frame(big=i % 2 == 1) for i in range(6)]
    for f in frames:
        pub.publish("imu", f)
    pub.publish_eos("imu")
    got = [sub.recv(5) for _ in range(7)]
    assert [m.seq for m in got] == list(range(7))
    assert [m.kind for m in got] == ["data"] * 6 + ["eos"]
    for msg, want in zip(got, frames):
        assert msg.node_id == "src" and msg.topic == "imu"
        assert msg.frame.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(msg.frame[key], want[key])
    assert sub.stats.frames_in == 7 and sub.stats.gaps == sub.stats.drops == 0
    assert pub.stats.frames_out == 7 and sub.stats.bytes_in == pub.stats.bytes_out > 6 * 64 * 64
    assert sub.recv(0.05) is None


@pytest.mark.timeout(10)
def test_topic_prefix_filtering(tmp_path, closing):
    pub = Publisher(ipc_endpoint(tmp_path, "p"), "src")
    closing(pub)
    sub = Subscriber()
    closing(sub)
    sub.connect(pub.endpoint, ["imu", "cam/left"])
    assert pub.wait_for_subscribers("imu", timeout=5) and pub.wait_for_subscribers("cam/left", timeout=5)
    assert pub.subscribers("mic") == 0 and pub.subscribers("imu.acc") == 1
    for topic in ["mic", "imu.acc", "cam/right", "imu.gyro", "cam/left", "mic", "imu.end"]:
        pub.publish(topic, _frame())
    topics = []
    while not topics or topics[-1] != "imu.end":
        msg = sub.recv(5)
        assert msg is not None
        topics.append(msg.topic)
    assert topics == ["imu.acc", "imu.gyro", "cam/left", "imu.end"]
    # Sequence numbers count per topic, so skipped topics cause no gaps.
    assert sub.stats.gaps == 0


@pytest.mark.timeout(10)
def test_binding_is_loopback_only_unless_allowed(closing):
    for endpoint in ["tcp://0.0.0.0:*", "tcp://*:5555", "tcp://192.168.1.10:5555", "tcp://eth0:5555"]:
        with pytest.raises(EndpointError, match="CurveZMQ"):
            Publisher(endpoint, "n")
    for endpoint in ["udp://127.0.0.1:1", "tcp://127.0.0.1", "ipc://" + "x" * 200]:
        with pytest.raises(EndpointError):
            Publisher(endpoint, "n")
    pub = Publisher("tcp://0.0.0.0:*", "n", allow_remote=True)
    closing(pub)
    assert pub.endpoint.startswith("tcp://0.0.0.0:")
    if _has_ipv6_loopback():
        pub6 = Publisher("tcp://[::1]:*", "n")  # loopback v6 is fine
        closing(pub6)
        assert pub6.endpoint.startswith("tcp://[::1]:")


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.timeout(10)
def test_endpoint_helpers(tmp_path, closing):
    short = ipc_endpoint(tmp_path, "node_1")
    assert short == f"ipc://{tmp_path}/node_1.sock"
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    long_one = ipc_endpoint(deep, "node_1")
    assert len(long_one) - len("ipc://") <= IPC_PATH_MAX
    assert long_one == ipc_endpoint(deep, "node_1") != ipc_endpoint(deep, "node_2")
    assert ipc_endpoint(tmp_path, "odd name/../x") != ipc_endpoint(tmp_path, "odd name/../y")
    tcp = free_tcp_endpoint()
    assert tcp.startswith("tcp://127.0.0.1:")
    for endpoint in (long_one, tcp):
        pub = Publisher(endpoint, "n")
        assert pub.endpoint == endpoint
        pub.close()
    assert not os.path.exists(long_one[len("ipc://"):]), "close() left the socket file behind"


def _raw_xpub(ctx, closing, topic=b"a"):
    """A raw XPUB socket plus a Subscriber connected to it, the subscription already seen."""
    xpub = ctx.socket(zmq.XPUB)
    closing(xpub)
    xpub.setsockopt(zmq.LINGER, 0)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(ctx)
    closing(sub)
    sub.connect(f"tcp://127.0.0.1:{port}", [topic.decode()])
    assert xpub.poll(5000), "no subscription arrived"
    assert xpub.recv() == b"\x01" + topic
    return xpub, sub


@pytest.mark.timeout(10)
def test_gap_counting_per_upstream(ctx, closing):
    xpub, sub = _raw_xpub(ctx, closing)
    sent = [("n", 0), ("n", 1), ("n", 2), ("m", 7), ("n", 5), ("n", 6), ("m", 10), ("n", 10), ("n", 0)]
    for node, seq in sent:
        xpub.send_multipart(encode("a", _frame(), node_id=node, seq=seq), copy=False)
    got = [sub.recv(5) for _ in sent]
    assert [(m.node_id, m.seq) for m in got] == sent
    # n: 2->5 misses 2, 6->10 misses 3, then 10->0 is a reset; m starts at 7 (no gap), 7->10 misses 2.
    assert sub.upstreams[("n", "a")].gaps == 5 and sub.upstreams[("n", "a")].resets == 1
    assert sub.upstreams[("m", "a")].gaps == 2
    assert sub.stats.gaps == 7 and sub.stats.frames_in == len(sent)


@pytest.mark.timeout(10)
def test_garbage_is_counted_and_skipped(ctx, closing):
    xpub, sub = _raw_xpub(ctx, closing)
    garbage = [
        [b"a"],
        [b"a", b"\xc1\xc1"],
        [b"a", msgpack.packb({"v": 1})],
        [b"a", msgpack.packb({"v": 99, "node": "x"})],
        [b"a\xff", b"junk", b"more junk"],
    ]
    for parts in garbage:
        xpub.send_multipart(parts)
    valid = encode("a", _frame(big=True), node_id="n", seq=0)
    xpub.send_multipart(valid, copy=False)
    msg = sub.recv(5)
    assert msg is not None and msg.seq == 0 and msg.frame["image"].shape == (4, 64, 64)
    assert sub.stats.decode_errors == len(garbage) and sub.stats.frames_in == 1


def _inproc_pair(ctx, closing, policy, maxlen=100, **pub_kw):
    pub = Publisher("inproc://pub", "src", ctx, **pub_kw)
    closing(pub)
    sub = Subscriber(ctx)
    closing(sub)
    sub.connect("inproc://pub", [""], policy, maxlen)
    assert pub.wait_for_subscribers("a", timeout=5)
    return pub, sub


@pytest.mark.timeout(10)
def test_latest_keeps_newest_per_topic_and_kind(ctx, closing):
    pub, sub = _inproc_pair(ctx, closing, "latest")
    for _ in range(100):
        pub.publish("a", _frame())
    for _ in range(50):
        pub.publish("b", _frame())
    pub.publish("a", {"label": np.array([1])}, kind="event")
    # inproc delivers on send, so everything is queued before the first recv.
    got = _recv_all(sub, timeout=0.05)
    assert [(m.topic, m.kind, m.seq) for m in got] == [("a", "data", 99), ("b", "data", 49), ("a", "event", 100)]
    assert sub.stats.drops == 99 + 49 and sub.stats.gaps == 0 and sub.stats.frames_in == 151
    assert sub.upstreams[("src", "a")].drops == 99


@pytest.mark.timeout(10)
def test_drop_oldest_bound_and_drops(ctx, closing):
    pub, sub = _inproc_pair(ctx, closing, "drop_oldest", maxlen=10)
    for _ in range(100):
        pub.publish("a", _frame())
    first = sub.recv(1)
    assert sub.pending() == 9  # the bound holds after a drain
    got = [first, *_recv_all(sub, timeout=0.05)]
    assert [m.seq for m in got] == list(range(90, 100))
    assert sub.stats.drops == 90 and sub.upstreams[("src", "a")].drops == 90
    assert sub.stats.frames_in == 100 and sub.stats.gaps == 0


@pytest.mark.timeout(10)
def test_lossless_waits_then_times_out_and_delivers_later(ctx, closing):
    pub = Publisher("inproc://lossy", "src", ctx, lossless_endpoint="inproc://ll", lossless_timeout=0.2)
    closing(pub)
    sub = Subscriber(ctx)
    closing(sub)
    # the reader's window: at most ~1000 bytes sent beyond what it has read
    sub.connect("inproc://ll", ["a"], "lossless", queue_bytes=1000)
    assert pub.wait_for_subscribers("a", lossless=True, timeout=5)
    sent = 0
    with pytest.raises(BusStalledError, match="lossless reader"):
        for _ in range(1000):
            sent += 1
            pub.publish("a", _frame())
    assert 2 <= sent < 1000
    # The frame whose wait timed out is published (retained for the reader): once the reader
    # catches up, everything arrives, nothing lost, no sequence number skipped. (The publisher
    # sends what the reader has room for when it publishes or is serviced: no thread.)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < sent and time.monotonic() < deadline:
        pub.service()
        msg = sub.recv(0.05)
        if msg is not None:
            got.append(msg)
    pub.publish("a", _frame())
    got.append(sub.recv(1))
    assert [m.seq for m in got] == list(range(sent + 1))
    assert sub.stats.gaps == sub.stats.drops == sub.stats.duplicates == 0


@pytest.mark.timeout(30)
def test_lossless_ipc_delivers_every_layout_bit_exact_in_bursts_and_one_at_a_time(tmp_path,
                                                                                   closing):
    """The lossless per-frame path (copied topic/header parts, zero-copy array parts, the
    header's schema decode, reading one message after a wait and reading ahead in a burst)
    delivers inline, separate-part and non-contiguous fields bit for bit, in order."""
    pub = Publisher(ipc_endpoint(tmp_path, "l"), "src", shm_threshold=None,
                    lossless_endpoint=ipc_endpoint(tmp_path, "ll"))
    closing(pub)
    sub = Subscriber()
    closing(sub)
    sub.connect(pub.lossless_endpoint, ["a"], "lossless")
    assert pub.wait_for_subscribers("a", lossless=True, timeout=5)
    rng = np.random.default_rng(16)
    frames = []
    for i in range(300):
        frame = {"timestamp": np.array([float(i)]), "x": rng.integers(0, 255, 24, np.uint8)}
        if i % 3 == 1:  # above the inline limit: a part of its own, sent without a copy
            frame["big"] = rng.standard_normal((40, 128))  # 40 KiB
        if i % 5 == 2:  # non-contiguous, 2-d, inline
            frame["t2"] = rng.standard_normal((6, 4)).T
        frames.append(frame)
    got = []
    for i, frame in enumerate(frames[:20]):  # one at a time: the reader waits for each
        pub.publish("a", frame)
        got.append(sub.recv(5))
    for frame in frames[20:]:  # a burst: the reader reads ahead
        pub.publish("a", frame)
    while len(got) < len(frames):
        msg = sub.recv(5)
        assert msg is not None, f"frame {len(got)} did not arrive"
        got.append(msg)
    assert [m.seq for m in got] == list(range(len(frames)))
    for msg, want in zip(got, frames):
        assert list(msg.frame) == list(want)
        for key, value in want.items():
            assert msg.frame[key].dtype == value.dtype and msg.frame[key].shape == value.shape
            np.testing.assert_array_equal(msg.frame[key], value)
            assert not msg.frame[key].flags.writeable
    assert sub.stats.frames_in == len(frames)
    assert sub.stats.gaps == sub.stats.drops == sub.stats.decode_errors == 0
    assert sub.stats.bytes_in == pub.stats.bytes_out


@pytest.mark.timeout(10)
def test_close_waits_for_lossless_readers_to_hang_up(ctx, closing):
    pub = Publisher("inproc://l", "src", ctx, lossless_endpoint="inproc://ll", close_timeout=5)
    sub = Subscriber(ctx)
    closing(sub)
    sub.connect("inproc://ll", ["a"], "lossless")
    assert pub.wait_for_subscribers("a", lossless=True, timeout=5)
    pub.publish("a", _frame())
    pub.publish_eos("a")
    closed = threading.Event()
    threading.Thread(target=lambda: (pub.close(), closed.set()), daemon=True).start()
    assert not closed.wait(0.3), "close() did not wait for the lossless reader"
    assert [sub.recv(1).kind, sub.recv(1).kind] == ["data", "eos"]
    sub.close()
    assert closed.wait(3)
    # A reader that never reads what it was sent delays close() by close_timeout only.
    pub2 = Publisher("inproc://l2", "src", ctx, lossless_endpoint="inproc://ll2", close_timeout=0.2)
    sub2 = Subscriber(ctx)
    closing(sub2)
    sub2.connect("inproc://ll2", ["a"], "lossless")
    assert pub2.wait_for_subscribers("a", lossless=True, timeout=5)
    pub2.publish("a", _frame())
    t0 = time.monotonic()
    pub2.close()
    assert 0.15 < time.monotonic() - t0 < 2


@pytest.mark.timeout(10)
def test_round_robin_timeouts_and_errors(ctx, closing):
    pub1 = Publisher("inproc://one", "one", ctx)
    pub2 = Publisher("inproc://two", "two", ctx)
    closing(pub1)
    closing(pub2)
    sub = Subscriber(ctx)
    closing(sub)
    sub.connect("inproc://one", ["x"])
    sub.connect("inproc://two", ["x"])
    assert pub1.wait_for_subscribers("x", timeout=5) and pub2.wait_for_subscribers("x", timeout=5)
    for _ in range(3):
        pub1.publish("x", _frame())
        pub2.publish("x", _frame())
    assert [m.node_id for m in _recv_all(sub, 0.05)] == ["one", "two"] * 3
    t0 = time.monotonic()
    assert sub.recv(0.1) is None
    assert 0.09 <= time.monotonic() - t0 < 1.0
    with pytest.raises(BusError, match="queue policy"):
        sub.connect("inproc://one", ["x"], "conflate")
    with pytest.raises(BusError, match="maxlen"):
        sub.connect("inproc://one", ["x"], "drop_oldest", 0)
    with pytest.raises(BusError, match="no lossless socket"):
        pub1.wait_for_subscribers("x", lossless=True, timeout=0.1)


def test_bus_stats_sum_and_dict():
    total = BusStats(frames_in=2, drops=1) + BusStats(frames_out=3, drops=2)
    assert total.as_dict() == {
        "frames_in": 2, "frames_out": 3, "bytes_in": 0, "bytes_out": 0,
        "gaps": 0, "drops": 3, "decode_errors": 0, "stalls": 0, "resets": 0,
        "oversized": 0, "reconnects": 0, "unexpected": 0, "refused": 0, "torn": 0,
        "duplicates": 0, "evicted": 0, "resent": 0, "degraded": 0, "failed_readers": 0,
        "retained_bytes": 0,
    }


# --- a publisher in its own process -------------------------------------------------------------

PUBLISHER_SCRIPT = r"""
import json, sys, time
import numpy as np
from genki_signals.bus import Publisher

cfg = json.loads(sys.argv[1])
pub = Publisher(cfg["endpoint"], "src", lossless_endpoint=cfg["lossless_endpoint"], sndhwm=cfg["hwm"])
print(json.dumps({"endpoint": pub.endpoint, "lossless_endpoint": pub.lossless_endpoint}), flush=True)
for lossless in cfg["wait_lossless"]:
    if not pub.wait_for_subscribers("data", lossless=lossless, timeout=10):
        sys.exit(3)
frame = {"timestamp": np.zeros(8), "x": np.zeros((8, 16), np.float32)}
t0 = time.perf_counter()
for _ in range(cfg["n"]):
    pub.publish("data", frame)
print(json.dumps({"elapsed": time.perf_counter() - t0, "stats": pub.stats.as_dict()}), flush=True)
if cfg["tail"]:  # a few more, paced, once the test says go: they make earlier loss visible as gaps
    sys.stdin.readline()
    for _ in range(cfg["tail"]):
        pub.publish("data", frame)
        time.sleep(0.01)
pub.publish_eos("data")
pub.close()  # waits for lossless subscribers to hang up
"""

N_FRAMES = 20_000


class _Proc:
    """A publisher subprocess in its own process group, its stdout lines in a queue."""

    def __init__(self, cfg):
        self.popen = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER_SCRIPT, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.popen.stdout:
            self.lines.put(line)

    def line(self, timeout=15.0) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            self.kill()
            raise AssertionError(f"publisher printed nothing; stderr: {self.popen.stderr.read()[-2000:]}")

    def go(self):
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()

    def kill(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)


@pytest.fixture
def spawn():
    procs = []

    def start(cfg):
        procs.append(_Proc(cfg))
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()


def _cfg(tmp_path, wait_lossless, n=N_FRAMES, tail=0):
    return {
        "endpoint": ipc_endpoint(tmp_path, "src"),
        "lossless_endpoint": ipc_endpoint(tmp_path, "src-lossless"),
        "hwm": 100,
        "wait_lossless": wait_lossless,
        "n": n,
        "tail": tail,
    }


@pytest.mark.process
@pytest.mark.timeout(40)
def test_lossless_edge_loses_nothing_from_fast_process_to_slow_reader(tmp_path, spawn, closing):
    cfg = _cfg(tmp_path, wait_lossless=[True])
    sub = Subscriber()
    closing(sub)
    # a 64 KiB window (about 100 of these frames) sent beyond what the reader has read
    sub.connect(cfg["lossless_endpoint"], ["data"], "lossless", queue_bytes=64 * 1024)
    proc = spawn(cfg)
    proc.line()  # bound
    seqs, pauses = [], 0.0
    while True:
        msg = sub.recv(10)
        assert msg is not None, f"lossless stream stopped after {len(seqs)} frames"
        if msg.kind == "eos":
            break
        seqs.append(msg.seq)
        if len(seqs) % 2000 == 0:  # a slow reader: the publisher must wait, not drop
            time.sleep(0.1)
            pauses += 0.1
    report = proc.line()
    sub.close()  # hanging up lets the publisher's close() finish
    assert seqs == list(range(N_FRAMES))
    assert sub.stats.gaps == sub.stats.drops == sub.stats.decode_errors == 0
    # The publisher was held back: some publishes found the reader full (stalls counts every one
    # that waited, however briefly), and it could not finish before the reader's pauses.
    assert report["stats"]["stalls"] > 0, report
    assert report["elapsed"] >= pauses * 0.5, (report, pauses)
    assert proc.popen.wait(10) == 0


@pytest.mark.process
@pytest.mark.timeout(40)
def test_lossy_edge_counts_loss_and_does_not_stall_publisher(tmp_path, spawn, closing):
    elapsed = {}
    for mode in ("fast", "paused"):
        cfg = _cfg(tmp_path / mode, wait_lossless=[False], tail=5)
        (tmp_path / mode).mkdir()
        sub = Subscriber()
        closing(sub)
        sub.connect(cfg["endpoint"], ["data"], "drop_oldest", maxlen=50, rcvhwm=100)
        proc = spawn(cfg)
        proc.line()
        got = []
        if mode == "fast":
            while proc.lines.empty():
                if (msg := sub.recv(0.01)) is not None:
                    got.append(msg)
        report = proc.line(timeout=20)  # the paused reader reads nothing until the burst is done
        elapsed[mode] = report["elapsed"]
        assert report["stats"]["stalls"] == 0
        proc.go()
        while not got or got[-1].kind != "eos":
            msg = sub.recv(5)
            assert msg is not None, "no eos"
            got.append(msg)
        assert proc.popen.wait(10) == 0
        # Every message is accounted for: delivered, dropped by policy here, or a gap upstream.
        assert len(got) + sub.stats.drops + sub.stats.gaps == N_FRAMES + 5 + 1
        if mode == "paused":
            assert sub.stats.drops > 0 and sub.stats.gaps > 0
    # Loose: a stalled publisher would take seconds or hang; a lossy edge costs it (almost) nothing.
    print("publisher seconds for", N_FRAMES, "frames:", elapsed)
    assert elapsed["paused"] < 5 * elapsed["fast"] + 2.0, elapsed
