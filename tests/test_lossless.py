"""Lossless edges v2 (issue 12): acks, retention, resend, epochs, byte windows, stall policies.

Real Publisher/Subscriber pairs over real ipc sockets in this process (the transport has no
thread, so the tests drive both ends), and real processes where a crash matters. The SIGKILL
test and the spec-level stall policy tests are at the end.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zmq

from genki_signals.bus.lossless import Lineage, ReaderFailedError
from genki_signals.bus.sockets import Publisher, Subscriber
from proc_helpers import counter_rate, env_with_tests_on_path, heartbeat_stat, node_entry


def frame(i: int, n: int = 1) -> dict:
    return {"i": np.full(n, i, dtype=np.int64)}


def drive(pub: Publisher, sub: Subscriber, want: int, timeout: float = 5.0) -> list:
    """Receive ``want`` data messages, servicing the publisher in between (no threads)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        pub.service()
        msg = sub.recv(0.02)
        if msg is not None and msg.kind == "data":
            got.append(msg)
    return got


def reconnected(pub: Publisher, sub: Subscriber, timeout: float = 5.0) -> bool:
    """The reader notices its publisher restarted (in ``recv``) and says hello again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert sub.recv(0.02) is None
        if pub.subscribers("x", lossless=True):
            return True
    return False


def settle(pub: Publisher, sub: Subscriber, rounds: int = 10) -> None:
    """Let acks and credit travel (the reader flushes them when it is about to wait)."""
    for _ in range(rounds):
        assert sub.recv(0.01) is None
        pub.service()


def open_pair(ctx, tmp_path, name="r", readers=None, **pub_kw):
    pub = Publisher(f"ipc://{tmp_path}/p", "src", ctx, lossless_endpoint=f"ipc://{tmp_path}/pl",
                    lossless_readers=readers, close_timeout=0.5, **pub_kw)
    return pub


def connect(ctx, pub, name="r", **kw):
    sub = Subscriber(ctx)
    sub.connect(pub.lossless_endpoint, ["x"], policy="lossless", reader=name, **kw)
    assert pub.wait_for_subscribers("x", lossless=True, timeout=5)
    return sub


def crash(sub: Subscriber) -> None:
    """Close a reader's sockets without its goodbye (what SIGKILL does to the connection)."""
    for edge in sub._edges:  # noqa: SLF001
        edge.link = None  # no bye
    sub.close()


def test_restarted_reader_gets_what_it_did_not_acknowledge(ctx, tmp_path):
    pub = open_pair(ctx, tmp_path, readers=["r"])
    sub = connect(ctx, pub, auto_ack=False)
    for i in range(100):
        pub.publish("x", frame(i))
    got = drive(pub, sub, 100)
    assert [m.seq for m in got] == list(range(100))
    sub.ack("src", "x", 59)  # durably processed up to 59, then it dies
    sub.flush_acks()
    settle(pub, sub)
    assert pub.stats.retained_bytes > 0
    crash(sub)
    for i in range(100, 150):  # published while the reader is down: retained
        pub.publish("x", frame(i))
    sub2 = connect(ctx, pub)  # the same reader name, no resume: from its acks
    got = drive(pub, sub2, 90)
    assert [m.seq for m in got] == list(range(60, 150))
    assert [int(m.frame["i"][0]) for m in got] == list(range(60, 150))
    assert pub.stats.resent == 90 and pub.stats.evicted == 0
    assert sub2.stats.duplicates == sub2.stats.gaps == 0
    settle(pub, sub2)  # auto_ack: everything acknowledged, retention empty
    assert pub.stats.retained_bytes == 0
    sub2.close()
    pub.close()


