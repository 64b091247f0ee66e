"""Large arrays through shared memory between processes on one host (bus.shm).

Real publisher and reader processes (tests/shm_peers.py) over real ipc:// sockets, content checked
against an independent recomputation of what was sent; processes are killed by PID at teardown.
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from shm_peers import expected

from genki_signals.bus import shm as shm_mod
from genki_signals.bus.codec import DecodeError, decode, encode
from genki_signals.bus.shm import (
    HOLD_TIMEOUT,
    ShmError,
    ShmReader,
    ShmWriter,
    TornRead,
    _Held,
)
from genki_signals.bus.sockets import BusError, Publisher, Subscriber

pytestmark = pytest.mark.timeout(120)

PEERS = Path(__file__).with_name("shm_peers.py")
ITEMS = 16384  # 128 KiB frames
SLOT = ITEMS * 8


class Peer:
    """A shm_peers.py process; its stdout lines are collected in the background."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(PEERS), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, f"peer exited: {self.seen}"
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} line within {timeout} s; saw {self.seen[-5:]}")

    def drain(self) -> list[str]:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def peers():
    started: list[Peer] = []

    def start(*args: str) -> Peer:
        p = Peer(*args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def _genki_dev_shm() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if "genki" in n}


def _maps_segments() -> int:
    with open("/proc/self/maps") as f:
        return sum("memfd:genki-shm" in line for line in f)


def _sent(peer: Peer) -> int:
    return sum(line.startswith("SENT") for line in peer.drain())


def test_lossless_reader_gets_zero_copy_frames_and_the_publisher_waits_for_release(
        tmp_path, peers):
    lossy, lossless = f"ipc://{tmp_path}/lossy", f"ipc://{tmp_path}/ll"
    n = 20
    pub = peers("publish", lossy, lossless, str(n), str(ITEMS), str(4 * SLOT), "0.05")  # 4 slots
    with Subscriber() as sub:
        sub.connect(lossless, ["big"], policy="lossless")
        pub.wait_line("READY")
        held = []
        for seq in range(4):  # fill every slot, keep every array
            msg = sub.recv(10)
            assert msg is not None and msg.seq == seq
            x = msg.frame["x"]
            assert np.array_equal(x, expected(seq, ITEMS))
            assert not x.flags.writeable and isinstance(x.base, _Held)  # a view of the slot
            held.append(x)
        t_full = time.monotonic()
        time.sleep(0.5)
        assert sub.recv(0.3) is None  # the publisher waits: every slot is held here
        assert _sent(pub) == 4, pub.seen
        # ... for HOLD_TIMEOUT, then sends the array through the socket: never a deadlock
        msg = sub.recv(HOLD_TIMEOUT + 10)
        assert msg.seq == 4 and time.monotonic() - t_full >= 0.9 * HOLD_TIMEOUT
        assert np.array_equal(msg.frame["x"], expected(4, ITEMS))
        assert not isinstance(msg.frame["x"].base, _Held)
        del held[0], msg, x  # one slot free again: shared memory is used again
        gc.collect()
        got, via_shm = [], []
        for _ in range(5, n):
            msg = sub.recv(10)
            assert msg is not None
            got.append(msg.seq)
            assert np.array_equal(msg.frame["x"], expected(msg.seq, ITEMS))
            via_shm.append(isinstance(msg.frame["x"].base, _Held))
            del msg
        assert got == list(range(5, n))
        assert via_shm[-1], via_shm
        for seq, x in zip((1, 2, 3), held):  # never overwritten while held
            assert np.array_equal(x, expected(seq, ITEMS))
        assert sub.stats.torn == 0 and sub.stats.gaps == 0
    pub.wait_line("DONE")


