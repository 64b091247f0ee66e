"""The fork server: a pre-warmed interpreter that forks one child per node on request.

A node started as ``python -m genki_signals.nodes`` spends most of its start-up importing numpy,
scipy, pyzmq, msgpack, pydantic and the genki modules (seconds on a small machine), and each
node holds its own copy of those pages. The fork server imports them once; each node is a
``fork()`` of it, so it starts with everything imported and shares those pages copy-on-write.
The launcher's restarts go through the same server.

How the server comes to be (``start_fork_server``):

* ``fork`` of the launcher itself, when the launcher has no other Python thread yet. The
  child drops everything of the launcher it must not use (stdio, file descriptors, signal
  handlers) and becomes the server. ``genki launch`` forks it first thing (``cli.main``), before
  importing the CLI and checking the spec, so that the server's imports run alongside; once the
  spec has passed, the launcher sends it the modules the check imported (a ``sys.modules``
  diff: e.g. ``scipy.signal`` for a filter), which it imports before its first fork
  (``ForkServer.preload``). No node is forked before the check has passed.
* otherwise (the launcher runs inside a program with threads, e.g. a test runner or a
  notebook) a fresh ``python -m genki_signals.launch.forkserver`` that imports the preload list
  itself: forking a multi-threaded process is not safe.

Either way the server has no thread of its own and never creates a ZeroMQ context: every node
makes its own after the fork. (OpenBLAS's worker threads, started when numpy loads, are shut
down around ``fork()`` by OpenBLAS's own ``pthread_atfork`` handlers.)

Per node the launcher sends, over a ``SOCK_SEQPACKET`` socket pair, one JSON request (config
path, environment, working directory, cores) with the write ends of the node's stdout and
stderr pipes attached (``SCM_RIGHTS``). The server forks; the child makes its own session
(``setsid``: its own process group, as before), pins itself to its cores, asks for SIGTERM when
the server dies (``parent_watch``), points its stdio at the pipes, then runs the node as
``python -m genki_signals.nodes`` would and exits with its code. The server answers with the
child's pid once the child has its own session (so ``killpg`` works at once), reaps children on
SIGCHLD and reports each exit status (the launcher is not the parent, so it cannot wait for
them itself: ``ForkedProcess`` is the ``subprocess.Popen`` stand-in that learns of exits this
way).

Death: the server asks for SIGKILL when the launcher's starting thread dies (PDEATHSIG) and
also exits when the launcher's end of the socket closes; its nodes then get their own SIGTERM
(their parent, the server, died) and the parent watch's hard deadline, as before: no node
outlives the launcher.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import IO, Any

from genki_signals.nodes.parent_watch import ORPHAN_EXIT_CODE, set_parent_death_signal

__all__ = [
    "PRELOAD",
    "RECORDING_PRELOAD",
    "START_METHOD_ENV",
    "ForkServer",
    "ForkServerError",
    "ForkedProcess",
    "preload_spec_kinds",
    "preloadable",
    "start_fork_server",
    "start_method",
]

START_METHOD_ENV = "GENKI_NODE_START"  # "fork" (default): the fork server; "spawn": a new python
MAX_MESSAGE = 1 << 20  # one request or reply (JSON); an environment is a few KiB
PRELOAD_TIMEOUT = 120.0  # s a spawn waits for a new server's imports (long on a loaded machine)
REPLY_TIMEOUT = 30.0  # s a spawn waits for its fork once the server is ready

# What the server imports before its first fork: what every node needs. Not scipy.signal (over a
# second to import, and the demo's nodes never use it): a spec whose operators need it imports
# it in the spec check, and the launcher has the server preload what the check imported
# (``ForkServer.preload``). Kinds that use a device library (pynput, sounddevice, bleak, ONNX
# Runtime, bokeh) import it in the child, after the fork, as a fresh interpreter would: those
# libraries start threads or open devices on import.
# What only recorder and replay nodes use (~0.1 s of the server's imports): a server that knows
# its spec (``start_fork_server(spec=...)``, ``genki launch``) imports it only for a spec with
# such a node, or one it cannot read.
RECORDING_PRELOAD = (
    "genki_signals.nodes.recorder_node", "genki_signals.nodes.replay_node",
    "genki_signals.record.recorder", "genki_signals.record.player",
    "genki_signals.record.reader", "mcap.writer", "zstandard", "lz4.frame",
)
RECORDING_KINDS = frozenset({"recorder", "replay"})
PRELOAD = (
    "numpy", "zmq", "msgpack", "psutil", "pydantic", "yaml",
    "genki_signals.nodes.__main__", "genki_signals.nodes.runner",
    "genki_signals.nodes.graph_node", "genki_signals.nodes.source_node",
    "genki_signals.nodes.sinks", "genki_signals.graph", "genki_signals.signals",
    "genki_signals.data_sources.registry", "genki_signals.data_sources.sampler",
    "genki_signals.data_sources.synthetic", "genki_signals.bus.sockets",
    "genki_signals.clocksync.node", *RECORDING_PRELOAD,
    # what every spec check imports (the spec module, every node kind's params, the dry run):
    # imported here while ``genki launch`` runs its check, not after it (preload requests)
    "genki_signals.launch.spec", "genki_signals.nodes.dry_run", "numpy.random",
)


# Packages whose modules a fork server may import because a spec check did (besides the
# standard library): none starts a thread or opens a device on import. A device library that a
# check imported (sounddevice, ONNX Runtime, bokeh...) is left to the node, after the fork.
PRELOADABLE_PACKAGES = frozenset({
    "genki_signals", "numpy", "scipy", "zmq", "msgpack", "msgspec", "psutil", "pydantic",
    "pydantic_core", "yaml", "mcap", "zstandard", "lz4",
})


def preloadable(modules: Iterable[str]) -> list[str]:
    """The names among ``modules`` (e.g. what a spec check imported: a ``sys.modules`` diff)
    that a fork server may import before forking (``PRELOADABLE_PACKAGES``, the standard
    library), sorted."""
    out = []
    for name in modules:
        top = name.partition(".")[0]
        if top in PRELOADABLE_PACKAGES or top in sys.stdlib_module_names:
            out.append(name)
    return sorted(out)


def start_method() -> str:
    """``fork`` (nodes from the fork server, the default) or ``spawn`` (``GENKI_NODE_START``)."""
    method = os.environ.get(START_METHOD_ENV, "fork").strip().lower() or "fork"
    if method not in ("fork", "spawn"):
        raise ValueError(f"{START_METHOD_ENV}={method!r}: must be 'fork' or 'spawn'")
    return method


# ---------------------------------------------------------------------------- launcher side
class ForkedProcess:
    """A node forked by the server: the part of ``subprocess.Popen`` the launcher uses.

    The exit status arrives from the server (``ForkServer``'s reader thread sets it).
    """

    def __init__(self, pid: int, stdout: IO[str], stderr: IO[str]) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self.forked = True  # came from the fork server (tests and tools look at this)
        self._done = threading.Event()

    def _exited(self, returncode: int) -> None:
        self.returncode = returncode
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"node pid {self.pid}", timeout)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # never signal a pid the server has already reaped
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServerError(RuntimeError):
    """The fork server is gone or refused a request (the message says why)."""


class ForkServer:
    """The launcher's handle on its fork server: ``spawn()`` a node, ``close()`` at the end."""

    def __init__(self, sock: socket.socket, pid: int, process: Any = None) -> None:
        self.sock = sock
        self.pid = pid
        self._process = process  # the Popen of an exec'd server (None: forked, reaped here)
        self.how = "fork" if process is None else "exec"  # a fork of the launcher, or new
        self._lock = threading.Lock()  # one request at a time
        self._replies: list[dict[str, Any]] = []
        self._reply_ready = threading.Condition()
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self.alive = True
        self.ready = threading.Event()  # the server has preloaded and takes requests
        # Each preload request is answered by one more "ready": a spawn waits until the server
        # has sent as many as it was asked for (so the reply wait never includes imports).
        self._readies_wanted = 1
        self._readies_seen = 0
        self.preload_failures: list[str] = []  # modules the server could not import
        self._closed = False
        # called from the reader thread when a child's exit status arrives (the launcher's
        # supervision loop waits on a pipe this writes to, not on a short tick)
        self.on_exit: Callable[[], None] | None = None
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="genki-forkserver-reader")
        self._reader.start()

    # ---------------------------------------------------------------- requests
    def preload(self, modules: Iterable[str]) -> None:
        """Have the server import ``modules`` before its next fork (the launcher sends what its
        spec check imported: e.g. ``scipy.signal`` for a filter, which no node of a spec without
        one needs). Returns at once; the next ``spawn`` waits for the imports, within
        ``PRELOAD_TIMEOUT``. Modules it cannot import are listed in ``preload_failures`` (the
        node then imports them itself, as a new interpreter would)."""
        request = json.dumps({"type": "preload", "modules": sorted(set(modules))}).encode()
        if len(request) > MAX_MESSAGE:
            raise ForkServerError(f"preload request of {len(request)} bytes is over "
                                  f"{MAX_MESSAGE}")
        with self._lock:
            if not self.alive:
                raise ForkServerError("the fork server has exited")
            with self._reply_ready:
                self._readies_wanted += 1
            try:
                self.sock.send(request)
            except OSError as exc:
                raise ForkServerError(f"the fork server is gone: {exc}") from None

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the server has done every import asked of it; False on timeout."""
        with self._reply_ready:
            return self._reply_ready.wait_for(
                lambda: self._readies_seen >= self._readies_wanted or not self.alive, timeout)

    def spawn(self, config_path: str, env: dict[str, str], cwd: str,
              cpu: Iterable[int] | None = None) -> ForkedProcess:
        """Fork a node that runs ``config_path``; its stdout/stderr are text pipes to us."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = json.dumps({"type": "spawn", "config": config_path, "env": env, "cwd": cwd,
                              "cpu": list(cpu) if cpu else None}).encode()
        try:
            with self._lock:
                if not self.wait_ready(PRELOAD_TIMEOUT) or not self.alive:
                    raise ForkServerError("the fork server has exited" if not self.alive else
                                          f"the fork server was not ready within "
                                          f"{PRELOAD_TIMEOUT:g} s")
                try:
                    socket.send_fds(self.sock, [request], [out_w, err_w])
                except OSError as exc:
                    raise ForkServerError(f"the fork server is gone: {exc}") from None
                reply = self._next_reply()
            if reply.get("type") != "spawned":
                raise ForkServerError(str(reply.get("error", reply)))
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        proc = ForkedProcess(int(reply["pid"]),
                             open(out_r, "r", encoding="utf-8", errors="replace"),
                             open(err_r, "r", encoding="utf-8", errors="replace"))
        with self._reply_ready:
            self._children[proc.pid] = proc
            if proc.pid in self._early_exits:  # it exited before we registered it
                proc._exited(self._early_exits.pop(proc.pid))
        return proc

    def _next_reply(self, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        with self._reply_ready:
            if not self._reply_ready.wait_for(lambda: self._replies or not self.alive, timeout):
                self.alive = False  # a late reply would answer the next request: use no more
                raise ForkServerError(f"the fork server did not answer within {timeout:g} s")
            if not self._replies:
                raise ForkServerError("the fork server exited")
            return self._replies.pop(0)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            with self._reply_ready:
                if msg.get("type") == "ready":
                    self._readies_seen += 1
                    self.preload_failures.extend(str(m) for m in msg.get("failed", ()))
                    self.ready.set()
                    self._reply_ready.notify_all()
                elif msg.get("type") == "exit":
                    pid, code = int(msg["pid"]), int(msg["returncode"])
                    child = self._children.pop(pid, None)
                    if child is not None:
                        child._exited(code)
                    else:
                        self._early_exits[pid] = code
                    if self.on_exit is not None:
                        self.on_exit()
                else:
                    self._replies.append(msg)
                    self._reply_ready.notify_all()
        with self._reply_ready:
            self.alive = False
            self.ready.set()  # wake a spawn waiting for it: it sees ``alive`` False
            self._reply_ready.notify_all()
            orphans = list(self._children.values())
        # The server died: its children got SIGTERM (parent death) and cannot be reaped by us;
        # report each as gone once it is (the launcher's restart path then uses plain spawn).
        for child in orphans:
            threading.Thread(target=_await_pid_gone, args=(child,), daemon=True).start()

    # ---------------------------------------------------------------- end
    def close(self, timeout: float = 3.0) -> None:
        """Hang up: the server exits once its children are reaped (SIGKILL after ``timeout``).
        A second call does nothing (the pid may have been reused since)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.join(timeout)
        if self._reader.is_alive() or _pid_alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap(timeout)
        self.sock.close()

    def _reap(self, timeout: float) -> None:
        if self._process is not None:
            try:
                self._process.wait(timeout=timeout)
            except Exception:
                pass
            return
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid or time.monotonic() > deadline:
                return
            time.sleep(0.01)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie waiting for its parent counts as gone
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _await_pid_gone(child: ForkedProcess) -> None:
    import time

    while _pid_alive(child.pid):
        time.sleep(0.05)
    child._exited(-int(signal.SIGTERM))  # the status is lost with the server; say "signal"


def start_fork_server(preload: Iterable[str] = PRELOAD, spec: str | None = None) -> ForkServer:
    """Start a fork server for this launcher (see the module docstring for fork vs. exec).

    ``spec``: the topology spec file the launcher is about to check; the server also imports
    the modules of the node kinds it names (``preload_spec_kinds``)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    launcher_pid = os.getpid()
    if threading.active_count() == 1 and sys.platform.startswith("linux"):
        pid = os.fork()
        if pid == 0:  # the server, a copy of the single-threaded launcher
            code = 1
            try:
                parent.close()
                code = _serve_forked(child, launcher_pid, tuple(preload), spec)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        child.close()
        return ForkServer(parent, pid)
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "genki_signals.launch.forkserver", "--fd", str(child.fileno()),
         "--launcher-pid", str(launcher_pid), "--preload", ",".join(preload),
         *(["--spec", spec] if spec else [])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(child.fileno(),),
        start_new_session=True)
    child.close()
    return ForkServer(parent, proc.pid, proc)


