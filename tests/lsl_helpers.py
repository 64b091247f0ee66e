"""Keep every Lab Streaming Layer packet of the tests on this machine.

liblsl reads its configuration from the file named by ``LSLAPICFG`` the first time it is used
in a process (and node processes inherit the variable). ``LSL_API_CFG`` restricts it to the
loopback interface:

* ``ResolveScope = machine`` and ``MachineAddresses`` / ``AddressesOverride = {127.0.0.1}``:
  stream discovery queries go to 127.0.0.1 only (no multicast group, no broadcast);
* ``IPv6 = disable``: no IPv6 sockets (no link-local multicast);
* ``KnownPeers = {127.0.0.1}``: the only unicast peer asked;
* ``ListenAddress = 127.0.0.1`` and a ``SessionID`` of its own per test run, so the tests never
  see (or answer) streams of anything else on the machine.

``configure()`` must run before liblsl is first used in the process; the LSL tests call it at
import. ``assert_loopback_only()`` checks the process's connected sockets afterwards.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import psutil

LSL_API_CFG = """\
[ports]
IPv6 = disable
[multicast]
ResolveScope = machine
ListenAddress = 127.0.0.1
MachineAddresses = {{127.0.0.1}}
AddressesOverride = {{127.0.0.1}}
TTLOverride = 0
[lab]
KnownPeers = {{127.0.0.1}}
SessionID = {session}
[log]
level = -2
"""


def configure() -> Path:
    """Write the loopback-only ``lsl_api.cfg`` and point ``LSLAPICFG`` at it (idempotent)."""
    if os.environ.get("GENKI_TEST_LSLAPICFG"):
        return Path(os.environ["LSLAPICFG"])
    path = Path(tempfile.mkdtemp(prefix="genki-lsl-")) / "lsl_api.cfg"
    path.write_text(LSL_API_CFG.format(session=f"genki-test-{os.getpid()}"))
    os.environ["LSLAPICFG"] = str(path)
    os.environ["GENKI_TEST_LSLAPICFG"] = "1"
    return path


def assert_loopback_only(pid: int | None = None) -> int:
    """Every IPv4/IPv6 socket of the process is bound to, or connected to, loopback or the
    wildcard (a listening socket); returns how many connected sockets were checked."""
    connected = 0
    for c in psutil.Process(pid).net_connections(kind="inet"):
        assert c.family.name != "AF_INET6", f"IPv6 socket despite IPv6 = disable: {c}"
        if c.raddr:
            connected += 1
            assert c.raddr.ip.startswith("127."), f"LSL traffic off the machine: {c}"
        assert c.laddr.ip.startswith("127.") or c.laddr.ip == "0.0.0.0", c
    return connected