def test_slow_lossy_reader_loses_frames_but_never_reads_overwritten_data(tmp_path, peers):
    lossy = f"ipc://{tmp_path}/lossy"
    with Subscriber() as sub:
        sub.connect(lossy, ["big"], policy="drop_oldest", maxlen=10_000)
        pub = peers("publish", lossy, "-", "60", str(ITEMS), str(4 * SLOT), "0")
        pub.wait_line("DONE")  # published all 60 through 4 slots while this reader slept
        got = []
        while (msg := sub.recv(0.5)) is not None:
            got.append(msg.seq)
            assert np.array_equal(msg.frame["x"], expected(msg.seq, ITEMS))
        assert 1 <= len(got) <= 4, got  # at most the last ring's worth is still intact
        assert sub.stats.torn == 60 - len(got)  # every other one was dropped, and counted
        assert got == list(range(60 - len(got), 60))


def test_kill_9_of_the_publisher_leaks_nothing_and_held_arrays_stay_valid(tmp_path, peers):
    before = _genki_dev_shm()
    lossless = f"ipc://{tmp_path}/ll"
    pub = peers("publish", f"ipc://{tmp_path}/lossy", lossless, "3", str(ITEMS), str(4 * SLOT),
                "0")
    with Subscriber() as sub:
        sub.connect(lossless, ["big"], policy="lossless")
        pub.wait_line("DONE")
        held = [sub.recv(10).frame["x"] for _ in range(3)]
        assert _maps_segments() >= 1  # the publisher's segment, mapped here
        pub.kill()  # kill -9
        assert pub.proc.returncode == -signal.SIGKILL
        assert _genki_dev_shm() == before  # segments are memfds: never a name in /dev/shm
        for seq, x in enumerate(held):  # the mapping outlives the publisher
            assert np.array_equal(x, expected(seq, ITEMS))
    del held, x
    gc.collect()
    assert _maps_segments() == 0  # last user gone: the kernel frees the memory


def test_kill_9_of_a_reader_holding_slots_does_not_stall_the_publisher(tmp_path, peers):
    before = _genki_dev_shm()
    lossless = f"ipc://{tmp_path}/ll"
    with Publisher(f"ipc://{tmp_path}/lossy", "src", lossless_endpoint=lossless,
                   shm_threshold=1024, shm_ring_bytes=4 * SLOT, lossless_timeout=20,
                   close_timeout=0.5) as pub:
        reader = peers("read", lossless, "lossless")  # holds every array it gets
        assert pub.wait_for_subscribers("big", lossless=True, timeout=20)
        deadline = time.monotonic() + 10
        while not pub._shm.readers and time.monotonic() < deadline:
            pub.subscribers("big", lossless=True)  # reads its registration
            time.sleep(0.01)
        assert len(pub._shm.readers) == 1
        for seq in range(4):
            pub.publish("big", {"x": expected(seq, ITEMS)})
        assert reader.wait_line("GOT 3") == "GOT 3 1"
        assert all(line.endswith(" 1") for line in reader.seen if line.startswith("GOT"))
        reader.kill()  # kill -9 while it holds all four slots
        t0 = time.monotonic()
        for seq in range(4, 10):  # waits until the reader's unsubscription arrives, then goes on
            pub.publish("big", {"x": expected(seq, ITEMS)})
        assert time.monotonic() - t0 < 15
        assert pub._shm.readers == {}
    assert _genki_dev_shm() == before


