"""The node runner: the one place that owns a node process's lifecycle.

It wires a ``NodeLogic`` to the bus and to the launcher: binds the publisher, subscribes to the
inputs with their queue policies, registers with the launcher, reports ready, sends heartbeats
with stats, forwards log records, merges inputs by timestamp, and stops cleanly on a ``stop``
request or SIGTERM/SIGINT. A finite source's end, or the end of every input, sends ``eos``
downstream and exits 0. A frame that cannot be processed is counted and skipped, never fatal.

The loop has one step per kind of input mode (``NodeLogic.input_mode``, checked when the runner
is made): a ``timed`` node is polled on a drift-free schedule; the other modes receive a message,
let the mode's feeder (``nodes.merge``) order it, and hand every ready delivery to ``_dispatch``,
the one place that calls the logic's hooks.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from typing import Any

import psutil
import zmq

from genki_signals.bus import control
from genki_signals.bus.lossless import Lineage
from genki_signals.bus.shm import shm_options
from genki_signals.bus.sockets import Publisher, Subscriber
from genki_signals.clock import default_clock
from genki_signals.clocksync.node import start_node_clock, stop_node_clock
from genki_signals.frames import TIMESTAMP, Topic
from genki_signals.nodes.checkpoint import NodeCheckpointer
from genki_signals.nodes.age import AgeWindow
from genki_signals.nodes.config import NodeConfig, topic_for
from genki_signals.nodes.host_keys import NodeKeys
from genki_signals.nodes.logic import NodeLogic, Output, check_input_mode
from genki_signals.nodes.merge import Delivery, acquisition_of, feeder_for

log = logging.getLogger(__name__)

FRAME_ERROR_LOG_LIMIT = 5  # log the first few failing frames in full, then only count
TICK_INTERVAL = 0.05  # a non-timed node's loop turns at least this often (s): control, tick()
# While frames flow, the control socket is checked at most this often (s): a poll per frame
# cost ~4% of a graph node's CPU per frame (tools/bench_node_overhead.py)
CONTROL_INTERVAL = 0.005
LINGER_MAX_BATCH = 1000  # a lingering logic's reads per wake-up, at most (control stays answered)
# A read that found this many frames or bytes is a fast stream: the logic reads again at once
# (lingering pays for slow streams only; on a lossless edge it would hold the upstream's window
# shut: a full-speed replay into a printer ran 6x slower).
LINGER_FAST_FRAMES = 64
LINGER_FAST_BYTES = 1 << 20


class ControlLogHandler(logging.Handler):
    """Forwards log records to the launcher over the control socket."""

    def __init__(self, sock: zmq.Socket, node_id: str) -> None:
        super().__init__()
        self.sock, self.node_id = sock, node_id

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sock.send(control.pack("log", node=self.node_id, level=record.levelno,
                                        logger=record.name, message=self.format(record),
                                        time=record.created), flags=zmq.NOBLOCK)
        except Exception:  # never let logging take the node down
            pass


class NodeRunner:
    """Runs one node: ``NodeRunner(config, logic).run()`` returns the process exit code."""

    def __init__(self, config: NodeConfig, logic: NodeLogic,
                 context: zmq.Context | None = None) -> None:
        check_input_mode(logic, has_inputs=bool(config.inputs))  # before any socket opens
        self.config = config
        self.logic = logic
        self.context = context or zmq.Context.instance()
        self._stop_requested = False
        self._published_topics: set[str] = set()
        self.counters: dict[str, int] = {"frame_errors": 0, "control_errors": 0}
        self._process = psutil.Process()
        self._last_latency = float("nan")
        self._checkpointer: NodeCheckpointer | None = None
        # per-frame age (nodes.age): of what arrives, of what leaves; the oldest acquisition
        # among the inputs handed to the logic since its last output (the next output's origin)
        self._age_in = AgeWindow()
        self._age_out = AgeWindow()
        self._origin = math.inf

    # ------------------------------------------------------------------ clock
    def now(self) -> float:
        """Seconds on the topology clock: the clock leader's time (see genki_signals.clocksync)."""
        return default_clock().now()

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        cfg = self.config
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        self.ctl = control.connect_dealer(self.context, cfg.control_endpoint, identity=cfg.id)
        self._ctl_poller = zmq.Poller()  # one for the node's life (Socket.poll makes one a call)
        self._ctl_poller.register(self.ctl, zmq.POLLIN)
        handler = ControlLogHandler(self.ctl, cfg.id)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        try:
            self._send("register", pid=os.getpid(), incarnation=cfg.incarnation)
            # state first: a restarted node resumes from its checkpoint (nodes/checkpoint.py)
            self._checkpointer = NodeCheckpointer.for_config(cfg, self.logic)
            resume = self._checkpointer.restore() if self._checkpointer is not None else None
            if resume is not None:
                log.info("resuming from checkpoint after %d input frames", resume.frames)
            # leader time before anything is stamped (a follower probes the leader first)
            keys = NodeKeys.from_extra(cfg.extra)  # CURVE across hosts (launch.share)
            self._clock_service = start_node_clock(
                cfg.id, cfg.clock_origin, cfg.clock_leader, cfg.clock_endpoint, self.context,
                leader_security=keys.server() if keys else None,
                follower_security=keys.clock_client(cfg.clock_endpoint) if keys else None,
                **cfg.extra.get("clock_sync", {}))
            if cfg.publish_endpoint:
                self.publisher = Publisher(cfg.publish_endpoint, cfg.id, context=self.context,
                                           lossless_endpoint=cfg.lossless_endpoint,
                                           clock=self.now,
                                           lossless_token=cfg.extra.get("lossless_token"),
                                           on_stall=self._while_stalled,
                                           **publisher_retention(cfg),
                                           **shm_options(cfg.extra))
                if resume is not None and resume.lineage is not None:
                    # re-emitted frames keep their numbers: duplicates downstream, not new data
                    self.publisher.restore(Lineage.from_dict(resume.lineage))
                # another host's readers: the same sockets on tcp too (launch.placement)
                for key, lossless in (("remote_endpoint", False),
                                      ("remote_lossless_endpoint", True)):
                    if cfg.extra.get(key):
                        self.publisher.bind_also(cfg.extra[key], lossless=lossless,
                                                 security=keys.server() if keys else None)
            if cfg.inputs:
                # a recorder (``raw``) stores the received parts as they are
                limits = cfg.extra.get("limits", {})  # the spec's byte bounds (or defaults)
                self.subscriber = Subscriber(
                    context=self.context, keep_parts=self.logic.input_mode == "raw",
                    max_queue_bytes=limits.get("receive_queue_bytes"),
                    **({"max_bytes": limits["max_message_bytes"]}
                       if "max_message_bytes" in limits else {}))
                for edge in cfg.inputs:
                    self.subscriber.connect(edge.endpoint, list(edge.topics),
                                            policy=edge.policy, maxlen=edge.maxlen,
                                            token=lossless_token_for(cfg, edge),
                                            node=edge.node,  # others: counted, skipped
                                            security=keys.client_for(edge.node, edge.endpoint)
                                            if keys else None,
                                            **lossless_reader_options(cfg, edge),
                                            **self._resume_options(edge, resume))
            if self.publisher is not None and cfg.lossless_subscribers:
                # a lossless reader must see the first frame: wait until it has subscribed
                if not self._wait_for_first_subscribers(
                        float(cfg.extra.get("subscriber_timeout", 15.0))):
                    log.warning("starting without all %d lossless subscribers",
                                cfg.lossless_subscribers)
            self.logic.start()
            self._send("ready", topics=[topic_for(cfg.id)])
            reason = self._loop()
            self._send_eos()
            if reason == "eos":
                self._wait_for_lossless_readers()
            self._send("bye", reason=reason)
            return 0
        except Exception:
            log.exception("node %s failed", cfg.id)
            return 1
        finally:
            try:
                self.logic.close()  # its log lines still reach the launcher
            finally:
                root.removeHandler(handler)
                # readers first: an upstream lossless publisher waits for them to hang up
                for sock in (self.subscriber, self.publisher):
                    if sock is not None:
                        sock.close()
                self.ctl.close(linger=200)  # let the last control messages out
                stop_node_clock()
                for sig, prev in previous.items():
                    signal.signal(sig, prev)

    def _wait_for_first_subscribers(self, timeout: float) -> bool:
        """Wait for the downstream lossless readers to subscribe; a stop request ends it."""
        deadline = time.monotonic() + timeout
        while not self._stop_requested and time.monotonic() < deadline:
            if self.publisher.wait_for_subscribers(
                    topic_for(self.config.id), count=self.config.lossless_subscribers,
                    lossless=True, timeout=0.1):
                return True
            self._handle_control(timeout=0)
        return False

    def _loop(self) -> str:
        """Heartbeats, then one step of the node's input mode, until a stop or the end."""
        if self.logic.input_mode == "timed":
            step = self._step_timed
            self._period = 1.0 / self.logic.update_rate
            self._next_poll = time.monotonic()
        else:
            step = self._step_inputs
            limits = self.config.extra.get("limits", {})
            self._feeder = feeder_for(self.logic.input_mode, [e.node for e in self.config.inputs],
                                      max_lag=self.config.extra.get("max_lag", 0.5),
                                      **({"max_bytes": limits["merge_buffer_bytes"]}
                                         if "merge_buffer_bytes" in limits else {}))
            self._next_control = 0.0
            self._linger_until = 0.0
        self._stats_mark = (time.monotonic(), 0, 0)
        next_beat = time.monotonic()
        while not self._stop_requested:
            mono = time.monotonic()
            if mono >= next_beat:
                self._heartbeat()
                next_beat = mono + self.config.heartbeat_interval
            if step(next_beat):
                return "eos"
        return "stopped"

    def _step_timed(self, next_beat: float) -> bool:
        """``timed``: poll when due (an error in ``poll`` ends the node); True when finished."""
        mono = time.monotonic()
        if mono >= self._next_poll:
            self._emit(self.logic.poll(self.now()))
            self._next_poll += self._period
            if self._next_poll < mono:  # fell behind (suspended): do not burst
                self._next_poll = mono + self._period
        if self.logic.finished:
            self._emit(self.logic.poll(self.now()))  # drain what is left
            return True
        self._handle_control(timeout=max(0.0, min(self._next_poll, next_beat) - time.monotonic()))
        return False

    def _step_inputs(self, next_beat: float) -> bool:
        """``merged``/``arrival``/``raw``: receive one message (or time out), then dispatch what
        the mode's feeder has ready; True once every input ended and nothing is held back.

        A logic that lingers (``NodeLogic.linger`` > 0) is handed everything queued at once,
        then left alone for ``linger`` seconds (the control socket still answered): one
        wake-up per linger rather than one per frame."""
        feeder = self._feeder
        linger = self.logic.linger
        mono = time.monotonic()
        if linger > 0 and mono < self._linger_until:
            self._handle_control(timeout=max(0.0, min(self._linger_until, next_beat) - mono))
            return False
        timeout = min(TICK_INTERVAL, max(0.0, next_beat - mono))
        received = nbytes = 0
        while True:
            msg = self.subscriber.recv(timeout=timeout)
            now = self.now()
            if msg is not None:
                received += 1
                if linger > 0:
                    nbytes += sum(getattr(a, "nbytes", 0) for a in msg.frame.values())
                acquired = acquisition_of(msg)
                if acquired is not None and msg.kind != "eos":
                    self._age_in.add(now - acquired)
                for delivery in feeder.receive(Topic.parse(msg.topic), msg, now):
                    self._dispatch(delivery, now, acquired)
            if msg is None or linger <= 0 or received >= LINGER_MAX_BATCH:
                break
            timeout = 0.0  # lingering: everything already queued, without waiting
        for delivery in feeder.ready(now):
            self._dispatch(delivery, now, feeder.origin(delivery))
        if self._checkpointer is not None:
            self._checkpoint(force=feeder.ended)
        if feeder.ended:
            return True
        mono = time.monotonic()
        if received and linger > 0 and received < LINGER_FAST_FRAMES and \
                nbytes < LINGER_FAST_BYTES:
            self._linger_until = mono + linger
        if msg is None or mono >= self._next_control:
            self._next_control = mono + CONTROL_INTERVAL
            self._handle_control(timeout=0)
        return False

    # ------------------------------------------------------------------ helpers
    def _resume_options(self, edge: Any, resume: Any) -> dict[str, Any]:
        """A checkpointed node acknowledges its lossless inputs itself, after each checkpoint;
        restarted from one, it asks each upstream to resend from the frame after it."""
        if self._checkpointer is None or edge.policy != "lossless":
            return {}
        options: dict[str, Any] = {"auto_ack": False}
        if resume is not None:
            lineage = resume_lineage(resume, edge.node)
            if lineage is not None:
                options["resume"] = lineage
        return options

    def _checkpoint(self, force: bool = False) -> None:
        """Write the checkpoint when due (between dispatches, so no frame is half done), then
        acknowledge the checkpointed frames upstream, which may then forget them."""
        if not self._checkpointer.due(force=force):  # most steps: nothing to gather
            return
        pub, sub = self.publisher, self.subscriber
        epochs = {}
        for edge in self.config.inputs:
            if edge.policy == "lossless":
                delivered = sub.delivered(edge.node)
                if delivered is not None:
                    epochs[edge.node] = delivered.epoch
        ckpt = self._checkpointer.after(
            self._feeder.consumed, pub.lineage().to_dict() if pub is not None else None,
            epochs, force=force)
        if ckpt is None:
            return
        for edge in self.config.inputs:
            if edge.policy == "lossless" and edge.node in epochs:
                for topic, seq in ckpt.consumed.items():
                    if Topic.parse(topic).node == edge.node:
                        sub.ack(edge.node, topic, seq)
        sub.flush_acks()  # once per checkpoint: the upstream frees its retention now

    def _dispatch(self, delivery: Delivery, now: float, origin: float | None = None) -> None:
        """Hand one delivery to its logic hook and publish the outputs; an error is counted
        in ``frame_errors`` and skipped, never fatal. ``origin``: the delivery's acquisition
        time, which the next output inherits unless an older input comes first."""
        what, topic, payload = delivery
        logic = self.logic
        if origin is not None and origin < self._origin:
            self._origin = origin
        try:
            if what in ("data", "event", "message") and self._checkpointer is not None:
                self._checkpointer.consumed(1)
            if what == "data":
                ts = payload.get(TIMESTAMP)
                if ts is not None and len(ts):
                    self._last_latency = now - float(ts[-1])
                outputs = logic.on_frame(topic, payload, now)
            elif what == "event":
                outputs = logic.on_event(topic, payload, now)
            elif what == "message":
                outputs = logic.on_message(payload, now)
            elif what == "eos":
                outputs = logic.on_eos(topic, now)
            else:
                outputs = logic.tick(now)
            self._emit(outputs)
        except Exception as exc:
            self.counters["frame_errors"] += 1
            if self.counters["frame_errors"] <= FRAME_ERROR_LOG_LIMIT:
                log.warning("skipped %s%s: %s: %s", what, "" if topic is None else f" of {topic}",
                            type(exc).__name__, exc)

    def _emit(self, outputs: list[Output]) -> None:
        if not outputs or self.publisher is None:
            return
        now = self.now()
        origin = self._origin  # inherited from the inputs (inf: none, e.g. a timed node)
        self._origin = math.inf
        for out in outputs:
            topic = topic_for(self.config.id, out.timeline)
            self._published_topics.add(topic)
            acquired = out.acquired
            if acquired is None:
                acquired = origin if origin != math.inf else _first_timestamp(out.frame, now)
            self._age_out.add(now - acquired)
            self.publisher.publish(topic, out.frame, kind=out.kind, publish_time=now,
                                   acquired=acquired)

    def _wait_for_lossless_readers(self) -> None:
        """After a natural end: wait until every lossless reader has read (and, for a reader
        that crashed, acknowledged) everything up to ``eos``.

        A lossless reader may be thousands of frames behind (a replay at full speed feeding a
        slow graph); closing before it is done would drop the queued tail and its ``eos``
        (zeromq/libzmq#4660), and it would wait forever. So wait as long as it takes, still
        answering stop requests and sending heartbeats. (``Publisher.close``'s own timeout
        remains for ends by a stop request.)
        """
        pub = self.publisher
        if pub is None or pub.lossless_endpoint is None:
            return
        next_beat = time.monotonic()
        # a reader that crashed near the end is owed its retained tail when it is restarted
        # (bounded by retain_seconds: past it, the frames are evicted and nobody is owed)
        while not self._stop_requested and pub.lossless_pending():
            if time.monotonic() >= next_beat:
                self._heartbeat()
                next_beat = time.monotonic() + self.config.heartbeat_interval
            self._handle_control(timeout=0.02)

    def _send_eos(self) -> None:
        if self.publisher is None or getattr(self, "_no_eos", False):
            return
        for topic in sorted(self._published_topics or {topic_for(self.config.id)}):
            self.publisher.publish_eos(topic)

    def _handle_control(self, timeout: float) -> None:
        if self.publisher is not None:  # lossless readers' hellos and acks, resends
            self.publisher.service()
        # round up: poll(0) for a sub-millisecond wait would busy-spin a 1 kHz source
        if not self._ctl_poller.poll(math.ceil(timeout * 1000)):
            return
        while True:
            try:
                data = self.ctl.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = control.unpack(data)
            if msg is None:
                self.counters["control_errors"] += 1
            elif msg["type"] == "stop":
                self._stop_requested = True
                if msg.get("eos") is False:  # a host's session was lost: no end of stream
                    self._no_eos = True

    def _heartbeat(self) -> None:
        self._send("heartbeat", stats=self.stats())

    def stats(self) -> dict[str, Any]:
        mono = time.monotonic()
        out: dict[str, Any] = dict(self.counters)
        for sock in (self.publisher, self.subscriber):  # each counts its own direction
            if sock is not None:
                for key, value in sock.stats.as_dict().items():
                    out[key] = out.get(key, 0) + value
        feeder = getattr(self, "_feeder", None)  # messages of inputs the spec does not wire
        if feeder is not None and feeder.unexpected:
            out["unexpected"] = out.get("unexpected", 0) + feeder.unexpected
        merger = getattr(feeder, "merger", None)
        if merger is not None:  # frames released early: held too long, or too many bytes
            out["late_releases"], out["merge_overflows"] = merger.late_releases, merger.overflows
        frames_out, frames_in = out.get("frames_out", 0), out.get("frames_in", 0)
        t0, n0, i0 = self._stats_mark
        out["rate_out"] = (frames_out - n0) / max(mono - t0, 1e-9)
        out["rate_in"] = (frames_in - i0) / max(mono - t0, 1e-9)  # what a sink receives
        self._stats_mark = (mono, frames_out, frames_in)
        out["latency"] = self._last_latency
        out.update(self._age_in.report("age_in"))
        out.update(self._age_out.report("age_out"))
        clock_service = getattr(self, "_clock_service", None)
        if clock_service is not None:
            out.update(clock_service.stats())
        out["topics"] = sorted(self._published_topics)
        with self._process.oneshot():
            out["cpu_percent"] = self._process.cpu_percent()
            out["rss_bytes"] = self._process.memory_info().rss
        if getattr(self, "_checkpointer", None) is not None:
            out.update(self._checkpointer.stats())
        out.update(self.logic.stats())
        return out

    def _while_stalled(self) -> bool:
        """The publisher waits for a full declared lossless reader (called every ~0.1 s):
        keep heartbeating and obeying stop, so the launcher never takes the wait for a hang.
        (The publisher logs the wait naming the reader and applies its ``on_stall`` policy.)
        True (stop requested): the publisher gives up waiting."""
        now = time.monotonic()
        if now >= getattr(self, "_next_stall_beat", 0.0):
            self._heartbeat()
            self._next_stall_beat = now + self.config.heartbeat_interval
        self._handle_control(timeout=0)
        return self._stop_requested

    def _send(self, msg_type: str, **fields: Any) -> None:
        self.ctl.send(control.pack(msg_type, node=self.config.id, **fields))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_requested = True


