"""``type: wave`` in a topology spec: typed params, static checks, build, pre-launch check.

``WaveParams`` (``genki_signals.params``) is what a spec may say (``WaveDataSource``'s arguments
plus the node's ``update_rate``). Parsing it and ``check`` touch no radio (no bleak, bumble or
cobs import), ``build`` makes the source in the node process, and
``preflight`` tells the launcher, before any node starts, what stops the ring from running on
this machine (no Bluetooth adapter, bleak not installed).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from genki_signals.data_sources.registry import UpdateRate
from genki_signals.params import Bool, Field, Float, Name, Problem, Str, invalid, params

__all__ = ["WaveParams", "build", "check", "preflight", "streams", "stream_names"]

_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_CB_UUID = re.compile(r"^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")  # macOS ids
TRANSPORT_ENV = "GENKI_WAVE_TRANSPORT"  # == source.TRANSPORT_ENV (not imported: no numpy here)


def _address(value: str) -> str:
    if not (_MAC.match(value) or _CB_UUID.match(value)):
        raise invalid(f"must be a BLE address like 'AA:BB:CC:DD:EE:FF' (or a CoreBluetooth "
                      f"UUID), got {value!r}")
    return value


Positive = Annotated[Float, Field(gt=0)]


@params
class WaveParams:
    """What a ``type: wave`` source node may say."""

    type: Literal["wave"]
    ble_address: Annotated[Str, pydantic.AfterValidator(_address)] | None = None
    """The ring's address (``AA:BB:CC:DD:EE:FF``; on macOS the CoreBluetooth UUID); None: scan
    for ``name``."""
    name: Name = "Wave"
    """Discovery: a device whose advertised name contains this."""
    spectrogram: Bool = False
    """Stream 16-bin spectrograms of the six IMU channels instead of motion."""
    raw: Bool = False
    """Stream raw gyro/acc only (firmware >= 1.7.3)."""
    sample_rate: Positive | None = None
    """The rate written in the stream configuration (None: the vendor's default)."""
    connect_timeout: Positive = 15.0
    """Seconds ``start()`` waits for the ring to stream before the node fails."""
    stop_on_top_hold: Bool = False
    """Holding the top button (~2 s) stops the source (and, for a node, ends it)."""
    update_rate: UpdateRate = 25.0
    """The node's publish rate (frames per second)."""


def check(p: WaveParams) -> list[Problem]:
    """What the field types cannot say (no radio is touched)."""
    if p.spectrogram and p.raw:
        return [Problem("params.raw", "'raw' and 'spectrogram' are exclusive stream modes; "
                                      "choose one")]
    return []


def streams(p: WaveParams) -> list[str]:
    return stream_names(p.spectrogram, p.raw)


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


def build(p: WaveParams) -> Any:
    from genki_signals.data_sources.wave.source import WaveDataSource

    return WaveDataSource(p.ble_address, p.name, p.spectrogram, p.raw, p.sample_rate,
                          connect_timeout=p.connect_timeout,
                          stop_on_top_hold=p.stop_on_top_hold)


def preflight(p: WaveParams) -> str | None:
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