def test_tcp_and_shm_off_use_the_ordinary_path_and_the_threshold_is_respected(tmp_path):
    def header_of(endpoint: str, **kw) -> tuple[dict, list, dict]:
        ctx = zmq.Context.instance()
        raw = ctx.socket(zmq.SUB)
        raw.setsockopt(zmq.SUBSCRIBE, b"")
        raw.setsockopt(zmq.LINGER, 0)
        with Publisher(endpoint, "src", close_timeout=0, **kw) as pub, Subscriber() as sub:
            raw.connect(pub.endpoint)
            sub.connect(pub.endpoint, ["t"], policy="drop_oldest")
            assert pub.wait_for_subscribers("t", count=2, timeout=10)
            frame = {"big": np.arange(40_000.0), "mid": np.arange(5000.0), "small": np.arange(3)}
            pub.publish("t", frame)
            assert raw.poll(5000)
            parts = raw.recv_multipart()
            msg = sub.recv(5)
            for k, v in frame.items():  # the reader gets the same arrays either way
                assert np.array_equal(msg.frame[k], v)
        raw.close()
        head = msgpack.unpackb(parts[1])
        return {f[0]: f[3] for f in head["fields"]}, parts, msg.frame

    where, parts, _ = header_of(f"ipc://{tmp_path}/a", shm_threshold=100_000)
    assert isinstance(where["big"], list) and where["big"][0] == "shm"  # 320 kB >= 100 kB
    assert where["mid"] == 0 and isinstance(where["small"], bytes)  # 40 kB: a zero-copy part
    assert len(parts) == 3

    where, parts, _ = header_of(f"ipc://{tmp_path}/b", shm_threshold=1000)
    assert isinstance(where["big"], list) and isinstance(where["mid"], list)
    assert len(parts) == 2  # nothing but topic and header on the socket

    for ep, kw in (("tcp://127.0.0.1:*", {}), (f"ipc://{tmp_path}/c", {"shm_threshold": None})):
        where, parts, _ = header_of(ep, **kw)
        assert where["big"] == 0 and where["mid"] == 1 and len(parts) == 4


def test_a_recorder_gets_bytes_not_references(tmp_path):
    with Publisher(f"ipc://{tmp_path}/p", "src", shm_threshold=1024) as pub, \
            Subscriber(keep_parts=True) as sub:
        sub.connect(pub.endpoint, ["t"], policy="drop_oldest")
        assert pub.wait_for_subscribers("t", timeout=10)
        pub.publish("t", {"x": expected(7, ITEMS)})
        msg = sub.recv(5)
    again = decode(msg.parts)  # no shared memory needed to read what a recorder stored
    assert np.array_equal(again.frame["x"], expected(7, ITEMS))
    assert (again.node_id, again.seq, again.publish_time) == ("src", 0, msg.publish_time)


def test_bad_references_are_decode_errors_that_name_the_fault(tmp_path):
    writer = ShmWriter(threshold=1024, ring_bytes=4 * SLOT)
    try:
        parts = encode("t", {"x": expected(1, ITEMS)}, node_id="n", seq=0, shm=writer)
        head = msgpack.unpackb(parts[1])
        ref = head["fields"][0][3]
        reader = ShmReader()
        ok = decode(parts, shm=reader.resolver(None))
        assert np.array_equal(ok.frame["x"], expected(1, ITEMS))

        def with_ref(r):
            h = dict(head, fields=[["x", "<f8", [ITEMS], r]])
            return [parts[0], msgpack.packb(h, use_bin_type=True)]

        with pytest.raises(DecodeError, match="field 'x': a shared-memory reference"):
            decode(parts)  # a reader that cannot resolve it (tcp)
        cases = [
            (["shm", 2**22 + 12345, 3, ref[3], 0, ref[5]], "cannot open shared-memory segment"),
            (ref[:3] + [b"\x01" * 16] + ref[4:], "not the shared-memory segment"),
            (ref[:4] + [99, ref[5]], "outside its segment"),
            (ref[:5] + [ref[5] + 1], "reused before it was read"),
            (["shm", "x"], "bad shared-memory reference"),
            (["shm", os.getpid(), 0, ref[3], 0, 1], "not the shared-memory segment"),  # stdin
        ]
        for bad, why in cases:
            with pytest.raises(ShmError, match=why):
                decode(with_ref(bad), shm=reader.resolver(None))
        reader.close()
    finally:
        writer.close()


def test_a_subscriber_counts_unresolvable_references_and_goes_on(tmp_path):
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.XPUB)
    raw.setsockopt(zmq.LINGER, 0)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    writer = ShmWriter(threshold=1024)
    try:
        with Subscriber() as sub:
            sub.connect(f"tcp://127.0.0.1:{port}", ["t"], policy="drop_oldest")
            assert raw.poll(5000)
            raw.recv()
            raw.send_multipart(encode("t", {"x": np.arange(5000.0)}, node_id="n", seq=0,
                                      shm=writer))
            raw.send_multipart(encode("t", {"x": np.arange(5000.0)}, node_id="n", seq=1))
            msg = sub.recv(5)
            assert msg.seq == 1 and sub.stats.decode_errors == 1
    finally:
        writer.close()
        raw.close()


