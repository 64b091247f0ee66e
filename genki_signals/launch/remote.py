"""The launching host of a multi-host topology: its own share, plus every other host's over ssh.

``MultiHostLauncher`` runs the ``start: local`` host's share (a ``HostLauncher``) and, for each
``start: ssh`` host, one ``RemoteShare``: ``ssh -tt HOST 'genki launch SPEC --host NAME ...'``.

* **One session per host.** ``-tt`` gives the remote share a terminal: when the ssh session
  ends for any reason (this launcher stopped or killed, the link lost), the remote share gets
  SIGHUP and stops its nodes, which never outlive their share (``nodes.parent_watch``). No
  remote process outlives the session. The ssh client runs under ``setpriv --pdeathsig TERM``
  (util-linux) when present, so it never outlives this launcher either.
* **The spec travels with the command** (base64 JSON of the validated spec), so the remote
  host needs the package but not the file; relative paths in params resolve against the host's
  ``workdir``.
* **Logs stream back** through the session: every line a remote share prints is re-printed
  here as ``[HOST/NODE] text``.
* **Stop.** A Ctrl-C character written into the session's terminal is the remote share's
  SIGINT: it stops its nodes with its grace period and prints why; then the session ends.
  Ssh clients still running after that are terminated, then killed (by PID).
* **Health.** Every share answers a read-only directory on its host's tcp address; this
  launcher polls each one (a background thread) and serves the merged directory (every host's
  nodes, with ``host``) on its ipc control address and on its own tcp directory address.
* **A host that drops out** (its ssh session ended while the topology runs) is reported
  ``down`` with the ssh exit status and stderr tail; the session is retried with doubling
  backoff (at most ``MAX_RECONNECT_BACKOFF`` s) and, when it succeeds, the host's nodes start
  again, except those with ``restart: never``.
* ``start: manual`` hosts are only polled (``genki launch SPEC --host NAME`` runs them).
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zmq

from genki_signals.bus import control
from genki_signals.clocksync.sync import TEST_CLOCK_ENV
from genki_signals.errors import GenkiError
from genki_signals.launch.hosts import HostSpec, local_host
from genki_signals.launch.launcher import LaunchError
from genki_signals.launch.share import RUN_TOKEN_ENV, HostLauncher
from genki_signals.launch.spec import TopologySpec

__all__ = ["MultiHostLauncher", "RemoteShare", "ssh_command"]

log = logging.getLogger(__name__)

MAX_RECONNECT_BACKOFF = 5.0
POLL_INTERVAL = 0.5
FORWARDED_ENV = (TEST_CLOCK_ENV,)  # test-only clock injection reaches the remote nodes too
_LINE = re.compile(r"^\[([^\]]+)\] ?(.*)$")


def ssh_command(host: HostSpec, remote_argv: list[str], env: dict[str, str]) -> list[str]:
    """The ssh client's argv that runs ``remote_argv`` on ``host`` in a terminal (``-tt``)."""
    cmd = ["ssh", "-tt", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=1",
           "-o", "ServerAliveCountMax=3", "-o", "ConnectTimeout=5", "-p", str(host.ssh.port)]
    if host.ssh.identity:
        cmd += ["-i", os.path.expanduser(host.ssh.identity)]
    for option in host.ssh.options:
        cmd += ["-o", option]
    target = f"{host.ssh.user}@{host.address}" if host.ssh.user else host.address
    assignments = [f"{k}={v}" for k, v in env.items()]
    shell = " ".join(shlex.quote(a) for a in ["env", *assignments, *remote_argv])
    if host.workdir:
        shell = f"cd {shlex.quote(host.workdir)} && exec {shell}"
    else:
        shell = f"exec {shell}"
    return [*cmd, target, "--", shell]


