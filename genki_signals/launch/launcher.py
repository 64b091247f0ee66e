"""The launcher: start, supervise and stop one process per node of a validated topology.

* Device sources are checked first (``preflight``: is the mouse's display, the microphone
  there?), so a missing device fails the launch before any process starts.
* Endpoints are resolved up front (``ipc://`` files in the run directory unless the spec names
  one), every node gets a ``NodeConfig`` file and starts as ``python -m genki_signals.nodes``
  would, in its own process group (its own session), pinned to cores when the spec says so.
  All nodes start at once, each forked from a pre-warmed fork server (numpy, scipy, pyzmq and
  the genki modules already imported, pages shared; ``launch.forkserver``), restarts too;
  ``GENKI_NODE_START=spawn`` starts each as a new interpreter instead.
* One ROUTER socket is the topology's *address*: nodes register, report ready, send heartbeats
  and log records there; tools ask it for the directory (nodes, topics, endpoints, health).
* Supervision: every exit gets a stated cause (exit code, signal name, killed after grace,
  unresponsive, stderr tail); the restart policy (``never | on-failure | always``) restarts with
  doubling backoff within a budget of restarts per time window.
* Stopping (Ctrl-C, SIGTERM, SIGHUP, ``--duration``, or every node finished after
  end-of-stream): a stop request to every node, a grace period, then SIGKILL to each node's whole
  process group: no orphans. ``run()``'s exit code says why (see ``exit_code``).
* If the launcher itself dies (SIGKILL, OOM), every node notices within 2 s and exits: each node
  process asks Linux for a parent-death signal and watches its parent pid
  (``genki_signals.nodes.parent_watch``; the launcher's pid travels in ``LAUNCHER_PID_ENV``).
  Linux sends that signal when the *thread* that forked the node ends, so call ``start()`` and
  ``run()`` from one thread that outlives the topology (the main thread, as ``genki launch`` does).
* Output to a closed pipe (``genki launch ... | head``) is dropped silently: it never turns a
  clean stop into a crash.

See docs/supervision.md for the guarantees.
"""

from __future__ import annotations

import collections
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import zmq

from genki_signals.bus import control
from genki_signals.bus.directory import default_run_dir
from genki_signals.bus.endpoints import ipc_endpoint
from genki_signals.bus.security import (
    ServerGuard,
    ServerKeys,
    needs_keys,
    peer_role,
    secure_server,
)
from genki_signals.clocksync.sync import TimeServer, injected_skew, local_clock
from genki_signals.errors import GenkiError
from genki_signals.launch.forkserver import (ForkServer, ForkServerError, start_fork_server,
                                             start_method)
from genki_signals.launch.spec import NodeSpec, TopologySpec, publishes
from genki_signals.nodes.checkpoint import checkpoint_settings
from genki_signals.nodes.config import InputEdge, NodeConfig, topic_for
from genki_signals.nodes.parent_watch import LAUNCHER_PID_ENV

STDERR_TAIL_LINES = 8
MAX_BACKOFF = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # all take the Ctrl-C path
# The supervision loop's longest wait (s) while every node came from the fork server, whose
# exit reports wake the loop at once (a pipe); a spawned node's exit is seen by polling, so
# while one runs the loop turns every POLL_TICK. Heartbeat checks need no finer grain.
SUPERVISION_TICK = 0.25
POLL_TICK = 0.05


class LaunchError(GenkiError, RuntimeError):
    """The topology could not be started; the message says which node and why."""


