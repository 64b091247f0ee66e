"""CPU cost of one 100 Hz Genki Wave ring, on the host side.

Two measurements, each the median of ``--repeats`` interleaved runs (ratios are between figures
of the same run):

1. **Decode + map**, the source's own work: ``--seconds`` of 100 Hz motion frames (our encoder,
   cut into notifications of 20-244 B as the virtual ring does) fed to ``WaveDecoder`` one
   notification at a time, read 25 times a second (``motion_fields`` + ``DeviceClockFit``), as
   fast as possible; reported as CPU seconds per second of ring data (= the share of one core a
   ring costs) and microseconds per frame. The baseline is the per-frame way of the vendor's
   library: split at delimiters, ``cobs.decode`` and ``struct.unpack`` each frame into a dict,
   then stack the dicts into arrays.
2. **Whole stack on the virtual radio** (``--stack``): the real ``bleak.BleakClient`` on the
   bumble backend against ``VirtualRing`` in the same process, for ``--stack-seconds`` of wall
   time; process CPU per wall second. This includes the virtual ring, both bumble host stacks
   and two virtual controllers, so it is an upper bound far above what a real adapter costs
   (there the radio and link layer are in the adapter and the kernel).

    python tools/bench_wave.py [--seconds 60] [--repeats 5] [--stack] [--stack-seconds 5]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import machine_info, median, spread  # noqa: E402

from genki_signals.data_sources.wave import protocol as p  # noqa: E402
from genki_signals.data_sources.wave.virtual import wave_motion  # noqa: E402

RATE = 100.0


def notifications(seconds: float, seed: int = 0) -> tuple[list[bytes], list[float]]:
    """The byte stream of ``seconds`` of 100 Hz motion, cut like the virtual ring cuts it."""
    n = int(seconds * RATE)
    rec = np.zeros(n, p.MOTION_DTYPE)
    for i in range(n):
        for key, value in wave_motion(i / RATE).items():
            rec[i][key] = value
    rec["timestamp_us"] = (np.arange(n) * 1e6 / RATE).astype(np.uint64)
    rng = random.Random(seed)
    chunks, times = [], []
    for i in range(n):
        data = memoryview(p.encode_motion(rec[i:i + 1]))
        while len(data):
            size = len(data) if len(data) < 40 or rng.random() < 0.3 else \
                rng.randint(20, min(244, len(data) - 20))
            chunks.append(bytes(data[:size]))
            times.append(i / RATE + 0.002)
            data = data[size:]
    return chunks, times


class _ScriptedTime:
    """The stream's own time, so that arrivals match the device stamps at any run speed."""

    t = 0.0

    def now(self) -> float:
        return self.t


def run_ours(chunks: list[bytes], times: list[float], full: bool = True) -> float:
    """CPU seconds for ``WaveDataSource``'s own path (``handle_notification`` per notification,
    ``read()`` every 40 ms of stream time as a source node does); ``full=False``: the decoder
    alone (``WaveDecoder.feed``, records to arrays)."""
    from genki_signals.clock import Clock
    from genki_signals.data_sources.wave.source import WaveDataSource

    scripted = _ScriptedTime()
    source = WaveDataSource(clock=Clock().follow(scripted.now))
    decoder, pending, next_read = p.WaveDecoder(), [], 0.04
    t0 = time.process_time()
    for chunk, t in zip(chunks, times):
        if full:
            scripted.t = t
            source.handle_notification(None, chunk)
        else:
            out = decoder.feed(chunk)
            if len(out.motion):
                pending.append(out.motion)
        if t >= next_read:
            next_read += 0.04
            if full:
                source.read()
            elif pending:
                records = np.frombuffer(b"".join(r.tobytes() for r in pending), p.MOTION_DTYPE)
                {k: np.ascontiguousarray(records[k]) for k in records.dtype.names}
                pending = []
    return time.process_time() - t0


_MOTION = struct.Struct("<3f3f3f4f4f3f3f?fQ")


def run_baseline(chunks: list[bytes], times: list[float]) -> float:
    """The vendor's per-frame way: split, cobs.decode, struct.unpack into dicts, stack."""
    from cobs import cobs

    buf, rows = bytearray(), []
    t0 = time.process_time()
    next_read = 0.04
    for chunk, t in zip(chunks, times):
        buf += chunk
        while b"\x00" in buf:
            frame, _, rest = bytes(buf).partition(b"\x00")
            buf[:] = rest
            try:
                raw = cobs.decode(frame)
            except cobs.DecodeError:
                continue
            _kind, msg_id, _size = struct.unpack_from("<BBH", raw)
            if msg_id == 1:
                v = _MOTION.unpack(raw[4:])
                rows.append({"gyro": v[0:3], "acc": v[3:6], "mag": v[6:9],
                             "raw_pose": v[9:13], "current_pose": v[13:17],
                             "euler": v[17:20], "linacc": v[20:23], "peak": v[23],
                             "peak_norm_velocity": v[24], "timestamp_us": v[25]})
        if t >= next_read and rows:
            {k: np.array([r[k] for r in rows]) for k in rows[0]}
            rows, next_read = [], next_read + 0.04
    return time.process_time() - t0


def bench_stack(seconds: float) -> float:
    from genki_signals.clock import Clock
    from genki_signals.data_sources.wave.source import WaveDataSource
    from genki_signals.data_sources.wave.virtual import VirtualRing

    clock = Clock()
    with VirtualRing(clock=clock.now) as ring:
        source = WaveDataSource(ring.address, transport=ring.transport, clock=clock)
        source.start()
        try:
            c0, w0 = time.process_time(), time.monotonic()
            while time.monotonic() - w0 < seconds:
                time.sleep(0.04)
                source.read()
            return (time.process_time() - c0) / (time.monotonic() - w0)
        finally:
            source.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="ring seconds per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stack", action="store_true", help="also the whole virtual BLE stack")
    ap.add_argument("--stack-seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    chunks, times = notifications(args.seconds)
    frames = int(args.seconds * RATE)
    ours, decode, base = [], [], []
    for _ in range(args.repeats):  # interleaved
        ours.append(run_ours(chunks, times))
        decode.append(run_ours(chunks, times, full=False))
        base.append(run_baseline(chunks, times))
    print(machine_info())
    print(f"{frames} motion frames ({args.seconds:g} s at 100 Hz) in {len(chunks)} "
          f"notifications, {args.repeats} interleaved runs, medians (spread):")
    for name, runs in (("WaveDataSource: decode + host fields + clock fit", ours),
                       ("decode only: WaveDecoder -> arrays", decode),
                       ("baseline decode: per-frame cobs + struct + dicts", base)):
        m = median(runs)
        print(f"  {name:48s} {m / args.seconds * 100:6.3f} % of a core per ring, "
              f"{m / frames * 1e6:6.1f} us/frame ({spread(runs) * 100:.0f} %)")
    print(f"  decode only / baseline decode: {median(decode) / median(base):.2f}; "
          f"source / baseline decode: {median(ours) / median(base):.2f}")
    if args.stack:
        stack = [bench_stack(args.stack_seconds) for _ in range(args.repeats)]
        print(f"  whole virtual stack (ring + 2 bumble hosts + BleakClient + source), "
              f"{args.stack_seconds:g} s runs: {median(stack) * 100:.1f} % of a core "
              f"({spread(stack) * 100:.0f} %)")


if __name__ == "__main__":
    main()
