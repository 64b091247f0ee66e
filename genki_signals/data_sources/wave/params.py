"""``type: wave`` in a topology spec: typed params, static checks, build, pre-launch check.

``WaveParams`` is a frozen dataclass of what a spec may say (``WaveDataSource``'s arguments plus
the node's ``update_rate``). ``check`` validates a params mapping without touching a radio (no
bleak, bumble or cobs import), ``build`` makes the source in the node process, and
``preflight`` tells the launcher, before any node starts, what stops the ring from running on
this machine (no Bluetooth adapter, bleak not installed).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["WaveParams", "build", "check", "preflight", "stream_names"]

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_CB_UUID = re.compile(r"^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")  # macOS ids
TRANSPORT_ENV = "GENKI_WAVE_TRANSPORT"  # == source.TRANSPORT_ENV (not imported: no numpy here)


@dataclass(frozen=True)
class WaveParams:
    """What a ``type: wave`` source node may say."""

    type: str = "wave"
    ble_address: str | None = None
    """The ring's address (``AA:BB:CC:DD:EE:FF``; on macOS the CoreBluetooth UUID); None: scan
    for ``name``."""
    name: str = "Wave"
    """Discovery: a device whose advertised name contains this."""
    spectrogram: bool = False
    """Stream 16-bin spectrograms of the six IMU channels instead of motion."""
    raw: bool = False
    """Stream raw gyro/acc only (firmware >= 1.7.3)."""
    sample_rate: float | None = None
    """The rate written in the stream configuration (None: the vendor's default)."""
    connect_timeout: float = 15.0
    """Seconds ``start()`` waits for the ring to stream before the node fails."""
    stop_on_top_hold: bool = False
    """Holding the top button (~2 s) stops the source (and, for a node, ends it)."""
    update_rate: float = 25.0
    """The node's publish rate (frames per second)."""


_BOOLS = ("spectrogram", "raw", "stop_on_top_hold")
_POSITIVE = ("sample_rate", "connect_timeout", "update_rate")


def _field(path: str, message: str) -> str:
    return f"field '{path}': {message}"


def parse(params: Mapping[str, Any]) -> tuple[WaveParams | None, list[str]]:
    """``(WaveParams, [])`` or ``(None, problems)``; each problem names its field."""
    allowed = [f.name for f in fields(WaveParams)]
    problems = [_field(f"params.{k}", f"unknown field (allowed: {', '.join(allowed)})")
                for k in params if k not in allowed]
    for key in _BOOLS:
        if key in params and not isinstance(params[key], bool):
            problems.append(_field(f"params.{key}", f"must be true or false, got "
                                                   f"{params[key]!r}"))
    for key in _POSITIVE:
        value = params.get(key)
        if value is None and key == "sample_rate":
            continue
        if key in params and not (isinstance(value, numbers.Real)
                                  and not isinstance(value, bool) and math.isfinite(value)
                                  and value > 0):
            problems.append(_field(f"params.{key}", f"must be a number > 0, got {value!r}"))
    address = params.get("ble_address")
    if address is not None and not (isinstance(address, str) and (
            _MAC.match(address) or _CB_UUID.match(address))):
        problems.append(_field("params.ble_address", f"must be a BLE address like "
                                                     f"'AA:BB:CC:DD:EE:FF' (or a CoreBluetooth"
                                                     f" UUID), got {address!r}"))
    name = params.get("name", "Wave")
    if not isinstance(name, str) or not name:
        problems.append(_field("params.name", f"must be a non-empty string, got {name!r}"))
    if params.get("spectrogram") is True and params.get("raw") is True:
        problems.append(_field("params.raw", "'raw' and 'spectrogram' are exclusive stream "
                                             "modes; choose one"))
    if problems:
        return None, problems
    return WaveParams(**dict(params)), []


def stream_names(spectrogram: bool, raw: bool) -> list[str]:
    """The streams of a ring in this mode, ``timestamp`` first (as ``WaveDataSource``)."""
    if spectrogram:
        names = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
    elif raw:
        names = ["gyro", "acc"]
    else:
        names = ["gyro", "acc", "mag", "euler", "linacc", "grav", "acc_glob", "linacc_glob",
                 "raw_pose", "current_pose", "peak", "peak_norm_velocity"]
    return ["timestamp", *names, "timestamp_us"]


def check(params: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Problems and output stream names of a ``type: wave`` source (no radio is touched)."""
    parsed, problems = parse(params)
    if parsed is None:
        return problems, []
    return [], stream_names(parsed.spectrogram, parsed.raw)


def build(params: Mapping[str, Any]) -> Any:
    from genki_signals.data_sources.wave.source import WaveDataSource

    parsed, problems = parse(params)
    if parsed is None:  # build_source checked already; keep the message if called directly
        from genki_signals.data_sources.base import SourceParameterError

        raise SourceParameterError("invalid wave params:\n  " + "\n  ".join(problems))
    return WaveDataSource(parsed.ble_address, parsed.name, parsed.spectrogram, parsed.raw,
                          parsed.sample_rate, connect_timeout=parsed.connect_timeout,
                          stop_on_top_hold=parsed.stop_on_top_hold)


def preflight(params: Mapping[str, Any]) -> str | None:
    """Why a ring cannot run on this machine (None: it may). Checks the BLE stack only."""
    try:
        import bleak  # noqa: F401
        import cobs  # noqa: F401
    except ImportError as exc:
        return (f"the Wave ring needs the hardware extra (pip install 'genki-signals[hardware]')"
                f": {exc}")
    if os.environ.get(TRANSPORT_ENV):
        return None  # a bumble HCI transport (tests: a virtual ring), no OS adapter needed
    if sys.platform.startswith("linux"):
        sysfs = Path("/sys/class/bluetooth")
        if not sysfs.is_dir() or not any(sysfs.glob("hci*")):
            return ("no Bluetooth adapter: /sys/class/bluetooth lists no hci device (is the "
                    "adapter plugged in and the kernel's Bluetooth support loaded?)")
        if not Path("/run/dbus/system_bus_socket").exists() and \
                not os.environ.get("DBUS_SYSTEM_BUS_ADDRESS"):
            return "no D-Bus system bus (bleak talks to BlueZ over it): is dbus running?"
    return None