# ---------------------------------------------------------------------------- server side
def _serve_forked(sock: socket.socket, launcher_pid: int, preload: tuple[str, ...],
                  spec: str | None = None) -> int:
    """In the child of ``fork()``: shed the launcher's state, then serve."""
    os.setsid()  # no terminal signals (Ctrl-C goes to the launcher, which stops the nodes)
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != launcher_pid:
        return ORPHAN_EXIT_CODE
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # never hold the launcher's stdout open (``| head``, ``| tee``)
    os.close(devnull)
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    return serve(sock, launcher_pid, preload, spec)


def _set_title(title: str) -> None:
    """What ``ps``, ``top`` and psutil show for this process (a fork keeps its parent's
    command line otherwise: every node would read as ``genki launch ...``)."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


def serve(sock: socket.socket, launcher_pid: int, preload: tuple[str, ...] = PRELOAD,
          spec: str | None = None) -> int:
    """The server loop: preload (and the kinds ``spec`` names), then fork a child per request
    and report every exit."""
    _set_title(f"python -m genki_signals.launch.forkserver --launcher-pid {launcher_pid}")
    _reset_signals()
    import faulthandler

    faulthandler.disable()  # a forked launcher's may point at a descriptor closed since
    if not spec:
        _preload(preload)
    else:
        _preload([m for m in preload if m not in RECORDING_PRELOAD])
        kinds = preload_spec_kinds(spec)
        if kinds is None or RECORDING_KINDS & {k.partition("/")[0] for k in kinds}:
            _preload([m for m in preload if m in RECORDING_PRELOAD])
    import gc

    gc.collect()
    gc.freeze()  # the collector of a node never walks (so never copies) the shared objects
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so the wakeup fd fires
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    server_pid = os.getpid()
    children: set[int] = set()
    sock.send(json.dumps({"type": "ready"}).encode())
    while True:
        try:
            readable, _, _ = select.select([wake_r, sock], [], [])
        except InterruptedError:
            readable = []
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        _reap(sock, children)
        if sock in readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
            except OSError:
                data, fds = b"", []
            if not data:
                # The launcher closed or died. Its nodes are stopped already (a clean stop), or
                # they get SIGTERM now that we exit (their parent-death signal).
                return 0
            if _is_preload(data):
                for fd in fds:
                    os.close(fd)
                _handle_preload(sock, data)
            else:
                _handle(sock, data, fds, children, server_pid, (wake_r, wake_w))


def _reset_signals() -> None:
    """Every Python-level handler back to the default (a forked launcher's, or a test
    runner's, are not ours); SIGPIPE stays ignored, as in any Python process."""
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if callable(handler) and handler is not signal.default_int_handler:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the server ignores no stop


def _preload(names: Iterable[str], quiet: bool = False) -> list[str]:
    """Import ``names``; returns those that failed (said on stderr unless ``quiet``)."""
    failed = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional dependency: that node imports it later
            failed.append(name)
            if not quiet:
                print(f"genki fork server: cannot preload {name}: {type(exc).__name__}: "
                      f"{exc}", file=sys.stderr)
    if threading.active_count() > 1:
        print(f"genki fork server: warning: {threading.active_count() - 1} Python threads "
              f"after preloading ({[t.name for t in threading.enumerate()]}); forking anyway",
              file=sys.stderr)
    return failed


def preload_spec_kinds(path: str) -> list[str] | None:
    """Import the modules of the node kinds and sink types that the spec at ``path`` names, and
    build their params classes: what the launcher's check of the same spec imports for them
    (``nodes.kinds.kind_info``, ``select_kind``), done here while the launcher checks it, so that
    its preload request after the check finds them imported. Returns the kinds found
    (``kind`` or ``kind/type``), None if the file is not a readable topology spec.

    Reads the file only; a spec that cannot be read or is wrong is the check's to report (this
    preloads what it can and says nothing). Kind modules import no device library on import
    (they keep those in ``build``), so this starts no thread."""
    found: list[str] = []
    try:
        from genki_signals.nodes.kinds import is_kind, select_kind
        from genki_signals.specfile import load_spec_file

        data = load_spec_file(path)
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, list):
            return None
        for node in nodes:
            kind = node.get("kind") if isinstance(node, dict) else None
            if not is_kind(kind):
                continue
            entry, _, _ = select_kind(kind, node.get("params"))
            if entry is not None:
                entry.params_class  # noqa: B018 - made on first use for some kinds
                found.append(kind if entry.type is None else f"{kind}/{entry.type}")
    except Exception:  # noqa: BLE001 - the launcher's check reports what is wrong
        return None
    return found