@dataclass
class NodeProcess:
    """What the launcher knows about one node: its config, process and health."""

    spec: NodeSpec
    config: NodeConfig
    proc: subprocess.Popen | None = None
    state: str = "pending"  # pending starting ready exited failed stopped waiting-restart
    incarnation: int = 0
    restart_times: collections.deque = field(default_factory=collections.deque)
    consecutive_failures: int = 0
    next_start: float | None = None
    last_heartbeat: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    stderr_tail: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES))
    exit_cause: str = ""
    kill_reason: str = ""  # set when the launcher killed it, to explain the exit
    finished: bool = False  # said bye after end-of-stream or a stop request

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Launcher:
    """Runs a topology. ``start()`` then ``run()``; ``stop()`` is always safe to call."""

    def __init__(self, spec: TopologySpec, *, run_dir: str | Path | None = None,
                 control_address: str | None = None, out: IO[str] | None = None,
                 grace: float = 3.0, ready_timeout: float = 20.0,
                 heartbeat_interval: float = 1.0,
                 node_extra: dict[str, dict[str, Any]] | None = None,
                 control_security: ServerKeys | None = None,
                 remote_address: str | None = None,
                 remote_security: ServerKeys | None = None) -> None:
        """``node_extra``: node id -> ``NodeConfig.extra`` (e.g. ``{"max_lag": None}`` so a
        replay's downstream merges by timestamp alone, see ``launch.replay``).
        ``control_security``: CURVE keys and allow-list of the control socket, required for a
        non-loopback tcp ``control_address`` (``read`` keys may only ask ``directory``).
        ``remote_address`` / ``remote_security``: a second control socket, a CURVE server on
        tcp for other hosts' nodes (``control`` keys) and remote tools (``read`` keys), while
        local nodes keep the key-free ipc ``control_address`` (a socket has one security
        mechanism, so the two cannot share one). Same messages, same rules."""
        self.spec = spec
        self.control_security = control_security
        self.node_extra = node_extra or {}
        self.run_dir = Path(run_dir) if run_dir else default_run_dir(spec.name)
        self.address = control_address or f"ipc://{self.run_dir / 'control'}"
        needs_keys(self.address, control_security, f"topology '{spec.name}': control address")
        self._control_guard: ServerGuard | None = None
        self.remote_address = remote_address
        if remote_address is not None and remote_security is None:
            raise LaunchError(f"topology '{spec.name}': remote control address "
                              f"{remote_address} needs CURVE keys (remote_security)")
        self.remote_security = remote_security
        self.remote_router: zmq.Socket | None = None
        self._remote_guard: ServerGuard | None = None
        self.out = out or sys.stdout
        self.grace = grace
        self.ready_timeout = ready_timeout
        self.heartbeat_interval = heartbeat_interval
        self.clock_origin = time.monotonic()
        self.wall_anchor = time.time()  # UTC at leader time 0 (same host as the leader)
        # Leader time: the clock leader's monotonic seconds since clock_origin. The leader
        # (this launcher by default, or the node named clock_leader) answers time probes here.
        self.clock_leader = spec.clock_leader or "launcher"
        self.clock_endpoint = ipc_endpoint(self.run_dir, "clock.time")  # never a node id
        self.time_server: TimeServer | None = None
        self.refused_control = 0  # control messages refused: sent by a read-only key
        self.refused_keys = 0  # CURVE handshakes refused on the control socket (not listed)
        self.nodes: dict[str, NodeProcess] = {}
        # Only the nodes get it: lossless endpoints admit declared readers only (bus.gate)
        self.lossless_token = secrets.token_hex(16)
        self.context = zmq.Context.instance()
        self.router: zmq.Socket | None = None
        self._out_lock = threading.Lock()
        self._stop_requested = False
        self._stopped = False
        self._starting = False  # in start(): a node exit now fails the launch (no restart)
        self._owns_run_dir = False  # only a launcher that really started removes the run dir
        self._out_closed = False
        self._previous_handlers: dict[int, Any] = {}
        self.stop_signal: int | None = None  # the signal that asked for the stop, if any
        self.fork_server: ForkServer | None = None  # where nodes are forked from (start())
        self._preload: list[str] = []  # modules the fork server imports before the first fork
        # a forked node's exit wakes the supervision loop (_service): made in start()
        self._wake_r: int | None = None
        self._wake_w: int | None = None

    # ------------------------------------------------------------------ output
    def say(self, node: str, text: str) -> None:
        """One line of output, the node id first (``launch`` for the launcher itself).

        When the reader of ``out`` has gone (``| head`` exited, ``| tee`` killed by the same
        Ctrl-C), output stops silently: the topology runs and stops as it would otherwise.
        """
        with self._out_lock:
            if self._out_closed:
                return
            try:
                print(f"[{node}] {text}", file=self.out, flush=True)
            except (BrokenPipeError, ValueError):  # ValueError: write to a closed file
                self._out_closed = True
                _silence(self.out)

    # ------------------------------------------------------------------ start
    def use_fork_server(self, server: ForkServer, preload: list[str] | None = None) -> None:
        """Fork the nodes from ``server``, started before this launcher (``genki launch`` starts
        it first thing, so that its imports overlap the spec check's), after it has imported
        ``preload`` (what the spec check imported, e.g. scipy.signal for a filter). The
        launcher owns it from now on: ``stop()`` closes it."""
        self.fork_server = server
        server.on_exit = self._wake
        self._preload = list(preload or ())

    def start(self) -> None:
        """Check devices, bind the control socket, start every node, wait until all are ready."""
        if self._wake_r is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        if start_method() == "fork" and self.fork_server is None:
            # first: a fork of this launcher is only safe before it starts threads
            self.fork_server = start_fork_server()
            self.fork_server.on_exit = self._wake
        if self.fork_server is not None and self._preload:
            try:  # returns at once: the first fork waits for these imports
                self.fork_server.preload(self._preload)
            except ForkServerError as exc:
                self.say("launch", f"fork server: {exc}")
        self._preflight()
        self._install_signal_handlers()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_not_running()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if self.control_security is not None:
            self._control_guard = secure_server(
                self.router, self.control_security, domain=f"genki-control/{self.spec.name}",
                on_refused=self._count_refused_key)
        try:
            self.router.bind(self.address)
        except zmq.ZMQError as exc:
            self.router.close(linger=0)
            self.router = None
            if self._control_guard is not None:
                self._control_guard.release()
                self._control_guard = None
            raise LaunchError(f"topology '{self.spec.name}': cannot bind the control address "
                              f"{self.address}: {exc}") from None
        # From here on the run directory is this launcher's: stop() removes it. A launch refused
        # above (already running) must leave the running topology's sockets alone.
        self._owns_run_dir = True
        if self.remote_address is not None:
            self._bind_remote_control()
        self._starting = True
        if self.clock_leader == "launcher":
            self.time_server = TimeServer(
                self.clock_endpoint, local_clock(self.clock_origin, injected_skew("launcher")),
                self.context).start()
        self.say("launch", f"topology '{self.spec.name}': {len(self.spec.nodes)} nodes, "
                           f"address {self.address}")
        for node_spec, config in self._resolve().items():
            self.nodes[node_spec] = NodeProcess(spec=self.spec.node(node_spec), config=config)
        for node in self.nodes.values():
            self._spawn(node)
        deadline = time.monotonic() + self.ready_timeout
        # a node that already exited with 0 is done, said it or not: its "bye" (or "ready") may
        # not have left before its control socket closed, under load (a quick replay then
        # waited out ready_timeout with every node gone and the run failed)
        while not all(n.state in ("ready", "exited") or n.finished for n in self.nodes.values()):
            if self._stop_requested:
                self._starting = False
                return
            if time.monotonic() > deadline:
                late = [n.spec.id for n in self.nodes.values() if n.state != "ready"]
                self.stop()
                raise LaunchError(f"nodes not ready after {self.ready_timeout:g} s: "
                                  f"{', '.join(late)}")
            failed = [n for n in self.nodes.values() if n.state == "failed"]
            if failed:
                causes = "; ".join(f"node '{n.spec.id}': {n.exit_cause}" for n in failed)
                self.stop()
                raise LaunchError(f"topology '{self.spec.name}' failed to start: {causes}")
            self._service(0.05)
        self._starting = False
        self.say("launch", "all nodes ready")

    def _preflight(self) -> None:
        """Raise ``LaunchError`` naming every source node whose device is missing here.

        Runs before anything is started (see ``data_sources.registry.preflight_source``).
        """
        from genki_signals.data_sources.registry import preflight_source

        problems = [f"node '{node.id}' ({node.parsed.type}): {problem}"
                    for node in self.spec.nodes
                    if node.kind == "source" and (problem := preflight_source(node.parsed))]
        if problems:
            raise LaunchError(f"topology '{self.spec.name}' cannot start, nothing was "
                              f"started:\n  " + "\n  ".join(problems))

    def _check_not_running(self) -> None:
        sock_path = self.address[len("ipc://"):] if self.address.startswith("ipc://") else None
        if sock_path and os.path.exists(sock_path):
            try:
                control.request(self.address, "directory", timeout=0.3)
            except TimeoutError:
                os.unlink(sock_path)  # stale socket of a run that died
            else:
                raise LaunchError(f"topology '{self.spec.name}' is already running at "
                                  f"{self.address}")

    def _resolve(self) -> dict[str, NodeConfig]:
        """Endpoints and per-node configs, from the validated spec."""
        publish: dict[str, str] = {}
        lossless: dict[str, str] = {}
        for node in self.spec.nodes:
            if self.spec.downstream(node.id) or publishes(node.kind):
                publish[node.id] = node.endpoint or ipc_endpoint(self.run_dir, node.id)
        for node in self.spec.nodes:
            for edge in node.inputs:
                if edge.policy == "lossless" and edge.node not in lossless:
                    lossless[edge.node] = ipc_endpoint(self.run_dir, f"{edge.node}-lossless")
        configs = {}
        spec_dir = str(self.spec.path.parent if self.spec.path else Path.cwd())
        for node in self.spec.nodes:
            inputs = tuple(
                InputEdge(node=e.node,
                          endpoint=(lossless[e.node] if e.policy == "lossless"
                                    else publish[e.node]),
                          topics=(f"{e.node}/",), policy=e.policy, maxlen=e.maxlen,
                          streams=tuple(self.spec.output_streams(e.node)),
                          on_stall=e.on_stall, stall_after=e.stall_after,
                          queue_bytes=e.queue_bytes)
                for e in node.inputs)
            readers = [(d.id, e) for d in self.spec.nodes for e in d.inputs
                       if e.node == node.id and e.policy == "lossless"]
            retention = {"retain_bytes": max(e.retain_bytes for _, e in readers),
                         "retain_seconds": max(e.retain_seconds for _, e in readers)
                         } if readers else {}
            configs[node.id] = NodeConfig(
                id=node.id, kind=node.kind, params=node.parsed,
                control_endpoint=self.address, publish_endpoint=publish.get(node.id),
                lossless_endpoint=lossless.get(node.id), inputs=inputs,
                lossless_subscribers=len(readers),
                clock_origin=self.clock_origin, heartbeat_interval=self.heartbeat_interval,
                clock_leader=self.clock_leader, clock_endpoint=self.clock_endpoint,
                spec_dir=spec_dir, topology=self.spec.name,
                extra={**self._checkpoint_extra(node), **self.node_extra.get(node.id, {}),
                       "lossless_token": self.lossless_token, "limits": asdict(node.limits),
                       **({} if node.shm_threshold is None
                          else {"shm_threshold": node.shm_threshold}),
                       "lossless_readers": [d for d, _ in readers], **retention})
        return configs

    def _checkpoint_extra(self, node: Any) -> dict[str, Any]:
        """``run_dir`` and ``checkpoint`` (when and whether) for a node whose kind has a
        ``checkpoint`` field: a restart resumes from ``<run dir>/<id>.checkpoint``."""
        settings = checkpoint_settings(node.parsed, any(e.policy == "lossless"
                                                        for e in node.inputs))
        return {} if settings is None else {"run_dir": str(self.run_dir),
                                            "checkpoint": dict(settings)}

    def _spawn(self, node: NodeProcess) -> None:
        node.incarnation += 1
        config = NodeConfig(**{**node.config.__dict__, "incarnation": node.incarnation})
        path = self.run_dir / f"{node.spec.id}.json"
        # owner-only: it holds the run's lossless token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(config.to_json())
        env = {**os.environ, "PYTHONUNBUFFERED": "1", LAUNCHER_PID_ENV: str(os.getpid())}
        node.proc = None
        if self.fork_server is not None and self.fork_server.alive:
            try:
                node.proc = self.fork_server.spawn(str(path), env, os.getcwd(), node.spec.cpu)
            except ForkServerError as exc:
                self.say("launch", f"node '{node.spec.id}': fork server: {exc}; starting a "
                                   f"new interpreter instead")
        if node.proc is None:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "genki_signals.nodes", "--config", str(path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, bufsize=1, env=env, start_new_session=True)
        node.state, node.finished, node.kill_reason = "starting", False, ""
        node.last_heartbeat = time.monotonic()
        node.stderr_tail.clear()
        if node.spec.cpu:
            import psutil  # here: only a spec pinning cores needs it (start-up time)

            try:
                psutil.Process(node.proc.pid).cpu_affinity(list(node.spec.cpu))
            except (psutil.Error, AttributeError) as exc:
                self.say("launch", f"node '{node.spec.id}': cannot set CPU affinity: {exc}")
        for stream, is_err in ((node.proc.stdout, False), (node.proc.stderr, True)):
            threading.Thread(target=self._pump, args=(node, stream, is_err),
                             daemon=True).start()
        self.say("launch", f"started node '{node.spec.id}' ({node.spec.kind}) pid "
                           f"{node.proc.pid}" + (f", restart {node.incarnation - 1}"
                                                 if node.incarnation > 1 else ""))

    def _pump(self, node: NodeProcess, stream: IO[str], is_err: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if is_err:
                node.stderr_tail.append(line)
            self.say(node.spec.id, line)

    # ------------------------------------------------------------------ run
    def run(self, duration: float | None = None) -> int:
        """Supervise until a stop signal, ``duration`` seconds, or every node has finished.

        Returns the exit code of ``exit_code()``.
        """
        end = None if duration is None else time.monotonic() + duration
        self._install_signal_handlers()
        try:
            while not self._stop_requested:
                if end is not None and time.monotonic() >= end:
                    self.say("launch", f"duration of {duration:g} s reached")
                    break
                self._service(self._supervision_timeout(end))
                if all(not n.alive and n.next_start is None for n in self.nodes.values()):
                    self.say("launch", "every node has finished")
                    break
        finally:
            self.stop()
        return self.exit_code()

    def exit_code(self) -> int:
        """Why the run ended, as a process exit code.

        1: a node failed for good (whatever stopped the run); 128 + N: stopped by signal N
        other than SIGINT (143 for SIGTERM, 129 for SIGHUP: the shell's convention, so a service
        manager can tell a stop from a finished run); 0: ended as asked (Ctrl-C / SIGINT,
        ``--duration``, every node finished).
        """
        if any(n.state == "failed" for n in self.nodes.values()):
            return 1
        if self.stop_signal is not None and self.stop_signal != signal.SIGINT:
            return 128 + int(self.stop_signal)
        return 0

    def request_stop(self) -> None:
        self._stop_requested = True

    def _install_signal_handlers(self) -> None:
        """SIGINT, SIGTERM and SIGHUP all request the same clean stop (main thread only)."""
        if self._previous_handlers or threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, self._on_stop_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)
        self._previous_handlers.clear()

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # a second signal: no more grace
            self.grace = 0.0
        elif self.stop_signal is None:
            self.stop_signal = signum
        self._stop_requested = True

    def _bind_remote_control(self) -> None:
        sock = self.remote_router = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self._remote_guard = secure_server(
            sock, self.remote_security, domain=f"genki-control-remote/{self.spec.name}",
            on_refused=self._count_refused_key)
        try:
            sock.bind(self.remote_address)
        except zmq.ZMQError as exc:
            raise LaunchError(f"topology '{self.spec.name}': cannot bind the remote control "
                              f"address {self.remote_address}: {exc}") from None

    def _control_sockets(self) -> list[zmq.Socket]:
        return [s for s in (self.router, self.remote_router) if s is not None]

    def _supervision_timeout(self, end: float | None) -> float:
        """How long the next round may wait: ``SUPERVISION_TICK`` (``POLL_TICK`` while a node
        not from the fork server runs), at most until a restart or ``end`` is due."""
        now = time.monotonic()
        polled = any(n.alive and not getattr(n.proc, "forked", False)
                     for n in self.nodes.values())
        timeout = POLL_TICK if polled or self.fork_server is None else SUPERVISION_TICK
        for due in [n.next_start for n in self.nodes.values()] + [end]:
            if due is not None:
                timeout = min(timeout, max(0.0, due - now))
        return timeout

    def _wake(self) -> None:
        """Any thread: end the supervision loop's current wait (a forked node exited)."""
        try:
            if self._wake_w is not None:
                os.write(self._wake_w, b"x")
        except OSError:  # full: a wake-up is already pending
            pass

    def _close_wake_pipe(self) -> None:
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for fd in fds:
            if fd is not None:
                os.close(fd)

    def _service(self, timeout: float) -> None:
        """One round: control messages, exits, restarts, heartbeat checks."""
        wake = [] if self._wake_r is None else [self._wake_r]
        ready, _, _ = zmq.select(self._control_sockets() + wake, [], [], timeout)
        if wake and self._wake_r in ready:
            ready.remove(self._wake_r)
            try:
                while os.read(self._wake_r, 512):
                    pass
            except OSError:  # drained (EAGAIN)
                pass
        for sock in ready:
            while sock.poll(0):
                frames = sock.recv_multipart(copy=False)
                if len(frames) == 2:
                    self._on_control(frames[0].bytes, frames[1].bytes, peer_role(frames[1]),
                                     sock)
        now = time.monotonic()
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is not None and node.state not in (
                    "exited", "failed", "stopped", "waiting-restart"):
                self._on_exit(node)
            if node.next_start is not None and now >= node.next_start and \
                    not self._stop_requested:
                node.next_start = None
                self._spawn(node)
            if node.alive and node.state == "ready" and \
                    now - node.last_heartbeat > 3 * self.heartbeat_interval + self.grace:
                node.kill_reason = (f"unresponsive: no heartbeat for "
                                    f"{now - node.last_heartbeat:.1f} s")
                self._kill_group(node)

    def _count_refused_key(self) -> None:  # from the ZAP handler's thread
        self.refused_keys += 1

    def _on_control(self, identity: bytes, data: bytes, role: str | None = None,
                    sock: zmq.Socket | None = None) -> None:
        msg = control.unpack(data)
        if msg is None:
            return
        kind = msg["type"]
        if not control.allowed(kind, role):  # a read-only key (remote plot) sent a command
            self.refused_control += 1
            return
        if kind == "directory":
            (sock or self.router).send_multipart(
                [identity, control.pack("directory", **self.directory())])
            return
        node = self.nodes.get(identity.decode(errors="replace"))
        if node is None:
            return
        node.last_heartbeat = time.monotonic()
        if kind == "ready":
            node.state = "ready"
            node.consecutive_failures = 0
        elif kind == "heartbeat":
            node.stats = msg.get("stats") or {}
        elif kind == "log":
            level = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
            text = str(msg.get("message", ""))
            if level.get(msg.get("level"), "") in ("ERROR", "CRITICAL"):
                node.stderr_tail.extend(text.splitlines()[-STDERR_TAIL_LINES:])
            self.say(node.spec.id, f"{level.get(msg.get('level'), 'LOG')} {text}")
        elif kind == "bye":
            node.finished = True
            node.state = "finishing"

    # ------------------------------------------------------------------ exits
    def _on_exit(self, node: NodeProcess) -> None:
        code = node.proc.returncode
        if node.kill_reason:
            cause = node.kill_reason
        elif code < 0:
            cause = f"killed by signal {signal.Signals(-code).name}"
        else:
            cause = f"exited with code {code}"
        failed = code != 0
        if failed and node.stderr_tail and not node.kill_reason:
            cause += "; stderr tail:\n    " + "\n    ".join(node.stderr_tail)
        node.exit_cause = cause
        policy = node.spec.restart
        # A node that fails while the topology starts fails the launch: restarting a bad
        # config or a missing device only delays the error.
        restart = not self._stop_requested and not self._starting and (
            policy.policy == "always" or (policy.policy == "on-failure" and failed))
        if restart:
            now = time.monotonic()
            while node.restart_times and now - node.restart_times[0] > policy.window:
                node.restart_times.popleft()
            if len(node.restart_times) >= policy.max_restarts:
                node.state = "failed"
                self.say("launch", f"node '{node.spec.id}' {cause}; restart budget of "
                                   f"{policy.max_restarts} in {policy.window:g} s exhausted: "
                                   f"giving up")
                return
            node.restart_times.append(now)
            node.consecutive_failures += 1 if failed else 0
            delay = min(policy.backoff * 2 ** max(node.consecutive_failures - 1, 0),
                        MAX_BACKOFF)
            node.next_start = now + delay
            node.state = "waiting-restart"
            self.say("launch", f"node '{node.spec.id}' {cause}; restarting in {delay:.2f} s "
                               f"({policy.policy})")
            return
        node.state = "failed" if failed and not self._stop_requested else (
            "stopped" if self._stop_requested else "exited")
        self.say("launch", f"node '{node.spec.id}' {cause}")

    def _kill_group(self, node: NodeProcess) -> None:
        if node.proc is None:
            return
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop request to every node, wait ``grace`` seconds, SIGKILL what is left."""
        if self._stopped:
            return
        self._stopped = True
        self._stop_requested = True
        self._starting = False
        if not self._owns_run_dir:  # refused before binding anything: nothing of ours runs
            self._close_fork_server()
            self._close_wake_pipe()
            self._restore_signal_handlers()
            return
        if self.stop_signal is not None:
            self.say("launch", f"stopping: received {signal.Signals(self.stop_signal).name}")
        for node in self.nodes.values():
            node.next_start = None
            if node.alive:  # over whichever socket the node is connected to (one drops it)
                for sock in self._control_sockets():
                    sock.send_multipart([node.spec.id.encode(), control.pack("stop")])
            if node.alive and node.state == "starting":
                # not connected yet, so the stop message is lost: SIGTERM (the runner's clean
                # stop, or the default action before its handler is installed)
                try:
                    node.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.grace
        while any(n.alive for n in self.nodes.values()) and time.monotonic() < deadline:
            self._service(0.05)
        for node in self.nodes.values():
            if node.alive:
                node.kill_reason = f"killed after {self.grace:g} s grace (did not stop)"
                self._kill_group(node)
                try:
                    node.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if node.proc is not None:
                self._kill_group(node)  # whatever the node itself started
                if node.proc.poll() is not None and node.state not in (
                        "exited", "failed", "stopped"):
                    self._on_exit(node)
        self._close_fork_server()
        self._close_wake_pipe()
        if self.router is not None:
            self.router.close(linger=0)
            self.router = None
        if self._control_guard is not None:
            self._control_guard.release()
            self._control_guard = None
        if self.remote_router is not None:
            self.remote_router.close(linger=0)
            self.remote_router = None
        if self._remote_guard is not None:
            self._remote_guard.release()
            self._remote_guard = None
        if self.time_server is not None:
            self.time_server.close()
            self.time_server = None
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.say("launch", "stopped")
        self._restore_signal_handlers()

    def _close_fork_server(self) -> None:
        if self.fork_server is not None:
            self.fork_server.on_exit = None  # before the wake-up pipe closes
            self.fork_server.close()
            self.fork_server = None

    # ------------------------------------------------------------------ directory
    def directory(self) -> dict[str, Any]:
        """What tools see: nodes, topics, endpoints and health (read-only)."""
        now = time.monotonic()
        nodes = []
        topics: dict[str, dict[str, str | None]] = {}
        for node in self.nodes.values():
            cfg = node.config
            published = node.stats.get("topics") or [topic_for(node.spec.id)]
            if cfg.publish_endpoint:
                for t in published:
                    topics[t] = {"node": node.spec.id, "endpoint": cfg.publish_endpoint,
                                 "lossless_endpoint": cfg.lossless_endpoint}
            nodes.append({
                "id": node.spec.id, "kind": node.spec.kind, "state": node.state,
                "pid": node.proc.pid if node.proc else None,
                "restarts": node.incarnation - 1 if node.incarnation else 0,
                "endpoint": cfg.publish_endpoint, "lossless_endpoint": cfg.lossless_endpoint,
                "inputs": [e.node for e in cfg.inputs], "topics": published,
                "heartbeat_age": now - node.last_heartbeat if node.proc else None,
                "exit_cause": node.exit_cause, "stats": node.stats,
            })
        return {"topology": self.spec.name, "address": self.address,
                "remote_address": self.remote_address,
                "public_key": None if self.remote_security is None
                else self.remote_security.keypair.public.decode(),
                "spec": self.spec.to_dict(),  # recorders store it with the frames
                "clock_origin": self.clock_origin, "wall_anchor": self.wall_anchor,
                "clock": {"leader": self.clock_leader, "endpoint": self.clock_endpoint,
                          "origin": self.clock_origin, "wall_anchor": self.wall_anchor},
                "nodes": nodes, "topics": topics,
                "refused": {"control_messages": self.refused_control,
                            "keys": self.refused_keys}}


def _silence(out: IO[str]) -> None:
    """Point a dead output stream at /dev/null, so that later writes and the interpreter's
    final flush of ``sys.stdout`` cannot raise ``BrokenPipeError`` either."""
    try:
        fd = out.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
