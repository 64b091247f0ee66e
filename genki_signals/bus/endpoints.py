"""Bus endpoints: which addresses a node may bind, and helpers that make good ones.

``ipc://`` is for one host (a Unix socket file; its path is limited to 107 bytes), ``tcp://`` for
one or several hosts, ``inproc://`` for sockets sharing one ``zmq.Context`` (tests). Binding tcp
is restricted to loopback addresses: a non-loopback or wildcard bind (``0.0.0.0``, ``*``, a LAN
address) would expose unauthenticated frames to the network, so it needs CurveZMQ keys
(``secure=True``: the socket is a CURVE server with an allow-list, see ``bus.security``);
``allow_remote=True`` lifts the check without keys (tests on a trusted network only).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import tempfile
from pathlib import Path

from genki_signals.errors import GenkiError

IPC_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class EndpointError(GenkiError, ValueError):
    """An endpoint is malformed, too long, or may not be bound."""


def ipc_endpoint(run_dir: str | os.PathLike[str], name: str) -> str:
    """``ipc://`` endpoint for ``name`` in ``run_dir``, short enough for a Unix socket.

    The path is ``<run_dir>/<name>.sock`` when that fits in 107 bytes and ``name`` is made of
    ``[A-Za-z0-9_.-]``; otherwise ``<tmpdir>/genki-<hash>.sock``, derived only from the absolute
    ``run_dir`` and ``name``, so every process computes the same endpoint.
    """
    run_dir = Path(run_dir).absolute()
    path = run_dir / f"{name}.sock"
    if _SAFE_NAME.fullmatch(name) and len(os.fsencode(path)) <= IPC_PATH_MAX:
        return f"ipc://{path}"
    digest = hashlib.sha256(f"{run_dir}\0{name}".encode()).hexdigest()[:20]
    return f"ipc://{Path(tempfile.gettempdir()) / f'genki-{digest}.sock'}"


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    """A ``tcp://host:port`` endpoint whose port was free a moment ago.

    Another process may take the port before it is bound; binding ``tcp://127.0.0.1:*`` and
    reading ``Publisher.endpoint`` is race-free where the caller can do that.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    return f"tcp://[{host}]:{port}" if family == socket.AF_INET6 else f"tcp://{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names, DNS names: not provably loopback


def check_bind_endpoint(endpoint: str, *, allow_remote: bool = False, secure: bool = False
                        ) -> None:
    """Raise ``EndpointError`` unless ``endpoint`` may be bound (see the module docstring)."""
    if not isinstance(endpoint, str):
        raise EndpointError(f"endpoint must be a str, got {type(endpoint).__name__}")
    scheme, sep, rest = endpoint.partition("://")
    if not sep or not rest:
        raise EndpointError(f"endpoint {endpoint!r} is not of the form scheme://address")
    if scheme == "ipc":
        if len(os.fsencode(rest)) > IPC_PATH_MAX:
            raise EndpointError(
                f"ipc path of {endpoint!r} is longer than {IPC_PATH_MAX} bytes; use ipc_endpoint()"
            )
    elif scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not (port == "*" or port.isdigit()) or not host:
            raise EndpointError(f"tcp endpoint {endpoint!r} needs host:port (port may be '*')")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not (allow_remote or secure) and not _is_loopback(host):
            raise EndpointError(
                f"refusing to bind {endpoint!r}: not a loopback address. Remote binding requires "
                "CurveZMQ keys (security=ServerKeys(...), see docs/multihost.md)"
            )
    elif scheme != "inproc":
        raise EndpointError(f"endpoint {endpoint!r}: scheme must be ipc, tcp or inproc")
