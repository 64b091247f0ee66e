"""One host's share of a multi-host topology: the launcher of the nodes placed on one host.

``HostLauncher`` is the single-host ``Launcher`` (start, supervise, restart, stop: unchanged)
restricted to the nodes whose ``host`` is this one, with endpoints from ``launch.placement``:
ipc to its own nodes, tcp to the others. On top of that it binds, on its host's tcp bind
address:

* a read-only *directory* socket (``ports``): answers ``directory`` requests, with tcp
  endpoints, and nothing else. The launching host polls every share there, and tools on
  another machine (``genki echo tcp://HOST:PORT TOPIC``, ``genki top``, ``RemoteBuffer``)
  attach there. Stop requests and node messages are only accepted on the share's ipc control
  socket, i.e. from the host itself;
* on the clock leader's host, a second time server on tcp (``ports + 1``) answering the other
  hosts' nodes (the launcher's own ipc one keeps serving the local nodes).

The share on the launching host is ``launch.remote.MultiHostLauncher``, which starts the others.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import zmq

from genki_signals.bus import control
from genki_signals.bus.security import (
    ClientKeys,
    ServerGuard,
    ServerKeys,
    needs_keys,
    resolve_access,
    secure_server,
)
from genki_signals.clocksync.sync import TimeServer, injected_skew, local_clock
from genki_signals.launch.hosts import _from, host_keypair, host_public_key, local_host
from genki_signals.launch.launcher import Launcher, LaunchError, _silence
from genki_signals.launch.placement import Placement, share_run_dir
from genki_signals.launch.spec import TopologySpec
from genki_signals.nodes.config import InputEdge, NodeConfig

__all__ = ["RUN_TOKEN_ENV", "HostLauncher"]

RUN_TOKEN_ENV = "GENKI_RUN_TOKEN"
"""The run's lossless-reader token, shared by every host's share (the launching host hands it
to the ssh shares; set it by hand for a manual share with cross-host lossless edges)."""


class HostLauncher(Launcher):
    """Runs the nodes of ``spec`` placed on ``host`` (see the module docstring)."""

    def __init__(self, spec: TopologySpec, host: str, *, run_dir: str | Path | None = None,
                 control_address: str | None = None, out: IO[str] | None = None,
                 grace: float = 3.0, ready_timeout: float = 20.0,
                 heartbeat_interval: float = 1.0, skip: Iterable[str] = (),
                 session: int = 0) -> None:
        """``skip``: nodes of this host not to start; ``session``: which ssh session of the
        launching host started this share (its directory says so)."""
        if host not in spec.hosts:
            raise LaunchError(f"topology '{spec.name}' has no host '{host}' "
                              f"(hosts: {', '.join(spec.hosts) or 'none'})")
        run_dir = Path(run_dir) if run_dir else share_run_dir(spec, host)
        super().__init__(spec, run_dir=run_dir, control_address=control_address, out=out,
                         grace=grace, ready_timeout=ready_timeout,
                         heartbeat_interval=heartbeat_interval)
        self.host = spec.hosts[host]
        self.placement = Placement(spec, {host: run_dir})
        self.skip = frozenset(skip)
        self.session = session
        self.share_ids = [n.id for n in spec.nodes if n.host == host and n.id not in self.skip]
        token = os.environ.get(RUN_TOKEN_ENV)
        if token:
            self.lossless_token = token
        self.ipc_clock = self.clock_endpoint
        self.clock_endpoint, self.clock_bind = self.placement.clock_endpoints(host, self.ipc_clock)
        local = local_host(spec.hosts)
        if self.clock_leader == "launcher" and local is not None and host != local.name:
            # not this launcher: the launching host's one (its nodes probe it over tcp)
            self.clock_leader = f"launcher@{local.name}"
            self.clock_bind = None
        self._setup_keys()
        self.tcp_time_server: TimeServer | None = None
        self.directory_socket: zmq.Socket | None = None
        self._directory_guard: ServerGuard | None = None
        self.directory_address = self.host.reach_endpoint(self.host.directory_port)
        self.refused_requests = 0

    def _setup_keys(self) -> None:
        """CURVE keys of this share: every host's public key, the allow-list (``access:`` plus
        every host as ``control``) and this host's key pair (read here, on this host)."""
        base = self.spec.path.parent if self.spec.path is not None else None
        self.host_keys: dict[str, bytes] = {}
        for name, h in self.spec.hosts.items():
            key = host_public_key(h, base)
            if key is not None:
                self.host_keys[name] = key
        self.keypair = host_keypair(self.host, base) if self.host.secret_file else None
        self.secret_path = (os.path.abspath(os.path.expanduser(
            _from(self.host.secret_file, base))) if self.host.secret_file else None)
        self.allow = resolve_access(self.spec.access, self.host_keys.values(), base)
        self.server_keys = ServerKeys(self.keypair, self.allow) if self.keypair else None

    def client_keys(self, host: str) -> ClientKeys | None:
        """This host's keys to reach ``host``'s sockets (None: no keys there or here)."""
        if self.keypair is None or host not in self.host_keys:
            return None
        return ClientKeys(self.keypair, self.host_keys[host])

    def say(self, node: str, text: str) -> None:
        """As ``Launcher.say``; a terminal that hung up (the ssh session of this share is gone:
        EIO) silences the output instead of breaking the stop that follows."""
        try:
            super().say(node, text)
        except OSError:
            self._out_closed = True
            _silence(self.out)

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        self._bind_share_sockets()
        try:
            super().start()
        except BaseException:
            self._close_share_sockets()
            raise

    def _bind_share_sockets(self) -> None:
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        endpoint = self.host.bind_endpoint(self.host.directory_port)
        needs_keys(self.directory_address, self.server_keys,
                   f"host '{self.host.name}': directory")
        if self.server_keys is not None:  # read and control keys may ask for the directory
            self._directory_guard = secure_server(
                sock, self.server_keys, domain=f"genki-share/{self.spec.name}/{self.host.name}")
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if self._directory_guard is not None:
                self._directory_guard.release()
                self._directory_guard = None
            raise LaunchError(f"host '{self.host.name}': cannot bind the directory endpoint "
                              f"{endpoint}: {exc} (is this host's share already running?)"
                              ) from None
        self.directory_socket = sock
        if self.clock_leader == "launcher" and self.clock_bind is not None:
            try:
                self.tcp_time_server = TimeServer(
                    self.clock_bind, local_clock(self.clock_origin, injected_skew("launcher")),
                    self.context, security=self.server_keys).start()
            except zmq.ZMQError as exc:
                self._close_share_sockets()
                raise LaunchError(f"host '{self.host.name}': cannot bind the clock endpoint "
                                  f"{self.clock_bind}: {exc}") from None

    def _close_share_sockets(self) -> None:
        if self.directory_socket is not None:
            self.directory_socket.close(linger=0)
            self.directory_socket = None
        if self._directory_guard is not None:
            self._directory_guard.release()
            self._directory_guard = None
        if self.tcp_time_server is not None:
            self.tcp_time_server.close()
            self.tcp_time_server = None

    def _preflight(self) -> None:
        from genki_signals.data_sources.registry import preflight_source

        problems = [f"node '{node.id}' ({node.parsed.type}): {problem}"
                    for node in self.spec.nodes
                    if node.id in self.share_ids and node.kind == "source"
                    and (problem := preflight_source(node.parsed))]
        if problems:
            raise LaunchError(f"host '{self.host.name}' of topology '{self.spec.name}' cannot "
                              f"start, nothing was started there:\n  " + "\n  ".join(problems))

    def _resolve(self) -> dict[str, NodeConfig]:
        """This host's nodes only; endpoints per edge from the placement."""
        configs = super()._resolve()  # the single-host answers, then per-host corrections
        out: dict[str, NodeConfig] = {}
        place = self.placement
        for node_id in self.share_ids:
            cfg = configs[node_id]
            node = self.spec.node(node_id)
            ep = place.endpoints.get(node_id)
            inputs = tuple(
                InputEdge(node=e.node, endpoint=place.input_endpoint(
                    node_id, e.node, e.policy == "lossless"), topics=e.topics, policy=e.policy,
                    maxlen=e.maxlen, streams=e.streams)
                for e in cfg.inputs)
            extra = dict(cfg.extra)
            remote_readers = [d for d in self.spec.downstream(node_id) if d.host != node.host]
            if ep is not None:
                extra["remote_endpoint"] = ep.tcp_bind
                if ep.tcp_lossless_bind and any(
                        e.node == node_id and e.policy == "lossless"
                        for d in remote_readers for e in d.inputs):
                    extra["remote_lossless_endpoint"] = ep.tcp_lossless_bind
            if self.secret_path is not None:  # CURVE across hosts (nodes.host_keys)
                upstream_hosts = {e.node: self.spec.node(e.node).host for e in cfg.inputs}
                clock_host = (self.placement.local.name if self.spec.clock_leader in (
                    None, "launcher") else self.spec.node(self.spec.clock_leader).host)
                extra["curve"] = {
                    "secret_file": self.secret_path,
                    "allow": {k.decode(): role for k, role in self.allow.items()},
                    "upstream": {n: self.host_keys[h].decode() for n, h in
                                 upstream_hosts.items() if h != node.host and h in self.host_keys},
                    "clock": self.host_keys[clock_host].decode()
                    if clock_host in self.host_keys else None}
            leader_here = self.clock_leader == node_id
            out[node_id] = NodeConfig(**{
                **cfg.__dict__, "inputs": inputs, "extra": extra,
                "publish_endpoint": ep.ipc if ep else None,
                "lossless_endpoint": ep.ipc_lossless if ep else None,
                "clock_leader": self.clock_leader,
                "clock_endpoint": self.clock_bind if leader_here else self.clock_endpoint})
        return out

    # ------------------------------------------------------------------ run
    def run(self, duration: float | None = None) -> int:
        """As ``Launcher.run``; the run ends when every node of every share has finished."""
        end = None if duration is None else time.monotonic() + duration
        self._install_signal_handlers()
        try:
            while not self._stop_requested:
                if end is not None and time.monotonic() >= end:
                    self.say("launch", f"duration of {duration:g} s reached")
                    break
                self._service(0.05)
                if self._all_finished():
                    self.say("launch", "every node has finished")
                    break
        finally:
            self.stop()
        return self.exit_code()

    def _all_finished(self) -> bool:
        return bool(self.nodes) and all(not n.alive and n.next_start is None
                                        for n in self.nodes.values())

    def _service(self, timeout: float) -> None:
        self._answer_directory()
        super()._service(timeout)

    def _answer_directory(self) -> None:
        sock = self.directory_socket
        while sock is not None and sock.poll(0):
            frames = sock.recv_multipart()
            msg = control.unpack(frames[-1]) if len(frames) == 2 else None
            if msg is None or msg["type"] != "directory":
                self.refused_requests += 1  # read-only: no stop, no node messages here
                continue
            sock.send_multipart([frames[0], control.pack("directory",
                                                         **self.directory(remote=True))])

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self.stop_signal == signal.SIGHUP and not self._stopped and self.router is not None:
            # The session that started this share hung up (the link to the launching host
            # was lost, or it was killed): the other hosts' nodes wait for this host to come
            # back, so the nodes stop without sending end-of-stream downstream.
            self.say("launch", "session lost: stopping without end-of-stream")
            for node in self.nodes.values():
                if node.alive:
                    self.router.send_multipart([node.spec.id.encode(),
                                                control.pack("stop", eos=False)])
        try:
            super().stop()
        finally:
            self._close_share_sockets()

    # ------------------------------------------------------------------ directory
    def directory(self, remote: bool = False) -> dict[str, Any]:
        """The single-host directory plus each node's host; ``remote``: tcp endpoints only
        (what a reader on another host can connect to)."""
        d = super().directory()
        d["host"] = self.host.name
        d["session"] = self.session
        d["finished"] = bool(self.nodes) and all(not n.alive and n.next_start is None
                                                 for n in self.nodes.values())
        d["directory_address"] = self.directory_address
        for n in d["nodes"]:
            n["host"] = self.host.name
        if self.host.name in self.host_keys:
            d["public_key"] = self.host_keys[self.host.name].decode()
        if remote:
            d["address"] = self.directory_address
            d["clock"] = {**d["clock"], "endpoint": self.placement.clock_endpoints(
                "", self.ipc_clock)[0] if self.spec.clock_leader not in (None, "launcher")
                else self.placement.local.reach_endpoint(self.placement.local.clock_port)}
            for entry in [*d["nodes"], *d["topics"].values()]:
                node_id = entry.get("id") or entry.get("node")
                ep = self.placement.endpoints.get(node_id)
                entry["endpoint"] = ep.tcp_reach if ep else None
                entry["lossless_endpoint"] = ep.tcp_lossless_reach if ep else None
                key = self.host_keys.get(self.spec.node(node_id).host)
                entry["public_key"] = key.decode() if key is not None else None
        return d