def test_resume_from_a_checkpoint_drops_duplicates_and_restore_keeps_the_epoch(ctx, tmp_path):
    pub = open_pair(ctx, tmp_path, readers=["r"])
    for i in range(20):
        pub.publish("x", frame(i))  # retained for 'r' (declared, not connected yet)
    sub = connect(ctx, pub, resume=Lineage(pub.epoch, {"x": 12}))
    got = drive(pub, sub, 8)
    assert [m.seq for m in got] == list(range(12, 20))
    assert sub.delivered("src") == Lineage(pub.epoch, {"x": 20})
    # The publisher crashes and is restarted from its checkpoint taken at seq 15: it re-emits
    # 15..19 (same epoch: duplicates, dropped) and goes on with 20..
    saved = Lineage(pub.epoch, {"x": 15})
    pub.close(wait=False)
    pub2 = open_pair(ctx, tmp_path, readers=["r"])
    pub2.restore(saved)
    assert reconnected(pub2, sub)
    for i in range(15, 25):
        pub2.publish("x", frame(i))
    got = drive(pub2, sub, 5)
    assert [m.seq for m in got] == list(range(20, 25))
    # the reader's hello said "from 20, epoch E": the publisher did not even send 15..19
    assert sub.stats.duplicates == 0 and sub.stats.resets == 0 and sub.stats.gaps == 0
    with pytest.raises(Exception, match="after the first publish"):
        pub2.restore(saved)
    # A publisher restarted without a checkpoint: a new epoch, its seqs start over: one reset.
    pub2.close(wait=False)
    pub3 = open_pair(ctx, tmp_path, readers=["r"])
    assert pub3.epoch != saved.epoch
    assert reconnected(pub3, sub)
    for i in range(5):
        pub3.publish("x", frame(100 + i))
    got = drive(pub3, sub, 5)
    assert [m.seq for m in got] == list(range(5))
    assert sub.stats.resets == 1 and sub.stats.duplicates == 0
    sub.close()
    pub3.close()


def test_reader_drops_a_seq_it_already_has_in_the_same_epoch(ctx, tmp_path):
    """Whatever a publisher sends, a lossless reader delivers each (epoch, seq) once: a real
    ROUTER speaking the protocol by hand sends 0..4, then 3..6 again (same epoch), then a new
    epoch starting at 0 (a restarted numbering: one reset, delivered)."""
    from genki_signals.bus.codec import encode
    from genki_signals.bus.lossless import pack_control, unpack_control
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/fake")
    sub = Subscriber(ctx)
    sub.connect(f"ipc://{tmp_path}/fake", ["x"], policy="lossless", reader="r")
    sub.recv(0.05)
    assert router.poll(5000)
    rid, hello = router.recv_multipart()
    assert unpack_control(hello)["op"] == "hello"

    def send(epoch=None, seqs=()):
        if epoch is not None:
            router.send_multipart([rid, pack_control("welcome", epoch=epoch, node="src")])
        for seq in seqs:
            router.send_multipart([rid, *encode("x", frame(seq), node_id="src", seq=seq)],
                                  copy=True)
    send(7, range(5))
    send(None, range(3, 7))
    got = [m.seq for m in _recv_until_quiet(sub)]
    assert got == [0, 1, 2, 3, 4, 5, 6] and sub.stats.duplicates == 2
    send(8, range(3))  # a new epoch
    got = [m.seq for m in _recv_until_quiet(sub)]
    assert got == [0, 1, 2] and sub.stats.resets == 1 and sub.stats.duplicates == 2
    sub.close()
    router.close(0)


def _recv_until_quiet(sub):
    out = []
    while (msg := sub.recv(0.2)) is not None:
        out.append(msg)
    return out


def test_retention_is_bounded_in_bytes_and_counts_what_it_evicts(ctx, tmp_path):
    n = 1000  # int64 samples: ~8 KiB per frame on the wire
    pub = open_pair(ctx, tmp_path, readers=["r"], retain_bytes=200_000)
    sub = connect(ctx, pub)
    got = drive(pub, sub, 0)
    crash(sub)
    for i in range(100):  # ~800 KB while the reader is down
        pub.publish("x", frame(i, n))
        assert pub._server.retained_bytes <= 200_000  # noqa: SLF001
    pub.service()
    evicted = pub.stats.evicted
    assert 70 <= evicted <= 80, evicted  # 200 KB hold 24 of these frames
    sub2 = connect(ctx, pub)
    got = drive(pub, sub2, 100 - evicted)
    assert [m.seq for m in got] == list(range(evicted, 100))  # the newest, in order
    sub2.close()
    pub.close()


