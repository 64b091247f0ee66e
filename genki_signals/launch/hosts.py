"""The ``hosts:`` section of a topology spec: which machines run which share of the topology.

A spec without ``hosts:`` runs on one machine, as before. With it, each host is declared once::

    hosts:
      lab:    {start: local, address: 10.77.0.1}          # where `genki launch` runs
      rig:    {address: 10.77.0.2, ssh: {user: pi, port: 22, identity: ~/.ssh/id_ed25519}}
      laptop: {start: manual, address: 10.77.0.3}         # `genki launch SPEC --host laptop`

and nodes are placed with ``host: rig`` (default: the ``start: local`` host). Fields of a host:

* ``address``: how the other hosts reach it (an IP address or DNS name); required.
* ``bind``: the address its tcp sockets bind (default: ``address``; ``0.0.0.0``/``*`` binds all).
* ``start``: ``local`` (exactly one host: the one `genki launch SPEC` runs on), ``ssh`` (the
  default: started by the local host over ssh) or ``manual`` (started by hand with
  ``genki launch SPEC --host NAME``).
* ``ssh``: ``user``, ``port`` (22), ``identity`` (a private key file), ``options`` (extra
  ``-o`` options of the ssh client).
* ``ports``: the first of the tcp ports this host's share uses (default 47100): ``ports`` is the
  read-only directory, ``ports + 1`` the clock leader's time server, ``ports + 2 + 2k`` and
  ``ports + 3 + 2k`` the lossy and lossless endpoints of the host's k-th node (file order).
  Deterministic, so that every host computes every endpoint from the spec alone.
* ``python`` (``python3``), ``workdir`` (the remote directory relative paths are read from;
  default: the spec file's directory) and ``env`` (extra environment of the share): how an ssh
  share is started.

``check_hosts`` parses the section; ``check_placements`` checks node ``host:`` fields against it.
Both only collect problems (the spec checker formats them with file, node and field).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genki_signals.bus.endpoints import _is_loopback
from genki_signals.bus.security import KeyPair, load_keypair, load_public_key
from genki_signals.errors import GenkiError
from genki_signals.params import parse

__all__ = [
    "DEFAULT_PORTS",
    "HOST_NAME_PATTERN",
    "START_METHODS",
    "HostSpec",
    "SshSpec",
    "check_hosts",
    "check_placements",
]

DEFAULT_PORTS = 47100
START_METHODS = ("local", "ssh", "manual")
HOST_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
WILDCARD_BINDS = ("*", "0.0.0.0", "::")


@dataclass(frozen=True)
class SshSpec:
    """How the local host reaches an ``ssh`` host."""

    user: str | None = None
    port: int = 22
    identity: str | None = None
    options: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port}
        if self.user is not None:
            out["user"] = self.user
        if self.identity is not None:
            out["identity"] = self.identity
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class HostSpec:
    """One declared host (see the module docstring for the fields)."""

    name: str
    address: str
    bind: str
    start: str = "ssh"
    ssh: SshSpec = SshSpec()
    ports: int = DEFAULT_PORTS
    python: str = "python3"
    workdir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    public_key: str | None = None  # keys.public: this host's CURVE public key (file or Z85)
    secret_file: str | None = None  # keys.secret_file: its key pair, read on this host only

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "start": self.start}
        if self.public_key is not None:
            out["keys"] = {"public": self.public_key, "secret_file": self.secret_file}
        if self.bind != self.address:
            out["bind"] = self.bind
        if self.start == "ssh":
            out["ssh"] = self.ssh.to_dict()
        if self.ports != DEFAULT_PORTS:
            out["ports"] = self.ports
        if self.python != "python3":
            out["python"] = self.python
        if self.workdir is not None:
            out["workdir"] = self.workdir
        if self.env:
            out["env"] = dict(self.env)
        return out

    # ------------------------------------------------------------------ ports
    @property
    def directory_port(self) -> int:
        return self.ports

    @property
    def clock_port(self) -> int:
        return self.ports + 1

    def node_ports(self, index: int) -> tuple[int, int]:
        """(lossy, lossless) tcp ports of this host's ``index``-th node."""
        return self.ports + 2 + 2 * index, self.ports + 3 + 2 * index

    def bind_endpoint(self, port: int) -> str:
        host = "*" if self.bind in WILDCARD_BINDS else self.bind
        return f"tcp://{_bracket(host)}:{port}"

    def reach_endpoint(self, port: int) -> str:
        return f"tcp://{_bracket(self.address)}:{port}"


def _from(path: str, base_dir: str | os.PathLike[str] | None) -> str:
    """A key named in a spec: a relative path (with a '/') is taken from the spec's folder."""
    if base_dir is not None and "/" in path and not os.path.isabs(os.path.expanduser(path)):
        return os.path.join(base_dir, path)
    return path


def host_public_key(host: HostSpec, base_dir: str | os.PathLike[str] | None) -> bytes | None:
    """The host's CURVE public key (Z85), or None when it has no keys."""
    return None if host.public_key is None else load_public_key(_from(host.public_key, base_dir))


