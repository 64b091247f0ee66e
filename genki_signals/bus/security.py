"""CurveZMQ on tcp endpoints: key files, allow-lists per role, and the one way to secure a socket.

Every socket that binds a non-loopback tcp endpoint is a CURVE *server* whose clients must be on
an allow-list; clients (nodes on other hosts, remote ``genki plot``/``echo``/``record``/``top``,
``RemoteBuffer``) authenticate with their own key pair and must know the server's public key
before they connect (CurveZMQ has no trust-on-first-use: the handshake needs the server's key).

Keys
    ``genki keys new NAME`` writes ``NAME.key`` (public, shareable) and ``NAME.key_secret``
    (public + secret, mode 0600), in pyzmq's ``zmq.auth.create_certificates`` format. A key is
    named on the command line or in a spec by a path to either file, by a bare name looked up in
    the key directory (``$GENKI_KEYS_DIR``, default ``~/.config/genki/keys``), or (public keys
    only) by its 40-character Z85 text.

Roles
    ``read``: may subscribe to lossy data endpoints and ask the launcher for its directory.
    ``control``: the topology's own hosts and operators: additionally lossless endpoints, the
    clock service and every control message (register, heartbeat, stop...).
    The ZAP handler answers with the role as the connection's User-Id, so a ROUTER reads the
    role of each message (``peer_role``) and refuses control messages from ``read`` peers.

The only way to make a CURVE server here is ``secure_server``, which starts the context's ZAP
handler (``genki_signals.bus.gate``) before setting ``CURVE_SERVER``: libzmq lets any CURVE
client in when no ZAP handler answers, so a server without one must not exist.

Spec fields (parsed by the ``hosts:`` section, see docs/multihost.md)::

    hosts:
      a: {address: 10.77.0.1, keys: {public: keys/a.key, secret_file: keys/a.key_secret}}
    access:                # public keys (paths, names or Z85) allowed per role
      read: [keys/laptop.key]
      control: [keys/ops.key]

Every host's own public key is implicitly in ``control``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from genki_signals.errors import GenkiError

ROLES = ("read", "control")
READ, CONTROL = ROLES
Z85_KEY_LEN = 40
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"

__all__ = [
    "CONTROL",
    "READ",
    "ROLES",
    "ClientKeys",
    "KeyPair",
    "RemoteAccess",
    "SecurityError",
    "ServerGuard",
    "ServerKeys",
    "add_key_arguments",
    "allow_list",
    "client_keys_for",
    "is_loopback_or_local",
    "keys_dir",
    "load_keypair",
    "load_public_key",
    "needs_keys",
    "new_keys",
    "peer_role",
    "publisher_keys",
    "remote_access",
    "resolve_access",
    "secure_client",
    "secure_server",
]


class SecurityError(GenkiError, ValueError):
    """A key file is missing, malformed or too readable, or a tcp endpoint has no keys."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as Z85 bytes (40 each); ``secret`` is None for a public key alone."""

    public: bytes
    secret: bytes | None = field(default=None, repr=False)
    name: str = ""  # where it came from, for messages


@dataclass(frozen=True)
class ServerKeys:
    """What a bound socket needs: its own key pair and the public keys allowed, with roles."""

    keypair: KeyPair
    allow: Mapping[bytes, str]  # Z85 public key -> role

    def __post_init__(self) -> None:
        if self.keypair.secret is None:
            raise SecurityError(f"server key {self.keypair.name or '?'}: no secret key "
                                f"(give the {SECRET_SUFFIX} file)")
        bad = sorted({r for r in self.allow.values() if r not in ROLES})
        if bad:
            raise SecurityError(f"unknown role(s) {bad} in the allow-list (roles: {ROLES})")


@dataclass(frozen=True)
class ClientKeys:
    """What a connecting socket needs: its own key pair and the server's public key."""

    keypair: KeyPair
    server_public: bytes

    def __post_init__(self) -> None:
        if self.keypair.secret is None:
            raise SecurityError(f"client key {self.keypair.name or '?'}: no secret key "
                                f"(give the {SECRET_SUFFIX} file)")
        _check_z85(self.server_public, "server public key")


# ---------------------------------------------------------------------------- key files
def keys_dir() -> Path:
    """Where bare key names are looked up: ``$GENKI_KEYS_DIR`` or ``~/.config/genki/keys``."""
    env = os.environ.get("GENKI_KEYS_DIR")
    return Path(env) if env else Path.home() / ".config" / "genki" / "keys"