def test_retention_is_bounded_in_seconds(ctx, tmp_path):
    pub = open_pair(ctx, tmp_path, readers=["r"], retain_seconds=0.3)
    sub = connect(ctx, pub)
    crash(sub)
    for i in range(10):
        pub.publish("x", frame(i))
    time.sleep(0.4)
    pub.publish("x", frame(10))  # the older ten are past retain_seconds now
    assert pub.stats.evicted == 10
    sub2 = connect(ctx, pub)
    assert [m.seq for m in drive(pub, sub2, 1)] == [10]
    assert sub2.recv(0.1) is None
    sub2.close()
    pub.close()


def test_window_bounds_bytes_in_flight_to_a_reader_that_does_not_read(ctx, tmp_path):
    """Big frames to a reader that never reads: the publisher's queue toward it stays within
    the reader's window in bytes (ZeroMQ's message high-water mark alone would hold 1000).
    Shared memory off: with it, 1 MiB arrays wait for ring slots instead (test_bus_shm.py)."""
    pub = open_pair(ctx, tmp_path, lossless_timeout=0.3, shm_threshold=None)
    sub = connect(ctx, pub, queue_bytes=4 * 1024 * 1024)
    big = frame(0, 128 * 1024)  # 1 MiB
    sent = 0
    with pytest.raises(Exception, match="full for 0.3 s"):
        for _ in range(100):
            sent += 1
            pub.publish("x", big)
    reader = pub._server._live[0]  # noqa: SLF001
    assert reader.sent - reader.consumed <= 4 * 1024 * 1024 + 2 ** 20
    assert 3 <= sent <= 6, sent  # 4 in flight, the 5th waited
    sub.close()
    pub.close(wait=False)


def test_undeclared_reader_name_is_refused(ctx, tmp_path):
    pub = open_pair(ctx, tmp_path, readers=["r"])
    sub = Subscriber(ctx)
    sub.connect(pub.lossless_endpoint, ["x"], policy="lossless", reader="intruder")
    deadline = time.monotonic() + 5
    with pytest.raises(ReaderFailedError, match="not a declared reader"):
        while time.monotonic() < deadline:
            pub.service()
            sub.recv(0.02)
    assert pub.stats.refused == 1
    sub.close()
    pub.close()


@pytest.mark.parametrize("policy", ["degrade", "fail"])
def test_stall_policy_releases_the_publisher_from_a_stalled_reader(ctx, tmp_path, policy):
    """Two readers; one stops reading. After stall_after the publisher stops waiting for it
    (degrade: it is served lossy; fail: it is dropped and told so); the other reader gets
    every frame."""
    pub = open_pair(ctx, tmp_path, readers=["good", "slow"])
    good = connect(ctx, pub, "good")
    slow = Subscriber(ctx)
    slow.connect(pub.lossless_endpoint, ["x"], policy="lossless", reader="slow",
                 queue_bytes=64 * 1024, on_stall=policy, stall_after=0.3)
    assert pub.wait_for_subscribers("x", count=2, lossless=True, timeout=5)
    got = []
    t0 = time.monotonic()
    for i in range(3000):
        pub.publish("x", frame(i, 16))
        msg = good.recv(0)
        while msg is not None:
            got.append(msg.seq)
            msg = good.recv(0)
    elapsed = time.monotonic() - t0
    got += [m.seq for m in drive(pub, good, 3000 - len(got))]
    assert got == list(range(3000))
    assert pub.stats.stalls >= 1 and elapsed < 3.0  # waited about stall_after, once
    modes = pub.lossless_readers
    assert modes["good"] == "lossless"
    if policy == "degrade":
        assert modes["slow"] == "degraded" and pub.stats.degraded == 1
        assert pub.stats.drops > 0  # frames the slow reader had no room for
        received = [m.seq for m in drive(pub, slow, 3000, timeout=2)]
        assert received[:10] == list(range(10)) and len(received) < 3000
        assert slow.stats.gaps == 3000 - len(received) - (2999 - received[-1])
    else:
        assert modes["slow"] == "failed" and pub.stats.failed_readers == 1
        with pytest.raises(ReaderFailedError, match="on_stall: fail"):
            drive(pub, slow, 3000, timeout=2)
    good.close()
    slow.close()
    pub.close()


