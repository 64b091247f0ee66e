"""One bad message never ends a reader: oversized messages, sequence jumps, forged upstreams and
big frames are counted and skipped, over real ZeroMQ sockets."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from genki_signals.bus.codec import encode
from genki_signals.bus.sockets import Publisher, Subscriber

pytestmark = pytest.mark.timeout(60)


def receive(sub: Subscriber, seconds: float) -> list:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = sub.recv(0.05)
        if msg is not None:
            out.append(msg)
    return out


def small(i: int) -> dict:
    return {"timestamp": np.array([float(i)])}


def test_oversized_part_is_skipped_and_the_connection_recovers(tmp_path, ctx):
    pub = Publisher(f"ipc://{tmp_path}/p", "p", context=ctx, shm_threshold=None)  # socket limits
    sub = Subscriber(context=ctx, max_bytes=1 << 20)
    try:
        sub.connect(pub.endpoint, ["p/"])
        assert pub.wait_for_subscribers("p/main", timeout=5)
        pub.publish("p/main", small(0))
        assert [m.seq for m in receive(sub, 0.3)] == [0]
        pub.publish("p/main", {"timestamp": np.zeros(1 << 18)})  # one 2 MiB part
        seqs = []
        deadline = time.monotonic() + 10
        i = 2
        while time.monotonic() < deadline and len(seqs) < 5:  # a live stream goes on
            pub.publish("p/main", small(i))
            i += 1
            seqs += [m.seq for m in receive(sub, 0.05)]
        assert len(seqs) >= 5, sub.stats  # libzmq alone would never reconnect
        assert 1 not in seqs
        assert sub.stats.reconnects == 1
        assert sub.stats.gaps >= 1  # the oversized one (and any sent while reconnecting)
    finally:
        sub.close()
        pub.close()


def test_message_over_max_bytes_in_total_is_counted_as_oversized(tmp_path, ctx):
    pub = Publisher(f"ipc://{tmp_path}/p", "p", context=ctx, shm_threshold=None)  # socket limits
    sub = Subscriber(context=ctx, max_bytes=1 << 20)
    try:
        sub.connect(pub.endpoint, ["p/"])
        assert pub.wait_for_subscribers("p/main", timeout=5)
        part = np.zeros(80_000)  # 640 kB: its own part, under the limit
        pub.publish("p/main", {"timestamp": part, "x": part})  # 1.28 MB in total
        pub.publish("p/main", small(1))
        got = receive(sub, 0.5)
        assert [m.seq for m in got] == [1]
        assert sub.stats.oversized == 1 and sub.stats.reconnects == 0
    finally:
        sub.close()
        pub.close()


def test_sequence_jumps_and_restarts_count_as_one_reset_each(tmp_path, ctx):
    up = ctx.socket(zmq.XPUB)
    up.bind(f"ipc://{tmp_path}/up")
    sub = Subscriber(context=ctx)
    try:
        sub.connect(f"ipc://{tmp_path}/up", ["up/"])
        assert up.poll(5000)
        up.recv()
        for seq in (0, 1, 2, 2**64 - 1, 3, 5, 10**12 + 5, 0, 1):
            up.send_multipart(encode("up/main", small(seq % 100), node_id="up", seq=seq))
        got = receive(sub, 0.5)
        assert len(got) == 9
        stats = sub.upstreams[("up", "up/main")]
        # 2 -> 2**64-1 (jump), -> 3 (back), 10**12+5 (jump), -> 0 (restart): four resets;
        # 3 -> 5 is the one real gap
        assert (stats.resets, stats.gaps) == (4, 1)
        assert sub.stats.gaps == 1
    finally:
        sub.close()
        up.close(0)


def test_forged_node_ids_and_topics_are_capped(tmp_path, ctx):
    up = ctx.socket(zmq.XPUB)
    up.bind(f"ipc://{tmp_path}/up")
    sub = Subscriber(context=ctx, max_upstreams=3)
    try:
        sub.connect(f"ipc://{tmp_path}/up", ["up/"])
        assert up.poll(5000)
        up.recv()
        for k in range(10):
            up.send_multipart(encode(f"up/t{k}", small(k), node_id=f"forged{k}", seq=0))
        got = receive(sub, 0.5)
        assert len(got) == 3 and len(sub.upstreams) == 3
        assert sub.stats.unexpected == 7
    finally:
        sub.close()
        up.close(0)


def test_drop_oldest_queue_is_bounded_in_bytes(tmp_path, ctx):
    pub = Publisher(f"ipc://{tmp_path}/p", "p", context=ctx)
    sub = Subscriber(context=ctx, max_queue_bytes=1 << 20)
    try:
        sub.connect(pub.endpoint, ["p/"], policy="drop_oldest", maxlen=1000)
        assert pub.wait_for_subscribers("p/main", timeout=5)
        for i in range(10):
            pub.publish("p/main", {"timestamp": np.full(40_000, float(i))})  # 320 kB each
        time.sleep(0.5)  # all of them arrive before the first recv drains the socket
        got = receive(sub, 0.5)
        assert [int(m.frame["timestamp"][0]) for m in got] == [7, 8, 9]  # the newest ~1 MiB
        assert sub.stats.drops == 7
    finally:
        sub.close()
        pub.close()


def test_lossless_endpoint_admits_declared_readers_only(tmp_path, ctx):
    pub = Publisher(f"ipc://{tmp_path}/p", "p", context=ctx,
                    lossless_endpoint=f"ipc://{tmp_path}/p-lossless", lossless_token="s3cret")
    reader = Subscriber(context=ctx)
    strays = []  # subscribe and never read: either would stall a NODROP publisher
    for password in (None, "guess"):  # no credentials; a wrong token
        stray = ctx.socket(zmq.SUB)
        stray.setsockopt(zmq.RCVHWM, 1)
        stray.setsockopt(zmq.SUBSCRIBE, b"")
        if password is not None:
            stray.setsockopt(zmq.PLAIN_USERNAME, b"genki-reader")
            stray.setsockopt_string(zmq.PLAIN_PASSWORD, password)
        strays.append(stray)
    try:
        reader.connect(pub.lossless_endpoint, ["p/"], policy="lossless", token="s3cret")
        for stray in strays:
            stray.connect(pub.lossless_endpoint)
        assert pub.wait_for_subscribers("p/main", lossless=True, timeout=5)
        deadline = time.monotonic() + 5
        while pub.stats.refused == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.stats.refused >= 1  # the wrong token (no credentials: refused by libzmq)
        time.sleep(0.3)
        assert pub.subscribers("p/main", lossless=True) == 1
        got = []
        for i in range(3000):  # far beyond the stray's queue: never waits for it
            pub.publish("p/main", small(i))
            while (msg := reader.recv(0)) is not None:
                got.append(msg.seq)
        got += [m.seq for m in receive(reader, 0.5)]
        assert got == list(range(3000))  # the declared reader lost nothing
        assert pub.stats.drops == 0
        assert not any(stray.poll(0) for stray in strays)
    finally:
        for stray in strays:
            stray.close(0)
        reader.close()
        pub.close(wait=False)


def test_stalled_declared_reader_keeps_the_publisher_answering(tmp_path, ctx):
    pub_calls = []

    def on_stall() -> bool:  # the runner heartbeats and reads control here
        pub_calls.append(time.monotonic())
        return len(pub_calls) >= 5  # then a stop request arrives

    pub = Publisher(f"ipc://{tmp_path}/p", "p", context=ctx,
                    lossless_endpoint=f"ipc://{tmp_path}/p-lossless", on_stall=on_stall)
    reader = Subscriber(context=ctx)
    try:
        reader.connect(pub.lossless_endpoint, ["p/"], policy="lossless", queue_bytes=100_000)
        assert pub.wait_for_subscribers("p/main", lossless=True, timeout=5)
        t0 = time.monotonic()
        for i in range(50_000):  # the reader never reads: the queue fills, publish waits
            pub.publish("p/main", {"timestamp": np.zeros(1000)})
            if pub_calls and len(pub_calls) >= 5:
                break
        assert len(pub_calls) == 5
        assert all(b - a < 0.5 for a, b in zip(pub_calls, pub_calls[1:]))  # every ~0.1 s
        # gave up waiting: the frames stay retained for the reader (sent when it has room)
        assert pub.stats.stalls == 1 and pub.stats.drops == 0
        pub.publish("p/main", small(0))  # no more waits
        assert time.monotonic() - t0 < 10
        t1 = time.monotonic()
        pub.close()
        assert time.monotonic() - t1 < 1.0  # no wait for a reader that will not hang up
    finally:
        reader.close()
        pub.close(wait=False)