def test_the_threshold_is_a_node_field_of_the_spec(tmp_path):
    from genki_signals.bus.shm import DEFAULT_THRESHOLD, shm_options
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import TopologySpecError, parse_topology

    def spec(**node):
        return {"nodes": [{"id": "s", "kind": "source", **node, "params": {
            "type": "Sampler", "sample_rate": 100, "sources": {"x": {"type": "SineWave"}}}}]}

    parsed = parse_topology(spec(shm_threshold=1 << 20))
    assert parsed.node("s").shm_threshold == 1 << 20
    assert parse_topology(parsed.to_dict()).node("s").shm_threshold == 1 << 20  # round trip
    off = parse_topology(spec(shm_threshold="off"))
    assert off.node("s").shm_threshold == 0
    assert parse_topology(off.to_dict()).node("s").shm_threshold == 0
    assert parse_topology(spec()).node("s").shm_threshold is None
    for bad in (0, -5, True, "1M", 1.5):
        with pytest.raises(TopologySpecError, match="shm_threshold.*bytes >= 1 or 'off'"):
            parse_topology(spec(shm_threshold=bad))
    # the launcher puts it in the node's config; the runner hands it to its Publisher
    assert Launcher(parsed, run_dir=tmp_path)._resolve()["s"].extra["shm_threshold"] == 1 << 20
    assert "shm_threshold" not in Launcher(parse_topology(spec()), run_dir=tmp_path
                                           )._resolve()["s"].extra
    # what the runner hands the Publisher
    assert shm_options({}) == {} and DEFAULT_THRESHOLD == 1024 * 1024
    assert shm_options({"shm_threshold": 4096}) == {"shm_threshold": 4096}
    assert shm_options({"shm_threshold": 0}) == {"shm_threshold": None}


def test_a_row_given_to_a_new_reader_does_not_hold_the_old_readers_slots():
    writer = ShmWriter(threshold=1024, ring_bytes=4 * SLOT, hold_timeout=60)

    def must_not_wait() -> bool:
        raise AssertionError("the writer waited for a reader that never got the frame")

    writer.wait = must_not_wait
    reader = ShmReader()
    try:
        a, b = ShmReader.new_reader_id(), ShmReader.new_reader_id()
        writer.add_reader(a, [b"t"])
        parts = encode("t", {"x": expected(0, ITEMS)}, node_id="n", seq=0, shm=writer)
        held = decode(parts, shm=reader.resolver(a)).frame["x"]  # a holds slot 0
        assert isinstance(held.base, _Held)
        writer.remove_reader(a)  # a left (its marker was unsubscribed) ...
        writer.add_reader(b, [b"t"])  # ... and b now has its row
        for seq in range(1, 9):  # twice round the ring: slot 0 must not wait for b
            parts = encode("t", {"x": expected(seq, ITEMS)}, node_id="n", seq=seq, shm=writer)
            got = decode(parts, shm=reader.resolver(b)).frame["x"]
            assert np.array_equal(got, expected(seq, ITEMS))
            del got
        assert writer.waits == 0
    finally:
        reader.close()
        writer.close()


def _registered_lossless(pub: Publisher, sub: Subscriber, endpoint: str) -> None:
    """Connect ``sub`` to ``pub``'s lossless endpoint and wait until the ring knows it."""
    sub.connect(endpoint, ["big"], policy="lossless")
    assert pub.wait_for_subscribers("big", lossless=True, timeout=20)
    deadline = time.monotonic() + 10
    while not pub._shm.readers and time.monotonic() < deadline:
        pub.subscribers("big", lossless=True)  # reads its registration
        time.sleep(0.01)
    assert len(pub._shm.readers) == 1