# Supervision (docs/supervision.md), kept apart from the loop above.
def _first_timestamp(frame: dict[str, Any], now: float) -> float:
    """A timed node's frame: acquired at its first timestamp (never later than now), else now."""
    ts = frame.get(TIMESTAMP)
    if ts is not None and len(ts):
        first = float(ts[0])
        if first <= now:
            return first
    return now


def lossless_token_for(config: NodeConfig, edge: Any) -> str | None:
    """The run's token for a declared lossless edge (see ``genki_signals.bus.gate``)."""
    return config.extra.get("lossless_token") if edge.policy == "lossless" else None


def resume_lineage(checkpoint: Any, upstream: str) -> Lineage | None:
    """What a node restarted from ``checkpoint`` asks ``upstream`` for: its epoch as the node
    knew it and, per topic, the first seq not in the checkpoint (None: nothing known)."""
    epoch = checkpoint.epochs.get(upstream)
    if epoch is None:
        return None
    return Lineage(epoch, {t: seq + 1 for t, seq in checkpoint.consumed.items()
                           if Topic.parse(t).node == upstream})


def lossless_reader_options(config: NodeConfig, edge: Any) -> dict[str, Any]:
    """How this node reads a lossless edge: under its own id (the publisher retains for it
    by that name), with the spec's stall policy and window (``bus.lossless``)."""
    if edge.policy != "lossless":
        return {}
    return {"reader": config.id, "on_stall": edge.on_stall, "stall_after": edge.stall_after,
            "queue_bytes": edge.queue_bytes}


def publisher_retention(config: NodeConfig) -> dict[str, Any]:
    """The declared lossless readers of this node and its retention bounds (launcher)."""
    out: dict[str, Any] = {}
    if config.lossless_endpoint is not None and "lossless_readers" in config.extra:
        out["lossless_readers"] = list(config.extra["lossless_readers"])
    for key in ("retain_bytes", "retain_seconds"):
        if key in config.extra:
            out[key] = config.extra[key]
    return out
