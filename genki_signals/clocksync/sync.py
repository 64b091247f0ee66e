"""Time probes over ZeroMQ: the leader's ``TimeServer`` and every other node's ``ClockSync``.

Protocol (msgpack maps in the control-plane format of ``genki_signals.bus.control``)::

    node   -> leader   time_probe {id}            DEALER -> ROUTER on the topology's clock endpoint
    leader -> node     time_reply {id, t, t_out}  leader time when the probe arrived / was answered

The node stamps ``t0`` just before sending (the probe already packed) and ``t3`` just after the
reply with the same ``id`` arrived, on its *local* clock; replies to an older id (a probe that
timed out) are discarded. ``t_out`` takes the leader's time to answer off the round trip (NTP's
four timestamps); a reply without it (an older leader) counts as answered at once.

Where the leader listens. The launcher resolves one clock endpoint per topology
(``ipc://<run dir>/clock.time.sock``; the name cannot clash with a node id) and hands it to every
node (``NodeConfig.clock_endpoint``). The leader binds it: the launcher itself (the default,
``clock_leader: launcher``) or the node named ``clock_leader``. Either way the server runs in its
own daemon thread with its own ROUTER, so a probe is answered the moment it arrives, never queued
behind the launcher's supervision work or a node's frame processing (both add round-trip time
that only the min-RTT filter would then hide). The same code serves a leader on another host:
the endpoint becomes ``tcp://``.

The local clock of a node is CLOCK_MONOTONIC seconds since the launcher's origin (on another
host: its own monotonic clock, whatever its origin: the offset absorbs it). A test clock can be
injected per node with the environment variable ``GENKI_TEST_CLOCK`` (JSON:
``{"<node id>": {"offset": 2.5, "drift_ppm": 200}}``): that node's local clock then reads
``offset + (1 + drift) * (monotonic - origin)``. It exists for tests and benchmarks of clock
synchronisation on one host.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from genki_signals.bus import control
from genki_signals.bus.security import (
    CONTROL,
    ClientKeys,
    ServerKeys,
    needs_keys,
    secure_client,
    secure_server,
)
from genki_signals.clocksync.estimator import ClockMap, OffsetEstimator, Probe

__all__ = ["TimeServer", "ClockSync", "local_clock", "injected_skew", "TEST_CLOCK_ENV",
           "PROBE", "REPLY"]

log = logging.getLogger(__name__)

PROBE = "time_probe"
REPLY = "time_reply"
TEST_CLOCK_ENV = "GENKI_TEST_CLOCK"
STEP_THRESHOLD = 0.05  # s: a correction backwards by more than this steps the clock back


def injected_skew(node_id: str, environ: dict[str, str] | None = None
              ) -> tuple[float, float] | None:
    """``(offset s, drift)`` injected for ``node_id`` by ``GENKI_TEST_CLOCK``, or None."""
    text = (environ if environ is not None else os.environ).get(TEST_CLOCK_ENV)
    if not text:
        return None
    try:
        entry = json.loads(text).get(node_id)
    except (ValueError, AttributeError):
        raise ValueError(f"{TEST_CLOCK_ENV} must be a JSON object "
                         f"{{node: {{offset, drift_ppm}}}}, got {text!r}") from None
    if entry is None:
        return None
    return float(entry.get("offset", 0.0)), float(entry.get("drift_ppm", 0.0)) * 1e-6


def local_clock(origin: float, skew: tuple[float, float] | None = None
                ) -> Callable[[], float]:
    """Local seconds since ``origin`` (a ``time.monotonic()`` reading), optionally skewed."""
    mono = time.monotonic
    if skew is None:
        return lambda: mono() - origin
    offset, drift = skew
    rate = 1.0 + drift
    return lambda: offset + (mono() - origin) * rate


class TimeServer:
    """Answers ``time_probe`` with the time of ``clock`` on a ROUTER, in a daemon thread."""

    def __init__(self, endpoint: str, clock: Callable[[], float],
                 context: zmq.Context | None = None, *,
                 security: ServerKeys | None = None) -> None:
        """``security``: CURVE keys (required for a non-loopback tcp ``endpoint``); probes are
        then answered for ``control``-role keys only (the topology's hosts)."""
        needs_keys(endpoint, security, "clock endpoint")
        self.clock = clock
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self._guard = None if security is None else secure_server(
            self.sock, security, domain=f"genki-clock/{id(self):x}", roles=(CONTROL,))
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.answered = 0
        self.rejected = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="genki-time-server")

    def start(self) -> TimeServer:
        self._thread.start()
        return self

    def _run(self) -> None:
        sock, clock = self.sock, self.clock
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    t = clock()  # as soon as the probe is in
                    msg = control.unpack(frames[-1]) if len(frames) == 2 else None
                    if msg is None or msg["type"] != PROBE:
                        self.rejected += 1
                        continue
                    reply = control.pack(REPLY, id=msg.get("id"), t=t, t_out=clock())
                    sock.send_multipart([frames[0], reply])
                    self.answered += 1
        except zmq.ZMQError:
            if not self._stop.is_set():
                raise
        finally:
            sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        else:
            self.sock.close(linger=0)
        if self._guard is not None:
            self._guard.release()
            self._guard = None

    def stats(self) -> dict[str, Any]:
        return {"clock_role": "leader", "clock_offset": 0.0, "clock_drift_ppm": 0.0,
                "clock_uncertainty": 0.0, "clock_probes_answered": self.answered}