def test_a_loaned_array_is_filled_in_its_slot_and_published_without_a_copy(tmp_path):
    lossless = f"ipc://{tmp_path}/ll"
    with Publisher(f"ipc://{tmp_path}/lossy", "src", lossless_endpoint=lossless,
                   shm_threshold=1024, shm_ring_bytes=4 * SLOT, close_timeout=0.5) as pub, \
            Subscriber() as sub:
        _registered_lossless(pub, sub, lossless)
        seg = None
        for seq in range(10):
            arr = pub.loan(ITEMS)  # float64 by default
            seg = seg or pub._shm._seg  # made by the first loan
            assert arr.shape == (ITEMS,) and arr.dtype == np.float64 and arr.flags.writeable
            addr = arr.__array_interface__["data"][0]
            np.multiply(np.arange(ITEMS, dtype=np.float64), 3.0, out=arr)
            arr += seq  # expected(seq), written in place
            pub.publish("big", {"x": arr})
            assert pub._shm._seg is seg  # no new segment, and the slot's memory is where the
            slot = (addr - seg.addr - shm_mod._DATA) // seg.slot_bytes  # loan was written
            msg = sub.recv(10)
            x = msg.frame["x"]
            assert msg.seq == seq and isinstance(x.base, _Held) and x.base.slot == slot
            assert np.array_equal(x, expected(seq, ITEMS))
            del msg, x
        # below the threshold, or another shape and dtype: an ordinary array, sent as usual
        small = pub.loan((2, 3), np.int32)
        assert small.shape == (2, 3) and small.dtype == np.int32
        assert not pub._shm.owns(small)
        small[:] = 7
        pub.publish("big", {"x": small})
        assert np.array_equal(sub.recv(10).frame["x"], np.full((2, 3), 7, np.int32))
        assert sub.stats.torn == 0 and sub.stats.gaps == 0


def test_a_loan_over_tcp_or_with_shared_memory_off_is_an_ordinary_array(tmp_path):
    for ep, kw in (("tcp://127.0.0.1:*", {}), (f"ipc://{tmp_path}/off", {"shm_threshold": None})):
        with Publisher(ep, "src", close_timeout=0, **kw) as pub, Subscriber() as sub:
            sub.connect(pub.endpoint, ["big"], policy="drop_oldest")
            assert pub.wait_for_subscribers("big", timeout=10)
            arr = pub.loan([ITEMS])
            arr[:] = expected(3, ITEMS)
            pub.publish("big", {"x": arr})
            x = sub.recv(5).frame["x"]
            assert np.array_equal(x, expected(3, ITEMS)) and not isinstance(x.base, _Held)
        with pytest.raises(BusError, match="'src' is closed"):
            pub.loan(ITEMS)


def test_a_stale_loan_the_ring_does_not_take_goes_through_the_socket_as_a_copy():
    writer = ShmWriter(threshold=1024, ring_bytes=4 * SLOT)
    try:
        arr = writer.loan(SLOT).view(np.float64)
        arr[:] = expected(5, ITEMS)
        parts = encode("t", {"x": arr}, node_id="n", seq=0, shm=writer)  # the loan: into the ring
        assert msgpack.unpackb(parts[1])["fields"][0][3][0] == "shm" and len(parts) == 2
        writer.wanted = lambda: False  # nobody reads the ring now: the array goes by value ...
        parts = encode("t", {"x": arr}, node_id="n", seq=1, shm=writer)
        assert len(parts) == 3 and not np.shares_memory(parts[2], arr)  # ... copied out of it,
        arr[:] = -1.0  # so that reusing the slot cannot change what was sent or retained
        assert np.array_equal(decode(parts).frame["x"], expected(5, ITEMS))
    finally:
        writer.close()