# --- real processes: a reader killed with SIGKILL and restarted -------------------------------

SOURCE = r"""
import json, sys, time
import numpy as np
from genki_signals.bus.sockets import Publisher
lossy, lossless, n, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
pub = Publisher(lossy, "src", lossless_endpoint=lossless, lossless_readers=["r"],
                close_timeout=30.0)
print("bound", flush=True)
assert pub.wait_for_subscribers("x", lossless=True, timeout=10)
t0 = time.monotonic()
for i in range(n):
    due = t0 + i / rate
    while (now := time.monotonic()) < due:
        pub.service()  # what a runner does every loop turn: hellos, acks, resends
        time.sleep(min(0.002, due - now))
    pub.publish("x", {"i": np.array([i * 7])})
pub.publish_eos("x")
pending = pub.lossless_pending()
pub.close()  # waits until the reader, restarted or not, has everything
print(json.dumps({"stats": pub.stats.as_dict(), "pending_at_eos": pending}), flush=True)
"""

READER = r"""
import os, sys
from genki_signals.bus.sockets import Subscriber
from genki_signals.bus.lossless import Lineage
endpoint, out_path = sys.argv[1], sys.argv[2]
# The durable record is the output file: one line per frame, written with one write(2) (a
# SIGKILL cannot tear it). A restart resumes after its last line: a checkpoint in miniature.
resume = None
if os.path.exists(out_path):
    lines = open(out_path).read().splitlines()
    if lines:
        epoch, seq, _ = lines[-1].split()
        resume = Lineage(int(epoch), {"x": int(seq) + 1})
sub = Subscriber()
sub.connect(endpoint, ["x"], policy="lossless", reader="r", resume=resume, auto_ack=False)
fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
print("started", flush=True)
while True:
    msg = sub.recv(10)
    if msg is None:
        sys.exit(2)
    if msg.kind == "eos":
        break
    epoch = sub.delivered("src").epoch
    os.write(fd, f"{epoch} {msg.seq} {int(msg.frame['i'][0])}\n".encode())
    sub.ack("src", "x", msg.seq)  # durably processed: the publisher may forget it
sub.flush_acks()
print(f"done duplicates={sub.stats.duplicates} gaps={sub.stats.gaps}", flush=True)
sub.close()
"""


def _popen(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env_with_tests_on_path())


