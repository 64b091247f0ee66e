"""A virtual Genki Wave ring on bumble's virtual radio, for tests and benchmarks (no adapter).

``VirtualRing`` runs in its own thread and asyncio loop: a bumble ``LocalLink`` with two virtual
controllers, the ring's (a bumble ``Device`` serving the ring's GATT service: one
notify + write characteristic, advertising its name) and the central's, whose HCI is served on a
loopback TCP port. A host reaches the ring through ``ring.transport`` (``tcp-client:127.0.0.1:
PORT``) exactly as it would through a USB HCI dongle: ``WaveDataSource(transport=...)`` (or
the test-only ``GENKI_WAVE_TRANSPORT`` environment variable in a node process) opens it with
``bumble_backend.open_central`` and talks to the ring through the real ``bleak.BleakClient``.

What the ring does, like the real one (``shared/hardware/wave-protocol.md``): it records and
decodes every write (``writes``), answers the device-info request, streams once it is in API
mode and configured (motion, raw or spectrogram frames, made by our encoder), and sends a tick's
bytes as notifications of random sizes (``chunk``, 20-244 B by default) so frames are split at
random places. Each sample's ``timestamp_us`` is the ring's clock: ``clock()`` (default
``time.monotonic``) since ``start()`` when the sample is taken, skewed by ``skew_ppm``; it is
sent ``jitter`` seconds (uniform) later. ``sent`` keeps ``(timestamp_us, clock time of the sample)`` of every streamed
sample: the truth a test compares mapped timestamps with. Controls (thread-safe): ``silence()``
/ ``resume()``, ``drop()`` (the ring disconnects), ``press(button, action)``, ``inject(bytes)``
(raw bytes, e.g. a corrupt frame), ``close()``.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from genki_signals.data_sources.wave import protocol as p

__all__ = ["DEFAULT_INFO", "VirtualRing", "swipe_motion", "wave_motion"]

DEFAULT_INFO = p.DeviceInfo((1, 7, 4), "wave-v2", "f0:f0:f0:f0:f0:01", "VIRTUAL0001")

Trajectory = Callable[[float], dict[str, Any]]
"""Device time (s) -> motion fields of one sample (any MOTION_DTYPE field but timestamp_us)."""


def wave_motion(t: float) -> dict[str, Any]:
    """A smooth, known motion: yaw swinging +-0.5 rad at 0.5 Hz, a small linear acceleration."""
    w = 2 * math.pi * 0.5
    yaw = 0.5 * math.sin(w * t)
    rate = 0.5 * w * math.cos(w * t)  # rad/s
    q = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    lin = [0.1 * math.sin(3 * t), 0.05 * math.cos(2 * t), 0.02 * math.sin(5 * t)]
    return {"gyro": [0.0, 0.0, math.degrees(rate)], "acc": [lin[0], lin[1], 1.0 + lin[2]],
            "mag": [0.0, 0.0, 0.0], "raw_pose": q, "current_pose": q,
            "euler": [0.0, 0.0, yaw], "linacc": lin, "peak": int(t % 2.0 < 0.01),
            "peak_norm_velocity": 0.5 * abs(math.sin(t))}


def swipe_motion(swipes: tuple[float, ...] = (), duration: float = 0.3,
                 gyro_peak: float = 400.0, acc_peak: float = 1.5) -> Trajectory:
    """Rest, except a swipe at each of the device times ``swipes``: a fast yaw turn
    (``gyro_z`` a half sine of ``gyro_peak`` deg/s) with a sideways push (``linacc_x``)."""

    def motion(t: float) -> dict[str, Any]:
        gz = lx = 0.0
        for s in swipes:
            if s <= t < s + duration:
                phase = (t - s) / duration
                gz = gyro_peak * math.sin(math.pi * phase)
                lx = acc_peak * math.sin(2 * math.pi * phase)
        q = [1.0, 0.0, 0.0, 0.0]
        return {"gyro": [0.0, 0.0, gz], "acc": [lx, 0.0, 1.0], "raw_pose": q,
                "current_pose": q, "linacc": [lx, 0.0, 0.0]}

    return motion


LL_DATA_OCTETS = 251
"""LE ACL data length of both virtual controllers: a link with data length extension, as a phone
or BlueZ negotiates with the ring, so one notification (up to 244 B) is one link-layer packet.
bumble's default (27 B, Bluetooth 4.0) cuts a 111-byte motion frame into five HCI packets that
each cross the virtual radio separately."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VirtualRing:
    """A virtual Wave ring on a bumble virtual radio, served from its own thread (see module)."""

    def __init__(self, *, name: str = "Wave virtual", address: str = "F0:F0:F0:F0:F0:01",
                 info: p.DeviceInfo = DEFAULT_INFO, motion: Trajectory = wave_motion,
                 rate: float = 100.0, spectrogram_every: int = 8, skew_ppm: float = 0.0,
                 jitter: float = 0.0, chunk: tuple[int, int] = (20, 244), seed: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.address, self.info = name, address, info
        self.battery = p.BatteryStatus(3.9, 80.0, False)  # the answer to battery requests
        self.motion, self.rate, self.spectrogram_every = motion, float(rate), spectrogram_every
        self.skew_ppm, self.jitter, self.chunk = float(skew_ppm), float(jitter), chunk
        self.clock = clock
        self.writes: list[tuple[int, int, bytes]] = []  # decoded host requests
        self.raw_writes: list[bytes] = []  # the written bytes, as received
        self.sent: list[tuple[int, float]] = []  # (timestamp_us, clock time) per sample
        self.notifications: list[int] = []  # sizes of the notifications sent
        self.connections = 0
        self.mode: int | None = None
        self.config: tuple[p.Datastream, bool, float] | None = None
        self._rng = random.Random(seed)
        self._silent = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._boot = 0.0
        self._conn: Any = None
        self._stream_task: asyncio.Task | None = None
        self._inbox = bytearray()
        self._send_lock: asyncio.Lock | None = None
        self.transport = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> VirtualRing:
        """Start the radio and the ring; returns once it advertises."""
        ready: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name="virtual-wave-ring")
        self._thread.start()
        ready.result(timeout=10)
        return self

    def _run(self, ready: Future) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._setup())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _setup(self) -> None:
        from bumble.controller import Controller
        from bumble.device import Device
        from bumble.gatt import Characteristic, CharacteristicValue, Service
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.link import LocalLink
        from bumble.transport import open_transport
        from bumble.transport.common import AsyncPipeSink

        self._send_lock = asyncio.Lock()  # one message's notifications are never interleaved
        self._link = LocalLink()
        port = _free_port()
        self._central_hci = await open_transport(f"tcp-server:127.0.0.1:{port}")
        self._central_ctl = Controller("central", host_source=self._central_hci.source,
                                       host_sink=self._central_hci.sink, link=self._link,
                                       public_address="C0:00:00:00:00:01")
        self.transport = f"tcp-client:127.0.0.1:{port}"
        ctl = Controller("ring", link=self._link, public_address=self.address)
        for controller in (self._central_ctl, ctl):
            controller.le_acl_data_packet_length = LL_DATA_OCTETS
        self.device = Device(name=self.name, address=Address(self.address),
                             host=Host(ctl, AsyncPipeSink(ctl)))
        self.char = Characteristic(
            p.API_CHAR_UUID,
            Characteristic.Properties.NOTIFY | Characteristic.Properties.WRITE
            | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.WRITEABLE, CharacteristicValue(write=self._on_write))
        self.device.add_service(Service(p.SERVICE_UUID, [self.char]))
        self.device.on("connection", self._on_connection)
        await self.device.power_on()
        self._boot = self.clock()
        await self._advertise()

    async def _advertise(self) -> None:
        from bumble.core import AdvertisingData

        data = AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode())])
        await self.device.start_advertising(advertising_data=bytes(data), auto_restart=True)

    def _call(self, coro_or_fn: Any, timeout: float = 5.0) -> Any:
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self._loop).result(timeout)
        done: Future = Future()

        def run() -> None:
            try:
                done.set_result(coro_or_fn())
            except BaseException as exc:  # noqa: BLE001
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def close(self) -> None:
        """Stop streaming, the radio and the thread (idempotent)."""
        if self._thread is None:
            return

        async def shutdown() -> None:
            self._stop_stream()
            try:
                await asyncio.wait_for(self._central_hci.close(), 2.0)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
            self._loop.call_soon(self._loop.stop)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        except Exception:  # noqa: BLE001
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None

    def __enter__(self) -> VirtualRing:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ connection
    def _on_connection(self, connection: Any) -> None:
        self.connections += 1
        self._conn = connection
        self.mode = self.config = None
        self._inbox.clear()
        connection.on("disconnection", lambda reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Any) -> None:
        if self._conn is connection:
            self._conn = None
            self._stop_stream()

    def _on_write(self, connection: Any, value: bytes) -> None:
        self.raw_writes.append(bytes(value))
        self._inbox += value
        while b"\x00" in self._inbox:
            frame, _, rest = bytes(self._inbox).partition(b"\x00")
            self._inbox[:] = rest
            try:
                kind, msg_id, payload = p.decode_message(frame, from_device=False)
            except p.FrameError:
                continue
            self.writes.append((kind, msg_id, payload))
            self._handle(connection, msg_id, payload)

    def _handle(self, connection: Any, msg_id: int, payload: bytes) -> None:
        if msg_id == p.MsgId.DEVICE_INFO:
            self._loop.create_task(self._notify(connection, p.encode_device_info(self.info),
                                                stream=False))
            return
        if msg_id == p.MsgId.BATTERY_STATUS:  # answered at once (no jitter), like the ring
            self._loop.create_task(self._notify(connection, p.encode_battery(self.battery),
                                                stream=False))
            return
        if msg_id == p.MsgId.DEVICE_MODE:
            self.mode = payload[0]
        elif msg_id == p.MsgId.MODIFY_API_CONFIG:
            self.config = p.parse_config(payload)
        else:
            return  # other requests do not touch the stream
        if self.mode == p.DeviceMode.API and self.config is not None:
            self._stop_stream()
            self._stream_task = self._loop.create_task(self._stream(connection, self.config))

    def _stop_stream(self) -> None:
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    # ------------------------------------------------------------------ streaming
    def device_us(self, t: float) -> int:
        """The ring's ``timestamp_us`` at clock time ``t``."""
        return int(round((t - self._boot) * (1 + self.skew_ppm * 1e-6) * 1e6))

    async def _stream(self, connection: Any, config: tuple[p.Datastream, bool, float]) -> None:
        """Sample at ``rate`` (ticks on the clock), stamp, wait ``jitter``, notify.

        The sample time is the clock when the tick runs (a late tick is a late sample, as on a
        real device), so ``sent`` stays the truth even when this process is starved of CPU.
        """
        datastream, spectrogram, _ = config
        period = 1.0 / self.rate
        k0 = math.ceil((self.clock() - self._boot) / period)
        k = k0
        while True:
            await asyncio.sleep(max(self._boot + k * period - self.clock(), 0.0))
            k += 1
            if self._silent.is_set():
                continue
            t = self.clock()
            us = self.device_us(t)
            device_t = us * 1e-6
            data = b""
            if datastream == p.Datastream.MOTION:
                rec = np.zeros(1, p.MOTION_DTYPE)
                for key, value in self.motion(device_t).items():
                    rec[key] = value
                rec["timestamp_us"] = us
                data = p.encode_motion(rec)
            elif datastream == p.Datastream.RAW:
                m = self.motion(device_t)
                rec = np.zeros(1, p.RAW_DTYPE)
                rec["gyro"], rec["acc"], rec["timestamp_us"] = m.get("gyro", 0), \
                    m.get("acc", 0), us
                data = p.encode_raw(rec)
            if spectrogram and (k - k0) % self.spectrogram_every == 0:
                rec = np.zeros(1, p.SPECTROGRAM_DTYPE)
                rec["bins"] = np.arange(96, dtype=np.float32).reshape(6, 16) + k
                rec["timestamp_us"] = us
                data += p.encode_spectrogram(rec)
            if not data:
                continue
            self.sent.append((us, t))
            if self.jitter:
                await self._sleep_exactly(self._rng.uniform(0.0, self.jitter))
            await self._notify(connection, data)

    async def _sleep_exactly(self, seconds: float) -> None:
        """Wait ``seconds`` without asyncio's overshoot (the epoll selector rounds its timeout up
        to whole milliseconds, which would put a ~1 ms floor under a uniform(0, jitter) delay):
        sleep to 2 ms short of the end, then yield to the loop until the end."""
        end = self.clock() + seconds
        if seconds > 0.002:
            await asyncio.sleep(seconds - 0.002)
        while self.clock() < end:
            await asyncio.sleep(0)

    async def _notify(self, connection: Any, data: bytes, stream: bool = True) -> None:
        """Send ``data`` as notifications of random sizes within ``chunk`` (a reply to a request,
        ``stream=False``, goes whole and is not listed in ``notifications``)."""
        lo, hi = self.chunk
        rest = memoryview(data)
        async with self._send_lock:
            while len(rest):
                n = len(rest)
                if stream and n >= lo * 2 and (n > hi or self._rng.random() < 0.7):
                    size = self._rng.randint(lo, min(hi, n - lo))
                else:
                    size = n
                if stream:
                    self.notifications.append(size)
                await self.device.notify_subscriber(connection, self.char, bytes(rest[:size]))
                rest = rest[size:]

    # ------------------------------------------------------------------ test controls
    def silence(self) -> None:
        """Stay connected but send nothing (until ``resume()``)."""
        self._silent.set()

    def resume(self) -> None:
        self._silent.clear()

    def drop(self) -> None:
        """The ring ends the connection (out of range, battery)."""
        async def drop() -> None:
            if self._conn is not None:
                await self._conn.disconnect()
        self._call(drop())

    def press(self, button: int, action: int) -> None:
        """A button event, stamped with the ring's clock in seconds (as the firmware does)."""
        async def press() -> None:
            if self._conn is not None:
                t = self.device_us(self.clock()) * 1e-6
                await self._notify(self._conn, p.encode_button(button, action, t))
        self._call(press())

    def inject(self, data: bytes) -> None:
        """Raw bytes as notifications (corrupt frames, partial frames)."""
        async def inject() -> None:
            if self._conn is not None:
                await self._notify(self._conn, data)
        self._call(inject())

    @property
    def connected(self) -> bool:
        return self._call(lambda: self._conn is not None)
