"""A bleak client backend over a bumble ``Device``: BLE with no adapter, BlueZ or D-Bus.

The real ``bleak.BleakClient`` takes a custom backend (``backend=``, "useful for custom
backends and testing" in bleak's own words) and forwards unknown keyword arguments to it, so::

    BleakClient(address, on_disconnect, backend=BumbleClientBackend, bumble_device=central)

runs bleak's public API on bumble's host stack. ``central`` is a powered-on bumble ``Device``:
on an in-process ``LocalLink`` with a virtual ring (tests), or on any bumble HCI transport
(``open_central("tcp-client:127.0.0.1:PORT")``: a virtual controller in another process, which
is how ``genki launch`` reaches a virtual ring in tests; or, untested, a USB HCI dongle).

bleak's backend API "is not considered part of the stable API", hence the pinned bleak range in
the ``hardware`` extra. ``find_by_name`` scans with the bumble device (bleak's scanner has no
custom-backend hook for bumble).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str

__all__ = ["BumbleClientBackend", "find_by_name", "open_central"]

log = logging.getLogger(__name__)

MTU = 247
"""ATT MTU requested at connect (244-byte notifications), as the vendor's Android app does."""


def _uuid(uuid: Any) -> str:
    """bleak's UUID string of a bumble UUID (16-bit ones expanded to the base UUID)."""
    text = uuid.to_hex_str()
    if len(text) == 32:
        text = str(UUID(text))
    return normalize_uuid_str(text)


class BumbleClientBackend(BaseBleakClient):
    """``bleak.backends.client.BaseBleakClient`` on a bumble central ``Device``."""

    def __init__(self, address_or_ble_device: Any, *, disconnected_callback=None,
                 timeout: float = 10.0, bumble_device: Any = None, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback,
                         timeout=timeout)
        if bumble_device is None:
            raise BleakError("BumbleClientBackend needs bumble_device= (a powered-on bumble "
                             "Device acting as central)")
        self._device = bumble_device
        self._connection: Any = None
        self._peer: Any = None
        self._mtu = 23
        self._subs: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return str(self.address)

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        from bumble.device import Peer
        from bumble.hci import Address

        connection = await asyncio.wait_for(
            self._device.connect(Address(str(self.address))), self._timeout)
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        try:
            peer = Peer(connection)
            self._mtu = await peer.request_mtu(MTU)
            await peer.discover_services()
            services = BleakGATTServiceCollection()
            for proxy in peer.services:
                await peer.discover_characteristics(service=proxy)
                service = BleakGATTService(proxy, proxy.handle, _uuid(proxy.uuid))
                services.add_service(service)  # before its characteristics (added to it too)
                for char in proxy.characteristics:
                    props = [p.name.lower().replace("_", "-") for p in type(char.properties)
                             if p in char.properties and p.name]
                    bc = BleakGATTCharacteristic(
                        char, char.handle, _uuid(char.uuid), props,
                        lambda: self._mtu - 3, service)
                    services.add_characteristic(bc)
            self._peer, self.services = peer, services
        except BaseException:
            await self.disconnect()
            raise

    def _on_disconnection(self, reason: Any) -> None:
        self._connection = self._peer = None
        self._subs.clear()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is not None:
            try:
                await asyncio.wait_for(connection.disconnect(), 2.0)
            except (TimeoutError, Exception) as exc:  # the link may be gone already
                log.debug("bumble disconnect: %r", exc)
                self._connection = self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not supported by the bumble backend")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not supported by the bumble backend")

    def _require(self) -> Any:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any
                             ) -> bytearray:
        return bytearray(await self._require().read_value(characteristic.obj))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any
                                   ) -> bytearray:
        raise NotImplementedError("descriptors are not exposed by the bumble backend")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any,
                              response: bool) -> None:
        await self._require().write_value(characteristic.obj, bytes(data),
                                          with_response=bool(response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise NotImplementedError("descriptors are not exposed by the bumble backend")

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        peer = self._require()

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subs[characteristic.handle] = on_value
        await peer.subscribe(characteristic.obj, on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        on_value = self._subs.pop(characteristic.handle, None)
        if self._peer is not None and on_value is not None:
            await self._peer.unsubscribe(characteristic.obj, on_value)


async def open_central(transport: str, address: str = "C0:00:00:00:00:01") -> tuple[Any, Any]:
    """A powered-on bumble central ``Device`` on an HCI transport; returns ``(device, transport)``.

    Close with ``await transport.close()`` when done.
    """
    from bumble.device import Device
    from bumble.hci import Address
    from bumble.transport import open_transport

    hci = await open_transport(transport)
    device = Device.with_hci("genki-central", Address(address), hci.source, hci.sink)
    await device.power_on()
    return device, hci


async def find_by_name(device: Any, name: str, timeout: float) -> str | None:
    """Scan with a bumble ``device`` for an advertiser whose local name contains ``name``."""
    from bumble.core import AdvertisingData

    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_advertisement(adv: Any) -> None:
        local = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or \
            adv.data.get(AdvertisingData.SHORTENED_LOCAL_NAME) or ""
        if isinstance(local, bytes):
            local = local.decode("utf-8", "replace")
        if name in local and not found.done():
            found.set_result(str(adv.address).split("/")[0])

    device.on("advertisement", on_advertisement)
    await device.start_scanning(filter_duplicates=True)
    try:
        return await asyncio.wait_for(found, timeout)
    except TimeoutError:
        return None
    finally:
        device.remove_listener("advertisement", on_advertisement)
        await device.stop_scanning()
