"""Lossless edges: per-reader state, acknowledgements, retention and resend (issue 12).

A publisher's lossless endpoint is a ZeroMQ ROUTER (behind the PLAIN token gate of
``bus.gate``); each declared reader is a DEALER. Two things travel on that connection:

* data: the ordinary bus messages (``codec``), 2 or more parts, publisher to reader;
* control: single-part msgpack maps (a data message always has at least two parts, so one
  ``len(parts)`` tells them apart)::

    reader -> publisher   {"op": "hello", "reader": name, "topics": [prefixes],
                           "epoch": int | None, "resume": {topic: first seq wanted} | None,
                           "window": bytes, "window_msgs": messages, "on_stall": str,
                           "stall_after": s, "max_bytes": int, "shm": 16 B id (optional)}
                          {"op": "credit", "consumed": bytes read so far on this connection,
                           "consumed_msgs": messages read so far on this connection,
                           "acks": {topic: last seq durably processed}}
                          {"op": "bye"}
    publisher -> reader   {"op": "welcome", "epoch": int, "node": publisher node id}
                          {"op": "failed", "reason": str}
                          {"op": "ping"}
                          {"op": "bye_ok"}  (the reader's close waits for it, BYE_TIMEOUT)

Flow control is a byte window per reader (``queue_bytes``): the publisher sends a reader at
most that many bytes (wire bytes + ``MESSAGE_OVERHEAD`` per message; and at most
``window_msgs`` messages, the reader's ``rcvhwm``) beyond what the reader reported as read
(``consumed``), so every reader's send queue, kernel buffers and receive queue
hold at most ``window`` bytes together, whatever the message size (ZeroMQ's own high-water marks
count messages and stay unlimited on these sockets). Credits and acks are batched by the reader
(every ``ACK_EVERY`` messages or a quarter window, and whenever it is about to wait), and read
by the publisher every ``DRAIN_INTERVAL`` of publishing or when its runner calls ``service``.

Retention: every frame published while any reader is known is kept, in publish order, until
every reader that holds retention (connected lossless readers, readers that are down, declared
readers never seen yet) acknowledged it, bounded by ``retain_bytes`` and ``retain_seconds``;
what the bounds push out before it was acknowledged is counted in ``evicted``. A reader's hello
says where to resume; the publisher resends from its retention (``resent``). Acks are only what
the reader says: a checkpointing node acks what it checkpointed.

Epochs: a numbering of sequence numbers (random per Publisher, or restored from a checkpoint
with ``Publisher.restore``), told in the welcome. A reader drops a seq it already delivered in
the same epoch as a duplicate; a new epoch means a restarted numbering (one reset per topic).
"""

from __future__ import annotations

import collections
import errno
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from genki_signals.bus import zcalls
from genki_signals.bus.stats import BusStats
from genki_signals.errors import GenkiError

log = logging.getLogger(__name__)

STALL_POLICIES = ("block", "degrade", "fail")
DEFAULT_STALL_POLICY = "block"
DEFAULT_STALL_AFTER = 5.0  # s without room before the stall policy acts (block: logs)
DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024  # per reader: bytes sent and not yet read
DEFAULT_WINDOW_MESSAGES = 1000  # per reader: messages sent and not yet read (its rcvhwm)
DEFAULT_RETAIN_BYTES = 64 * 1024 * 1024  # per publisher
DEFAULT_RETAIN_SECONDS = 30.0  # per publisher
MESSAGE_OVERHEAD = 64  # bytes counted per message on top of its parts (libzmq's msg_t)
ACK_EVERY = 256  # messages a reader reads between credits (also a quarter window of bytes)
CREDIT_INTERVAL = 0.02  # s: an idle reader sends what it read / acknowledged this often at most
STALL_POLL = 0.1  # s between calls of the publisher's on_stall while it waits
MAX_CONTROL_BYTES = 64 * 1024  # a control message larger than this is malformed
BYE_TIMEOUT = 0.5  # s a closing reader waits for its publisher to confirm the goodbye

_NOBLOCK = zcalls.NOBLOCK
_SNDMORE = zcalls.SNDMORE
_send = zcalls.send
_COPY_MAX = zcalls.COPY_MAX
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class ReaderFailedError(GenkiError, RuntimeError):
    """The publisher of a lossless edge failed this reader (its ``on_stall: fail`` policy)."""


