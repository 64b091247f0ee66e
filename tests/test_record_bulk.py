"""Bulk reading (``record.bulk``): the same frames as decoding each message, or the slow path.

Every case compares the bulk player's output with the reference: ``Player`` (each message read
and decoded by the codec) followed by ``record.coalesce``, sample for sample and byte for byte.
Runs that must not decode in bulk (messages whose fixed bytes differ, a non-finite time, a
sequence number crossing an encoding size, events between frames) are built on purpose.
"""

from __future__ import annotations

import numpy as np
import pytest

from genki_signals.bus.codec import encode
from genki_signals.record import Recorder, Recording
from genki_signals.record.bulk import BulkPlayer, decode_run
from genki_signals.record.coalesce import CoalesceLimits, coalesce
from genki_signals.record.player import Player
from genki_signals.record.reader import RecordRun

pytestmark = pytest.mark.timeout(60)


def frame(i: int, n: int = 4, width: int = 0) -> dict[str, np.ndarray]:
    ts = (np.arange(n) + i * n) / 100.0
    out = {"timestamp": ts, "x": np.sin(ts) * i, "k": (np.arange(n) + i).astype("<i4"),
           "v": np.random.default_rng(i).normal(size=(n, 3)).astype(np.float32)}
    if width:
        out["big"] = np.full((n, width), float(i))  # over 32 KiB: a part of its own
    return out


def write(path, messages, **kwargs) -> None:
    """``messages``: (topic, frame, kind, seq, publish_time) tuples, logged 1 ms apart."""
    with Recorder(path, wall_anchor=1.7e9, **kwargs) as rec:
        for i, (topic, fr, kind, seq, t) in enumerate(messages):
            parts = encode(topic, fr, node_id=topic.split("/")[0], seq=seq, kind=kind,
                           publish_time=t)
            if np.isfinite(t):
                rec.record_parts(parts, log_time=i * 0.001)
            else:  # what a broken writer might store (record_parts refuses it)
                rec._write(topic, topic.split("/")[0], seq, 0.0, parts, i * 0.001)


def reference(path, node: str, limits: CoalesceLimits, start: float = 0.0):
    with Recording(path) as rec:
        player = Player(rec, node, speed=None, start=start)
        played = []
        while not player.done:
            played += player.due(0.0, 1000)
        return coalesce(played, limits), player.frames, rec.report.bad_messages


def bulk(path, node: str, limits: CoalesceLimits, start: float = 0.0):
    with Recording(path) as rec:
        player = BulkPlayer(rec, node, start=start, limits=limits)
        played = []
        while not player.done:
            played += player.due(0.0, 3)
        return played, player.frames, rec.report.bad_messages


def segments(played) -> list[tuple[tuple, dict[str, np.ndarray]]]:
    """Consecutive data frames of one topic and field list joined; events on their own."""
    out: list[tuple[tuple, list]] = []
    for p in played:
        key = (p.topic, p.kind, tuple(p.frame))
        if out and p.kind == "data" and out[-1][0] == key:
            out[-1][1].append(p.frame)
        else:
            out.append((key, [p.frame]))
    return [(key, {k: np.concatenate([f[k] for f in frames]) for k in key[2]})
            for key, frames in out]


def assert_same_stream(got, want) -> None:
    """The same segments (topic, kind, fields) in the same order, the same samples byte for
    byte (frame boundaries within a segment may differ)."""
    a, b = segments(got), segments(want)
    assert [k for k, _ in a] == [k for k, _ in b]
    for (key, x), (_, y) in zip(a, b):
        for name in key[2]:
            assert x[name].dtype == y[name].dtype and x[name].shape == y[name].shape, \
                (key, name)
            assert x[name].tobytes() == y[name].tobytes(), (key, name)