def new_keys(name: str, directory: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``; return both.

    Refuses to overwrite. The files are made in a private (0700) temporary directory and moved
    into place, so the secret is never readable by others, whatever the umask.
    """
    if not name or "/" in name or name.startswith("."):
        raise SecurityError(f"key name must be a plain file name, got {name!r}")
    target = Path(directory) if directory is not None else keys_dir()
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    public, secret = target / f"{name}{PUBLIC_SUFFIX}", target / f"{name}{SECRET_SUFFIX}"
    for path in (public, secret):
        if path.exists():
            raise SecurityError(f"{path} exists; not overwriting a key")
    with tempfile.TemporaryDirectory(dir=target, prefix=".genki-keys-") as tmp:
        made_public, made_secret = zmq.auth.create_certificates(tmp, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret)
        os.replace(made_public, public)
    return public, secret


def _find(value: str | os.PathLike[str], suffix: str) -> Path:
    path = Path(value).expanduser()
    if path.exists():
        return path
    if isinstance(value, str) and "/" not in value:
        for candidate in (keys_dir() / value, keys_dir() / f"{value}{suffix}"):
            if candidate.exists():
                return candidate
    raise SecurityError(f"key {str(value)!r}: no such file (nor {suffix} in {keys_dir()})")


def _check_z85(key: bytes, what: str) -> None:
    try:
        ok = len(key) == Z85_KEY_LEN and len(zmq.utils.z85.decode(key)) == 32
    except Exception:
        ok = False
    if not ok:
        raise SecurityError(f"{what}: not a 40-character Z85 CURVE key: {key[:50]!r}")


def load_public_key(value: str | bytes | os.PathLike[str]) -> bytes:
    """A public key (Z85 bytes) from Z85 text, a ``.key``/``.key_secret`` path or a key name."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str) and len(value) == Z85_KEY_LEN and not Path(value).exists():
        key = value.encode("ascii")
        _check_z85(key, "public key")
        return key
    path = _find(value, PUBLIC_SUFFIX)
    try:
        public, _ = zmq.auth.load_certificate(path)
    except Exception as exc:
        raise SecurityError(f"{path}: not a CURVE key file ({exc})") from None
    _check_z85(public, str(path))
    return public


def load_keypair(value: str | os.PathLike[str]) -> KeyPair:
    """A key pair from a ``.key_secret`` file (path or name); refuses one others can read."""
    path = _find(value, SECRET_SUFFIX)
    try:
        public, secret = zmq.auth.load_certificate(path)
    except Exception as exc:
        raise SecurityError(f"{path}: not a CURVE key file ({exc})") from None
    if secret is None:
        raise SecurityError(f"{path}: holds no secret key (give the {SECRET_SUFFIX} file)")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecurityError(f"{path}: secret key is readable by others (mode "
                            f"{stat.S_IMODE(mode):04o}); chmod 600 {path}")
    _check_z85(public, str(path))
    _check_z85(secret, str(path))
    return KeyPair(public, secret, str(path))


def allow_list(read: Iterable[str | bytes | os.PathLike[str]] = (),
               control: Iterable[str | bytes | os.PathLike[str]] = ()) -> dict[bytes, str]:
    """``{public key: role}`` from keys named per role; a key in both lists gets ``control``."""
    out = {load_public_key(k): READ for k in read}
    out.update({load_public_key(k): CONTROL for k in control})
    return out


# ---------------------------------------------------------------------------- endpoints
def is_loopback_or_local(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and tcp on a loopback address (key-free by default)."""
    from genki_signals.bus.endpoints import _is_loopback

    scheme, _, rest = endpoint.partition("://")
    if scheme != "tcp":
        return True
    host = rest.rpartition(":")[0]
    return _is_loopback(host[1:-1] if host.startswith("[") else host)


def needs_keys(endpoint: str, keys: object | None, what: str) -> None:
    """Raise ``SecurityError`` naming ``what`` for a non-loopback tcp ``endpoint`` without keys."""
    if keys is None and not is_loopback_or_local(endpoint):
        raise SecurityError(f"{what}: {endpoint!r} is a non-loopback tcp endpoint and has no "
                            f"CURVE keys (every tcp link between hosts is encrypted and "
                            f"authenticated; see docs/multihost.md)")


# ---------------------------------------------------------------------------- sockets
class ServerGuard:
    """The ZAP registration of one secured socket; ``release()`` when the socket closes."""

    def __init__(self, gate: object, domain: str) -> None:
        self._gate, self.domain = gate, domain

    def release(self) -> None:
        if self._gate is not None:
            self._gate.forget(self.domain)
            self._gate = None


def secure_server(sock: zmq.Socket, keys: ServerKeys, *, domain: str,
                  roles: Iterable[str] = ROLES,
                  on_refused: Callable[[], None] | None = None) -> ServerGuard:
    """Make ``sock`` (not yet bound) a CURVE server admitting only ``keys.allow`` in ``roles``.

    ``domain`` must be unique per socket in its context (it selects the allow-list). The ZAP
    handler of ``sock``'s context is started first and checked alive; ``on_refused`` is called
    (from its thread) for every refused key.
    """
    from genki_signals.bus.gate import ReaderGate

    roles = frozenset(roles)
    if not roles <= set(ROLES):
        raise SecurityError(f"unknown role(s) {sorted(roles - set(ROLES))} (roles: {ROLES})")
    allowed = {k: r for k, r in keys.allow.items() if r in roles}
    gate = ReaderGate.for_context(sock.context)
    gate.allow_curve(domain, allowed, on_refused)
    if not gate.alive:
        gate.forget(domain)
        raise SecurityError("the ZAP authenticator is not running: refusing a CURVE server "
                            "that would admit any key")
    sock.setsockopt_string(zmq.ZAP_DOMAIN, domain)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.keypair.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.keypair.public)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    return ServerGuard(gate, domain)


def secure_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make ``sock`` (not yet connected) a CURVE client of the server ``keys.server_public``."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.keypair.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.keypair.secret)


def peer_role(frame: zmq.Frame) -> str | None:
    """The role of the CURVE peer that sent ``frame`` (received with ``copy=False``).

    None when the connection was not authenticated by CURVE (ipc, loopback: trusted peers).
    """
    try:
        user = frame.get("User-Id")
    except (zmq.ZMQError, KeyError, UnicodeDecodeError):
        return None
    return user if user in ROLES else None


# ---------------------------------------------------------------------------- remote tools
@dataclass(frozen=True)
class RemoteAccess:
    """How a tool on another machine reaches a topology: its own key pair and the public key of
    the host whose launcher it addresses (``--key`` / ``--server-key``)."""

    keypair: KeyPair
    server_public: bytes

    def control(self) -> ClientKeys:
        """Keys for the launcher's control endpoint."""
        return ClientKeys(self.keypair, self.server_public)

    def for_endpoint(self, endpoint: str, public_key: str | bytes | None = None
                     ) -> ClientKeys | None:
        """Keys for a publisher at ``endpoint`` (None: ipc/loopback, key-free). ``public_key``:
        the publisher's key from the directory (default: the launcher's host key)."""
        if is_loopback_or_local(endpoint):
            return None
        server = self.server_public if public_key is None else load_public_key(public_key)
        return ClientKeys(self.keypair, server)


def remote_access(key: str | os.PathLike[str] | None,
                  server_key: str | bytes | os.PathLike[str] | None) -> RemoteAccess | None:
    """``RemoteAccess`` from a key pair and a server key as named by a user (None, None: none)."""
    if key is None and server_key is None:
        return None
    if key is None or server_key is None:
        given, missing = ("--key", "--server-key") if server_key is None else \
            ("--server-key", "--key")
        raise SecurityError(f"{given} needs {missing} too: a CURVE client needs its own key "
                            f"pair and the server's public key (see docs/multihost.md)")
    return RemoteAccess(load_keypair(key), load_public_key(server_key))


def add_key_arguments(parser: object) -> None:
    """``--key`` and ``--server-key`` on an argparse parser of a tool that attaches."""
    parser.add_argument("--key", metavar="NAME|FILE",
                        help="your CURVE key pair (a .key_secret file or a name in the key "
                             "directory), for a topology on another host")
    parser.add_argument("--server-key", metavar="NAME|FILE|Z85",
                        help="public key of the host at ADDRESS (its .key file)")


def client_keys_for(address: str, access: RemoteAccess | None) -> ClientKeys | None:
    """Keys to reach a launcher at ``address``; raises naming ``--key`` when keys are needed."""
    if access is None:
        needs_keys(address, None, "ADDRESS (give --key and --server-key)")
        return None
    return access.control()


def publisher_keys(access: RemoteAccess | None, endpoint: str,
                   public_key: str | bytes | None = None, what: str = "endpoint"
                   ) -> ClientKeys | None:
    """Keys to subscribe at a publisher's ``endpoint`` (from the directory, with its
    ``public_key`` when it lists one); raises naming ``what`` when keys are needed."""
    if access is None:
        needs_keys(endpoint, None, f"{what} (give --key and --server-key)")
        return None
    return access.for_endpoint(endpoint, public_key)


def resolve_access(access: Mapping[str, Iterable[str]] | None, host_keys: Iterable[bytes] = (),
                   base_dir: str | os.PathLike[str] | None = None) -> dict[bytes, str]:
    """A topology's allow-list: its spec's ``access: {read: [...], control: [...]}`` plus every
    host's own public key as ``control``. Relative key paths are taken from ``base_dir`` (the
    spec's folder). Errors name the field, e.g. ``access.read[1]: ...``."""
    out: dict[bytes, str] = {}
    access = access or {}
    unknown = sorted(set(access) - set(ROLES))
    if unknown:
        raise SecurityError(f"access: unknown role(s) {unknown} (roles: {', '.join(ROLES)})")
    for role in ROLES:  # control last: a key in both lists is control
        entries = access.get(role) or []
        if isinstance(entries, (str, bytes)):
            raise SecurityError(f"access.{role}: must be a list of keys, got {entries!r}")
        for i, entry in enumerate(entries):
            value = entry
            if base_dir is not None and isinstance(entry, str) and len(entry) != Z85_KEY_LEN \
                    and not Path(entry).expanduser().is_absolute() and "/" in entry:
                value = str(Path(base_dir) / entry)
            try:
                out[load_public_key(value)] = role
            except SecurityError as exc:
                raise SecurityError(f"access.{role}[{i}]: {exc}") from None
    for key in host_keys:
        out[key] = CONTROL
    return out
