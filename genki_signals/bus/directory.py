"""The directory client: find a running topology by its address and ask what it publishes.

A tool attaches to a running topology by one address (``genki topics``, ``genki record``, a
``RemoteBuffer``): either a control endpoint (``ipc://...``, ``tcp://...``) or the name of a
topology started on this host, whose control socket lives in its default run directory. The
launcher answers ``directory`` requests on that socket (see ``genki_signals.bus.control``).

This lives in ``bus/`` (not ``launch/``) so that recording and plotting can attach to a topology
without importing the launcher.
"""

from __future__ import annotations

import getpass
import tempfile
from pathlib import Path
from typing import Any

from genki_signals.bus import control
from genki_signals.bus.security import RemoteAccess, client_keys_for
from genki_signals.errors import GenkiError

__all__ = ["default_run_dir", "directory", "resolve_address"]


def default_run_dir(topology: str) -> Path:
    """Where a topology's sockets and node configs live: ``$TMPDIR/genki-<user>/<name>``."""
    return Path(tempfile.gettempdir()) / f"genki-{getpass.getuser()}" / topology


def resolve_address(address: str) -> str:
    """A control address from what a user typed: an endpoint, or a running topology's name."""
    if "://" in address:
        return address
    return f"ipc://{default_run_dir(address) / 'control'}"


def directory(address: str, timeout: float = 2.0, *,
              access: RemoteAccess | None = None) -> dict[str, Any]:
    """The launcher's directory (raises GenkiError when nothing answers).

    ``access``: this tool's key pair and the launcher host's public key, for a launcher on
    another host (its control endpoint is a CURVE server; see ``genki_signals.bus.security``).
    A non-loopback tcp address without ``access`` is an error naming ``--key``.
    """
    resolved = resolve_address(address)
    try:
        return control.request(resolved, "directory", timeout=timeout,
                               security=client_keys_for(resolved, access))
    except TimeoutError as exc:
        raise GenkiError(str(exc)) from exc