@dataclass(frozen=True)
class Lineage:
    """A stream's numbering (``epoch``) and, per topic, the next sequence number.

    On a Publisher: the next seq it will publish per topic (``Publisher.lineage``). On a reader:
    the next seq it wants per topic (``Subscriber.delivered``, ``connect(resume=...)``).
    """

    epoch: int
    next_seq: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "next_seq": dict(self.next_seq)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        try:
            epoch = int(data["epoch"])
            next_seq = {str(t): int(s) for t, s in dict(data["next_seq"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a lineage ({{epoch, next_seq}}): {data!r}") from exc
        return cls(epoch, next_seq)


def new_epoch() -> int:
    """A fresh numbering id: random, non-zero, fits msgpack's int64."""
    return secrets.randbits(62) + 1


def pack_control(op: str, **fields: Any) -> bytes:
    return msgpack.packb({"op": op, **fields})


def unpack_control(data: Any) -> dict[str, Any] | None:
    """A control map, or None when ``data`` is not one (counted by the caller)."""
    try:
        raw = bytes(data)
        if len(raw) > MAX_CONTROL_BYTES:
            return None
        msg = msgpack.unpackb(raw, strict_map_key=True)
    except Exception:
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
        return None
    return msg


def _send_rest(sock: zmq.Socket, parts: list[Any]) -> None:
    """The parts of a bus message after its routing id (which was sent with ``SNDMORE``):
    small ones (topic, header) copied, large ones (``codec``'s array parts) zero-copy."""
    last = len(parts) - 1
    for i in range(last):
        part = parts[i]
        _send(sock, part, _SNDMORE, i < 2 or len(part) <= _COPY_MAX)
    part = parts[last]
    _send(sock, part, 0, last < 2 or len(part) <= _COPY_MAX)


def _seq_map(value: Any) -> dict[str, int]:
    """``{topic: seq}`` from a peer, or ValueError."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 4096:
        raise ValueError("not a {topic: seq} map")
    out = {}
    for t, s in value.items():
        if not isinstance(t, str) or type(s) is not int or s < -1:
            raise ValueError("not a {topic: seq} map")
        out[t] = s
    return out


# ---------------------------------------------------------------------------------- publisher
class _Reader:
    """What a publisher knows about one reader (by name), across its connections."""

    __slots__ = ("name", "rid", "topics", "covers", "window", "on_stall", "stall_after",
                 "max_bytes", "sent", "consumed", "window_msgs", "sent_msgs", "consumed_msgs",
                 "cursor", "want", "acked", "mode",
                 "stall_since", "reported", "resend_until", "shm")

    def __init__(self, name: str, mode: str) -> None:
        self.name = name
        self.rid: bytes | None = None
        self.topics: tuple[str, ...] = ("",)
        self.covers: dict[str, bool] = {}
        self.window = DEFAULT_WINDOW_BYTES
        self.on_stall = DEFAULT_STALL_POLICY
        self.stall_after = DEFAULT_STALL_AFTER
        self.max_bytes = 1 << 62
        self.sent = 0  # bytes sent on this connection
        self.consumed = 0  # bytes the reader reported read on this connection
        self.window_msgs = DEFAULT_WINDOW_MESSAGES
        self.sent_msgs = 0
        self.consumed_msgs = 0
        self.cursor = 0  # index (publish counter) of the next retained frame to consider
        self.want: dict[str, int] = {}  # first seq wanted per topic (resume); empty: all
        self.acked: dict[str, int] = {}  # last seq acknowledged per topic
        # new (declared, never seen) | lossless | degraded | down | failed | closed
        self.mode = mode
        self.stall_since: float | None = None
        self.reported = False
        self.resend_until = 0
        self.shm: bytes | None = None  # its shared-memory reader id (bus.shm), if it has one

    def cover(self, topic: str) -> bool:
        if len(self.covers) > 4096:
            self.covers.clear()
        c = self.covers[topic] = any(topic.startswith(p) for p in self.topics)
        return c

    def holds(self) -> bool:
        """Frames are retained for this reader until it acknowledges them."""
        return self.mode in ("new", "lossless", "down")


class LosslessServer:
    """The publisher side of the lossless endpoint: readers, retention, window, stall policies.

    ``sock`` is the bound ROUTER. ``readers``: declared reader names (retained for even before
    they connect), or None. ``on_stall`` and ``lossless_timeout`` as in ``Publisher``.
    """

    def __init__(self, sock: zmq.Socket, node_id: str, stats: BusStats, *, epoch: int,
                 readers: list[str] | None, retain_bytes: int, retain_seconds: float,
                 on_stall: Callable[[], bool] | None, lossless_timeout: float | None,
                 stalled_error: type[Exception]) -> None:
        self.sock = sock
        self.node_id = node_id
        self.stats = stats
        self.epoch = epoch
        self.retain_bytes = retain_bytes
        self.retain_seconds = retain_seconds
        self._on_stall = on_stall
        self._timeout = lossless_timeout
        self._stalled_error = stalled_error
        self._declared = None if readers is None else frozenset(readers)
        self._readers: dict[str, _Reader] = {n: _Reader(n, "new") for n in readers or ()}
        self._by_rid: dict[bytes, _Reader] = {}
        self._live: list[_Reader] = []  # connected: lossless or degraded
        self._failed_rids: set[bytes] = set()
        self._ret: collections.deque[tuple[str, int, list[Any], int, float]] = \
            collections.deque()
        self._base = 0  # publish counter of _ret[0]
        self._head = 0  # publish counter of the next frame
        self.retained_bytes = 0
        self.abandoned = False  # on_stall said stop: never wait again
        # bus.shm: a connected lossless reader with a shared-memory id is protected (its slots
        # wait for its release) while it is served lossless; the Publisher sets these
        self.on_shm_join: Callable[[bytes, tuple[str, ...]], None] | None = None
        self.on_shm_leave: Callable[[bytes], None] | None = None

    @property
    def knows_readers(self) -> bool:
        """Some reader said hello, or was declared (frames are retained from now on)."""
        return bool(self._readers)

    # ---------------------------------------------------------------- publishing
    def publish(self, topic: str, seq: int, parts: list[Any], nbytes: int, now: float) -> None:
        """Retain the frame and send it to every connected reader that has room (``now``:
        ``time.monotonic()``); wait for lossless readers that have none (stall policies)."""
        if not self._readers:
            return  # nobody to send to or retain for
        cost = nbytes + MESSAGE_OVERHEAD
        self._ret.append((topic, seq, parts, cost, now))
        last = self._head
        self._head = last + 1
        self.retained_bytes += cost
        stalled = None
        sock = self.sock
        for r in self._live:
            # the common case, inline: caught up, wants this topic, room in its window
            if r.cursor == last and r.covers.get(topic) \
                    and (not r.want or seq >= r.want.get(topic, -1)) \
                    and r.sent - r.consumed + cost <= r.window \
                    and r.sent_msgs - r.consumed_msgs < r.window_msgs \
                    and nbytes <= r.max_bytes:
                try:
                    _send(sock, r.rid, _NOBLOCK | _SNDMORE)
                except zmq.ZMQError:
                    pass  # gone or full: the general path below sorts it out
                else:
                    if len(parts) == 2:  # _send_rest, inline: topic and header, copied
                        _send(sock, parts[0], _SNDMORE)
                        _send(sock, parts[1], 0)
                    else:
                        _send_rest(sock, parts)
                    r.sent += cost
                    r.sent_msgs += 1
                    r.cursor = last + 1
                    continue
            if not self._pump(r) and r.mode == "lossless":
                if stalled is None:
                    stalled = [r]
                else:
                    stalled.append(r)
        if stalled is not None and not self.abandoned:
            self.stats.stalls += 1
            self._wait(stalled)
        if self._ret and (self.retained_bytes > self.retain_bytes
                          or now - self._ret[0][4] > self.retain_seconds):
            self._evict(now)

    def _pump(self, r: _Reader) -> bool:
        """Send ``r`` what it is due, in order, while its window has room. True: caught up."""
        ret, base, head = self._ret, self._base, self._head
        sock = self.sock
        while r.cursor < head:
            topic, seq, parts, cost, _ = ret[r.cursor - base]
            covers = r.covers.get(topic)
            if covers is None:
                covers = r.cover(topic)
            if not covers or (r.want and seq < r.want.get(topic, -1)):
                r.cursor += 1
                continue
            if cost - MESSAGE_OVERHEAD > r.max_bytes:  # would cost the reader its connection
                self.stats.oversized += 1
                r.cursor += 1
                continue
            inflight = r.sent - r.consumed
            if inflight > 0 and (inflight + cost > r.window
                                 or r.sent_msgs - r.consumed_msgs >= r.window_msgs):
                if r.mode == "degraded":
                    self.stats.drops += 1
                    r.cursor += 1
                    continue
                if r.stall_since is None:
                    r.stall_since = time.monotonic()
                return False
            try:
                _send(sock, r.rid, _NOBLOCK | _SNDMORE)
            except zmq.Again:  # not expected: the high-water mark is off
                if r.stall_since is None:
                    r.stall_since = time.monotonic()
                return False
            except zmq.ZMQError as exc:
                if exc.errno == errno.EHOSTUNREACH:  # the reader's connection is gone
                    self._down(r)
                    return True
                raise
            _send_rest(sock, parts)
            r.sent += cost
            r.sent_msgs += 1
            if r.cursor < r.resend_until:
                self.stats.resent += 1
            r.cursor += 1
            r.stall_since = None
        return True

    def _wait(self, stalled: list[_Reader]) -> None:
        """Wait for room for stalled lossless readers, applying their stall policies."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        next_callback = time.monotonic() + STALL_POLL
        while True:
            self.sock.poll(int(STALL_POLL * 1000), zmq.POLLIN)
            self.service()
            now = time.monotonic()
            stalled = [r for r in stalled if r.mode == "lossless" and not self._pump(r)]
            stalled = self._apply_policies(stalled, now)
            if not stalled:
                return
            if self._on_stall is not None and now >= next_callback:
                next_callback = now + STALL_POLL
                if self._on_stall():
                    self.abandoned = True
                    return
            if deadline is not None and now >= deadline:
                names = ", ".join(r.name for r in stalled)
                raise self._stalled_error(
                    f"publisher '{self.node_id}': lossless reader(s) {names} full for "
                    f"{self._timeout} s")

    def _apply_policies(self, stalled: list[_Reader], now: float) -> list[_Reader]:
        """The readers still waited for, after each stalled reader's policy had its say."""
        still = []
        for r in stalled:
            since = r.stall_since if r.stall_since is not None else now
            if now - since < r.stall_after:
                still.append(r)
            elif r.on_stall == "degrade":
                self._degrade(r, now - since)
            elif r.on_stall == "fail":
                self._fail(r, f"no room for {now - since:.1f} s (on_stall: fail)")
            else:
                if not r.reported:
                    r.reported = True
                    log.warning("lossless reader '%s' of '%s' has had no room for %.1f s: "
                                "publishing waits (on_stall: block)", r.name, self.node_id,
                                now - since)
                still.append(r)
        return still

    def _shm_leave(self, r: _Reader) -> None:
        if r.shm is not None and self.on_shm_leave is not None:
            self.on_shm_leave(r.shm)
        r.shm = None

    def _degrade(self, r: _Reader, waited: float) -> None:
        r.mode = "degraded"
        self._shm_leave(r)  # served lossy: it must not hold shared-memory slots either
        self.stats.degraded += 1
        log.warning("lossless reader '%s' of '%s' had no room for %.1f s: it is served lossy "
                    "from now on (on_stall: degrade); frames it has no room for are dropped",
                    r.name, self.node_id, waited)
        self._pump(r)

    def _fail(self, r: _Reader, reason: str) -> None:
        self.stats.failed_readers += 1
        log.warning("lossless reader '%s' of '%s' failed: %s; the publisher goes on",
                    r.name, self.node_id, reason)
        if r.rid is not None:
            self._tell(r.rid, pack_control("failed", reason=reason))
            self._failed_rids.add(r.rid)
            if len(self._failed_rids) > 1024:
                self._failed_rids.pop()
        self._disconnect(r, "failed")

    def _down(self, r: _Reader) -> None:
        log.info("lossless reader '%s' of '%s' disconnected; retaining its frames", r.name,
                 self.node_id)
        self._disconnect(r, "down")

    def _disconnect(self, r: _Reader, mode: str) -> None:
        self._shm_leave(r)
        if r.rid is not None:
            self._by_rid.pop(r.rid, None)
            r.rid = None
        if r in self._live:
            self._live.remove(r)
        r.mode = mode
        r.stall_since = None

    def _tell(self, rid: bytes, payload: bytes) -> bool:
        """A control message to one reader; False when it is gone."""
        try:
            self.sock.send(rid, _NOBLOCK | _SNDMORE)
            self.sock.send(payload, 0)
            return True
        except zmq.ZMQError:
            return False

    # ---------------------------------------------------------------- retention
    def _evict(self, now: float) -> None:
        """Drop the oldest frames beyond ``retain_bytes`` / ``retain_seconds``."""
        ret = self._ret
        holders = [r for r in self._readers.values() if r.holds()]
        while ret and (self.retained_bytes > self.retain_bytes
                       or now - ret[0][4] > self.retain_seconds):
            topic, seq, _, cost, _ = ret.popleft()
            self._base += 1
            self.retained_bytes -= cost
            for r in holders:
                covers = r.covers.get(topic)
                if covers is None:
                    covers = r.cover(topic)
                if covers and r.acked.get(topic, -1) < seq:
                    self.stats.evicted += 1
                    break
        self._fix_cursors()

    def _prune(self) -> None:
        """Drop the oldest frames that every reader holding retention acknowledged."""
        holders = [r for r in self._readers.values() if r.holds()]
        if any(r.mode == "new" for r in holders):
            return  # a declared reader not seen yet needs everything (up to the bounds)
        ret = self._ret
        while ret:
            topic, seq, _, cost, _ = ret[0]
            for r in holders:
                covers = r.covers.get(topic)
                if covers is None:
                    covers = r.cover(topic)
                if covers and r.acked.get(topic, -1) < seq:
                    self._fix_cursors()
                    return
            ret.popleft()
            self._base += 1
            self.retained_bytes -= cost
        self._fix_cursors()

    def _fix_cursors(self) -> None:
        for r in self._readers.values():
            if r.cursor < self._base:
                r.cursor = self._base

    # ---------------------------------------------------------------- control
    def service(self) -> None:
        """Read reader control messages (never waits); send what readers are due."""
        sock = self.sock
        changed = False
        while sock.getsockopt(_EVENTS) & _POLLIN:
            try:
                parts = sock.recv_multipart(_NOBLOCK)
            except zmq.Again:
                break
            if len(parts) != 2:
                self.stats.decode_errors += 1
                continue
            rid, payload = parts
            msg = unpack_control(payload)
            if msg is None:
                self.stats.decode_errors += 1
                continue
            try:
                changed |= self._on_control(rid, msg)
            except (ValueError, TypeError) as exc:
                self.stats.decode_errors += 1
                log.debug("bad control message from a lossless reader: %s", exc)
        if changed:
            self._prune()
        if self._ret and time.monotonic() - self._ret[0][4] > self.retain_seconds:
            self._evict(time.monotonic())
        self.stats.retained_bytes = self.retained_bytes
        head = self._head
        for r in list(self._live):
            if r.cursor < head and r.mode in ("lossless", "degraded"):
                self._pump(r)
        stalled = [r for r in self._live if r.mode == "lossless" and r.stall_since is not None]
        if stalled:
            self._apply_policies(stalled, time.monotonic())

    def _on_control(self, rid: bytes, msg: dict[str, Any]) -> bool:
        op = msg["op"]
        if op == "hello":
            self._hello(rid, msg)
            return True
        r = self._by_rid.get(rid)
        if r is None:
            if rid in self._failed_rids:
                self._tell(rid, pack_control("failed", reason="failed earlier"))
            return False
        if op == "credit":
            consumed = msg.get("consumed")
            if type(consumed) is not int:
                raise ValueError("credit without consumed bytes")
            consumed_msgs = msg.get("consumed_msgs", 0)
            if type(consumed_msgs) is not int:
                raise ValueError("credit with a bad message count")
            if consumed > r.consumed:
                r.consumed = min(consumed, r.sent)
            if consumed_msgs > r.consumed_msgs:
                r.consumed_msgs = min(consumed_msgs, r.sent_msgs)
            acked = r.acked
            for topic, seq in _seq_map(msg.get("acks")).items():
                if seq > acked.get(topic, -1):
                    acked[topic] = seq
            return True
        if op == "bye":
            self._tell(rid, pack_control("bye_ok"))
            self._disconnect(r, "closed")
            return True
        raise ValueError(f"unknown op {op!r}")

    def _hello(self, rid: bytes, msg: dict[str, Any]) -> None:
        name = msg.get("reader")
        topics = msg.get("topics")
        if not isinstance(name, str) or not name or len(name) > 256 \
                or not isinstance(topics, list) or not topics \
                or not all(isinstance(t, str) for t in topics):
            raise ValueError("hello without a reader name and topic list")
        if self._declared is not None and name not in self._declared:
            self.stats.refused += 1
            log.warning("'%s': refused lossless reader '%s': not declared in the spec "
                        "(declared: %s)", self.node_id, name, sorted(self._declared))
            self._tell(rid, pack_control("failed", reason=f"'{name}' is not a declared reader"))
            return
        on_stall = msg.get("on_stall", DEFAULT_STALL_POLICY)
        if on_stall not in STALL_POLICIES:
            raise ValueError(f"on_stall {on_stall!r}")
        r = self._readers.get(name)
        fresh = r is None
        if fresh:
            r = self._readers[name] = _Reader(name, "new")
        elif r.rid is not None:  # a new connection replaces the old one
            self._disconnect(r, r.mode)
        first_time = r.mode == "new"
        r.topics, r.covers = tuple(topics), {}
        r.window = max(1, int(msg.get("window", DEFAULT_WINDOW_BYTES)))
        r.on_stall = on_stall
        r.stall_after = float(msg.get("stall_after", DEFAULT_STALL_AFTER))
        r.max_bytes = int(msg.get("max_bytes", 1 << 62))
        r.window_msgs = max(1, int(msg.get("window_msgs", DEFAULT_WINDOW_MESSAGES)))
        r.sent = r.consumed = r.sent_msgs = r.consumed_msgs = 0
        r.stall_since, r.reported = None, False
        resume = msg.get("resume")
        if resume is not None:  # the reader says where it is
            wanted = _seq_map(resume)
            if msg.get("epoch") == self.epoch:
                r.want = wanted
                for topic, seq in wanted.items():  # it has everything before: acknowledged
                    if seq - 1 > r.acked.get(topic, -1):
                        r.acked[topic] = seq - 1
            else:  # another numbering: all of this one is new to it
                r.want = {}
                r.acked = {}
            r.cursor = self._base
        elif fresh and self._declared is None:
            r.want, r.cursor = {}, self._head  # an undeclared newcomer: from now
        elif first_time:
            r.want, r.cursor = {}, self._base  # retained for it since the start
        else:  # a restarted reader: from the first frame it did not acknowledge
            r.want = {t: s + 1 for t, s in r.acked.items()}
            r.cursor = self._base
        r.mode = "lossless"
        r.rid = rid
        shm = msg.get("shm")
        if type(shm) is bytes and len(shm) == 16 and self.on_shm_join is not None:
            r.shm = shm
            self.on_shm_join(shm, r.topics)
        r.resend_until = self._head
        self._by_rid[rid] = r
        self._live.append(r)
        self._failed_rids.discard(rid)
        self._tell(rid, pack_control("welcome", epoch=self.epoch, node=self.node_id))
        log.info("lossless reader '%s' of '%s' connected (%d frames retained)", name,
                 self.node_id, len(self._ret))
        self._pump(r)

    # ---------------------------------------------------------------- queries
    def readers_covering(self, topic: str) -> int:
        """Connected lossless readers whose topics cover ``topic`` (and have not said bye)."""
        n = 0
        for r in self._live:
            covers = r.covers.get(topic)
            if covers is None:
                covers = r.cover(topic)
            n += covers
        return n

    def ping(self) -> None:
        """Ask every connected reader whether it is still there (a gone one is marked down)."""
        for r in list(self._live):
            if not self._tell(r.rid, pack_control("ping")):
                self._down(r)

    def pending(self) -> list[str]:
        """The readers that still need something: a connected lossless reader that has not
        read everything due to it, or (while retention holds unacknowledged frames) a
        reader that holds retention: down (to be restarted) or declared and never seen.
        Empty: a publisher may close without losing anything it promised."""
        self.service()
        names = [r.name for r in self._live if r.mode == "lossless" and (
            r.cursor < self._head or r.consumed < r.sent or r.consumed_msgs < r.sent_msgs)]
        if self._ret:  # after _prune: some holder has not acknowledged the oldest frame
            topic, seq = self._ret[0][0], self._ret[0][1]
            for r in self._readers.values():
                if r.holds() and r.name not in names and (r.covers.get(topic) or r.cover(topic)) \
                        and r.acked.get(topic, -1) < seq:
                    names.append(r.name)
        return names

    def reader_modes(self) -> dict[str, str]:
        return {name: r.mode for name, r in self._readers.items()}


# ---------------------------------------------------------------------------------- reader
class LosslessLink:
    """The reader side of one lossless edge: hello, credit and acks, epoch, failure."""

    def __init__(self, reader: str, topics: list[str], *, resume: Lineage | None,
                 auto_ack: bool, window: int, window_msgs: int, on_stall: str,
                 stall_after: float, max_bytes: int) -> None:
        if on_stall not in STALL_POLICIES:
            raise ValueError(f"on_stall must be one of {STALL_POLICIES}, got {on_stall!r}")
        self.reader = reader
        self.topics = topics
        self.resume = resume
        self.auto_ack = auto_ack
        self.window = window
        self.window_msgs = max(1, window_msgs)
        self.credit_msgs = max(1, min(ACK_EVERY, self.window_msgs // 4))
        self.on_stall = on_stall
        self.stall_after = stall_after
        self.max_bytes = max_bytes
        self.credit_bytes = max(1, window // 4)
        self.node: str | None = None  # the publisher's node id (from the welcome)
        self.epoch: int | None = None  # the numbering of the seqs seen so far
        self.new_epoch = False  # the last welcome changed the numbering
        self.reset_topics: set[str] = set()  # topics already counted as reset in this epoch
        self.unreported = 0  # bytes read since the last credit
        self.unreported_msgs = 0
        self.consumed = 0  # bytes read on this connection
        self.consumed_msgs = 0
        self.popped: dict[str, int] = {}  # last seq returned by recv, per topic
        self.npopped = 0  # messages returned by recv
        self._npopped_credited = 0
        self.last_credit = 0.0
        self.acks: dict[str, int] = {}  # explicit acks
        self.acks_dirty = False
        self.failed: str | None = None
        self.shm_id: bytes | None = None  # this reader's shared-memory id (bus.shm), if any

    def hello(self, received: Mapping[str, int] | None) -> bytes:
        """The hello of a new connection. ``received``: last seq received per topic (on a
        re-connection), else the ``resume`` lineage given at connect (if any)."""
        self.unreported = self.unreported_msgs = self.consumed = self.consumed_msgs = 0
        if received:
            epoch: int | None = self.epoch
            resume: dict[str, int] | None = {t: s + 1 for t, s in received.items()}
        elif self.resume is not None:
            epoch, resume = self.resume.epoch, dict(self.resume.next_seq)
        else:
            epoch, resume = None, None
        return pack_control("hello", reader=self.reader, topics=self.topics, epoch=epoch,
                            resume=resume, window=self.window, window_msgs=self.window_msgs,
                            on_stall=self.on_stall,
                            stall_after=self.stall_after, max_bytes=self.max_bytes,
                            **({} if self.shm_id is None else {"shm": self.shm_id}))

    def credit(self) -> bytes:
        self.consumed += self.unreported
        self.consumed_msgs += self.unreported_msgs
        self.unreported = self.unreported_msgs = 0
        self.acks_dirty = False
        self._npopped_credited = self.npopped
        self.last_credit = time.monotonic()
        acks = self.popped if self.auto_ack else self.acks
        return pack_control("credit", consumed=self.consumed, consumed_msgs=self.consumed_msgs,
                            acks=acks)

    def credit_wait(self) -> float | None:
        """None: nothing to report; else seconds until a credit is due (0: now). An idle
        reader reports at most every ``CREDIT_INTERVAL``: the publisher needs credit only when
        the window fills, and a reader that read a quarter window reports at once (``recv``)."""
        if not self.credit_due():
            return None
        return max(0.0, self.last_credit + CREDIT_INTERVAL - time.monotonic())

    def credit_due(self) -> bool:
        return self.unreported > 0 or self.acks_dirty or (
            self.auto_ack and self.npopped != self._npopped_credited)

    def on_welcome(self, msg: Mapping[str, Any]) -> bool:
        """A welcome: True when the numbering changed (a reset, not duplicates, follows)."""
        epoch, node = msg.get("epoch"), msg.get("node")
        if type(epoch) is not int or not isinstance(node, str):
            raise ValueError("welcome without epoch and node")
        changed = self.epoch is not None and epoch != self.epoch
        if changed:
            self.new_epoch = True
            self.reset_topics.clear()
        self.epoch, self.node = epoch, node
        return changed