def test_a_copying_reader_of_the_frame_a_loan_overwrites_gets_a_torn_read():
    writer = ShmWriter(threshold=1024, ring_bytes=4 * SLOT)
    reader = ShmReader()
    try:
        refs = [writer.put(expected(seq, ITEMS), b"t") for seq in range(4)]  # slots 0..3
        first = reader.resolve(refs[0], np.dtype("<f8"), SLOT, None)  # a lossy reader copies
        assert np.array_equal(first, expected(0, ITEMS))
        loan = writer.loan(SLOT, np.dtype("<f8"), (ITEMS,))  # the next slot: frame 0's
        assert np.shares_memory(loan, writer._seg.bytes) and loan.shape == (ITEMS,)
        with pytest.raises(TornRead):  # being filled: never read half-written
            reader.resolve(refs[0], np.dtype("<f8"), SLOT, None)
        loan[:] = expected(4, ITEMS)
        ref = writer.put(loan, b"t")
        assert ref[4] == refs[0][4] and ref[5] > refs[3][5]  # frame 0's slot, a new generation
        assert np.array_equal(reader.resolve(ref, np.dtype("<f8"), SLOT, None), expected(4, ITEMS))
        with pytest.raises(TornRead):
            reader.resolve(refs[0], np.dtype("<f8"), SLOT, None)
        assert np.array_equal(first, expected(0, ITEMS))  # a copy: untouched
    finally:
        reader.close()
        writer.close()


def test_a_loan_keeps_its_slot_while_other_fields_of_the_frame_are_copied_in():
    writer = ShmWriter(threshold=1024, ring_bytes=4 * SLOT)
    reader = ShmReader()
    try:
        for seq in range(0, 12, 3):  # round the ring: the loan is always the next free slot
            loan = writer.loan(SLOT, np.dtype("<f8"), (ITEMS,))
            loan[:] = expected(seq, ITEMS)
            assert writer.loan(SLOT) is None  # one loan at a time: a second is not the same slot
            frame = {"b": expected(seq + 1, ITEMS), "a": loan, "c": expected(seq + 2, ITEMS)}
            parts = encode("t", frame, node_id="n", seq=seq, shm=writer)
            writer.end_frame()
            refs = {f[0]: f[3] for f in msgpack.unpackb(parts[1])["fields"]}
            assert len({r[4] for r in refs.values()}) == 3  # three slots, the loan's untouched
            got = decode(parts, shm=reader.resolver(None)).frame
            for k, v in (("a", seq), ("b", seq + 1), ("c", seq + 2)):
                assert np.array_equal(got[k], expected(v, ITEMS)), k
        # a loan never published is dropped with the frame after it: its slot serves again
        writer.loan(SLOT)
        writer.end_frame()
        assert writer.loan(SLOT) is not None
    finally:
        reader.close()
        writer.close()


def test_slots_are_reused_hot_only_while_no_reader_copies_out_of_the_ring(tmp_path):
    lossy, lossless = f"ipc://{tmp_path}/lossy", f"ipc://{tmp_path}/ll"
    with Publisher(lossy, "src", lossless_endpoint=lossless, shm_threshold=1024,
                   shm_ring_bytes=8 * SLOT, close_timeout=0.5) as pub, \
            Subscriber() as sub, Subscriber() as watcher:
        _registered_lossless(pub, sub, lossless)

        def slots(first: int, n: int) -> list[int]:
            out = []
            for seq in range(first, first + n):
                pub.publish("big", {"x": expected(seq, ITEMS)})
                msg = sub.recv(10)
                x = msg.frame["x"]
                assert msg.seq == seq and np.array_equal(x, expected(seq, ITEMS))
                out.append(x.base.slot)
                del msg, x  # released before the next publish
            return out

        assert slots(0, 12) == [0] * 12  # the only reader released it: slot 0 again, hot
        watcher.connect(lossy, ["big"], policy="drop_oldest", maxlen=100)  # a copying reader
        assert pub.wait_for_subscribers("big", count=1, timeout=10)
        deadline = time.monotonic() + 10
        while not pub._lossy_live and time.monotonic() < deadline:
            pub.publish("other", {"x": np.zeros(1)})  # drains subscriptions every 10 ms
            time.sleep(0.02)
        got = slots(12, 16)
        assert sorted(set(got)) == list(range(8)), got  # ring order: every slot in turn
        seen = []
        while (m := watcher.recv(0.5)) is not None:
            if m.topic == "big":
                seen.append(m.seq)
                assert np.array_equal(m.frame["x"], expected(m.seq, ITEMS))
        assert seen and watcher.stats.torn <= 16 - len(seen)
