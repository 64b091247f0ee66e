"""Large frames between two processes on one host: genki's shared-memory bus vs ezmsg and pyzmq.

One source process publishes ``--frames`` frames of one float64 array (``--size`` bytes, default
1 MiB) as fast as the transport lets it, lossless, to one sink process on the same host; the sink
checks every frame (first and last item, and every 64th frame whole, against what was sent) and
reports frames/s from the first to the last measured frame. Implementations, run interleaved
(the order rotates each round), medians of ``--repeats`` rounds:

* ``genki``: ``Publisher`` / ``Subscriber`` over ``ipc://``, lossless edge, the array through the
  publisher's shared-memory ring (``bus.shm``), zero-copy at the reader.
* ``genki-loan``: the same, the source writing each frame straight into a free slot of the ring
  (``Publisher.loan``, a loaned message): publishing it copies nothing.
* ``genki-copy``: the same as ``genki``, the reader copying each array out of the ring
  (copy-on-receive).
* ``genki-noshm``: the same bus with shared memory off (``shm_threshold=None``): the array as a
  zero-copy ZeroMQ part, as before this transport existed.
* ``raw``: hand-written pyzmq PUSH/PULL over ``ipc://``, msgpack header + the array as a
  zero-copy part (``copy=False`` both ways, ``np.frombuffer`` on the received frame): raw pyzmq's
  faster method at this size (``tools/bench_bus_codec.py``).
* ``ezmsg``: ezmsg's ``Publisher.broadcast`` / ``Subscriber.recv_zero_copy`` across processes
  (its shared-memory transport, ``force_tcp=False``, 32 buffers), needs ``pip install ezmsg``
  (the ``bench`` extra); skipped with a note if it is missing.

How the source makes frame ``i`` (``--make``; frame ``i`` holds ``i % 64`` in every item):

* ``pool`` (default): it sends array ``i % 64`` of a pool of 64 arrays made before the run and
  never modified, so no transport is charged for making frames (``genki-loan`` copies the pool
  array into its loan: the same work as ``genki``).
* ``fill``: it fills an array with the value, as a real source writes its samples, each
  implementation at its best: ``genki-loan`` fills the loaned slot; ``genki``, ``genki-copy``
  and ``ezmsg``, which copy the array into their shared memory before ``publish`` /
  ``broadcast`` returns, refill one scratch array; ``genki-noshm`` and ``raw``, whose sockets
  keep a reference to the array, fill a new one.

    python tools/bench_shm.py                 # 1 MiB, 5 rounds
    python tools/bench_shm.py --size 65536 --frames 20000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import numpy as np

POOL = 64
IMPLS = ("genki", "genki-loan", "genki-copy", "genki-noshm", "raw", "ezmsg")
MAKES = ("pool", "fill")


def _pool(size: int) -> list[np.ndarray]:
    return [np.full(size // 8, float(k)) for k in range(POOL)]


def _maker(make: str, size: int, reuse: bool, loan=None):
    """``frame(i)``: the source's array for frame ``i`` (see ``--make``). ``reuse``: the
    transport copies the array before the send returns, so one scratch array is refilled;
    ``loan(items)``: a writable array from the transport (``Publisher.loan``)."""
    items = size // 8
    if make == "pool":
        pool = _pool(size)
        if loan is None:
            return lambda i: pool[i % POOL]

        def from_pool(i: int) -> np.ndarray:
            arr = loan(items)
            np.copyto(arr, pool[i % POOL])
            return arr
        return from_pool
    scratch = np.empty(items)

    def fill(i: int) -> np.ndarray:
        arr = loan(items) if loan is not None else scratch if reuse else np.empty(items)
        arr.fill(float(i % POOL))
        return arr
    return fill


class _Checker:
    """Counts frames at the sink; times frames 0..n-1 (warm-up frames carry -1)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.next = 0
        self.bad = 0
        self.t0 = self.t1 = 0.0

    def see(self, arr: np.ndarray, seq: int) -> bool:
        """True when the last frame arrived."""
        if seq < 0:
            return False
        k = seq % POOL
        if seq != self.next or arr[0] != k or arr[-1] != k or seq % 64 == 0 and not np.all(arr == k):
            self.bad += 1
        self.next = seq + 1
        if seq == 0:
            self.t0 = time.perf_counter()
            self.c0 = time.process_time()
        if seq == self.n - 1:
            self.t1 = time.perf_counter()
            self.c1 = time.process_time()
            return True
        return False

    def result(self) -> dict:
        return {"fps": (self.n - 1) / (self.t1 - self.t0), "bad": self.bad, "got": self.next,
                "sink_cpu": (self.c1 - self.c0) / (self.n - 1)}


class _SourceCpu:
    """CPU seconds of the source process (every thread) over its n measured sends."""

    def __init__(self, out) -> None:
        self.out = out
        self.c0 = time.process_time()

    def done(self, n: int) -> None:
        self.out.put({"src_cpu": (time.process_time() - self.c0) / n})


# ---------------------------------------------------------------------------- genki