def host_keypair(host: HostSpec, base_dir: str | os.PathLike[str] | None) -> KeyPair | None:
    """The host's key pair, read from its ``secret_file`` (on that host), or None."""
    return None if host.secret_file is None else load_keypair(_from(host.secret_file, base_dir))


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_hosts(raw: Any, bad: Callable[[str, str], None],
                node_counts: Mapping[str, int] | None = None,
                base_dir: str | os.PathLike[str] | None = None) -> dict[str, HostSpec]:
    """The valid hosts of a ``hosts:`` section; each problem goes to ``bad(path, message)``.

    ``node_counts`` (host name -> number of nodes placed there) bounds each host's port range;
    ``base_dir`` (the spec's folder) anchors relative key paths.
    """
    # made on first use: a spec without hosts (the common case) never builds them
    from genki_signals.launch.host_params import HostParams, SshParams

    if not isinstance(raw, Mapping) or not raw:
        bad("hosts", f"must be a non-empty mapping of host name -> {{address, start, ...}}, "
                     f"got {raw!r}")
        return {}
    hosts: dict[str, HostSpec] = {}
    for name, item in raw.items():
        where = f"hosts.{name}"
        if not isinstance(name, str) or not HOST_NAME_PATTERN.match(name):
            bad(where, f"a host name is letters, digits, '_', '.', '-', got {name!r}")
            continue
        value, problems = parse(HostParams, item, where)
        for p in problems:
            bad(p.path, p.message)
        if value is None:
            continue
        start = value.start or ("local" if name == "localhost" else "ssh")
        if start != "ssh" and value.ssh is not None:
            bad(f"{where}.ssh", f"a '{start}' host is not started over ssh; remove 'ssh'")
        ssh = value.ssh or SshParams()
        if ssh.identity is not None and start == "ssh":
            identity = os.path.expanduser(ssh.identity)
            if not os.path.isfile(identity):
                bad(f"{where}.ssh.identity", f"no such key file: {identity}")
        count = (node_counts or {}).get(name, 0)
        if value.ports + 3 + 2 * count > 65535:
            bad(f"{where}.ports", f"{count} nodes need ports {value.ports}-"
                                  f"{value.ports + 3 + 2 * count}, past 65535")
        public = secret = None
        if value.keys is not None:
            public, secret = value.keys.public, value.keys.secret_file
            try:
                load_public_key(_from(public, base_dir))
            except GenkiError as exc:
                bad(f"{where}.keys.public", str(exc))
        elif not _is_loopback(value.address) and len(raw) > 1:
            bad(f"{where}.keys", "missing: every tcp link between hosts is CurveZMQ, so each "
                                 f"host needs a key pair (genki keys new {name}; then keys: "
                                 f"{{public: {name}.key, secret_file: {name}.key_secret}})")
        hosts[name] = HostSpec(
            name=name, address=value.address, bind=value.bind or value.address, start=start,
            ssh=SshSpec(ssh.user, ssh.port, ssh.identity, tuple(ssh.options)),
            ports=value.ports, python=value.python, workdir=value.workdir, env=dict(value.env),
            public_key=public, secret_file=secret)
    local = [h.name for h in hosts.values() if h.start == "local"]
    if hosts and len(local) != 1 and len(hosts) == len(raw):
        bad("hosts", "exactly one host must have 'start: local' (the machine `genki launch` "
                     f"runs on), got {len(local)}" + (f": {', '.join(local)}" if local else ""))
    _check_port_clashes(hosts, node_counts or {}, bad)
    return hosts


def _check_port_clashes(hosts: Mapping[str, HostSpec], node_counts: Mapping[str, int],
                        bad: Callable[[str, str], None]) -> None:
    """Two hosts binding the same address (one machine, two shares) need disjoint ports."""
    ranges: list[tuple[str, str, int, int]] = []
    for h in hosts.values():
        ranges.append((h.name, _address_key(h.bind), h.ports,
                       h.ports + 3 + 2 * node_counts.get(h.name, 0)))
    for i, (name, addr, lo, hi) in enumerate(ranges):
        for other, oaddr, olo, ohi in ranges[:i]:
            same = addr == oaddr or "*" in (addr, oaddr)
            if same and lo <= ohi and olo <= hi:
                bad(f"hosts.{name}.ports", f"ports {lo}-{hi} overlap host '{other}''s "
                                           f"{olo}-{ohi} on the same address")


def _address_key(addr: str) -> str:
    if addr in WILDCARD_BINDS:
        return "*"
    try:
        return str(ipaddress.ip_address(addr.strip("[]")))
    except ValueError:
        return addr


def local_host(hosts: Mapping[str, HostSpec]) -> HostSpec | None:
    """The ``start: local`` host, or None when there is none (or no hosts section)."""
    for h in hosts.values():
        if h.start == "local":
            return h
    return None


def check_placements(placements: Mapping[str, tuple[int, str | None]],
                     declared: Iterable[str], bad_node: Callable[[int, str, str, str], None]
                     ) -> None:
    """Each node's ``host`` (None: not given) must name a declared host (even one whose own
    fields have problems: those are reported on their own)."""
    declared = [str(h) for h in declared]
    names = ", ".join(declared) or "none"
    for node_id, (index, host) in placements.items():
        if host is not None and host not in declared:
            bad_node(index, node_id, "host", f"unknown host '{host}' (hosts: {names})")