class ClockSync:
    """A node's running estimate of leader time, kept up to date by probes in a daemon thread.

    ``local`` is the node's local clock. ``warm_up()`` (blocking, before any sample is stamped)
    runs a first burst so that the node starts stamping in leader time; ``start()`` then probes in
    the background: ``warmup_bursts`` bursts every ``warmup_interval`` seconds (so the drift is
    known within seconds), then one burst every ``interval`` seconds. ``now()`` is leader time.

    ``now()`` never goes backwards: when a new estimate would move it back by less than
    ``STEP_THRESHOLD`` it stands still until the estimate catches up (corrections are
    microseconds after warm-up); a larger correction (the first contact after the leader was
    unreachable) steps, with a warning.
    """

    def __init__(self, endpoint: str, local: Callable[[], float], *,
                 context: zmq.Context | None = None, burst: int = 8, interval: float = 2.0,
                 warmup_bursts: int = 30, warmup_interval: float = 0.1,
                 probe_timeout: float = 0.25, window: int = 40, identity: str | None = None,
                 security: ClientKeys | None = None) -> None:
        self.endpoint = endpoint
        self.local = local
        self.burst = int(burst)
        self.interval = float(interval)
        self.warmup_bursts = int(warmup_bursts)
        self.warmup_interval = float(warmup_interval)
        self.probe_timeout = float(probe_timeout)
        self.estimator = OffsetEstimator(window=window)
        self.map: ClockMap = ClockMap()  # identity until the first burst; uncertainty inf
        self.lost = 0
        self.steps = 0
        self.last_burst_mono = math.nan
        self._last = -math.inf
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity:
            self.sock.setsockopt(zmq.ROUTING_ID, f"{identity}-{os.getpid()}".encode())
        if security is not None:  # a leader on another host (``control`` role key)
            secure_client(self.sock, security)
        self.sock.connect(endpoint)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Leader time now (seconds), never decreasing."""
        t = self.map.to_leader(self.local())
        last = self._last
        if t < last and last - t < STEP_THRESHOLD:
            return last
        self._last = t
        return t

    def to_leader(self, local_t: float) -> float:
        """Leader time of a local clock reading (no monotonic guard)."""
        return self.map.to_leader(local_t)

    def uncertainty(self) -> float:
        return self.map.uncertainty(self.local())

    # ------------------------------------------------------------------ probing
    def warm_up(self, timeout: float = 5.0, bursts: int = 2) -> bool:
        """Blocking first bursts (call before ``start``); False when the leader did not answer."""
        deadline = time.monotonic() + timeout
        got = 0
        while got < bursts and time.monotonic() < deadline and not self._stop.is_set():
            if self._run_burst():
                got += 1
            else:
                time.sleep(0.05)  # the leader is not up yet: its socket connects on its own
        return got > 0

    def start(self) -> ClockSync:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="genki-clock-sync")
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while True:
                warm = self.estimator.bursts < self.warmup_bursts
                if self._stop.wait(self.warmup_interval if warm else self.interval):
                    return
                self._run_burst()
        except zmq.ZMQError:
            if not self._stop.is_set():
                log.exception("clock synchronisation stopped")
        except Exception:  # never take the node down: it keeps the last estimate
            log.exception("clock synchronisation stopped")

    def _run_burst(self) -> bool:
        probes = [p for p in (self._probe() for _ in range(self.burst)) if p is not None]
        if not probes:
            return False
        had_estimate = self.estimator.map is not None
        before = self.now()
        new = self.estimator.add_burst(probes)
        if new is None:
            return False
        self.map = new
        self.last_burst_mono = time.monotonic()
        jump = self.map.to_leader(self.local()) - before
        if had_estimate and jump < -STEP_THRESHOLD or not had_estimate and abs(jump) > 1.0:
            if had_estimate:
                self.steps += 1
                log.warning("clock stepped by %.6f s to the leader's time", jump)
            self._last = -math.inf  # allow the step
        return True

    def _probe(self) -> Probe | None:
        if self._stop.is_set():
            return None
        self._seq += 1
        seq = self._seq
        probe = control.pack(PROBE, id=seq)
        t0 = self.local()
        try:
            self.sock.send(probe, zmq.NOBLOCK)
        except zmq.Again:
            self.lost += 1
            return None
        end = time.monotonic() + self.probe_timeout
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0 or not self.sock.poll(max(1, int(remaining * 1000))):
                self.lost += 1
                return None
            data = self.sock.recv()
            t3 = self.local()
            msg = control.unpack(data)
            if msg is not None and msg["type"] == REPLY and msg.get("id") == seq \
                    and isinstance(msg.get("t"), float):
                t_out = msg.get("t_out")
                return Probe(t0, msg["t"], t3, t_out if isinstance(t_out, float) else None)

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.sock.close(linger=0)

    def stats(self) -> dict[str, Any]:
        """For the heartbeat: offset (leader - local, s), drift (ppm), uncertainty (s), ..."""
        x = self.local()
        m = self.map
        return {"clock_role": "follower",
                "clock_offset": m.offset(x) if m.points else None,
                "clock_drift_ppm": m.b * 1e6 if m.points else None,
                "clock_uncertainty": m.uncertainty(x) if m.points else None,
                "clock_rtt": m.rtt if m.points else None,
                "clock_residual": m.residual if m.points else None,
                "clock_bursts": self.estimator.bursts, "clock_lost": self.lost,
                "clock_steps": self.steps,
                "clock_age": (time.monotonic() - self.last_burst_mono
                              if self.estimator.bursts else None)}