def count_bulk_runs(path, node: str) -> tuple[int, int]:
    """(runs decoded in bulk, runs that fell back to one message at a time)."""
    ok = slow = 0
    with Recording(path) as rec:
        for item in rec.runs([f"{node}/"]):
            if isinstance(item, RecordRun):
                if decode_run(item) is None:
                    slow += 1
                else:
                    ok += 1
    return ok, slow


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_bulk_equals_decoding_each_message(tmp_path, compression):
    path = tmp_path / "r.mcap"
    msgs = []
    for i in range(600):
        msgs.append(("s/main", frame(i), "data", i, i * 0.04))
        if i % 7 == 0:  # another node in between: not s's, skipped
            msgs.append(("d/main", frame(i, n=2), "data", i, i * 0.04))
        if i % 100 == 50:  # an event: never joined across
            msgs.append(("s/events", {"timestamp": np.array([i * 0.04]),
                                      "label": np.array([b"tap"], dtype="S8")}, "event",
                         i // 100, i * 0.04))
    write(path, msgs, compression=compression, chunk_size=16 * 1024)
    limits = CoalesceLimits(max_samples=100)
    got, frames, bad = bulk(path, "s", limits)
    want, want_frames, want_bad = reference(path, "s", limits)
    assert_same_stream(got, want)
    assert (frames, bad) == (want_frames, want_bad) == (606, 0)
    assert max(len(p.frame["timestamp"]) for p in got if p.kind == "data") <= 100
    ok, slow = count_bulk_runs(path, "s")
    assert ok >= 10 and slow == 0  # the fast path really ran


def test_start_offset_big_fields_and_the_limits(tmp_path):
    path = tmp_path / "r.mcap"
    write(path, [("s/main", frame(i, n=2, width=3000), "data", i, i * 0.04) for i in range(60)])
    ok, slow = count_bulk_runs(path, "s")
    assert ok >= 1 and slow == 0
    for limits in (CoalesceLimits(max_samples=10), CoalesceLimits(max_bytes=300_000),
                   CoalesceLimits(max_span=0.05)):
        got, frames, _ = bulk(path, "s", limits, start=0.0205)  # from the 21st message on
        want, want_frames, _ = reference(path, "s", limits, start=0.0205)
        assert_same_stream(got, want)
        assert frames == want_frames == 39
        assert [len(p.frame["timestamp"]) for p in got] == \
            [len(p.frame["timestamp"]) for p in want]


def test_runs_that_do_not_fit_the_template_fall_back_and_lose_nothing(tmp_path):
    path = tmp_path / "r.mcap"
    msgs = []
    for i in range(300):
        fr = frame(i)
        if i % 5 == 3:  # the same record length, another field name: a fixed byte differs
            fr = {("y" if k == "x" else k): v for k, v in fr.items()}
        # sequence numbers cross 127 -> 128 and 255 -> 256: the header grows by a byte
        msgs.append(("s/main", fr, "data", i, i * 0.04))
    write(path, msgs)
    got, frames, bad = bulk(path, "s", CoalesceLimits())
    want, want_frames, _ = reference(path, "s", CoalesceLimits())
    assert_same_stream(got, want)
    assert frames == want_frames == 300 and bad == 0
    assert count_bulk_runs(path, "s")[1] >= 1  # some run fell back


def test_a_damaged_message_in_a_run_is_counted_like_the_slow_path(tmp_path):
    path = tmp_path / "r.mcap"
    msgs = [("s/main", frame(i), "data", 200 + i, i * 0.04) for i in range(50)]
    msgs[20] = ("s/main", frame(20), "data", 220, float("inf"))  # a publish time decode refuses
    write(path, msgs)
    got, frames, bad = bulk(path, "s", CoalesceLimits())
    want, want_frames, want_bad = reference(path, "s", CoalesceLimits())
    assert_same_stream(got, want)
    assert (frames, bad) == (want_frames, want_bad) == (49, 1)


def test_nothing_to_replay_is_an_error(tmp_path):
    from genki_signals.record import RecordingError

    path = tmp_path / "r.mcap"
    write(path, [("s/main", frame(i), "data", i, i * 0.04) for i in range(5)])
    with Recording(path) as rec, pytest.raises(RecordingError, match="nothing to replay for "
                                                                     "node 'other'"):
        BulkPlayer(rec, "other")
