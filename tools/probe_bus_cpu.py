"""Probe: CPU per frame and garbage collections of one Publisher -> Subscriber hop, two processes.

A diagnostic for the bus's per-frame path (issue 16), not a benchmark with a verdict: a source
process publishes ``--frames`` frames ``{"timestamp": float64 (1,), "x": uint8 (24,)}`` over a
lossless ``ipc://`` edge (``fw``), or the same payload packed in a msgpack header on a raw
``XPUB_NODROP`` -> ``SUB`` pair (``raw``, the faster raw method for small frames, see
``tools/bench_bus.py``), as fast as it can or at ``--rate`` Hz; a sink process receives them.

Printed per run: CPU time per frame of each process (``time.process_time``: all its threads,
so ZeroMQ's I/O thread too), the arrival rate, end-to-end latency p50/p99, and every garbage
collection either process made while it measured (count, total and longest pause per
generation; ``--gc freeze`` calls ``gc.freeze()`` after start-up, as a node forked from the
launcher's fork server has). Each process writes its pid to ``--pid-dir`` (``source.pid``,
``sink.pid``) so that ``strace -c -f -p`` or ``py-spy record -p`` can attach to it.

    python tools/probe_bus_cpu.py fw --frames 3000 --rate 1000 [--gc freeze] [--pid-dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

from genki_signals.bus import Publisher, Subscriber, ipc_endpoint


class GcWatch:
    """Counts collections per generation, their total and longest pause (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.stats = {g: [0, 0.0, 0.0] for g in range(3)}
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        pause = time.perf_counter() - self._t0
        s = self.stats[info["generation"]]
        s[0] += 1
        s[1] += pause
        s[2] = max(s[2], pause)

    def reset(self) -> None:
        self.stats = {g: [0, 0.0, 0.0] for g in range(3)}

    def report(self) -> str:
        return " ".join(f"gen{g}: {n} ({tot * 1e3:.1f} ms, max {mx * 1e3:.2f} ms)"
                        for g, (n, tot, mx) in self.stats.items())


def _settle(gc_mode: str, pid_dir: str | None, role: str) -> GcWatch:
    if pid_dir:
        Path(pid_dir, f"{role}.pid").write_text(str(os.getpid()))
    if gc_mode == "freeze":
        gc.freeze()
    return GcWatch()


def _sink(mode: str, ep: str, n: int, q: mp.Queue, gc_mode: str, pid_dir: str | None) -> None:
    ctx = zmq.Context()
    sub = sock = None
    if mode == "fw":
        sub = Subscriber(context=ctx)
        sub.connect(ep, [""], policy="lossless", rcvhwm=1000)
        recv = sub.recv

        def get() -> float:
            msg = recv(10.0)
            if msg is None:
                raise SystemExit("sink: no frame for 10 s")
            return msg.frame["timestamp"][0]
    else:
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.setsockopt(zmq.RCVTIMEO, 10_000)
        sock.connect(ep)
        rm, unpackb, frombuffer = sock.recv_multipart, msgpack.unpackb, np.frombuffer

        def get() -> float:
            parts = rm(copy=False)
            md = unpackb(parts[1])
            frombuffer(md["x"], dtype=md["dtype"]).reshape(md["shape"])
            return md["t"]
    watch = _settle(gc_mode, pid_dir, "sink")
    q.put("ready")
    get()
    watch.reset()
    mono = time.monotonic
    lat = np.empty(n - 1)
    c0, t0 = time.process_time(), mono()
    for i in range(n - 1):
        stamp = get()
        lat[i] = mono() - stamp
    c1, t1 = time.process_time(), mono()
    q.put(("sink", (c1 - c0) / (n - 1), (n - 1) / (t1 - t0), float(np.percentile(lat, 50)),
           float(np.percentile(lat, 99)), watch.report()))
    time.sleep(0.5)
    if sub is not None:
        sub.close()
    if sock is not None:
        sock.close(0)
    ctx.term()


def _source(mode: str, ep: str, lossy: str, n: int, rate: float, q: mp.Queue, gc_mode: str,
            pid_dir: str | None) -> None:
    ctx = zmq.Context()
    x = (np.arange(24) % 251).astype(np.uint8)
    mono = time.monotonic
    pub = sock = None
    if mode == "fw":
        pub = Publisher(lossy, "src", context=ctx, lossless_endpoint=ep, sndhwm=1000,
                        close_timeout=3.0)
        if not pub.wait_for_subscribers("data", lossless=True, timeout=30):
            raise SystemExit("source: no lossless reader after 30 s")
        publish, array = pub.publish, np.array

        def send() -> None:
            publish("data", {"timestamp": array([mono()]), "x": x})
    else:
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.bind(ep)
        if not sock.poll(30_000):
            raise SystemExit("source: no subscriber after 30 s")
        sock.recv()
        sm, packb = sock.send_multipart, msgpack.packb

        def send() -> None:
            sm([b"data", packb({"dtype": x.dtype.str, "shape": x.shape, "t": mono(),
                                "x": x.data})])
    watch = _settle(gc_mode, pid_dir, "source")
    q.put("ready")
    time.sleep(0.3)
    send()
    watch.reset()
    c0 = time.process_time()
    if rate:
        t0 = mono() + 0.002
        for i in range(n - 1):
            while (left := t0 + i / rate - mono()) > 0:
                time.sleep(left)
            send()
    else:
        for _ in range(n - 1):
            send()
    c1 = time.process_time()
    q.put(("source", (c1 - c0) / (n - 1), watch.report()))
    time.sleep(1.0)
    if pub is not None:
        pub.close()
    if sock is not None:
        sock.close(0)
    ctx.term()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("fw", "raw"))
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=0.0, help="Hz; 0: as fast as possible")
    parser.add_argument("--gc", choices=("default", "freeze"), default="default")
    parser.add_argument("--pid-dir", default=None)
    args = parser.parse_args(argv)
    run_dir = tempfile.mkdtemp(prefix="probe-bus-")
    ep, lossy = ipc_endpoint(run_dir, "a"), ipc_endpoint(run_dir, "a-lossy")
    mpctx = mp.get_context("spawn")
    q = mpctx.Queue()
    src = mpctx.Process(target=_source, args=(args.mode, ep, lossy, args.frames, args.rate, q,
                                              args.gc, args.pid_dir))
    snk = mpctx.Process(target=_sink, args=(args.mode, ep, args.frames, q, args.gc,
                                            args.pid_dir))
    src.start()
    time.sleep(0.5)
    snk.start()
    results = {}
    try:
        for _ in range(4):
            item = q.get(timeout=120 + 2 * args.frames / max(args.rate, 1000))
            if item != "ready":
                results[item[0]] = item[1:]
    finally:
        for p in (src, snk):
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    so, si = results["source"], results["sink"]
    print(f"{args.mode:4} {args.frames} frames at {args.rate or 'max'} Hz, gc {args.gc}: "
          f"source {so[0] * 1e6:.1f} us/frame, sink {si[0] * 1e6:.1f} us/frame (CPU, all threads); "
          f"arrived at {si[1]:,.0f}/s; latency p50 {si[2] * 1e6:.0f} us, p99 {si[3] * 1e6:.0f} us")
    print(f"  collections while measuring: source {so[1]}")
    print(f"                               sink   {si[4]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