def _is_preload(data: bytes) -> bool:
    try:
        return json.loads(data).get("type") == "preload"
    except (ValueError, AttributeError):
        return False


def _handle_preload(sock: socket.socket, data: bytes) -> None:
    """Import what the launcher asks for (the modules its spec check imported), freeze the new
    objects like the first preload's, and say "ready" again with what failed."""
    import gc

    modules = [str(m) for m in json.loads(data).get("modules", ()) if isinstance(m, str)]
    # quiet: the check's module list may name modules that only exist under another name
    failed = _preload(modules, quiet=True)
    gc.freeze()  # no collection first: it would cost tens of ms before the first fork
    sock.send(json.dumps({"type": "ready", "failed": failed}).encode())


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        try:
            sock.send(json.dumps({"type": "exit", "pid": pid, "returncode": code}).encode())
        except OSError:
            pass


def _handle(sock: socket.socket, data: bytes, fds: list[int], children: set[int],
            server_pid: int, private_fds: tuple[int, ...]) -> None:
    try:
        req = json.loads(data)
        if req.get("type") != "spawn" or len(fds) != 2:
            raise ValueError(f"bad request {req.get('type')!r} with {len(fds)} descriptors")
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            _become_node(req, fds, ready_w, sock, server_pid, private_fds)  # never returns
        os.close(ready_w)
        children.add(pid)
        # wait until the child has its own session (the launcher may killpg it at once)
        with os.fdopen(ready_r, "rb") as ready:
            note = ready.read()
        reply: dict[str, Any] = {"type": "spawned", "pid": pid}
        if note:
            reply["note"] = note.decode(errors="replace")
    except Exception as exc:
        reply = {"type": "error", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        for fd in fds:
            os.close(fd)
    sock.send(json.dumps(reply).encode())


def _become_node(req: dict[str, Any], fds: list[int], ready_w: int, sock: socket.socket,
                 server_pid: int, private_fds: tuple[int, ...]) -> None:
    """In the forked child: set up the process as ``python -m genki_signals.nodes``, run it."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sock.close()
        for fd in private_fds:
            os.close(fd)
        os.setsid()
        note = b""
        if req.get("cpu"):
            try:
                os.sched_setaffinity(0, req["cpu"])
            except (OSError, AttributeError) as exc:
                note = f"cannot set CPU affinity: {exc}".encode()
        os.write(ready_w, note)
        os.close(ready_w)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)
        # unbuffered lines, as PYTHONUNBUFFERED=1 makes them for a spawned node
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True,
                                      write_through=True)
        sys.__stdout__, sys.__stderr__, sys.__stdin__ = sys.stdout, sys.stderr, sys.stdin
        _adopt_environment(req.get("env") or {}, req.get("cwd"))
        import atexit
        import logging

        atexit._clear()  # the server's (the launcher's) exit handlers are not the node's
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        logging.captureWarnings(True)
        if os.environ.get("PYTHONFAULTHANDLER"):
            import faulthandler

            faulthandler.enable()
        sys.argv = [sys.argv[0] if sys.argv else "genki", "--config", req["config"]]
        _set_title(f"python -m genki_signals.nodes --config {req['config']}")
        from genki_signals.nodes.__main__ import main

        try:
            code = main(["--config", req["config"]], parent_pid=server_pid)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        atexit._run_exitfuncs()
    except BaseException:
        try:
            traceback.print_exc()
        except Exception:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code if isinstance(code, int) else 1)


def _adopt_environment(env: dict[str, str], cwd: str | None) -> None:
    """The launcher's environment and directory as of this spawn (``PYTHONPATH`` entries the
    server lacks are put first on ``sys.path``, as a new interpreter would)."""
    old_path = os.environ.get("PYTHONPATH", "")
    os.environ.clear()
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    new = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
           if p and p not in old_path.split(os.pathsep) and p not in sys.path]
    sys.path[0:0] = new


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m genki_signals.launch.forkserver")
    parser.add_argument("--fd", type=int, required=True, help="the server's socket (inherited)")
    parser.add_argument("--launcher-pid", type=int, required=True)
    parser.add_argument("--preload", default=",".join(PRELOAD))
    parser.add_argument("--spec", help="the topology spec whose node kinds to preload")
    args = parser.parse_args(argv)
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != args.launcher_pid:
        return ORPHAN_EXIT_CODE
    sock = socket.socket(fileno=args.fd)
    return serve(sock, args.launcher_pid, tuple(n for n in args.preload.split(",") if n),
                 args.spec)


if __name__ == "__main__":
    sys.exit(_main())