def _genki_source(run_dir: str, size: int, n: int, started, out, impl: str, make: str,
                  ring: int | None) -> None:
    from genki_signals.bus.sockets import Publisher

    shm = impl != "genki-noshm"
    pub = Publisher(f"ipc://{run_dir}/lossy", "src", lossless_endpoint=f"ipc://{run_dir}/ll",
                    shm_threshold=1 if shm else None, close_timeout=10,
                    **({} if ring is None else {"shm_ring_bytes": ring}))
    frame = _maker(make, size, shm, pub.loan if impl == "genki-loan" else None)
    pub.wait_for_subscribers("x", lossless=True, timeout=30)
    while not started.wait(0.02):
        pub.publish("x", {"s": np.int64(-1), "x": frame(0)})
    cpu = _SourceCpu(out)
    for i in range(n):
        pub.publish("x", {"s": np.int64(i), "x": frame(i)})
    cpu.done(n)
    pub.publish_eos("x")
    pub.close()


def _genki_sink(run_dir: str, n: int, started, out, zero_copy: bool) -> None:
    from genki_signals.bus.sockets import Subscriber

    sub = Subscriber(shm_zero_copy=zero_copy)
    sub.connect(f"ipc://{run_dir}/ll", ["x"], policy="lossless")
    check = _Checker(n)
    while True:
        msg = sub.recv(30)
        if msg is None:
            break
        if msg.kind == "eos":
            break
        if check.next == 0:  # until the measured frames start (Event.set costs a lock)
            started.set()
        if check.see(msg.frame["x"], int(msg.frame["s"])):
            break
        del msg
    res = check.result()
    res["torn"] = sub.stats.torn
    while (m := sub.recv(5)) is not None and m.kind != "eos":
        pass
    sub.close()
    out.put(res)


# ---------------------------------------------------------------------------- raw pyzmq


