"""Publisher and Subscriber: frames over ZeroMQ pub/sub, with a queue policy per input edge.

Lossy and lossless edges. A publishing node binds up to two XPUB sockets:

* ``endpoint``: lossy. When a subscriber's queue (its ``rcvhwm`` plus the publisher's ``sndhwm``
  plus kernel buffers) is full, ZeroMQ drops new messages for that subscriber only; the publisher
  never waits. Subscribers see the loss as sequence gaps.
* ``lossless_endpoint`` (optional, bound when the launcher finds a ``lossless`` edge on this node):
  a ROUTER with per-reader state (``bus.lossless``): a byte window per reader, acknowledgements,
  retention of unacknowledged frames, resend on reconnect, and a stall policy per reader
  (block / degrade / fail). When a ``block`` reader's window is full, ``publish`` waits.

Two sockets, because a slow *lossy* reader must never make the publisher wait. A subscriber connects to the endpoint matching its edge's policy: ``latest``
and ``drop_oldest`` to ``endpoint``, ``lossless`` to ``lossless_endpoint``; the launcher pairs
them from the spec. Both are XPUB rather than PUB so that ``wait_for_subscribers`` can see who
subscribed (a replay must not start before its recorder listens).

Sequence numbers count per ``(node_id, topic)`` from 0, so a subscriber that takes only some of
a node's topics sees no false gaps. The first message seen from an upstream starts its count
(what was published before a subscriber joined is not a gap); a number that goes backwards is a
reset (restarted publisher).

Queue policies, applied by the Subscriber per connection (no threads: every ``recv`` first
drains each readable socket without blocking, then applies the policy):

* ``latest``: keep only the newest message per (topic, kind); the others count as drops (plots).
  ZMQ_CONFLATE is not used: it does not support multipart messages.
* ``drop_oldest`` (``maxlen``): keep the newest ``maxlen`` messages; older ones count as drops
  (the live default). While the reader is busy, ZeroMQ queues up to ``rcvhwm`` messages and the
  publisher drops newer ones (seen as gaps).
* ``lossless``: read only as fast as the caller consumes; the reader's credit (what it read)
  and acks (what it processed) flow back to the publisher, whose window pushes back. Nothing
  is dropped once the reader said hello (``Publisher.wait_for_subscribers(..., lossless=True)``
  before the first frame), and a reader that reconnects gets what it had not acknowledged.

Ending a lossless stream: publish ``eos``, then ``Publisher.close()``, which waits (up to
``close_timeout``) until no lossless reader is owed frames (``lossless_pending``); readers say
bye when they close. ZMQ_LINGER alone loses the last queued messages of a slow reader
(zeromq/libzmq#4660, reproduced here over ipc), so it is set to 0 and this handshake replaces it.

Large arrays are sent without copying: do not modify an array after publishing it. Publisher and
Subscriber are not thread-safe; use each from one thread.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from genki_signals.bus.codec import (
    DEFAULT_MAX_BYTES, INLINE_MAX_BYTES, MAX_GAP, DecodeError, Message, decode_careful,
    decode_fast, encode,
)
from genki_signals.bus.endpoints import check_bind_endpoint
from genki_signals.bus.gate import PLAIN_USERNAME, ReaderGate
from genki_signals.bus.lossless import (
    DEFAULT_RETAIN_BYTES, DEFAULT_RETAIN_SECONDS, DEFAULT_STALL_AFTER, DEFAULT_STALL_POLICY,
    BYE_TIMEOUT, MESSAGE_OVERHEAD, Lineage, LosslessLink, LosslessServer, ReaderFailedError, new_epoch,
    pack_control, unpack_control,
)
from genki_signals.bus.security import (
    CONTROL, ROLES, ClientKeys, ServerGuard, ServerKeys, needs_keys, secure_client,
    secure_server,
)
from genki_signals.bus.shm import (
    DEFAULT_RING_BYTES, DEFAULT_THRESHOLD, ShmReader, ShmWriter, TornRead,
)
from genki_signals.bus.stats import BusStats, UpstreamStats
from genki_signals.bus.zcalls import send as _zsend
from genki_signals.errors import GenkiError

log = logging.getLogger(__name__)

POLICIES = ("latest", "drop_oldest", "lossless")
DEFAULT_HWM = 1000
DEFAULT_MAXLEN = 100
DEFAULT_QUEUE_BYTES = 16 * 1024 * 1024  # per reader (send) and per connection (receive)
MAX_UPSTREAMS = 1024  # (node id, topic) pairs a Subscriber tracks; more are "unexpected"
LOSSLESS_BATCH = 64  # messages a lossless edge reads ahead of the caller
_STALL_POLL_MS = 100
DRAIN_INTERVAL = 0.01  # s between reads of the XPUB subscription messages while publishing
WOKE_AFTER = 100e-6  # s: a Subscriber's poll that took longer waited for its message (recv)
MONITOR_INTERVAL_MS = 50  # a Subscriber waiting in a blocking receive reads its monitor this often
MONITOR_INTERVAL = MONITOR_INTERVAL_MS / 1000

# pyzmq's constants are enum members; their attribute lookups cost more than the calls on the hot
# paths, so those use plain ints.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_FAILED_AUTH = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_HANDSHAKE_REFUSED = _FAILED_AUTH | int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_HANDSHAKE_OK = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)


class BusError(GenkiError, RuntimeError):
    """A socket operation failed (bad policy, publisher stalled past its timeout)."""


class BusStalledError(BusError):
    """A lossless subscriber had no room for longer than the publisher's ``lossless_timeout``."""


def _is_ipv6(endpoint: str) -> bool:
    return endpoint.startswith("tcp://[")


def _new_context(context: zmq.Context | None) -> tuple[zmq.Context, bool]:
    return (zmq.Context(), True) if context is None else (context, False)


