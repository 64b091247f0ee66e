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
from genki_signals.bus.shm import shm_options
from genki_signals.bus.sockets import Publisher, Subscriber
from genki_signals.clock import default_clock
from genki_signals.clocksync.node import start_node_clock, stop_node_clock
from genki_signals.frames import TIMESTAMP, Topic
from genki_signals.nodes.config import NodeConfig, topic_for
from genki_signals.nodes.logic import NodeLogic, Output, check_input_mode
from genki_signals.nodes.merge import Delivery, feeder_for

log = logging.getLogger(__name__)

FRAME_ERROR_LOG_LIMIT = 5  # log the first few failing frames in full, then only count
TICK_INTERVAL = 0.05  # a non-timed node's loop turns at least this often (s): control, tick()


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
        handler = ControlLogHandler(self.ctl, cfg.id)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        try:
            self._send("register", pid=os.getpid(), incarnation=cfg.incarnation)
            # leader time before anything is stamped (a follower probes the leader first)
            self._clock_service = start_node_clock(
                cfg.id, cfg.clock_origin, cfg.clock_leader, cfg.clock_endpoint, self.context,
                **cfg.extra.get("clock_sync", {}))
            if cfg.publish_endpoint:
                self.publisher = Publisher(cfg.publish_endpoint, cfg.id, context=self.context,
                                           lossless_endpoint=cfg.lossless_endpoint,
                                           clock=self.now,
                                           lossless_token=cfg.extra.get("lossless_token"),
                                           on_stall=self._while_stalled,
                                           **shm_options(cfg.extra))
            if cfg.inputs:
                # a recorder (``raw``) stores the received parts as they are
                self.subscriber = Subscriber(
                    context=self.context, keep_parts=self.logic.input_mode == "raw")
                for edge in cfg.inputs:
                    self.subscriber.connect(edge.endpoint, list(edge.topics),
                                            policy=edge.policy, maxlen=edge.maxlen,
                                            token=lossless_token_for(cfg, edge))
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
            self._feeder = feeder_for(self.logic.input_mode, [e.node for e in self.config.inputs],
                                      max_lag=self.config.extra.get("max_lag", 0.5))
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
        the mode's feeder has ready; True once every input ended and nothing is held back."""
        feeder = self._feeder
        msg = self.subscriber.recv(timeout=min(TICK_INTERVAL,
                                               max(0.0, next_beat - time.monotonic())))
        now = self.now()
        if msg is not None:
            for delivery in feeder.receive(Topic.parse(msg.topic), msg, now):
                self._dispatch(delivery, now)
        for delivery in feeder.ready(now):
            self._dispatch(delivery, now)
        if feeder.ended:
            return True
        self._handle_control(timeout=0)
        return False

    # ------------------------------------------------------------------ helpers
    def _dispatch(self, delivery: Delivery, now: float) -> None:
        """Hand one delivery to its logic hook and publish the outputs; an error is counted
        in ``frame_errors`` and skipped, never fatal."""
        what, topic, payload = delivery
        logic = self.logic
        try:
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
        for out in outputs:
            topic = topic_for(self.config.id, out.timeline)
            self._published_topics.add(topic)
            self.publisher.publish(topic, out.frame, kind=out.kind)

    def _wait_for_lossless_readers(self) -> None:
        """After a natural end: wait until every lossless reader has read ``eos`` and hung up.

        A lossless reader may be thousands of frames behind (a replay at full speed feeding a
        slow graph); closing before it is done would drop the queued tail and its ``eos``
        (zeromq/libzmq#4660), and it would wait forever. So wait as long as it takes, still
        answering stop requests and sending heartbeats. (``Publisher.close``'s own timeout
        remains for ends by a stop request.)
        """
        pub = self.publisher
        if pub is None or pub.lossless_endpoint is None:
            return
        topics = sorted(self._published_topics or {topic_for(self.config.id)})
        next_beat = time.monotonic()
        while not self._stop_requested and any(pub.subscribers(t, lossless=True)
                                               for t in topics):
            if time.monotonic() >= next_beat:
                self._heartbeat()
                next_beat = time.monotonic() + self.config.heartbeat_interval
            self._handle_control(timeout=0.02)

    def _send_eos(self) -> None:
        if self.publisher is None:
            return
        for topic in sorted(self._published_topics or {topic_for(self.config.id)}):
            self.publisher.publish_eos(topic)

    def _handle_control(self, timeout: float) -> None:
        # round up: poll(0) for a sub-millisecond wait would busy-spin a 1 kHz source
        if not self.ctl.poll(math.ceil(timeout * 1000)):
            return
        while self.ctl.poll(0):
            msg = control.unpack(self.ctl.recv())
            if msg is None:
                self.counters["control_errors"] += 1
            elif msg["type"] == "stop":
                self._stop_requested = True

    def _heartbeat(self) -> None:
        self._send("heartbeat", stats=self.stats())

    def stats(self) -> dict[str, Any]:
        mono = time.monotonic()
        out: dict[str, Any] = dict(self.counters)
        for sock in (self.publisher, self.subscriber):  # each counts its own direction
            if sock is not None:
                for key, value in sock.stats.as_dict().items():
                    out[key] = out.get(key, 0) + value
        frames_out, frames_in = out.get("frames_out", 0), out.get("frames_in", 0)
        t0, n0, i0 = self._stats_mark
        out["rate_out"] = (frames_out - n0) / max(mono - t0, 1e-9)
        out["rate_in"] = (frames_in - i0) / max(mono - t0, 1e-9)  # what a sink receives
        self._stats_mark = (mono, frames_out, frames_in)
        out["latency"] = self._last_latency
        clock_service = getattr(self, "_clock_service", None)
        if clock_service is not None:
            out.update(clock_service.stats())
        out["topics"] = sorted(self._published_topics)
        with self._process.oneshot():
            out["cpu_percent"] = self._process.cpu_percent()
            out["rss_bytes"] = self._process.memory_info().rss
        out.update(self.logic.stats())
        return out

    def _while_stalled(self) -> bool:
        """The publisher waits for a full declared lossless reader (called every ~0.1 s):
        keep heartbeating and obeying stop, so the launcher never takes the wait for a hang.
        True (stop requested): the publisher gives up waiting."""
        now = time.monotonic()
        if now >= getattr(self, "_next_stall_beat", 0.0):
            self._heartbeat()
            self._next_stall_beat = now + self.config.heartbeat_interval
        episode = self.publisher.stats.stalls  # +1 per publish that had to wait
        if getattr(self, "_stall", (None,))[0] != episode:
            self._stall = (episode, now, False)
        elif not self._stall[2] and now - self._stall[1] >= STALL_REPORT_AFTER:
            self._stall = (episode, self._stall[1], True)
            log.warning("a declared lossless reader has had no room for %.0f s: publishing "
                        "waits (backpressure); readers: %s", now - self._stall[1],
                        self.config.extra.get("lossless_readers", "see the spec"))
        self._handle_control(timeout=0)
        return self._stop_requested

    def _send(self, msg_type: str, **fields: Any) -> None:
        self.ctl.send(control.pack(msg_type, node=self.config.id, **fields))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_requested = True


# Supervision (docs/supervision.md), kept apart from the loop above.
STALL_REPORT_AFTER = 5.0  # s a lossless publish may wait before the wait is logged (once)


def lossless_token_for(config: NodeConfig, edge: Any) -> str | None:
    """The run's token for a declared lossless edge (see ``genki_signals.bus.gate``)."""
    return config.extra.get("lossless_token") if edge.policy == "lossless" else None