def _raw_source(run_dir: str, size: int, n: int, started, out, make: str) -> None:
    import msgpack
    import zmq

    frame = _maker(make, size, False)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.bind(f"ipc://{run_dir}/raw")
    shape = [size // 8]

    def send(seq: int, arr: np.ndarray) -> None:
        head = msgpack.packb({"seq": seq, "dtype": arr.dtype.str, "shape": shape})
        push.send(b"x", zmq.SNDMORE)
        push.send(head, zmq.SNDMORE)
        push.send(arr, copy=False)

    while not started.wait(0.02):
        send(-1, frame(0))
    cpu = _SourceCpu(out)
    for i in range(n):
        send(i, frame(i))
    cpu.done(n)
    push.close()
    ctx.term()


def _raw_sink(run_dir: str, n: int, started, out, _zero_copy: bool) -> None:
    import msgpack
    import zmq

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(f"ipc://{run_dir}/raw")
    check = _Checker(n)
    while pull.poll(30_000):
        _, head, data = pull.recv_multipart(copy=False)
        h = msgpack.unpackb(head.buffer)
        arr = np.frombuffer(data.buffer, dtype=h["dtype"]).reshape(h["shape"])
        if check.next == 0:  # until the measured frames start (Event.set costs a lock)
            started.set()
        if check.see(arr, h["seq"]):
            break
    pull.close()
    ctx.term()
    out.put(check.result())


# ---------------------------------------------------------------------------- ezmsg


def _ez_source(addr, size: int, n: int, started, out, make: str) -> None:
    import ezmsg.core as ez

    frame = _maker(make, size, True)  # broadcast copies into ezmsg's shared memory

    async def main() -> None:
        async with ez.GraphContext(addr, auto_start=False) as ctx:
            pub = await ctx.publisher("BENCH/X", host=addr[0], num_buffers=32,
                                      buf_size=2 * size + 4096, force_tcp=False)
            while not started.is_set():
                await pub.broadcast((-1, frame(0)))
                await asyncio.sleep(0.02)
            cpu = _SourceCpu(out)
            for i in range(n):
                await pub.broadcast((i, frame(i)))
            cpu.done(n)
            await asyncio.sleep(1.0)  # let the last messages be read before the channel closes

    asyncio.run(main())


def _ez_sink(addr, n: int, started, out, _zero_copy: bool) -> None:
    import ezmsg.core as ez

    async def main() -> None:
        check = _Checker(n)
        async with ez.GraphContext(addr, auto_start=False) as ctx:
            sub = await ctx.subscriber("BENCH/X")
            done = False
            while not done:
                async with sub.recv_zero_copy() as msg:
                    if check.next == 0:  # until the measured frames start (Event.set costs a lock)
                        started.set()
                    done = check.see(msg[1], msg[0])
                del msg  # a view of ezmsg's buffer must not outlive the context
            out.put(check.result())

    try:
        asyncio.run(main())
    except BufferError:  # ezmsg closing its SharedMemory at exit; the result is already out
        pass


# ---------------------------------------------------------------------------- driver


def run_case(mpctx, impl: str, size: int, n: int, ez_addr, ring: int | None = None,
             make: str = "pool") -> dict:
    started = mpctx.Event()
    out = mpctx.Queue()
    with tempfile.TemporaryDirectory(prefix="bench-shm-") as run_dir:
        if impl.startswith("genki"):
            src, sink = _genki_source, _genki_sink
            src_args = (run_dir, size, n, started, out, impl, make, ring)
            sink_args = (run_dir, n, started, out, impl != "genki-copy")
        elif impl == "raw":
            src, sink = _raw_source, _raw_sink
            src_args, sink_args = (run_dir, size, n, started, out, make), \
                (run_dir, n, started, out, True)
        else:
            src, sink = _ez_source, _ez_sink
            src_args, sink_args = (ez_addr, size, n, started, out, make), \
                (ez_addr, n, started, out, True)
        p_sink = mpctx.Process(target=sink, args=sink_args, daemon=True)
        p_sink.start()
        if impl == "ezmsg":
            time.sleep(1.0)  # the subscriber registers before the publisher appears
        p_src = mpctx.Process(target=src, args=src_args, daemon=True)
        p_src.start()
        try:
            res = {}
            for _ in range(2):  # the sink's result and the source's CPU, in either order
                res.update(out.get(timeout=120))
        finally:
            for p in (p_src, p_sink):
                p.join(15)
                if p.is_alive():
                    p.kill()
                    p.join(5)
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20, help="array bytes per frame")
    parser.add_argument("--frames", type=int, default=3000, help="measured frames per run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--make", default="pool", choices=MAKES,
                        help="how the source makes each frame (see the module docstring)")
    parser.add_argument("--ring", type=int, default=None,
                        help="genki's shm_ring_bytes (default: bus.shm.DEFAULT_RING_BYTES)")
    args = parser.parse_args(argv)

    impls = list(args.impls)
    ez_server = ez_addr = None
    if "ezmsg" in impls:
        try:
            from ezmsg.core.graphserver import GraphServer
        except ImportError:
            print("ezmsg is not installed (pip install '.[bench]'): its column is skipped")
            impls.remove("ezmsg")
        else:
            ez_server = GraphServer()
            ez_server.start(("127.0.0.1", 0))
            ez_addr = tuple(ez_server.address)
    mpctx = mp.get_context("spawn")
    print(f"load average at start: {os.getloadavg()}; {args.size} B frames, {args.frames} "
          f"frames per run, {args.repeats} rounds, frames made by --make {args.make}")
    fps: dict[str, list[float]] = {i: [] for i in impls}
    cpu: dict[str, list[float]] = {i: [] for i in impls}
    try:
        for r in range(args.repeats):
            order = impls[r % len(impls):] + impls[:r % len(impls)]
            for impl in order:
                res = run_case(mpctx, impl, args.size, args.frames, ez_addr, args.ring,
                               args.make)
                if res["bad"] or res["got"] != args.frames:
                    raise SystemExit(f"{impl}: {res['bad']} bad frames, {res['got']} of "
                                     f"{args.frames} received: {res}")
                fps[impl].append(res["fps"])
                cpu[impl].append(res["src_cpu"] + res["sink_cpu"])
                print(f"  round {r + 1} {impl:12s} {res['fps']:9.0f} frames/s "
                      f"{res['fps'] * args.size / 1e9:6.2f} GB/s  CPU/frame source "
                      f"{res['src_cpu'] * 1e6:6.0f} us + sink {res['sink_cpu'] * 1e6:6.0f} us",
                      flush=True)
    finally:
        if ez_server is not None:
            ez_server.stop()
    med = {i: statistics.median(v) for i, v in fps.items()}
    print(f"\nload average at end: {os.getloadavg()}")
    mcpu = {i: statistics.median(v) for i, v in cpu.items()}
    print(f"\n| implementation | frames/s (median of {args.repeats}) | GB/s | CPU us/frame "
          "(source + sink, median) | runs (frames/s) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for i in impls:
        runs = ", ".join(f"{v:.0f}" for v in fps[i])
        print(f"| {i} | {med[i]:,.0f} | {med[i] * args.size / 1e9:.2f} | {mcpu[i] * 1e6:,.0f} "
              f"| {runs} |")
    print()
    for ours in ("genki", "genki-loan"):
        for base in ("ezmsg", "raw", "genki-noshm"):
            if base in med and ours in med:
                per_round = [a / b for a, b in zip(fps[ours], fps[base])]
                print(f"{ours} / {base}: {med[ours] / med[base]:.2f}x (ratio of medians); "
                      f"per round {', '.join(f'{x:.2f}' for x in per_round)} "
                      f"(median {statistics.median(per_round):.2f})")
    if "genki-copy" in med and "ezmsg" in med:
        print(f"genki-copy / ezmsg: {med['genki-copy'] / med['ezmsg']:.2f}x")
    for ours in ("genki", "genki-loan"):
        for base in ("ezmsg", "raw", "genki-noshm"):
            if base in mcpu and ours in mcpu:
                per_round = [b / a for a, b in zip(cpu[ours], cpu[base])]
                print(f"CPU per frame, {base} / {ours} (higher: {ours} cheaper): "
                      f"{mcpu[base] / mcpu[ours]:.2f}x; per round "
                      f"{', '.join(f'{x:.2f}' for x in per_round)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