class Publisher:
    """Binds a node's lossy (and optionally lossless) endpoint and publishes frames on topics.

    ``endpoint`` / ``lossless_endpoint`` may use port ``*`` (``tcp://127.0.0.1:*``); the
    ``endpoint`` / ``lossless_endpoint`` attributes hold the addresses actually bound. Without a
    ``context`` the Publisher makes its own and terminates it on ``close``.
    ``lossless_timeout`` (seconds, None = forever) bounds how long ``publish`` waits for a full
    lossless reader before raising ``BusStalledError`` (the frame is published and retained:
    the reader gets it when it has room).
    ``close_timeout``: see ``close``.
    Each lossy reader's send queue holds at most ``sndhwm`` messages (ZeroMQ counts messages,
    not bytes) plus what the kernel socket buffers hold (a few hundred KiB over ipc): in bytes,
    ``sndhwm`` x the largest message. Lower ``sndhwm`` for a node that publishes big frames.
    A lossless reader's queue is bounded in bytes by its window (``bus.lossless``).
    ``lossless_readers``, ``retain_bytes``, ``retain_seconds``: see ``bus.lossless``.
    ``lossless_token``: only subscribers that give it (``Subscriber.connect(token=...)``) may
    connect to the lossless endpoint (see ``genki_signals.bus.gate``); others are refused and
    counted in ``stats.refused``. None: anyone may (tests, tools).
    ``security``: CURVE keys and allow-list (``genki_signals.bus.security``); required to bind
    a non-loopback tcp endpoint. Both sockets are then CURVE servers: the lossy one admits the
    ``read`` and ``control`` roles, the lossless one ``control`` only (it replaces the token);
    refused keys and plain clients are counted in ``stats.refused``.
    ``on_stall``: called about every 0.1 s while ``publish`` waits for a full lossless
    subscriber, so that the caller keeps its heartbeats and control going; when it returns
    True the publisher stops waiting for good: from then on frames for a full reader stay
    retained (sent when it has room) and ``close`` does not wait.
    The mark cannot follow the message size at run time: changing SNDHWM on open connections
    (libzmq 4.3.5 applies it to them) stalled a connection for good in
    ``tests/test_bus_fuzz.py``; see docs/supervision.md.
    ``shm_threshold``: when every endpoint is ``ipc://`` (one host), arrays of at least this
    many bytes travel through a shared-memory ring of ``shm_ring_bytes`` (see ``bus.shm``);
    None: never. Over tcp the ordinary path is used.
    """

    def __init__(
        self,
        endpoint: str,
        node_id: str,
        context: zmq.Context | None = None,
        *,
        lossless_endpoint: str | None = None,
        sndhwm: int = DEFAULT_HWM,
        allow_remote: bool = False,
        clock: Callable[[], float] = time.monotonic,
        close_timeout: float = 5.0,
        lossless_timeout: float | None = None,
        on_stall: Callable[[], bool] | None = None,
        lossless_token: str | None = None,
        lossless_readers: Iterable[str] | None = None,
        retain_bytes: int = DEFAULT_RETAIN_BYTES,
        retain_seconds: float = DEFAULT_RETAIN_SECONDS,
        security: ServerKeys | None = None,
        shm_threshold: int | None = DEFAULT_THRESHOLD,
        shm_ring_bytes: int = DEFAULT_RING_BYTES,
    ) -> None:
        check_bind_endpoint(endpoint, allow_remote=allow_remote, secure=security is not None)
        if lossless_endpoint is not None:
            check_bind_endpoint(lossless_endpoint, allow_remote=allow_remote,
                                secure=security is not None)
        self._security = security
        self._guards: list[ServerGuard] = []
        self.node_id = node_id
        self.stats = BusStats()
        self._clock = clock
        self._lossless_timeout = lossless_timeout
        self._close_timeout = close_timeout
        self._seq: dict[str, int] = {}
        self._ctx, self._own_ctx = _new_context(context)
        self._subs: dict[zmq.Socket, collections.Counter[bytes]] = {}
        self._on_stall = on_stall
        self._ipc_files: list[str] = []
        self._lossy: zmq.Socket | None = None
        self._lossless: zmq.Socket | None = None
        self._lossy_live = False  # the lossy socket has a subscription (as of the last drain)
        self._token = lossless_token
        self._zap_domain = f"genki-lossless/{node_id}/{id(self):x}"
        self._gate = None
        self._next_drain = 0.0  # time.monotonic() of the next drain in publish
        self.epoch = new_epoch()  # this numbering of seqs (see bus.lossless, restore)
        self._server: LosslessServer | None = None
        self._published = False
        self._shm: ShmWriter | None = None
        if shm_threshold is not None and endpoint.startswith("ipc://") and (
                lossless_endpoint is None or lossless_endpoint.startswith("ipc://")):
            self._shm = ShmWriter(shm_threshold, shm_ring_bytes)
            self._shm.wait = self._shm_wait
            self._shm.wanted = self._shm_wanted
            self._shm.hot = self._shm_hot
        self._shm_deadline: float | None = None
        try:
            self._lossy = self._bind(endpoint, sndhwm, nodrop=False)
            self.endpoint: str = self._lossy.getsockopt_string(zmq.LAST_ENDPOINT)
            self.lossless_endpoint: str | None = None
            if lossless_endpoint is not None:
                self._lossless = self._bind(lossless_endpoint, 0, nodrop=True)
                self.lossless_endpoint = self._lossless.getsockopt_string(zmq.LAST_ENDPOINT)
                self._server = LosslessServer(
                    self._lossless, node_id, self.stats, epoch=self.epoch,
                    readers=None if lossless_readers is None else list(lossless_readers),
                    retain_bytes=retain_bytes, retain_seconds=retain_seconds,
                    on_stall=on_stall, lossless_timeout=lossless_timeout,
                    stalled_error=BusStalledError)
                if self._shm is not None:  # protected readers register through their hello
                    self._server.on_shm_join = lambda rid, topics: self._shm.add_reader(
                        rid, [t.encode("utf-8") for t in topics])
                    self._server.on_shm_leave = self._shm.remove_reader
        except BaseException:
            self.close()
            raise

    def _bind(self, endpoint: str, hwm: int, *, nodrop: bool) -> zmq.Socket:
        """The lossy XPUB, or (``nodrop``) the lossless ROUTER (``bus.lossless``)."""
        sock = self._ctx.socket(zmq.ROUTER if nodrop else zmq.XPUB)
        self._subs[sock] = collections.Counter()
        sock.setsockopt(zmq.LINGER, 0)  # see close()
        sock.setsockopt(zmq.SNDHWM, hwm)
        if not nodrop:
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # report every (un)subscription
        if self._security is not None:  # CURVE roles replace the lossless token
            which = "lossless" if nodrop else "lossy"
            self._guards.append(secure_server(
                sock, self._security, domain=f"{self._zap_domain}/{which}",
                roles=(CONTROL,) if nodrop else ROLES, on_refused=self._count_refused))
        if nodrop:
            # each reader's queue is bounded in bytes by its window (bus.lossless), not here
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a gone reader raises EHOSTUNREACH
            if self._token is not None and self._security is None:  # declared readers (bus.gate)
                self._gate = ReaderGate.for_context(self._ctx)
                self._gate.allow(self._zap_domain, self._token, self._count_refused)
                sock.setsockopt(zmq.PLAIN_SERVER, 1)
                sock.setsockopt_string(zmq.ZAP_DOMAIN, self._zap_domain)
        self._bind_to(sock, endpoint)
        return sock

    def _bind_to(self, sock: zmq.Socket, endpoint: str) -> None:
        """Bind ``sock`` to ``endpoint`` (an error names it); an ipc file is removed at close."""
        try:
            if _is_ipv6(endpoint):
                sock.setsockopt(zmq.IPV6, 1)
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise BusError(f"cannot bind {endpoint!r}: {exc}") from None
        if endpoint.startswith("ipc://"):
            self._ipc_files.append(endpoint[len("ipc://"):])

    def bind_also(self, endpoint: str, *, lossless: bool = False,
                  security: ServerKeys | None = None) -> str:
        """Bind one more endpoint of the lossy (or lossless) socket; returns the address bound.

        The same frames go out on every endpoint of a socket: a node read on its own host and
        on others binds ``ipc://`` for the first and ``tcp://`` for the second (see
        ``genki_signals.launch.placement``). The socket's options (the lossless reader gate)
        apply to the new endpoint too. ``security``: a non-loopback tcp endpoint is a CURVE
        server (``bus.security``; lossy: ``read`` and ``control`` roles, lossless: ``control``);
        options apply to later binds only, so the endpoints bound before stay key-free (ipc).
        """
        sock = self._lossless if lossless else self._lossy
        if sock is None:
            raise BusError(f"publisher '{self.node_id}' has no "
                           f"{'lossless' if lossless else 'lossy'} socket to bind {endpoint!r}")
        check_bind_endpoint(endpoint, allow_remote=True, secure=security is not None)
        needs_keys(endpoint, security, f"node '{self.node_id}': endpoint")
        if self._shm is not None and not endpoint.startswith("ipc://"):
            self._shm.close()  # another host reads these frames: arrays go by value (bus.shm)
            self._shm = None
        if security is not None:
            which = "lossless" if lossless else "lossy"
            self._guards.append(secure_server(
                sock, security, domain=f"{self._zap_domain}/{which}/{len(self._guards)}",
                roles=(CONTROL,) if lossless else ROLES, on_refused=self._count_refused))
        self._bind_to(sock, endpoint)
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _count_refused(self) -> None:  # called from the gate's thread
        self.stats.refused += 1

    def publish(
        self,
        topic: str,
        frame: Mapping[str, Any],
        kind: str = "data",
        *,
        publish_time: float | None = None,
        acquired: float | None = None,
    ) -> int:
        """Send ``frame`` on ``topic``; return its sequence number.

        ``acquired``: the leader-clock acquisition time of the oldest sample the frame derives
        from (the header's ``acq``; receivers report the frame's age from it).
        May wait while a lossless subscriber is full (see the module docstring). Raises
        ``EncodeError`` for a frame that cannot go on the wire (non-numeric dtype, bad kind).
        """
        if self._lossy is None:
            raise BusError(f"publisher '{self.node_id}' is closed")
        self._published = True
        seq = self._seq.get(topic, 0)
        t = self._clock() if publish_time is None else publish_time
        if self._shm is None:
            parts = encode(topic, frame, node_id=self.node_id, seq=seq, kind=kind,
                           publish_time=t, acquired=acquired)
        else:
            self._shm_deadline = None
            try:
                parts = encode(topic, frame, node_id=self.node_id, seq=seq, kind=kind,
                               publish_time=t, acquired=acquired, shm=self._shm)
            finally:
                self._shm.end_frame()  # a loan lasts one frame (bus.shm.ShmWriter.loan)
        # Subscription messages are read every DRAIN_INTERVAL, not per publish: checking costs
        # about as much as sending a small message. A lossy subscriber that joined since the last
        # drain may miss up to that long of messages (a late join; not counted as a gap).
        now = time.monotonic()
        drain = now >= self._next_drain
        if drain:
            self._next_drain = now + DRAIN_INTERVAL
            self._drain_subscriptions(self._lossy)
        nbytes = len(parts[0]) + len(parts[1])
        for i in range(2, len(parts)):
            nbytes += parts[i].nbytes  # 1-d uint8 arrays (see encode)
        if self._lossy_live:  # nobody subscribed: XPUB would filter everything out anyway
            _send_parts(self._lossy, parts, 0)  # XPUB without NODROP never blocks
        self._seq[topic] = seq + 1
        stats = self.stats
        stats.frames_out += 1
        stats.bytes_out += nbytes
        server = self._server
        if server is not None:
            # Lossless readers' hellos and credit likewise, once the frame is sent (it does not
            # wait for them; a reader whose window filled meanwhile is served by the wait in
            # server.publish); before it while no reader is known (its hello may be waiting).
            if drain and not server.knows_readers:
                server.service()
                drain = False
            server.publish(topic, seq, parts, nbytes, now)  # may wait, or raise BusStalledError
            if drain:
                server.service()
        return seq

    def loan(self, shape: int | Iterable[int], dtype: Any = np.float64) -> np.ndarray:
        """A writable C-contiguous array to fill and then publish as a frame field
        (``publish(topic, {"x": arr})``). When this publisher has a shared-memory ring and the
        array is at least its threshold, the array is a free slot of the ring, so publishing it
        copies nothing (a loaned message, as in iceoryx or ROS 2); otherwise it is a new array.
        One loan at a time: valid until the next ``publish`` (do not write it after publishing);
        a second ``loan`` before it returns a new ordinary array. May wait, as ``publish``
        does, while lossless readers hold every slot."""
        if self._lossy is None:
            raise BusError(f"publisher '{self.node_id}' is closed")
        dt = np.dtype(dtype)
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
        nbytes = math.prod(shape) * dt.itemsize
        if self._shm is not None and nbytes >= self._shm.threshold and nbytes > INLINE_MAX_BYTES:
            self._shm_deadline = None
            arr = self._shm.loan(nbytes, dt, shape)
            if arr is not None:
                return arr
        return np.empty(shape, dt)

    def publish_eos(self, topic: str) -> int:
        """Send an end-of-stream message on ``topic``; return its sequence number."""
        return self.publish(topic, {}, kind="eos")

    def service(self) -> None:
        """Handle lossless readers' hellos, acks and credit now, and send what they are due
        (resends, room that opened). Never waits; ``publish`` does it every ``DRAIN_INTERVAL``.
        A node that publishes rarely calls it every loop turn."""
        if self._server is not None:
            self._server.service()

    def lineage(self) -> Lineage:
        """This publisher's epoch and next seq per topic (for a checkpoint)."""
        return Lineage(self.epoch, dict(self._seq))

    def restore(self, lineage: Lineage) -> None:
        """Before the first ``publish`` and before a lossless reader connected (i.e. right
        after construction; ``service`` and ``wait_for_subscribers`` let readers in): continue
        the numbering of a checkpoint, so that
        re-emitted frames are duplicates downstream (dropped), not a reset."""
        if self._published or self.lossless_readers_connected():
            raise BusError(f"publisher '{self.node_id}': restore() after the first publish or "
                           f"after a lossless reader connected (it was told another epoch)")
        self.epoch = lineage.epoch
        self._seq = {str(t): int(s) for t, s in lineage.next_seq.items()}
        if self._server is not None:
            self._server.epoch = lineage.epoch

    def lossless_readers_connected(self) -> int:
        return 0 if self._server is None else len(self._server._live)  # noqa: SLF001

    @property
    def lossless_readers(self) -> dict[str, str]:
        """Each lossless reader the publisher knows -> its state (new, lossless, degraded,
        down, failed, closed)."""
        return {} if self._server is None else self._server.reader_modes()

    def _shm_wanted(self) -> bool:
        """Whether anyone may read a shared-memory array (else ``encode`` skips the ring)."""
        return self._lossless is not None or self._lossy_live

    def _shm_hot(self) -> bool:
        """Whether every reader of the ring is protected (``ShmWriter.hot``): no lossy
        subscriber, and every connected lossless reader (at least one) registered in the ring.
        With no reader at all, ring order keeps the most retained frames readable for a reader
        that reconnects (its resends are read from the slots, like a lossy reader's frames)."""
        server = self._server
        n = len(self._shm.readers)
        return n > 0 and not self._lossy_live and len(server._live) == n

    def _shm_wait(self) -> bool:
        """While lossless readers hold every slot: keep serving the lossless socket (a reader
        that left releases its slots), apply ``on_stall`` and ``lossless_timeout``."""
        server = self._server
        if server is not None:
            server.service()
            if server.abandoned:
                return True
        if self._shm_deadline is None:
            self.stats.stalls += 1
            timeout = self._lossless_timeout
            self._shm_deadline = math.inf if timeout is None else time.monotonic() + timeout
        if self._on_stall is not None and self._on_stall():
            if server is not None:
                server.abandoned = True
            return True
        if time.monotonic() >= self._shm_deadline:
            raise BusStalledError(f"publisher '{self.node_id}': lossless readers held every "
                                  f"shared-memory slot for {self._lossless_timeout} s")
        return False

    def _drain_subscriptions(self, sock: zmq.Socket) -> None:
        counter = self._subs[sock]
        changed = False
        while sock.getsockopt(_EVENTS) & _POLLIN:
            msg = sock.recv()
            if msg[:1] == b"\x01":
                counter[msg[1:]] += 1
            elif msg[:1] == b"\x00":
                counter[msg[1:]] -= 1
            changed = True
        if changed and sock is self._lossy:
            self._lossy_live = any(n > 0 for n in counter.values())

    def subscribers(self, topic: str, *, lossless: bool = False) -> int:
        """Number of subscriptions (one per subscriber and matching prefix) that cover ``topic``."""
        if lossless:
            if self._server is None:
                return 0
            self._server.service()
            self._server.ping()
            return self._server.readers_covering(topic)
        sock = self._lossy
        if sock is None:
            return 0
        self._drain_subscriptions(sock)
        key = topic.encode("utf-8")
        return sum(n for prefix, n in self._subs[sock].items() if key.startswith(prefix))

    def wait_for_subscribers(
        self, topic: str, *, count: int = 1, lossless: bool = False, timeout: float
    ) -> bool:
        """Wait until ``count`` subscriptions cover ``topic``; False on timeout."""
        sock = self._lossless if lossless else self._lossy
        if sock is None:
            which = "lossless" if lossless else "lossy"
            raise BusError(f"publisher '{self.node_id}' has no {which} socket")
        deadline = time.monotonic() + timeout
        while self.subscribers(topic, lossless=lossless) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.poll(max(1, min(100, int(remaining * 1000))), zmq.POLLIN)
        return True

    def lossless_pending(self) -> list[str]:
        """The lossless readers this publisher still owes frames (``LosslessServer.pending``):
        connected ones that have not read everything, and, while retained frames are not
        acknowledged, ones that are down or not seen yet. Pings the connected ones."""
        if self._server is None:
            return []
        self._server.service()  # a reader's last acks and bye first: then it is closed, not down
        self._server.ping()
        return self._server.pending()

    def _wait_for_hangup(self, timeout: float) -> None:
        """Until no lossless reader is owed anything (``lossless_pending``), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if not self.lossless_pending() or remaining <= 0:
                return
            self._lossless.poll(max(1, min(50, int(remaining * 1000))), zmq.POLLIN)

    def close(self, *, wait: bool = True) -> None:
        """Close the sockets, first waiting up to ``close_timeout`` s for lossless readers to hang up.

        ZMQ_LINGER cannot be trusted to deliver what is still queued for a slow reader when a
        socket closes (zeromq/libzmq#4660: the last messages vanish), so a lossless publisher
        waits until every lossless subscriber has disconnected (seen as unsubscriptions). A clean
        end therefore publishes ``eos``; its lossless readers consume everything, then close.
        ``wait=False`` (used when leaving a ``with`` block by an exception) skips the wait.
        """
        if wait and self._server is not None and self._close_timeout > 0 \
                and not self._server.abandoned:
            self._wait_for_hangup(self._close_timeout)
        for sock in self._subs:  # every socket made, bound or not
            sock.close()
        if self._shm is not None:
            self._shm.close()
        self._lossy = self._lossless = self._server = None
        self._subs.clear()
        if self._gate is not None:
            self._gate.forget(self._zap_domain)
            self._gate = None
        for guard in self._guards:
            guard.release()
        self._guards.clear()
        for path in self._ipc_files:  # libzmq leaves the socket file behind
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._ipc_files.clear()
        if self._own_ctx and not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(wait=exc_type is None)


def _send_parts(sock: zmq.Socket, parts: list[Any], flags: int) -> None:
    """``sock.send_multipart(parts, flags)`` without its per-call overhead: the topic and the
    header (small ``bytes``) copied, the array parts (``encode``'s parts 2+) zero-copy.

    Copying the small parts is ~3x cheaper than ``copy=False``, which makes a ``zmq.Frame``
    per part (2.9 vs 8.2 us per [topic, header] message here, under load). With NOBLOCK on an
    XPUB, only part 0 can raise ``zmq.Again`` (room is checked per message).
    """
    send = _zsend
    last = len(parts) - 1
    if last == 1:  # everything inline: the common small frame
        send(sock, parts[0], flags | _SNDMORE)
        send(sock, parts[1], flags)
        return
    send(sock, parts[0], flags | _SNDMORE)
    for i in range(1, last):
        send(sock, parts[i], flags | _SNDMORE, i < 2)
    send(sock, parts[last], flags, False)


def _recv_parts(sock: zmq.Socket) -> list[zmq.Frame]:
    """``sock.recv_multipart(zmq.NOBLOCK, copy=False)``, cheaper (``Frame.more``, no getsockopt)."""
    recv = sock.recv
    frame = recv(_NOBLOCK, copy=False)
    parts = [frame]
    while frame.more:
        frame = recv(_NOBLOCK, copy=False)
        parts.append(frame)
    return parts


def _message_bytes(parts: list[zmq.Frame]) -> int:
    return sum(map(len, parts))


class _EdgeQueue:
    """The messages of one input edge waiting for ``recv``, under the edge's policy, bounded in
    messages (``maxlen``, drop_oldest) and in bytes (``max_bytes``, every policy)."""

    def __init__(self, policy: str, maxlen: int, max_bytes: int | None = None) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.lossless = policy == "lossless"
        self._latest: dict[tuple[str, str], tuple[Message, int]] = {}
        self.fifo: collections.deque[tuple[Message, int]] = collections.deque()
        self._maxlen = maxlen if policy == "drop_oldest" else None

    def __len__(self) -> int:
        return len(self._latest) + len(self.fifo)

    def room(self, budget: int) -> int:
        """How many messages to read from the socket now: a lossless edge reads ahead of the
        caller at most ``LOSSLESS_BATCH`` messages and ``max_bytes``."""
        if self.policy == "lossless":
            if self.max_bytes is not None and self.nbytes >= self.max_bytes:
                return 0
            return max(0, LOSSLESS_BATCH - len(self.fifo))
        return budget

    def push(self, msg: Message, nbytes: int) -> list[Message]:
        """Queue ``msg`` (``nbytes`` on the wire); return the messages it displaced."""
        self.nbytes += nbytes
        if self.policy == "latest":
            key = (msg.topic, msg.kind)
            old = self._latest.pop(key, None)  # re-insert: order follows arrival
            self._latest[key] = (msg, nbytes)
            if old is None:
                return []
            self.nbytes -= old[1]
            return [old[0]]
        self.fifo.append((msg, nbytes))
        dropped = []
        if self.policy == "drop_oldest":  # lossless never drops: room() stops reading instead
            while len(self.fifo) > 1 and (
                    len(self.fifo) > self._maxlen
                    or (self.max_bytes is not None and self.nbytes > self.max_bytes)):
                old, size = self.fifo.popleft()
                self.nbytes -= size
                dropped.append(old)
        return dropped

    def pop(self) -> Message | None:
        if self.fifo:
            msg, size = self.fifo.popleft()
        elif self._latest:
            msg, size = self._latest.pop(next(iter(self._latest)))
        else:
            return None
        self.nbytes -= size
        return msg


def _disconnected(monitor: zmq.Socket) -> bool:
    """Whether the queued events of a connection's monitor include a disconnect (all read)."""
    gone = False
    while True:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.ZMQError:  # Again included: nothing more queued
            return gone
        gone |= event.get("event") == zmq.EVENT_DISCONNECTED


class _Edge:
    def __init__(self, endpoint: str, topics: list[str], policy: str, maxlen: int, rcvhwm: int,
                 max_queue_bytes: int | None) -> None:
        self.socket: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.token: str | None = None
        self.link: LosslessLink | None = None  # a lossless edge (bus.lossless)
        self.node: str | None = None  # the node id this edge carries (None: any)
        self.security: ClientKeys | None = None
        self.refused = False  # the last handshake failed: a disconnect is libzmq's to retry
        self.endpoint = endpoint
        self.topics = topics
        self.queue = _EdgeQueue(policy, maxlen, max_queue_bytes)
        self.rcvhwm = rcvhwm
        self.shm_id: bytes | None = None  # reader id of a lossless ipc edge (see bus.shm)
        self.shm: Any = None  # its shared-memory resolver (ipc edges only)
        self.rcvtimeo = -1  # the socket's RCVTIMEO as last set (Subscriber._recv_one)
        # Read enough per drain to empty ZeroMQ's queue, bounded so a fast publisher cannot
        # keep recv from returning.
        self.budget = 2 * (rcvhwm + maxlen)


class Subscriber:
    """Receives frames from any number of upstream endpoints, one queue policy per connection.

    Decode failures are counted in ``stats.decode_errors``, logged at debug level and skipped.
    ``upstreams`` maps ``(node_id, topic)`` to its ``UpstreamStats``. ``keep_parts``: each
    ``Message`` also keeps the received parts (``Message.parts``), for recorders.

    Limits (each one counted when it acts, never fatal):

    * ``max_bytes`` (default ``DEFAULT_MAX_BYTES``, 256 MiB): the largest message accepted.
      libzmq enforces it per part (ZMQ_MAXMSGSIZE) before allocating, by dropping the connection
      and never reconnecting (a protocol error); so every connection is watched (a socket
      monitor) and re-opened at once when it drops: counted in ``stats.reconnects``, the lost
      message shows as a sequence gap. A message whose parts fit but whose total does not is
      counted in ``stats.oversized`` and skipped.
    * ``max_queue_bytes`` (default ``DEFAULT_QUEUE_BYTES``, 16 MiB per connection): the bytes
      queued for ``recv`` under the edge's policy (``_EdgeQueue``; ``drop_oldest`` drops the
      oldest, ``lossless`` stops reading ahead). libzmq's own receive queue holds up to
      ``rcvhwm`` messages more (a count, not bytes; ``recv`` drains it into the policy queue at
      every call, so it fills only while the caller is busy).
    * ``max_upstreams`` (default ``MAX_UPSTREAMS``): distinct ``(node id, topic)`` pairs
      tracked; messages of further pairs (forged ids or topics) are counted in
      ``stats.unexpected`` and skipped, so a stray sender cannot grow memory without bound.

    Shared memory (``bus.shm``): on ``ipc://`` edges, arrays the publisher put in its ring are
    zero-copy read-only views on ``lossless`` edges (the publisher does not reuse the slot until
    every view of it is collected: hold them briefly, or copy) and copies on lossy edges (a copy
    overwritten while it was taken is dropped and counted in ``stats.torn``). ``shm_zero_copy``
    False copies on every edge. ``keep_parts`` messages carry the array bytes, never references.
    """

    def __init__(
        self, context: zmq.Context | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES,
        keep_parts: bool = False, max_queue_bytes: int | None = None,
        max_upstreams: int | None = None, shm_zero_copy: bool = True,
    ) -> None:
        self._ctx, self._own_ctx = _new_context(context)
        self._shm = ShmReader(zero_copy=shm_zero_copy)
        self._max_bytes = max_bytes
        self._max_queue_bytes = DEFAULT_QUEUE_BYTES if max_queue_bytes is None \
            else max_queue_bytes
        self._max_upstreams = MAX_UPSTREAMS if max_upstreams is None else max_upstreams
        self._keep_parts = keep_parts
        self._edges: list[_Edge] = []
        self._by_socket: dict[zmq.Socket, _Edge] = {}
        self._by_monitor: dict[zmq.Socket, _Edge] = {}
        self._poller = zmq.Poller()
        self._next = 0
        self._all_lossless = False  # every edge lossless: recv may return queued messages first
        self.stats = BusStats()
        self.upstreams: dict[tuple[str, str], UpstreamStats] = {}
        self._n_links = 0  # lossless edges
        self._by_node: dict[str, _Edge] = {}  # lossless edges by publisher node id (welcome)
        self._failed: str | None = None  # a publisher failed this reader (on_stall: fail)
        self._next_monitor = 0.0  # time.monotonic() of the next monitor read (_recv_one)

    def connect(
        self,
        endpoint: str,
        topics: Iterable[str],
        policy: str = "drop_oldest",
        maxlen: int = DEFAULT_MAXLEN,
        *,
        rcvhwm: int = DEFAULT_HWM,
        token: str | None = None,
        reader: str | None = None,
        resume: Lineage | None = None,
        auto_ack: bool = True,
        on_stall: str = DEFAULT_STALL_POLICY,
        stall_after: float = DEFAULT_STALL_AFTER,
        queue_bytes: int | None = None,
        node: str | None = None,
        security: ClientKeys | None = None,
    ) -> None:
        """Subscribe to the topic prefixes ``topics`` (``[""]``: all) at ``endpoint``.

        ``security``: this client's CURVE keys and the publisher's public key (a CURVE
        publisher, see ``genki_signals.bus.security``); a handshake the publisher refuses is
        counted in ``stats.refused`` and logged, and the socket keeps retrying.

        ``maxlen`` bounds the ``drop_oldest`` queue; a ``lossless`` edge must connect to the
        publisher's ``lossless_endpoint``, with the run's ``token`` when the publisher has one
        (see ``genki_signals.bus.gate``). Lossless edges only (see ``bus.lossless`` and
        docs/decisions.md, "Lossless transport v2: API"): ``reader`` names this reader to the
        publisher (a declared node id; default: a name unique to this connection);
        ``resume``: the upstream's lineage to continue from (first seq wanted per topic);
        ``auto_ack``: acknowledge each message as ``recv`` returns it (else call ``ack``);
        ``on_stall``/``stall_after``: the publisher's policy when this reader has had no room
        for that long; ``queue_bytes``: bytes the publisher may have sent beyond what this
        reader has read (default: ``max_queue_bytes``). ``node``: the one node id this edge
        carries (the spec's wiring); a message from another node id, or on a topic not under
        ``<node>/``, is counted in ``stats.unexpected`` and skipped (a forged ``eos`` never
        ends the input). None: any node id (tools that attach to a whole topology).
        """
        if policy not in POLICIES:
            raise BusError(f"queue policy must be one of {POLICIES}, got {policy!r}")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise BusError(f"maxlen must be a positive int, got {maxlen!r}")
        topics = [topics] if isinstance(topics, str) else list(topics)
        if not topics or not all(isinstance(t, str) for t in topics):
            raise BusError(f"topics must be a non-empty list of str prefixes, got {topics!r}")
        edge = _Edge(endpoint, topics, policy, maxlen, rcvhwm, self._max_queue_bytes)
        edge.token = token
        if policy == "lossless":
            try:
                edge.link = LosslessLink(
                    reader or f"reader-{os.getpid()}-{id(edge):x}", topics, resume=resume,
                    auto_ack=auto_ack,
                    window=self._max_queue_bytes if queue_bytes is None else int(queue_bytes),
                    window_msgs=rcvhwm, on_stall=on_stall, stall_after=float(stall_after), max_bytes=self._max_bytes)
            except ValueError as exc:
                raise BusError(f"lossless edge to {endpoint!r}: {exc}") from None
        edge.node = node
        edge.security = security
        if endpoint.startswith("ipc://"):
            if policy == "lossless":
                edge.shm_id = ShmReader.new_reader_id()
                edge.link.shm_id = edge.shm_id  # told in the hello (bus.shm: a protected reader)
            edge.shm = self._shm.resolver(edge.shm_id)
        self._open(edge)
        self._edges.append(edge)
        self._n_links += edge.link is not None
        self._all_lossless = all(e.queue.policy == "lossless" for e in self._edges)

    def _open(self, edge: _Edge) -> None:
        """A new SUB socket for ``edge`` (first connect, or after its connection dropped)."""
        link = edge.link
        sock = self._ctx.socket(zmq.SUB if link is None else zmq.DEALER)
        monitor = None
        try:
            sock.setsockopt(zmq.LINGER, 0)
            # a lossless edge is bounded in bytes by its window (bus.lossless)
            sock.setsockopt(zmq.RCVHWM, edge.rcvhwm if link is None else 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes)  # per part; see the class doc
            if _is_ipv6(edge.endpoint):
                sock.setsockopt(zmq.IPV6, 1)
            if edge.security is not None:  # CURVE: the key's role replaces the token
                secure_client(sock, edge.security)
            elif edge.token is not None:  # a declared lossless reader (see bus.gate)
                sock.setsockopt(zmq.PLAIN_USERNAME, PLAIN_USERNAME)
                sock.setsockopt_string(zmq.PLAIN_PASSWORD, edge.token)
            if link is None:
                for topic in edge.topics:
                    sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
            monitor = sock.get_monitor_socket(
                zmq.EVENT_DISCONNECTED | _HANDSHAKE_REFUSED | _HANDSHAKE_OK)
            sock.connect(edge.endpoint)
            if link is not None:  # queued until the connection is up
                sock.send(link.hello(self._received(link)), _NOBLOCK)
        except zmq.ZMQError as exc:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(0)
            sock.close(0)
            raise BusError(f"cannot connect to {edge.endpoint!r}: {exc}") from None
        edge.socket, edge.monitor = sock, monitor
        edge.rcvtimeo = -1
        self._by_socket[sock] = edge
        self._by_monitor[monitor] = edge
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)

    def _close_edge_sockets(self, edge: _Edge) -> None:
        if edge.socket is None:
            return
        self._poller.unregister(edge.socket)
        self._poller.unregister(edge.monitor)
        self._by_socket.pop(edge.socket, None)
        self._by_monitor.pop(edge.monitor, None)
        with contextlib.suppress(zmq.ZMQError):
            edge.socket.disable_monitor()
        edge.monitor.close(0)
        edge.socket.close(0)
        edge.socket = edge.monitor = None

    def _on_monitor(self, edge: _Edge) -> None:
        """The connection of ``edge`` dropped: re-open it at once (libzmq would not after a
        message over ``max_bytes``; after a publisher restart it would, later)."""
        dropped = False
        while True:
            try:
                event = recv_monitor_message(edge.monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                break
            kind = event.get("event")
            if kind == _HANDSHAKE_OK:
                edge.refused = False
            elif kind & _HANDSHAKE_REFUSED:
                self.stats.refused += 1
                edge.refused = True  # its disconnect follows; libzmq retries by itself
                log.log(logging.WARNING if self.stats.refused == 1 else logging.DEBUG,
                        "%s refused the connection (%s): is this client's key on its "
                        "allow-list, and is the server key right?", edge.endpoint,
                        "key not allowed" if kind & _FAILED_AUTH else "security mismatch")
            dropped |= kind == zmq.EVENT_DISCONNECTED and not edge.refused
        if not dropped:
            return
        sock = edge.socket
        while True:  # keep what libzmq had already received (a lossless edge loses nothing)
            try:
                parts = _recv_parts(sock)
            except zmq.Again:
                break
            if edge.link is not None and len(parts) == 1:
                self._on_control(edge, parts[0])
            else:
                self._push(edge, parts)
        self._close_edge_sockets(edge)
        self._open(edge)
        self.stats.reconnects += 1
        log.info("connection to %s dropped; reconnected (a message over max_bytes=%d, or the "
                 "publisher left)", edge.endpoint, self._max_bytes)

    def recv(self, timeout: float | None) -> Message | None:
        """The next message from any connection, or None after ``timeout`` seconds (None: wait)."""
        if not self._edges and timeout is None:
            raise BusError("recv(timeout=None) on a Subscriber with no connections would never return")
        if self._all_lossless:
            # Lossless queues hold what was read ahead of the caller; draining the sockets first
            # gains nothing (no policy to apply), so hand out what is queued.
            edges = self._edges
            if len(edges) == 1:  # _pop, inline: the common case of one lossless input
                edge = edges[0]
                queue = edge.queue
                if queue.fifo:
                    msg, size = queue.fifo.popleft()
                    queue.nbytes -= size
                    link = edge.link
                    link.popped[msg.topic] = msg.seq
                    link.npopped += 1
                    return msg
            else:
                msg = self._pop()
                if msg is not None:
                    return msg
        mono = time.monotonic
        deadline = None if timeout is None else mono() + timeout
        if self._all_lossless and timeout != 0 and len(self._edges) == 1 \
                and self._edges[0].socket is not None:
            return self._recv_one(self._edges[0], deadline)
        # Lossy policies drain every socket before choosing (poll(0) first); lossless edges
        # need no such pass: the queues were empty above, so wait for what comes next.
        wait_ms: int | None = 0
        lossless_only = self._all_lossless
        if lossless_only and timeout != 0:
            wait_ms = None if deadline is None else max(1, int(timeout * 1000))
        poll, by_socket = self._poller.poll, self._by_socket
        while True:
            if wait_ms != 0 and self._links:  # about to wait: tell publishers what was read
                due = self._send_credits(idle=True)
                if due is not None and (wait_ms is None or wait_ms > due):
                    wait_ms = due  # wake up to send the rest
            t_poll = mono()
            events = poll(wait_ms)
            # Lossless edges only: a poll that had to wait woke for a message that just came:
            # read it alone (a readiness check for a second one costs as much as another poll);
            # a poll that returned at once found a backlog: read ahead (see _fill). Lossy
            # policies always drain what is there (a viewer's short drop_oldest queue dropped
            # frames when it read one at a time: tests/test_plot_remote.py).
            read_ahead = wait_ms == 0 or not lossless_only or mono() - t_poll < WOKE_AFTER
            for sock, _ in events:
                edge = by_socket.get(sock)
                if edge is not None:
                    self._fill(edge, read_ahead)
                    continue
                edge = self._by_monitor.get(sock)
                if edge is not None:
                    self._on_monitor(edge)
            if self._failed is not None:
                raise ReaderFailedError(self._failed)
            msg = self._pop()
            if msg is not None:
                return msg
            if deadline is None:
                wait_ms = None
            else:
                remaining = deadline - mono()
                if remaining <= 0:
                    return None
                wait_ms = max(1, int(remaining * 1000))

    def _recv_one(self, edge: _Edge, deadline: float | None) -> Message | None:
        """``recv`` of a Subscriber with one edge, lossless, whose queue is empty: wait in a
        blocking receive on its socket (``RCVTIMEO``) instead of a poll.

        libzmq's ``zmq_poll`` over the socket and its monitor makes six ``poll(2)`` calls per
        wake-up (a first pass, then ``ZMQ_EVENTS`` of each socket before and after the wait);
        a blocking receive makes one or two, as raw pyzmq does (docs/decisions.md, "Bus
        per-frame path: a blocking receive"). The monitor is read instead when a wait times
        out and at least every ``MONITOR_INTERVAL``, so a dropped connection is re-opened
        within that. A receive that returned at once found a backlog: read ahead (``_fill``).
        """
        mono = time.monotonic
        queue = edge.queue
        while True:
            now = mono()
            if now >= self._next_monitor:
                self._next_monitor = now + MONITOR_INTERVAL
                self._on_monitor(edge)  # may re-open the connection (a new socket)
            wait_ms = MONITOR_INTERVAL_MS
            if deadline is not None:
                remaining = deadline - now
                if remaining <= 0:
                    return None
                wait_ms = min(wait_ms, max(1, int(remaining * 1000)))
            due = self._send_credits(idle=True)  # about to wait: tell the publisher what was read
            if due is not None and wait_ms > due:
                wait_ms = due  # wake up to send the rest
            sock = edge.socket
            if edge.rcvtimeo != wait_ms:
                sock.setsockopt(zmq.RCVTIMEO, wait_ms)
                edge.rcvtimeo = wait_ms
            t_wait = mono()
            try:
                frame = sock.recv(0, copy=False)
            except zmq.Again:
                continue  # timed out: monitor, deadline, credit
            parts = [frame]
            while frame.more:
                frame = sock.recv(_NOBLOCK, copy=False)
                parts.append(frame)
            if len(parts) == 1:
                self._on_control(edge, parts[0])
            else:
                self._push(edge, parts)
            if mono() - t_wait < WOKE_AFTER and queue.room(edge.budget) > 0:
                self._fill(edge)  # a backlog: read ahead (also sends credit when due)
            else:
                link = edge.link
                if link.unreported >= link.credit_bytes or link.unreported_msgs >= link.credit_msgs:
                    self._send_credit(edge)
            if self._failed is not None:
                raise ReaderFailedError(self._failed)
            if queue.fifo:
                msg, size = queue.fifo.popleft()
                queue.nbytes -= size
                link = edge.link
                link.popped[msg.topic] = msg.seq
                link.npopped += 1
                return msg

    def _pop(self) -> Message | None:
        edges = self._edges
        n = len(edges)
        for k in range(n):  # round robin over connections
            i = self._next + k
            if i >= n:
                i -= n
            edge = edges[i]
            msg = edge.queue.pop()
            if msg is not None:
                self._next = i + 1 if i + 1 < n else 0
                link = edge.link
                if link is not None:
                    link.popped[msg.topic] = msg.seq
                    link.npopped += 1
                return msg
        return None

    def _fill(self, edge: _Edge, read_ahead: bool = True) -> None:
        """Read up to the queue's room from a socket that polled readable (``read_ahead``
        False: one message)."""
        sock = edge.socket
        link = edge.link
        queue = edge.queue
        room = queue.room(edge.budget) if read_ahead else 1
        recv = sock.recv
        for k in range(room):
            if k == 1 and not sock.getsockopt(_EVENTS) & _POLLIN:
                break  # often just one message: cheaper than ending on zmq.Again
            try:  # _recv_parts, inline
                frame = recv(_NOBLOCK, copy=False)
            except zmq.Again:
                break
            parts = [frame]
            while frame.more:
                frame = recv(_NOBLOCK, copy=False)
                parts.append(frame)
            if link is not None:
                if len(parts) == 1:
                    self._on_control(edge, parts[0])
                    continue
                self._push(edge, parts)
                if queue.max_bytes is not None and queue.nbytes >= queue.max_bytes:
                    break  # room(): the lossless read-ahead is bounded in bytes too
            else:
                self._push(edge, parts)
        if link is not None and (link.unreported >= link.credit_bytes
                                 or link.unreported_msgs >= link.credit_msgs):
            self._send_credit(edge)

    def _push(self, edge: _Edge, parts: list[zmq.Frame]) -> None:
        nbytes = len(parts[0]) + len(parts[1]) if len(parts) == 2 else _message_bytes(parts)
        link = edge.link
        if link is not None:  # read from the socket: room in the publisher's window
            link.unreported += nbytes + MESSAGE_OVERHEAD
            link.unreported_msgs += 1
        shm = self._shm
        shm_bytes = shm.resolved_bytes
        msg = self._accept(parts, edge, nbytes)
        if msg is None:
            return
        nbytes += shm.resolved_bytes - shm_bytes  # arrays from shared memory count too
        queue = edge.queue
        if queue.lossless:  # never drops (room() stops reading instead)
            queue.fifo.append((msg, nbytes))
            queue.nbytes += nbytes
            return
        for dropped in queue.push(msg, nbytes):
            self.stats.drops += 1
            up = self.upstreams.get((dropped.node_id, dropped.topic))
            if up is not None:
                up.drops += 1

    def _accept(self, parts: list[zmq.Frame], edge: _Edge, nbytes: int) -> Message | None:
        stats = self.stats
        stats.bytes_in += nbytes
        if nbytes > self._max_bytes:
            stats.oversized += 1
            log.debug("dropping a message of %d bytes from %s (max_bytes %d)", nbytes,
                      edge.endpoint, self._max_bytes)
            return None
        resolved = self._shm.resolved
        try:  # codec.decode, inline: the fast path, else the careful one that names the fault
            try:
                msg = decode_fast(parts, self._max_bytes, edge.shm)
            except DecodeError:  # the shared-memory resolver's verdict is final
                raise
            except Exception:  # noqa: BLE001 - never trusted: the careful path names the fault
                msg = None
            if msg is None:
                msg = decode_careful(parts, self._max_bytes, edge.shm)
        except TornRead as exc:
            self.stats.torn += 1
            log.debug("dropping a frame from %s: %s", edge.endpoint, exc)
            return None
        except DecodeError as exc:
            self.stats.decode_errors += 1
            log.debug("dropping undecodable message from %s: %s", edge.endpoint, exc)
            return None
        if edge.node is not None and (msg.node_id != edge.node
                                      or not msg.topic.startswith(edge.node + "/")):
            self.stats.unexpected += 1  # not the node the spec wires in: forged or misrouted
            log.debug("dropping a %s message of node %r on %r from %s (expected node %r)",
                      msg.kind, msg.node_id, msg.topic, edge.endpoint, edge.node)
            return None
        key = (msg.node_id, msg.topic)
        up = self.upstreams.get(key)
        seq = msg.seq
        if up is not None and seq == up.last_seq + 1:  # the common case: the next one
            up.last_seq = seq
        elif up is None:
            if len(self.upstreams) >= self._max_upstreams:
                self.stats.unexpected += 1
                return None
            up = self.upstreams[key] = UpstreamStats(last_seq=msg.seq)
        else:
            missing = msg.seq - up.last_seq - 1
            if 0 < missing <= MAX_GAP:
                up.gaps += missing
                self.stats.gaps += missing
            elif missing < 0 and edge.link is not None and not self._is_reset(edge.link, key):
                self.stats.duplicates += 1  # resent: this reader already has it
                return None
            elif missing != 0:  # backwards (restarted publisher) or an implausible jump
                up.resets += 1
                self.stats.resets += 1
                log.debug("sequence of %s went from %d to %d (reset)", key, up.last_seq, msg.seq)
            up.last_seq = msg.seq
        if self._keep_parts:
            if self._shm.resolved != resolved:  # store bytes, not references to shared memory
                parts = encode(msg.topic, msg.frame, node_id=msg.node_id, seq=msg.seq,
                               kind=msg.kind, publish_time=msg.publish_time)
            msg.parts = parts
        stats.frames_in += 1
        up.frames += 1
        return msg

    # ------------------------------------------------------------ lossless edges
    @staticmethod
    def _is_reset(link: LosslessLink, key: tuple[str, str]) -> bool:
        """A backwards seq on a lossless edge: the first of each topic after a new epoch is a
        reset (a restarted numbering); otherwise it is a duplicate of what was delivered."""
        if not link.new_epoch or key[0] != link.node or key[1] in link.reset_topics:
            return False
        link.reset_topics.add(key[1])
        return True

    @property
    def _links(self) -> bool:
        return self._n_links > 0

    def _received(self, link: LosslessLink) -> dict[str, int] | None:
        """Last seq received per topic from ``link``'s publisher (for a re-connection)."""
        if link.node is None:
            return None
        return {t: up.last_seq for (n, t), up in self.upstreams.items() if n == link.node}

    def _on_control(self, edge: _Edge, payload: Any) -> None:
        link = edge.link
        msg = unpack_control(payload)
        op = None if msg is None else msg["op"]
        try:
            if op == "welcome":
                link.on_welcome(msg)
                resume = link.resume
                if resume is not None and resume.epoch == link.epoch:
                    for topic, nxt in resume.next_seq.items():  # what came before: duplicates
                        key = (link.node, topic)
                        if key not in self.upstreams and len(self.upstreams) < self._max_upstreams:
                            self.upstreams[key] = UpstreamStats(last_seq=int(nxt) - 1)
                self._by_node[link.node] = edge
            elif op == "failed" and self._failed is None:  # the first reason says why
                reason = msg.get("reason")
                self._failed = (f"lossless edge from {edge.endpoint} (reader '{link.reader}'): "
                                f"the publisher failed this reader: {reason}")
                log.error("%s", self._failed)
            elif op not in ("ping", "failed", "bye_ok"):
                raise ValueError(f"unknown control message {op!r}")
        except (ValueError, TypeError) as exc:
            self.stats.decode_errors += 1
            log.debug("bad control message from %s: %s", edge.endpoint, exc)

    def _send_credit(self, edge: _Edge) -> None:
        try:
            _zsend(edge.socket, edge.link.credit(), _NOBLOCK)
        except zmq.ZMQError:
            pass  # the publisher is gone or slow: the next credit says it all (cumulative)

    def _send_credits(self, idle: bool = False) -> int | None:
        """Send credit (and acks) on each lossless edge that has some to send; ``idle``: only
        those whose ``CREDIT_INTERVAL`` has passed. Returns ms until the next one is due."""
        next_ms = None
        for edge in self._edges:
            link = edge.link
            if link is None or edge.socket is None:
                continue
            wait = link.credit_wait()
            if wait is None:
                continue
            if not idle or wait <= 0:
                self._send_credit(edge)
            else:
                ms = max(1, math.ceil(wait * 1000))
                next_ms = ms if next_ms is None else min(next_ms, ms)
        return next_ms

    def _say_bye(self) -> None:
        """Say bye on every lossless edge and wait (``BYE_TIMEOUT``) for each publisher's
        ``bye_ok``, or for its connection to drop: a publisher that already ended its stream
        and exited answers nothing, and waiting for it held every replay's end by 0.5 s."""
        waiting: dict[zmq.Socket, _Edge] = {}
        poller = zmq.Poller()
        for edge in self._edges:
            if edge.link is not None and edge.socket is not None and edge.link.node is not None:
                with contextlib.suppress(zmq.ZMQError):
                    edge.socket.send(edge.link.credit(), _NOBLOCK)
                    edge.socket.send(pack_control("bye"), _NOBLOCK)
                    waiting[edge.socket] = edge
                    poller.register(edge.socket, zmq.POLLIN)
                    if edge.monitor is not None:
                        poller.register(edge.monitor, zmq.POLLIN)
        deadline = time.monotonic() + BYE_TIMEOUT
        while waiting and (remaining := deadline - time.monotonic()) > 0:
            ready = dict(poller.poll(max(1, int(remaining * 1000))))
            if not ready:
                return
            for sock, edge in list(waiting.items()):
                done = False
                if sock in ready:
                    with contextlib.suppress(zmq.ZMQError):
                        parts = _recv_parts(sock)
                        done = len(parts) == 1 and \
                            (unpack_control(parts[0]) or {}).get("op") == "bye_ok"
                if edge.monitor is not None and edge.monitor in ready:
                    done |= _disconnected(edge.monitor)
                if done:
                    del waiting[sock]
                    poller.unregister(sock)
                    if edge.monitor is not None:
                        poller.unregister(edge.monitor)

    def ack(self, node_id: str, topic: str, seq: int) -> None:
        """Tell ``node_id``'s publisher that everything up to and including ``seq`` of
        ``topic`` is durably processed: it may forget it. Batched (see ``flush_acks``)."""
        edge = self._by_node.get(node_id)
        if edge is None:
            raise BusError(f"ack: no lossless edge from node '{node_id}' has connected "
                           f"(known: {sorted(self._by_node)})")
        link = edge.link
        if seq > link.acks.get(topic, -1):
            link.acks[topic] = seq
            link.acks_dirty = True

    def flush_acks(self) -> None:
        """Send pending acks and credit now (``recv`` does it in batches)."""
        self._send_credits()

    def delivered(self, node_id: str) -> Lineage | None:
        """``node_id``'s epoch and the seq after the last message ``recv`` returned, per topic
        (None: no lossless edge from it has connected)."""
        edge = self._by_node.get(node_id)
        if edge is None or edge.link.epoch is None:
            return None
        return Lineage(edge.link.epoch, {t: s + 1 for t, s in edge.link.popped.items()})

    def pending(self) -> int:
        """Messages received and queued but not yet returned by ``recv``."""
        return sum(len(e.queue) for e in self._edges)

    def close(self) -> None:
        """Close every connection (linger 0). A lossless edge first sends its last credit and
        acks and says bye, and waits up to ``BYE_TIMEOUT`` for the publisher to confirm, so
        the publisher knows this reader left cleanly (not crashed: nothing more to keep)."""
        self._say_bye()
        for edge in self._edges:
            self._close_edge_sockets(edge)
        self._edges.clear()
        self._by_socket.clear()
        self._by_monitor.clear()
        self._shm.close()
        if self._own_ctx and not self._ctx.closed:
            self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