def _kill(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


@pytest.mark.process
@pytest.mark.timeout(90)
@pytest.mark.parametrize("rate", [1000.0])
def test_reader_killed_with_sigkill_and_restarted_gets_every_frame_exactly_once(tmp_path, rate):
    n = 6000  # 6 s at 1 kHz; the reader is down for about a second of it
    lossless = f"ipc://{tmp_path}/src-lossless"
    out = tmp_path / "reader.out"
    source = _popen(SOURCE, f"ipc://{tmp_path}/src", lossless, n, rate)
    reader = _popen(READER, lossless, out)
    try:
        assert source.stdout.readline().strip() == "bound", source.stderr.read()
        assert reader.stdout.readline().strip() == "started", reader.stderr.read()
        deadline = time.monotonic() + 20
        while (not out.exists() or out.stat().st_size < 15_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(reader.pid, signal.SIGKILL)  # mid-stream, at an arbitrary frame
        reader.wait(5)
        killed_at = len(out.read_text().splitlines())
        assert 500 < killed_at < n - 2000, killed_at
        time.sleep(1.0)  # down for a second: ~1000 frames published meanwhile
        reader = _popen(READER, lossless, out)
        assert reader.stdout.readline().strip() == "started", reader.stderr.read()
        done = reader.stdout.readline().strip()
        assert done.startswith("done"), reader.stderr.read()
        assert reader.wait(10) == 0
        report = json.loads(source.stdout.readline())
        assert source.wait(10) == 0
    finally:
        _kill(source, reader)
    rows = [line.split() for line in out.read_text().splitlines()]
    assert len({r[0] for r in rows}) == 1  # one epoch: the source never restarted
    assert [int(r[1]) for r in rows] == list(range(n))  # every frame, once, in order
    assert [int(r[2]) for r in rows] == [7 * i for i in range(n)]
    stats = report["stats"]
    assert stats["resent"] > 0 and stats["evicted"] == 0
    # at eos the restarted reader may still be catching up, or (a quiet machine) done already
    assert set(report["pending_at_eos"]) <= {"r"}, report
    assert done == "done duplicates=0 gaps=0"


# --- the spec's stall policies, with a SIGSTOPped declared reader --------------------------------

POLICY_SPEC = """
name: policies
nodes:
  - id: signals
    kind: source
    params:
      type: Sampler
      sample_rate: 500
      update_rate: 500
      sources: {{x: {{type: SineWave, frequency: 2}}}}
  - id: good
    kind: sink
    inputs: [{{node: signals, policy: lossless}}]
    params: {{type: "null"}}
  - id: slow
    kind: sink
    inputs: [{{node: signals, policy: lossless, on_stall: {policy}, stall_after: 1.0,
              queue_bytes: 65536}}]
    params: {{type: "null"}}
"""


@pytest.mark.process
@pytest.mark.timeout(240)
@pytest.mark.parametrize("policy", ["degrade", "fail"])
def test_spec_stall_policy_keeps_the_source_rate_with_a_stopped_declared_reader(
        tmp_path, launcher_factory, policy):
    """A 500 frames/s source with two declared lossless readers; one (``on_stall: degrade`` or
    ``fail``, ``stall_after: 1.0``) is suspended with SIGSTOP. Once its policy acted, the source
    publishes at full rate again and the other reader receives every frame; the stalled
    reader is named in the log. ``fail``: once resumed, the failed reader exits 1 and is
    restarted (default policy on-failure); ``degrade``: it goes on, lossy (gaps)."""
    import psutil
    spec = tmp_path / "policies.yaml"
    spec.write_text(POLICY_SPEC.format(policy=policy))
    lp = launcher_factory(spec, "--grace", "30")  # the suspended reader is not killed meanwhile
    d = lp.wait_ready(timeout=90)  # start-up takes long on a loaded machine
    slow = psutil.Process(node_entry(d, "slow")["pid"])
    slow.suspend()
    counter = "degraded" if policy == "degrade" else "failed_readers"
    try:
        d = lp.wait_for(lambda d: heartbeat_stat(d, "signals", counter)[1] >= 1 and d, 20,
                        f"the source's '{counter}' counter")
        # what the stall held back is through: the other reader receives at the source's
        # rate again (on a loaded machine its backlog takes longer than a second to drain)
        deadline = time.monotonic() + 20
        while abs(counter_rate(lp, "good", "samples", 2.0)[0] / 500 - 1) > 0.05:
            assert time.monotonic() < deadline, f"the other reader never caught up\n{lp.output}"
        stalls0 = heartbeat_stat(lp.wait_for(lambda d: d, 5, "directory"), "signals",
                                 "stalls")[1]
        # the source's samples as the other declared reader receives them (a Sampler that
        # falls behind on a loaded machine puts more samples in a frame: count samples)
        rate, d = counter_rate(lp, "good", "samples", 8.0)
        assert rate == pytest.approx(500, rel=0.03), (rate, lp.output)
        assert heartbeat_stat(d, "signals", "stalls")[1] == stalls0  # no more waiting for it
        assert heartbeat_stat(d, "good", "gaps")[1] == 0
        assert node_entry(d, "signals")["restarts"] == node_entry(d, "good")["restarts"] == 0
    finally:
        slow.resume()
    if policy == "fail":
        assert "lossless reader 'slow' of 'signals' failed: no room for" in lp.output
        lp.wait_for(lambda d: node_entry(d, "slow")["restarts"] >= 1
                    and node_entry(d, "slow")["state"] == "ready", 30,
                    "the failed reader restarted")
        assert "the publisher failed this reader" in lp.output
    else:
        assert "lossless reader 'slow' of 'signals' had no room for" in lp.output
        assert "served lossy" in lp.output
        d = lp.wait_for(lambda d: heartbeat_stat(d, "slow", "gaps")[1] > 0 and d, 15,
                        "the degraded reader's gaps")
        assert node_entry(d, "slow")["restarts"] == 0
    lp.interrupt()
    assert lp.wait_exit(timeout=40) == 0, lp.output
    assert "unresponsive" not in lp.output


# --- spec fields --------------------------------------------------------------------------------

def test_spec_lossless_fields_reach_both_ends_of_the_edge(tmp_path):
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import parse_topology
    from genki_signals.nodes.runner import lossless_reader_options, publisher_retention
    data = {"name": "t", "nodes": [
        {"id": "src", "kind": "source",
         "params": {"type": "Sampler", "sample_rate": 10, "sources": {"x": {"type": "SineWave"}}}},
        {"id": "a", "kind": "sink", "params": {"type": "null"},
         "inputs": [{"node": "src", "policy": "lossless", "on_stall": "degrade",
                     "stall_after": 2.0, "queue_bytes": 65536, "retain_bytes": 1000,
                     "retain_seconds": 5.0}]},
        {"id": "b", "kind": "sink", "params": {"type": "null"},
         "inputs": [{"node": "src", "policy": "lossless", "retain_seconds": 9.0}]},
        {"id": "c", "kind": "sink", "params": {"type": "null"}, "inputs": ["src"]},
    ]}
    spec = parse_topology(data)
    assert parse_topology(spec.to_dict()) == spec
    edge = spec.node("a").inputs[0]
    assert (edge.on_stall, edge.stall_after, edge.queue_bytes) == ("degrade", 2.0, 65536)
    configs = Launcher(spec, run_dir=tmp_path / "run")._resolve()  # noqa: SLF001
    a_edge = configs["a"].inputs[0]
    assert lossless_reader_options(configs["a"], a_edge) == {
        "reader": "a", "on_stall": "degrade", "stall_after": 2.0, "queue_bytes": 65536}
    assert lossless_reader_options(configs["c"], configs["c"].inputs[0]) == {}
    # the upstream retains for its declared readers, as long as the most demanding one asks
    assert publisher_retention(configs["src"]) == {
        "lossless_readers": ["a", "b"], "retain_bytes": 64 * 1024 * 1024,
        "retain_seconds": 9.0}


@pytest.mark.parametrize("edge, problem", [
    ({"node": "src", "on_stall": "degrade"}, "field 'inputs[0].on_stall': only a lossless edge"),
    ({"node": "src", "policy": "lossless", "on_stall": "drop"}, "inputs[0].on_stall"),
    ({"node": "src", "policy": "lossless", "stall_after": 0}, "inputs[0].stall_after"),
    ({"node": "src", "policy": "lossless", "queue_bytes": 10}, "inputs[0].queue_bytes"),
])
def test_spec_lossless_fields_are_checked(edge, problem):
    from genki_signals.launch.spec import TopologySpecError, parse_topology
    data = {"name": "t", "nodes": [
        {"id": "src", "kind": "source",
         "params": {"type": "Sampler", "sample_rate": 10, "sources": {"x": {"type": "SineWave"}}}},
        {"id": "a", "kind": "sink", "params": {"type": "null"}, "inputs": [edge]}]}
    with pytest.raises(TopologySpecError, match=re.escape(problem)):
        parse_topology(data)