@dataclass
class RemoteShare:
    """One ssh host's share: its session process, state and last directory."""

    host: HostSpec
    state: str = "pending"  # pending starting up down stopped manual
    proc: subprocess.Popen | None = None
    sessions: int = 0
    next_start: float | None = None
    backoff: float = 0.5
    since: float = field(default_factory=time.monotonic)
    stderr_tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=8))
    directory: dict[str, Any] | None = None
    directory_time: float = 0.0
    down_cause: str = ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class MultiHostLauncher(HostLauncher):
    """Starts and supervises every host's share of ``spec`` (see the module docstring)."""

    def __init__(self, spec: TopologySpec, *, run_dir: str | Path | None = None,
                 control_address: str | None = None, out: IO[str] | None = None,
                 grace: float = 3.0, ready_timeout: float = 30.0,
                 heartbeat_interval: float = 1.0) -> None:
        local = local_host(spec.hosts)
        if local is None:
            raise LaunchError(f"topology '{spec.name}': no host has 'start: local'")
        super().__init__(spec, local.name, run_dir=run_dir, control_address=control_address,
                         out=out, grace=grace, ready_timeout=ready_timeout,
                         heartbeat_interval=heartbeat_interval)
        self.shares = {h.name: RemoteShare(h, state="manual" if h.start == "manual" else
                                           "pending")
                       for h in spec.hosts.values() if h.start != "local"}
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        self._bind_share_sockets()  # the tcp time server must answer the remote nodes
        self._poller = threading.Thread(target=self._poll_shares, daemon=True,
                                        name="genki-share-poll")
        self._poller.start()
        try:
            for share in self.shares.values():
                if share.host.start == "ssh":
                    self._start_share(share)
            super().start()  # binds the share sockets again only if closed: see below
            self._starting = True
            self._wait_for_shares()
            self._starting = False
        except BaseException:
            self.stop()
            raise

    def _bind_share_sockets(self) -> None:
        if self.directory_socket is None:
            super()._bind_share_sockets()

    def _wait_for_shares(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        waiting = [s for s in self.shares.values() if s.host.start == "ssh"]
        while waiting:
            if self._stop_requested:
                return
            for share in waiting:
                if share.proc is not None and share.proc.poll() is not None:
                    raise LaunchError(f"host '{share.host.name}' failed to start: "
                                      f"{self._session_end(share)}")
            waiting = [s for s in waiting if not self._share_ready(s)]
            if waiting and time.monotonic() > deadline:
                raise LaunchError(f"hosts not ready after {self.ready_timeout:g} s: "
                                  f"{', '.join(s.host.name for s in waiting)}")
            self._service(0.05)
        self.say("launch", "all hosts ready")

    def _share_ready(self, share: RemoteShare) -> bool:
        d = share.directory
        if d is None or time.monotonic() - share.directory_time > 2.0 or \
                d.get("session") != share.sessions:
            return False
        states = [n["state"] for n in d.get("nodes", [])]
        if share.state == "starting" and all(s == "ready" for s in states):
            share.state = "up"
            share.backoff = 0.5
            self.say("launch", f"host '{share.host.name}' up: {len(states)} nodes ready")
        return share.state == "up"

    def _start_share(self, share: RemoteShare) -> None:
        share.sessions += 1
        host = share.host
        skip = [n.id for n in self.spec.nodes if n.host == host.name
                and share.sessions > 1 and n.restart.policy == "never"]
        spec_path = Path(host.workdir or (self.spec.path.parent if self.spec.path else "."),
                         self.spec.path.name if self.spec.path else f"{self.spec.name}.yaml")
        data = base64.b64encode(json.dumps(self.spec.to_dict()).encode()).decode()
        argv = [host.python, "-m", "genki_signals", "launch", str(spec_path),
                "--host", host.name, "--spec-data", data, "--grace", f"{self.grace:g}",
                "--session", str(share.sessions)]
        if skip:
            argv += ["--skip", ",".join(skip)]
        env = dict(host.env)
        if not self.host_keys:  # no CURVE (loopback): cross-host lossless readers need the token
            env[RUN_TOKEN_ENV] = self.lossless_token
        env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
        cmd = ssh_command(host, argv, env)
        setpriv = shutil.which("setpriv")  # util-linux: the ssh client dies with this launcher
        if setpriv:
            cmd = [setpriv, "--pdeathsig", "TERM", *cmd]
        share.stderr_tail.clear()
        share.directory = None
        share.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        share.state, share.since = "starting", time.monotonic()
        for stream, is_err in ((share.proc.stdout, False), (share.proc.stderr, True)):
            threading.Thread(target=self._pump_share, args=(share, stream, is_err),
                             daemon=True).start()
        self.say("launch", f"starting host '{host.name}' over ssh ({host.address}, session "
                           f"{share.sessions}) pid {share.proc.pid}"
                 + (f", not restarting {', '.join(skip)} (restart: never)" if skip else ""))

    def _pump_share(self, share: RemoteShare, stream: IO[bytes], is_err: bool) -> None:
        name = share.host.name
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
            if not line or line == "^C":  # the terminal echoes our Ctrl-C
                continue
            if is_err:
                share.stderr_tail.append(line)
                self.say(name, line)
                continue
            m = _LINE.match(line)
            if m:
                self.say(f"{name}/{m[1]}", m[2])
            else:
                self.say(name, line)

    # ------------------------------------------------------------------ health
    def _poll_shares(self) -> None:
        """Ask every remote share for its directory (its tcp directory address)."""
        while not self._poll_stop.wait(POLL_INTERVAL):
            for share in list(self.shares.values()):
                address = share.host.reach_endpoint(share.host.directory_port)
                try:
                    d = control.request(address, "directory", timeout=POLL_INTERVAL,
                                        security=self.client_keys(share.host.name))
                except (TimeoutError, GenkiError, zmq.ZMQError) as exc:
                    log.debug("host '%s': no directory: %s", share.host.name, exc)
                    continue
                if self._poll_stop.is_set():
                    return
                share.directory, share.directory_time = d, time.monotonic()

    def _service(self, timeout: float) -> None:
        super()._service(timeout)
        if not self._stop_requested:
            self._supervise_shares()

    def _supervise_shares(self) -> None:
        now = time.monotonic()
        for share in self.shares.values():
            if share.host.start == "manual":
                fresh = share.directory is not None and now - share.directory_time < 3.0
                state = "up" if fresh else "manual"
                if state != share.state:
                    self.say("launch", f"manual host '{share.host.name}' "
                                       f"{'up' if fresh else 'not answering'}")
                    share.state = state
                continue
            if share.state == "starting" and not self._starting:
                self._share_ready(share)
            if share.proc is not None and share.proc.poll() is not None and \
                    share.state in ("starting", "up") and not self._starting:
                share.down_cause = self._session_end(share)
                share.state, share.since = "down", now
                share.next_start = now + share.backoff
                self.say("launch", f"host '{share.host.name}' down: {share.down_cause}; "
                                   f"retrying in {share.backoff:.1f} s")
                share.backoff = min(share.backoff * 2, MAX_RECONNECT_BACKOFF)
            if share.state == "down" and share.next_start is not None and \
                    now >= share.next_start:
                share.next_start = None
                self._start_share(share)

    def _session_end(self, share: RemoteShare) -> str:
        code = share.proc.returncode if share.proc is not None else None
        cause = (f"ssh killed by signal {signal.Signals(-code).name}" if code is not None
                 and code < 0 else f"ssh exited with code {code}")
        if share.stderr_tail:
            cause += " (" + " | ".join(share.stderr_tail) + ")"
        return cause

    def _all_finished(self) -> bool:
        local_done = all(not n.alive and n.next_start is None for n in self.nodes.values())
        remote_done = all(
            s.state in ("down", "stopped", "manual") or (
                s.directory is not None and s.directory.get("finished"))
            for s in self.shares.values() if s.host.start == "ssh")
        return local_done and remote_done and not any(
            s.state == "down" for s in self.shares.values())

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        if self._stopped:
            return
        self._stop_requested = True
        for share in self.shares.values():  # Ctrl-C into each session: the share's SIGINT
            share.next_start = None
            if share.alive:
                try:
                    share.proc.stdin.write(b"\x03")
                    share.proc.stdin.flush()
                except (BrokenPipeError, ValueError, OSError):
                    pass
        super().stop()  # the local share
        deadline = time.monotonic() + self.grace + 3.0
        while any(s.alive for s in self.shares.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for share in self.shares.values():
            if share.alive:  # the session did not end: hang it up (remote SIGHUP), then kill
                share.proc.terminate()
                try:
                    share.proc.wait(timeout=3.0)
                except subprocess.TimeoutExpired:
                    share.proc.kill()
                    share.proc.wait(timeout=3.0)
            if share.proc is not None:
                for stream in (share.proc.stdin, share.proc.stdout, share.proc.stderr):
                    try:
                        stream.close()
                    except (OSError, ValueError):
                        pass
            if share.state != "manual":
                share.state = "stopped"
        self._poll_stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2.0)
        self.say("launch", "every host stopped")

    # ------------------------------------------------------------------ directory
    def directory(self, remote: bool = False) -> dict[str, Any]:
        """Every host's nodes and topics (the remote ones as their share last reported)."""
        d = super().directory(remote=remote)
        now = time.monotonic()
        hosts = [{"name": self.host.name, "start": "local", "state": "up",
                  "address": self.host.address, "pid": os.getpid()}]
        for share in self.shares.values():
            hosts.append({"name": share.host.name, "start": share.host.start,
                          "state": share.state, "address": share.host.address,
                          "pid": share.proc.pid if share.proc is not None else None,
                          "sessions": share.sessions, "down_cause": share.down_cause,
                          "since": now - share.since})
            sd = share.directory if share.state in ("up", "starting") else None
            if sd is not None and now - share.directory_time < 3.0:
                d["nodes"].extend(sd.get("nodes", []))
                d["topics"].update(sd.get("topics", {}))
            else:
                for node in self.spec.nodes:
                    if node.host == share.host.name:
                        d["nodes"].append({
                            "id": node.id, "kind": node.kind, "host": share.host.name,
                            "state": f"host-{share.state}", "pid": None, "restarts": 0,
                            "endpoint": None, "lossless_endpoint": None, "inputs": [
                                e.node for e in node.inputs], "topics": [],
                            "heartbeat_age": None, "exit_cause": share.down_cause,
                            "stats": {}})
        d["hosts"] = hosts
        return d
