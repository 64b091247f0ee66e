"""The node runner: the one place that owns a node process's lifecycle.

It wires a ``NodeLogic`` to the bus and to the launcher: binds the publisher, subscribes to the
inputs with their queue policies, registers with the launcher, reports ready, sends heartbeats
with stats, forwards log records, merges inputs by timestamp, and stops cleanly on a ``stop``
request or SIGTERM/SIGINT. A finite source's end, or the end of every input, sends ``eos``
downstream and exits 0. A frame that cannot be processed is counted and skipped, never fatal.
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
from genki_signals.bus.sockets import Publisher, Subscriber
from genki_signals.clock import default_clock
from genki_signals.clocksync.node import start_node_clock, stop_node_clock
from genki_signals.nodes.config import NodeConfig, topic_for
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.nodes.merge import TimestampMerger

log = logging.getLogger(__name__)

FRAME_ERROR_LOG_LIMIT = 5  # log the first few failing frames in full, then only count


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
                                           clock=self.now)
            if cfg.inputs:
                # a recorder (``raw_messages``) stores the received parts as they are
                self.subscriber = Subscriber(
                    context=self.context, keep_parts=getattr(self.logic, "raw_messages", False))
                for edge in cfg.inputs:
                    self.subscriber.connect(edge.endpoint, list(edge.topics),
                                            policy=edge.policy, maxlen=edge.maxlen)
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
        cfg = self.config
        timed = self.logic.update_rate is not None
        period = 1.0 / self.logic.update_rate if timed else None
        next_tick = time.monotonic()
        next_beat = time.monotonic()
        merger = TimestampMerger([e.node for e in cfg.inputs],
                                 max_lag=cfg.extra.get("max_lag", 0.5))
        self._stats_mark = (time.monotonic(), 0, 0)
        raw = bool(getattr(self.logic, "raw_messages", False))
        merged = getattr(self.logic, "merge_inputs", True)  # False: orders by timestamp itself
        while True:
            if self._stop_requested:
                return "stopped"
            mono = time.monotonic()
            if mono >= next_beat:
                self._heartbeat()
                next_beat = mono + cfg.heartbeat_interval
            if timed:
                if mono >= next_tick:
                    self._emit(self.logic.poll(self.now()))
                    next_tick += period
                    if next_tick < mono:  # fell behind (suspended): do not burst
                        next_tick = mono + period
                if self.logic.finished:
                    self._emit(self.logic.poll(self.now()))  # drain what is left
                    return "eos"
                wait = max(0.0, min(next_tick, next_beat) - time.monotonic())
                self._handle_control(timeout=wait)
                continue
            # reactive: frames drive the work; check control between them
            msg = self.subscriber.recv(timeout=min(0.05, max(0.0, next_beat - mono)))
            now = self.now()
            if msg is not None:
                upstream = msg.topic.split("/", 1)[0]
                if raw:  # a recorder: every message as it arrived, unmerged
                    self._process_message(msg, now)
                if msg.kind == "eos":
                    merger.end(upstream)
                    if not merged:
                        self._call(self.logic.on_eos, msg.topic, now)
                elif not merged and not raw:  # e.g. an aligner: every frame at once, no wait
                    self._process_frame(msg.topic, msg.kind, msg.frame, now)
                elif not raw:  # data and events, merged by timestamp alike
                    merger.push(upstream, msg.frame, arrival=now, tag=(msg.topic, msg.kind))
            for _, (topic, kind), frame in merger.pop_ready(now):
                self._process_frame(topic, kind, frame, now)
            if not merged:
                self._call(self.logic.tick, now)
            if merger.all_ended and len(merger) == 0:
                return "eos"
            self._handle_control(timeout=0)

    # ------------------------------------------------------------------ helpers
    def _process_message(self, msg: Any, now: float) -> None:
        """A recorder's input: the message itself, unmerged (see ``RecorderNodeLogic``)."""
        try:
            self._emit(self.logic.on_message(msg, now))
        except Exception as exc:
            self.counters["frame_errors"] += 1
            if self.counters["frame_errors"] <= FRAME_ERROR_LOG_LIMIT:
                log.warning("skipped a message of %s: %s: %s", msg.topic, type(exc).__name__,
                            exc)

    def _call(self, method: Any, *args: Any) -> None:
        """Call a logic hook and publish its outputs; an error is counted, never fatal."""
        try:
            self._emit(method(*args))
        except Exception as exc:
            self.counters["frame_errors"] += 1
            if self.counters["frame_errors"] <= FRAME_ERROR_LOG_LIMIT:
                log.warning("%s failed: %s: %s", method.__name__, type(exc).__name__, exc)

    def _process_frame(self, topic: str, kind: str, frame: dict, now: float) -> None:
        try:
            if kind == "event":
                self._emit(self.logic.on_event(topic, frame, now))
                return
            ts = frame.get("timestamp")
            if ts is not None and len(ts):
                self._last_latency = now - float(ts[-1])
            self._emit(self.logic.on_frame(topic, frame, now))
        except Exception as exc:
            self.counters["frame_errors"] += 1
            if self.counters["frame_errors"] <= FRAME_ERROR_LOG_LIMIT:
                log.warning("skipped a frame from %s: %s: %s", topic, type(exc).__name__, exc)

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

    def _send(self, msg_type: str, **fields: Any) -> None:
        self.ctl.send(control.pack(msg_type, node=self.config.id, **fields))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_requested = True
