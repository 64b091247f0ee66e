"""Network namespaces as hosts, for multi-host tests (testing-recipes §4-5).

``NetLab`` makes ``n`` namespaces joined by veth pairs on a bridge (in a namespace of its own),
with addresses ``10.77.<net>.<i + 1>/24`` and no default route: no traffic leaves them. It can
start sshd in a namespace (a private config, host key and authorized key in a temporary
directory) and run commands in one. ``close()`` kills every process still inside each namespace
by PID (sshd first), then deletes the namespaces, which deletes their veth ends.

The tools are Debian packages: ``ip`` (iproute2), ``sshd`` (openssh-server), ``ssh`` and
``ssh-keygen`` (openssh-client). A missing one fails the test with what to install; not root
fails too (network namespaces need CAP_SYS_ADMIN).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

TOOLS = {"ip": "iproute2", "/usr/sbin/sshd": "openssh-server", "ssh": "openssh-client",
         "ssh-keygen": "openssh-client"}


def require_netns_tools() -> None:
    """Fail (never skip) naming the Debian package of a missing tool."""
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in TOOLS.items()
               if shutil.which(tool) is None]
    if missing:
        pytest.fail("multi-host tests need: " + ", ".join(missing))
    if os.geteuid() != 0:
        pytest.fail("multi-host tests create network namespaces: run them as root")


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


class NetLab:
    """``n`` namespaces on one bridge; ``address(i)``, ``exec(i, ...)``, ``start_sshd(i)``."""

    def __init__(self, tmp: Path, n: int) -> None:
        require_netns_tools()
        self.tmp = tmp
        tag = uuid.uuid4().hex[:6]
        self.net = int(tag, 16) % 200 + 20  # 10.77.<net>.0/24, one per lab
        self.switch = f"gsw{tag}"
        self.names = [f"gs{tag}{chr(ord('a') + i)}" for i in range(n)]
        self.sshd: dict[int, subprocess.Popen] = {}
        self._made: list[str] = []
        try:
            for ns in (self.switch, *self.names):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, ns in enumerate(self.names):
                inner, outer = f"v{tag}{i}", f"p{tag}{i}"
                _run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
                _run("ip", "link", "set", inner, "netns", ns)
                _run("ip", "link", "set", outer, "netns", self.switch)
                _run("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
                _run("ip", "-n", self.switch, "link", "set", outer, "up")
                _run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inner)
                _run("ip", "-n", ns, "link", "set", inner, "up")
        except BaseException:
            self.close()
            raise

    def address(self, i: int) -> str:
        return f"10.77.{self.net}.{i + 1}"

    def link(self, i: int, up: bool) -> None:
        """Cut (or restore) host ``i``'s only link: its veth end on the bridge."""
        tag = self.switch[3:]
        _run("ip", "-n", self.switch, "link", "set", f"p{tag}{i}", "up" if up else "down")

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.names[i]]

    def pids(self, i: int) -> set[int]:
        out = _run("ip", "netns", "pids", self.names[i], check=False).stdout
        return {int(p) for p in out.split()}

    # ------------------------------------------------------------------ ssh
    def start_sshd(self, i: int, port: int = 2222) -> dict[str, object]:
        """sshd in namespace ``i``; returns the ``ssh:`` section of a host that reaches it."""
        d = self.tmp / f"ssh{i}"
        d.mkdir(parents=True, exist_ok=True)
        for key in ("hostkey", "idkey"):
            if not (d / key).exists():
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key))
        shutil.copy(d / "idkey.pub", d / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory
        cfg = d / "sshd_config"
        cfg.write_text(f"""ListenAddress {self.address(i)}:{port}
HostKey {d / 'hostkey'}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile {d / 'sshd.pid'}
StrictModes no
ClientAliveInterval 1
ClientAliveCountMax 3
""")
        _run("/usr/sbin/sshd", "-t", "-f", str(cfg))
        with open(d / "sshd.log", "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*self.prefix(i), "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                stdout=subprocess.DEVNULL, stderr=log)
        self.sshd[i] = proc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening?
            if f"{self.address(i)}:{port}" in _run(*self.prefix(i), "ss", "-ltn",
                                                    check=False).stdout:
                break
            time.sleep(0.1)
        return {"user": "root", "port": port, "identity": str(d / "idkey"),
                "options": [f"UserKnownHostsFile={d / 'known_hosts'}",
                            "StrictHostKeyChecking=accept-new"]}

    # ------------------------------------------------------------------ end
    def kill_all(self, i: int) -> None:
        for pid in self.pids(i):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        for proc in self.sshd.values():
            proc.kill()
            proc.wait(timeout=5)
        for i in range(len(self.names)):
            if self.names[i] in self._made:
                self.kill_all(i)
        deadline = time.monotonic() + 5
        while any(self.pids(i) for i in range(len(self.names)) if self.names[i] in self._made) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns, check=False)
        self._made.clear()
