"""Where the Wave ring's timestamp error comes from: the delay of each stage, on one clock.

The virtual ring (bumble radio, real ``BleakClient``) and the source run in this process on one
``Clock``; the ring's notify calls, its handler for the host's writes and the source's
notification callback are wrapped to read the clock (nothing else changes). Prints, over the
run, min / p10 / p50 / p90 / max (ms) of:

* motion: sample taken -> notify call (encoding, plus the injected jitter) -> the last
  notification of the frame handed to bumble -> the source's callback (virtual radio, HCI over
  loopback TCP, the central's host stack, bleak), by the number of notifications the frame took;
* the latency probe: host write -> the ring's handler (write path), the ring's turnaround
  (handler -> reply notify call), reply notify -> the source's callback (notify path);
* what the source measured: the smallest round trip, the latency it subtracts (half of it) and
  the mapped timestamps' error after the first 4 s.

    python tools/diagnose_wave_latency.py [--jitter 0.005] [--seconds 12] [--skew 100]
"""

from __future__ import annotations

import argparse

import numpy as np
from measure_wave_timestamps import stream

from genki_signals.clock import Clock
from genki_signals.data_sources.wave.source import WaveDataSource
from genki_signals.data_sources.wave.virtual import VirtualRing


def summary(x) -> str:
    x = np.asarray(x) * 1e3
    if x.size == 0:
        return "(none)"
    return (f"min {x.min():.3f}  p10 {np.percentile(x, 10):.3f}  p50 {np.median(x):.3f}  "
            f"p90 {np.percentile(x, 90):.3f}  max {x.max():.3f}  (n {x.size})")


class TimedSource(WaveDataSource):
    """The source, noting when each notification's callback ran and the probes' send times."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.completed: dict[int, float] = {}  # timestamp_us -> callback time (frame's end)
        self.battery_arrivals: list[float] = []

    def handle_notification(self, sender, data) -> None:
        t = self.clock.now()
        n0, battery = len(self._records), self.battery
        super().handle_notification(sender, data)
        with self._lock:
            new = self._records[n0:]
        for records in new:
            for us in records["timestamp_us"]:
                self.completed[int(us)] = t
        if self.battery is not battery:
            self.battery_arrivals.append(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jitter", type=float, default=0.005)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--skew", type=float, default=100.0)
    args = ap.parse_args()
    clock = Clock()
    ring = VirtualRing(clock=clock.now, jitter=args.jitter, skew_ppm=args.skew, seed=1)
    frames_notified: dict[int, tuple[float, float, int]] = {}  # us -> (call, last chunk, n)
    replies: list[float] = []  # reply notify calls
    reply_chunks: list[float] = []
    handled: list[float] = []  # the ring's write handler

    on_write = ring._on_write

    def timed_write(connection, value) -> None:
        handled.append(clock.now())
        on_write(connection, value)

    ring._on_write = timed_write  # read by start() when it registers the characteristic
    notify = ring._notify

    async def timed_notify(connection, data, stream=True) -> None:
        called, chunks = clock.now(), []
        device = ring.device
        notify_subscriber = device.notify_subscriber

        async def timed_chunk(*a, **k):
            chunks.append(clock.now())
            return await notify_subscriber(*a, **k)

        device.notify_subscriber = timed_chunk
        try:
            await notify(connection, data, stream)
        finally:
            device.notify_subscriber = notify_subscriber
        if stream and ring.sent and len(data) > 100:
            frames_notified[ring.sent[-1][0]] = (called, chunks[-1], len(chunks))
        elif not stream:
            replies.append(called)
            reply_chunks.append(chunks[-1])

    ring._notify = timed_notify
    ring.start()
    source = TimedSource(ring.address, transport=ring.transport, clock=clock)
    try:
        frames, stats = stream(source, ring, args.seconds)
    finally:
        ring.close()
    ts = np.concatenate([f["timestamp"] for f in frames])
    us = np.concatenate([f["timestamp_us"] for f in frames])
    truth = dict(ring.sent)
    err = (ts - np.array([truth[int(u)] for u in us]))[ts > ts[0] + 4.0]

    common = [u for u in truth if u in frames_notified and u in source.completed]
    sample = np.array([truth[u] for u in common])
    call, last, n = (np.array(x) for x in zip(*(frames_notified[u] for u in common)))
    done = np.array([source.completed[u] for u in common])
    print(f"jitter {args.jitter * 1e3:g} ms, skew {args.skew:+g} ppm, {args.seconds:g} s")
    print("motion  sample -> notify call        ", summary(call - sample))
    print("motion  notify call -> last chunk    ", summary(last - call))
    for k in (1, 2, 3):
        m = n == k
        print(f"motion  last chunk -> callback ({k} ntf)", summary((done - last)[m]))
    print("motion  sample -> callback (frame end)", summary(done - sample))
    # probes: the ring handled 3 setup writes first; pair the rest in order
    k = min(len(handled) - 3, len(replies) - 1, len(source.battery_arrivals))
    h = np.array(handled[3:3 + k])
    r = np.array(replies[1:1 + k])  # replies[0] answers the device-info request
    rc = np.array(reply_chunks[1:1 + k])
    b = np.array(source.battery_arrivals[:k])
    print("probe   ring turnaround (handler -> reply notify)", summary(r - h))
    print("probe   reply notify -> callback      ", summary(b - rc))
    print("probe   ring handler -> callback      ", summary(b - h))
    print(f"source  smallest round trip {stats['wave_link_rtt_ms']:.3f} ms, latency subtracted "
          f"{stats['wave_link_latency_ms']:.3f} ms; floor of sample -> first-byte arrival "
          f"(what the fit's envelope sees) ~ min(sample -> callback) above")
    print("mapped  error after 4 s (signed)     ", summary(err))
    print(f"        reported uncertainty {stats['wave_clock_uncertainty_ms']:.3f} ms, "
          f"rate {stats['wave_device_rate_ppm']:+.1f} ppm (leader per device)")


if __name__ == "__main__":
    main()
