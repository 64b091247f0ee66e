"""WaveDataSource: the Genki Wave ring over Bluetooth LE (bleak), stamped by its own clock.

One background thread runs an asyncio loop that owns the ``bleak.BleakClient``: discover the
ring by name (unless an address is given), connect, subscribe to the API characteristic, write
the device-info request, API mode and the stream configuration (the exact bytes of
``protocol``), then wait. Notifications are fed to a ``WaveDecoder`` (frames are reassembled
across notifications; corrupt or unknown frames are counted and skipped) together with the
host's arrival time. ``read()`` returns every sample decoded since the last read, time-first,
with ``timestamp`` = the ring's ``timestamp_us`` mapped onto the topology clock by a
``DeviceClockFit`` (lower envelope of (device time, arrival) pairs: arrival jitter does not
reach the stamps); ``timestamp_us`` stays in the frame.

Lifecycle. ``start()`` returns once the ring streams (or raises ``SourceError`` with the reason
after ``connect_timeout``). An unexpected disconnect is logged and the ring reconnected with
doubling backoff (``disconnects``, ``reconnects`` in ``stats()``). ``stop()`` returns within
1 s whatever the ring does (silent, gone, mid-connect): it cancels the loop's task, gives the
BLE disconnect 0.5 s, and leaves a wedged thread behind (it is a daemon) rather than wait.
Holding the top button (ExtraLong) stops the source only with ``stop_on_top_hold=True``.

Events. Button presses and the device info come out of ``read_events()`` as event frames
(``buttons``, ``device``), which a source node publishes as ``<node>/buttons`` and
``<node>/device`` events (so recordings keep the device info). ``recenter()`` sends the
recenter command.

Transport. By default bleak's platform backend (BlueZ on Linux). ``transport`` (or the test-only
environment variable ``GENKI_WAVE_TRANSPORT``) names a bumble HCI transport instead
(``tcp-client:127.0.0.1:PORT`` of ``virtual.VirtualRing``): the same ``BleakClient`` then runs
on ``bumble_backend.BumbleClientBackend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import threading
import time
from typing import Any

import numpy as np

from genki_signals.clock import Clock
from genki_signals.clocksync.device import DeviceClockFit
from genki_signals.data_sources.base import Source, SourceParameterError
from genki_signals.data_sources.wave import protocol as p
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP, Frame

# The ring's crystal is assumed within +-200 ppm of nominal: the clock fit's rate is clamped
# there and regularised toward nominal (a prior of 100 ppm) while few buckets exist.
RING_CLOCK_FIT: dict[str, Any] = {"max_rate_error": 200e-6, "rate_prior": 100e-6}

PROBE_BURST = 20
"""Latency probes (battery requests) sent 50 ms apart right after connecting."""
PROBE_INTERVAL = 0.2
"""Seconds between latency probes after the burst (a 12-byte reply: 5 a second cost ~nothing)."""

__all__ = ["MIN_FIRMWARE", "TRANSPORT_ENV", "WaveDataSource", "stream_shapes"]

log = logging.getLogger(__name__)

TRANSPORT_ENV = "GENKI_WAVE_TRANSPORT"
"""Test-only: a bumble HCI transport (e.g. a ``VirtualRing``'s) used instead of the OS stack."""

MIN_FIRMWARE = (1, 7, 3)
"""Oldest firmware known to speak this protocol (raw mode needs 1.7.3); older ones: a warning."""

_VEC3 = ("gyro", "acc", "mag", "euler", "linacc", "grav", "acc_glob", "linacc_glob")


def stream_shapes(spectrogram: bool = False, raw: bool = False
                  ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The streams a ring in this mode produces: name -> (per-sample shape, dtype)."""
    f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
    if spectrogram:
        out = {name: ((p.SPECTROGRAM_BINS,), f32) for name in p.SPECTROGRAM_CHANNELS}
    elif raw:
        out = {"gyro": ((3,), f32), "acc": ((3,), f32)}
    else:
        out = {name: ((3,), f32) for name in _VEC3}
        out.update({"raw_pose": ((4,), f32), "current_pose": ((4,), f32),
                    "peak": ((), np.dtype(bool)), "peak_norm_velocity": ((), f32)})
    out["timestamp_us"] = ((), i64)
    return out


class WaveDataSource(Source):
    """The Genki Wave ring's motion (or raw, or spectrogram) stream and its button events.

    ``ble_address``: the ring's address (None: scan for a device whose name contains
    ``name``). ``spectrogram=True``: 16-bin spectrograms of the six IMU channels instead of
    motion; ``raw=True``: raw gyro/acc only. ``sample_rate``: the rate written in the stream
    configuration (None: the vendor's default, 400, for motion/raw and 2000 for spectrograms;
    the nominal ``Source.sample_rate`` is then unknown). See the module docstring for the rest.
    """

    def __init__(self, ble_address: str | None = None, name: str = "Wave",
                 spectrogram: bool = False, raw: bool = False,
                 sample_rate: float | None = None, *, clock: Clock | None = None,
                 transport: str | None = None, connect_timeout: float = 15.0,
                 scan_timeout: float = 10.0, reconnect: bool = True,
                 backoff: tuple[float, float] = (0.25, 8.0), stop_on_top_hold: bool = False,
                 fit_options: dict[str, Any] | None = None) -> None:
        super().__init__(clock)
        if spectrogram and raw:
            raise SourceParameterError("WaveDataSource: 'spectrogram' and 'raw' are exclusive "
                                       "stream modes; choose one")
        if sample_rate is not None and not (math.isfinite(sample_rate) and sample_rate > 0):
            raise SourceParameterError(f"WaveDataSource: 'sample_rate' must be > 0, got "
                                       f"{sample_rate!r}")
        self.ble_address = ble_address
        self.name = name
        self.spectrogram, self.raw = bool(spectrogram), bool(raw)
        self.sample_rate = sample_rate
        self.transport = transport if transport is not None else \
            (os.environ.get(TRANSPORT_ENV) or None)
        self.connect_timeout, self.scan_timeout = float(connect_timeout), float(scan_timeout)
        self.reconnect, self.backoff = reconnect, backoff
        self.stop_on_top_hold = stop_on_top_hold
        self.finite = stop_on_top_hold  # then it may end on its own (a node then finishes)
        self._shapes = stream_shapes(self.spectrogram, self.raw)
        self.stream_names = list(self._shapes)
        self.fit = DeviceClockFit(1e-6, **{**RING_CLOCK_FIT, **(fit_options or {})})
        # The link's one-way latency: given (fit_options latency) or probed (see _probe_link).
        self.probe_latency = "latency" not in (fit_options or {})
        self.link_rtt: float | None = None  # the smallest request-reply round trip (s)
        self.link_probes = 0
        self._reply: asyncio.Event | None = None  # set by a battery reply (loop thread)
        self._reply_arrival = 0.0
        self.decoder = p.WaveDecoder()
        self._stream_id = p.MsgId.SPECTROGRAM if self.spectrogram else \
            p.MsgId.RAW_DATA if self.raw else p.MsgId.DATASTREAM
        self._frame_start = math.nan  # arrival of the notification the pending frame began in
        self.device_info: p.DeviceInfo | None = None
        self.battery: p.BatteryStatus | None = None
        self.disconnects = self.reconnects = self.notifications = self.samples = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._records: list[np.ndarray] = []
        self._arrivals: list[float] = []
        self._counts: list[int] = []
        self._buttons: list[tuple[float, p.ButtonEvent]] = []
        self._new_info: list[tuple[float, p.DeviceInfo]] = []
        self._last = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._streaming = threading.Event()
        self._stopping = threading.Event()
        self._active = False
        self._ever_streamed = False

    # ------------------------------------------------------------------ configuration
    @property
    def config_bytes(self) -> bytes:
        """The MODIFY_API_CONFIG frame this source writes."""
        if self.spectrogram:
            return p.config_request(p.Datastream.NONE, True, self.sample_rate or 2000.0)
        return p.config_request(p.Datastream.RAW if self.raw else p.Datastream.MOTION, False,
                                self.sample_rate or 400.0)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect and configure the ring; returns once it streams (``SourceError`` if not
        within ``connect_timeout``: the last reason is in the message)."""
        if self._active:
            return
        self._stopping.clear()
        self._streaming.clear()
        self._active = True
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True,
                                        name="wave-ble")
        self._thread.start()
        started.wait(5)
        deadline = time.monotonic() + self.connect_timeout
        while not self._streaming.wait(0.05):
            gave_up = not self._thread.is_alive()
            if time.monotonic() > deadline or gave_up:
                reason = self.last_error or "no answer"
                when = "" if gave_up else f" after {self.connect_timeout:g} s"
                self.stop()
                raise SourceError(f"Wave ring ({self.ble_address or 'name ' + repr(self.name)})"
                                  f": not streaming{when}: {reason}")

    def _run(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._task = loop.create_task(self._main())
        started.set()
        try:
            loop.run_until_complete(self._task)
        except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - logged, not fatal
            if not isinstance(exc, asyncio.CancelledError):
                log.error("Wave ring: the BLE loop ended: %r", exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def stop(self) -> None:
        """Stop streaming and disconnect; returns within 1 s (idempotent)."""
        if not self._active:
            return
        self._active = False
        self._stopping.set()
        loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(0.9)
            if thread.is_alive():
                log.warning("Wave ring: the BLE thread did not end within 0.9 s; left behind")
        self._streaming.clear()

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def connected(self) -> bool:
        return self._streaming.is_set()

    # ------------------------------------------------------------------ the BLE loop
    async def _main(self) -> None:
        central, hci = None, None
        failures = 0
        try:
            if self.transport:
                from genki_signals.data_sources.wave.bumble_backend import open_central

                try:
                    central, hci = await open_central(self.transport)
                except Exception as exc:  # noqa: BLE001 - reported by start()
                    self.last_error = f"cannot open HCI transport {self.transport!r}: {exc!r}"
                    log.error("Wave ring: %s", self.last_error)
                    return
            while not self._stopping.is_set():
                try:
                    await self._session(central)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("Wave ring: %s", self.last_error)
                    log.warning("Wave ring: connection failure", exc_info=True)
                if self._stopping.is_set() or not self.reconnect:
                    break
                delay = min(self.backoff[0] * 2 ** max(failures - 1, 0), self.backoff[1])
                log.info("Wave ring: reconnecting in %.2f s", delay)
                await asyncio.sleep(delay)
        finally:
            if hci is not None:
                try:
                    await asyncio.wait_for(hci.close(), 0.2)
                except (Exception, asyncio.CancelledError):  # noqa: BLE001 - teardown
                    pass

    async def _session(self, central: Any) -> None:
        """One connection: returns when the ring disconnects (raises if it cannot connect)."""
        from bleak import BleakClient

        address = self.ble_address or await self._discover(central)
        disconnected = asyncio.Event()
        kwargs: dict[str, Any] = {}
        if central is not None:
            from genki_signals.data_sources.wave.bumble_backend import (
                BumbleClientBackend,
            )

            kwargs = {"backend": BumbleClientBackend, "bumble_device": central}
        client = BleakClient(address, lambda _c: disconnected.set(),
                             timeout=self.connect_timeout, **kwargs)
        self.decoder.reset()  # a frame cut by the last disconnect is not completed by this one
        self._frame_start = math.nan
        try:
            await client.connect()
            await client.start_notify(p.API_CHAR_UUID, self.handle_notification)
            for request in (p.device_info_request(), p.api_mode_request(), self.config_bytes):
                await client.write_gatt_char(p.API_CHAR_UUID, request, response=False)
            self._client = client
            if self._ever_streamed:
                self.reconnects += 1
                log.info("Wave ring: reconnected to %s (reconnect %d)", address,
                         self.reconnects)
            else:
                log.info("Wave ring: connected to %s, streaming", address)
            self._ever_streamed = True
            self._streaming.set()
            self.last_error = ""
            probe = asyncio.ensure_future(self._probe_link(client)) if self.probe_latency \
                else None
            try:
                await disconnected.wait()
            finally:
                if probe is not None:
                    probe.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await probe
            self._streaming.clear()
            self.disconnects += 1
            self.last_error = "the ring disconnected"
            log.warning("Wave ring: %s disconnected unexpectedly (disconnect %d)", address,
                        self.disconnects)
        finally:
            self._client = None
            self._streaming.clear()
            if client.is_connected:
                try:
                    await asyncio.wait_for(client.disconnect(), 0.5)
                except (Exception, asyncio.CancelledError):  # noqa: BLE001 - best effort
                    pass

    async def _probe_link(self, client: Any) -> None:
        """Measure the link's one-way latency, NTP-style: half the smallest round trip of a
        battery request and its reply, taken as the fit's ``latency`` (mapped times are the
        earliest arrivals, later than the samples by that latency).

        ``PROBE_BURST`` probes 50 ms apart, then one every ``PROBE_INTERVAL`` s; the smallest
        round trip of the connection counts (a late reply only lengthens a trip, so the more
        probes, the closer the minimum gets to the link's own delay on a busy host). Assumes
        the two directions are about equally fast; a battery status the ring sends unasked just
        after a request would make a trip look shorter. The replies also keep ``battery``
        fresh.
        """
        self._reply = asyncio.Event()
        self.link_rtt = None
        try:
            for i in itertools.count():
                self._reply.clear()
                sent = self.clock.now()
                try:
                    await client.write_gatt_char(p.API_CHAR_UUID, p.battery_request(),
                                                 response=False)
                except Exception as exc:  # noqa: BLE001 - the link went: the session ends
                    log.debug("Wave ring: latency probe stopped: %s", exc)
                    return
                try:
                    await asyncio.wait_for(self._reply.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
                else:
                    rtt = self._reply_arrival - sent
                    self.link_probes += 1
                    if self.link_rtt is None or rtt < self.link_rtt:
                        self.link_rtt = rtt
                        self.fit.latency = rtt / 2
                await asyncio.sleep(0.05 if i < PROBE_BURST else PROBE_INTERVAL)
        finally:
            self._reply = None

    async def _discover(self, central: Any) -> str:
        if central is not None:
            from genki_signals.data_sources.wave.bumble_backend import find_by_name

            address = await find_by_name(central, self.name, self.scan_timeout)
        else:
            from bleak import BleakScanner

            device = await BleakScanner.find_device_by_filter(
                lambda d, ad: self.name in (d.name or ad.local_name or ""),
                timeout=self.scan_timeout)
            address = device.address if device is not None else None
        if address is None:
            raise SourceError(f"no BLE device whose name contains {self.name!r} found in "
                              f"{self.scan_timeout:g} s")
        return address

    def handle_notification(self, _sender: Any, data: bytes | bytearray) -> None:
        """One notification: decode, queue with its arrival time (``clock.now()``).

        The BLE callback (on the loop thread); a benchmark may feed bytes directly.
        """
        arrival = self.clock.now()
        self.notifications += 1
        started = self._frame_start if self.decoder.pending else arrival
        out = self.decoder.feed(data)
        if not self.decoder.pending:
            self._frame_start = math.nan
        elif b"\x00" in data or math.isnan(self._frame_start):
            self._frame_start = arrival  # the unfinished frame began in this notification
        records = out.spectrogram if self.spectrogram else out.raw if self.raw else out.motion
        with self._lock:
            if len(records):
                self._records.append(records)
                if out.carried_id == self._stream_id and not math.isnan(started):
                    # the first record's frame began in an earlier notification: its sample
                    # existed when that one arrived (an earlier, tighter bound for the fit)
                    self._arrivals += [started, arrival]
                    self._counts += [1, len(records) - 1]
                else:
                    self._arrivals.append(arrival)
                    self._counts.append(len(records))
            for event in out.buttons:
                self._buttons.append((arrival, event))
            for info in out.device_info:
                self._new_info.append((arrival, info))
        for info in out.device_info:
            self._on_device_info(info)
        for status in out.battery:
            self.battery = status
            if self._reply is not None:
                self._reply_arrival = arrival
                self._reply.set()
        for event in out.buttons:
            if (self.stop_on_top_hold and event.button == p.Button.TOP
                    and event.action == p.ButtonAction.EXTRA_LONG):
                log.warning("Wave ring: top button held: stopping (stop_on_top_hold)")
                self._stopping.set()
                self._active = False
                if self._task is not None:
                    self._task.cancel()

    def _on_device_info(self, info: p.DeviceInfo) -> None:
        self.device_info = info
        log.info("Wave ring: firmware %s, board %s, MAC %s, serial %s", info.firmware_version,
                 info.board, info.mac, info.serial)
        if info.firmware < MIN_FIRMWARE:
            log.warning("Wave ring: firmware %s is older than %s, which this source was "
                        "written for; continuing", info.firmware_version,
                        ".".join(map(str, MIN_FIRMWARE)))

    # ------------------------------------------------------------------ commands
    def recenter(self, timeout: float = 1.0) -> None:
        """Send the recenter command (the current pose becomes the reference)."""
        self._write(p.recenter_request(), timeout)

    def _write(self, data: bytes, timeout: float) -> None:
        client, loop = self._client, self._loop
        if client is None or loop is None or not self._streaming.is_set():
            raise SourceError("Wave ring: not connected")
        future = asyncio.run_coroutine_threadsafe(
            client.write_gatt_char(p.API_CHAR_UUID, data, response=False), loop)
        future.result(timeout)

    # ------------------------------------------------------------------ frames
    def read(self) -> Frame:
        with self._lock:
            chunks, arrivals, counts = self._records, self._arrivals, self._counts
            self._records, self._arrivals, self._counts = [], [], []
        if not chunks:
            return self._empty()
        records = chunks[0] if len(chunks) == 1 else \
            np.frombuffer(b"".join(c.tobytes() for c in chunks), chunks[0].dtype)
        fields = (p.spectrogram_fields(records) if self.spectrogram else
                  p.raw_fields(records) if self.raw else p.motion_fields(records))
        arrival = np.repeat(np.asarray(arrivals), counts)
        mapped = self.fit.update(fields["timestamp_us"], arrival)
        mapped = np.fmax.accumulate(np.concatenate(([self._last], mapped)))[1:]
        self._last = float(mapped[-1])
        self.samples += len(records)
        return {TIMESTAMP: mapped, **fields}

    def _empty(self) -> Frame:
        out = {TIMESTAMP: np.empty(0)}
        out.update({k: np.empty((0, *shape), dtype) for k, (shape, dtype) in self._shapes.items()})
        return out

    def read_events(self) -> list[tuple[str, Frame]]:
        """Button events and device info since the last call: ``(timeline, event frame)``.

        ``buttons``: ``timestamp`` (the press on the topology clock: the button's device stamp
        mapped by the clock fit, the arrival time before the fit has a point), ``button`` and
        ``action`` (names, bytes), ``button_id``, ``action_id``. ``device``: ``firmware``,
        ``board``, ``mac``, ``serial`` (bytes) at the time the ring answered.
        """
        with self._lock:
            buttons, self._buttons = self._buttons, []
            infos, self._new_info = self._new_info, []
        out: list[tuple[str, Frame]] = []
        if buttons:
            device = np.array([e.timestamp * 1e6 for _, e in buttons])
            ts = self.fit.map(device) if self.fit.ready else np.full(len(buttons), np.nan)
            ts = np.where(np.isfinite(ts), ts, [a for a, _ in buttons])
            out.append(("buttons", {
                TIMESTAMP: ts.astype(np.float64),
                "button": np.array([e.button_name.encode() for _, e in buttons]),
                "action": np.array([e.action_name.encode() for _, e in buttons]),
                "button_id": np.array([e.button for _, e in buttons], dtype=np.int64),
                "action_id": np.array([e.action for _, e in buttons], dtype=np.int64)}))
        if infos:
            out.append(("device", {
                TIMESTAMP: np.array([a for a, _ in infos], dtype=np.float64),
                **{k: np.array([i.as_dict()[k].encode() for _, i in infos])
                   for k in ("firmware", "board", "mac", "serial")}}))
        return out

    # ------------------------------------------------------------------ stats
    def clock_uncertainty(self) -> float | None:
        """Seconds: how far the mapped stamps may sit from the ring's true sample times.

        A bound, not a standard deviation: half the smallest probe round trip (the latency is
        taken as half of it; a one-way latency between 0 and the whole round trip is off by at
        most that much: NTP's bound) plus the clock fit's spread, the 75th percentile of the
        per-bucket earliest arrivals' heights above the fitted envelope (the envelope touches
        the lowest of them, which itself sits above the link's true minimum delay by about that
        much when the minimum wanders; ~0 when it is steady). With a ``latency`` given in
        ``fit_options`` only the spread. None until the fit has two buckets.
        """
        spread = self.fit.spread(0.75)
        if spread is None:
            return None
        asymmetry = self.link_rtt / 2 if self.probe_latency and self.link_rtt else 0.0
        return spread + asymmetry

    def stats(self) -> dict[str, Any]:
        """Counters for node heartbeats: connection, decoding, clock fit, device info."""
        uncertainty = self.clock_uncertainty()
        out: dict[str, Any] = {
            "wave_connected": self.connected, "wave_disconnects": self.disconnects,
            "wave_reconnects": self.reconnects, "wave_notifications": self.notifications,
            "wave_samples": self.samples, "wave_frames": self.decoder.frames,
            "wave_dropped_frames": self.decoder.dropped,
            **{f"wave_dropped_{reason}": n for reason, n in sorted(self.decoder.errors.items())},
            "wave_partial_frames": self.decoder.partial,
            "wave_clock_uncertainty_ms": None if uncertainty is None else uncertainty * 1e3,
            "wave_link_latency_ms": self.fit.latency * 1e3,
            "wave_link_rtt_ms": None if self.link_rtt is None else self.link_rtt * 1e3,
            "wave_link_probes": self.link_probes,
            **{f"wave_{k}": v for k, v in self.fit.stats().items()},
        }
        if self.device_info is not None:
            out.update({f"wave_{k}": v for k, v in self.device_info.as_dict().items()})
        if self.battery is not None:
            out["wave_battery_percent"] = self.battery.percentage
        if self.last_error:
            out["wave_last_error"] = self.last_error
        return out
