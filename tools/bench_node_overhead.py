"""Benchmark: CPU per frame in a graph node process against graph compute + one raw pyzmq hop.

What runs (issue 16, row "CPU per frame in a graph node")
    The demo's ``derived`` graph (the operators of ``specs/demo.yaml``: Sum, Sum,
    FourierTransform 256/128, SampleRate, MovingAverage 10) on the demo source's frames: 4
    samples of ``timestamp``, ``sine_0``, ``sine_1``, ``noise`` (float64), as the 100 Hz source
    publishes them at 25 frames/s.

    * framework ("fw"): a real graph node process (``python -m genki_signals.nodes``, the
      ``graph`` kind, its input edge ``lossless``), fed by this process through an
      ``XPUB_NODROP`` socket with frames made by ``bus.codec.encode``; its outputs go out on its
      ``Publisher`` to a SUB in this process. This process plays the launcher's control socket.
    * raw (the floor): a process of this file (``--raw-worker``) with a SUB and a PUB socket:
      ``recv_multipart(copy=False)``, ``msgpack.unpackb`` of a header holding the arrays packed
      inline as bin (the faster raw method for small frames, see ``tools/bench_bus.py``),
      ``np.frombuffer`` per field, ``SignalGraph.process`` with the same operators, the outputs
      packed the same way and sent with ``send_multipart``. Graph compute + one raw hop.
    * graph only: ``SignalGraph.process`` on the same frames in this process (what the graph
      costs without any transport), for the breakdown.

    CPU per frame = the process's CPU time (user + system, all threads, ``psutil``) between the
    first frame sent and the last output received, divided by the frames. Two modes:
    ``sat`` (frames sent as fast as the NODROP socket takes them: the node is the bottleneck,
    reads batch up) and ``paced`` (``--rate`` frames/s on a drift-free schedule: every frame
    wakes the process, as live traffic does; the idle loop's own cost is included).

    Runs alternate fw/raw (which goes first alternates too); medians of ``--repeats`` runs, and
    the ratio fw / raw of the medians. Goal (issue 16): fw <= 1.5x raw.

    python tools/bench_node_overhead.py [--frames 5000] [--repeats 5] [--rate 1000]
                                        [--profile OUT.prof]

``--profile OUT`` starts one more fw node, and samples it with py-spy (``pip install py-spy``)
during ``4 x --frames`` frames at saturation (collapsed stacks written to OUT); it prints CPU
per frame by function, self and inclusive (a sampling profiler: no call overhead added).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import yaml
import zmq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _bench_util import machine_info, median, spread, wait_until  # noqa: E402

HWM = 1000
CHUNK = 4  # samples per frame, as the demo source publishes
NODE = "derived"
OUT_TOPIC = b"derived/main"


def demo_operators() -> list[dict]:
    spec = yaml.safe_load((REPO / "specs" / "demo.yaml").read_text())
    return next(n for n in spec["nodes"] if n["id"] == NODE)["params"]["operators"]


def make_frames(start: int, n: int) -> list[dict[str, np.ndarray]]:
    """``n`` consecutive 4-sample frames of the demo source, from sample ``start``."""
    i = np.arange(start, start + n * CHUNK)
    t = i / 100.0
    rng = np.random.default_rng(start)
    cols = {"timestamp": t, "sine_0": 5 * np.sin(2 * np.pi * 3 * t),
            "sine_1": 2 * np.sin(2 * np.pi * 7 * t), "noise": rng.normal(size=t.size)}
    return [{k: v[j * CHUNK:(j + 1) * CHUNK].copy() for k, v in cols.items()} for j in range(n)]


def pack_raw(frame: dict[str, np.ndarray], t: float) -> bytes:
    """The raw method's header: every array inline as bin (dtype, shape, bytes)."""
    return msgpack.packb({"t": t, "f": [[k, v.dtype.str, v.shape, v.tobytes()]
                                        for k, v in frame.items()]})


def unpack_raw(data) -> dict[str, np.ndarray]:
    md = msgpack.unpackb(data)
    return {k: np.frombuffer(b, dtype=d).reshape(s) for k, d, s, b in md["f"]}


# --------------------------------------------------------------------------- raw worker

def raw_worker(sub_ep: str, pub_ep: str) -> int:
    """Graph compute + one raw pyzmq hop; exits on an empty message."""
    from genki_signals.graph import SignalGraph
    from genki_signals.signals.base import Operator

    graph = SignalGraph([Operator.from_dict(op) for op in demo_operators()])
    ctx = zmq.Context()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    sub.setsockopt(zmq.RCVHWM, HWM)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(sub_ep)
    pub.setsockopt(zmq.SNDHWM, HWM)
    pub.bind(pub_ep)
    recv, send = sub.recv_multipart, pub.send_multipart
    packb, unpackb, frombuffer = msgpack.packb, msgpack.unpackb, np.frombuffer
    outputs = graph.outputs
    try:
        while True:
            parts = recv(copy=False)
            if len(parts) < 2:
                break
            md = unpackb(parts[1])
            frame = {k: frombuffer(b, dtype=d).reshape(s) for k, d, s, b in md["f"]}
            result = graph.process(frame)
            out = {"timestamp": result["timestamp"]}
            for name in outputs:
                out[name] = result[name]
            send([OUT_TOPIC, packb({"t": md["t"], "f": [
                [k, v.dtype.str, v.shape, v.tobytes()] for k, v in out.items()]})])
    finally:
        sub.close(0)
        pub.close(0)
        ctx.term()
    return 0


# --------------------------------------------------------------------------- harness

class Side:
    """One implementation's process, the socket feeding it and the SUB reading its outputs."""

    def __init__(self, impl: str, ctx: zmq.Context, run_dir: str, profile: str | None,
                 code: str | None = None) -> None:
        """``impl`` "fw" or "raw"; ``code``: another checkout whose genki_signals the fw node
        runs (``--baseline``), as side ``base``."""
        self.impl = impl
        name = "base" if code else impl
        up_ep = f"ipc://{run_dir}/{name}-up"
        self.pub = None
        if impl == "fw":
            # the node's input edge is lossless: a ROUTER/DEALER connection (bus.lossless), so
            # the feeder is a Publisher's lossless endpoint (its cost is this process's)
            from genki_signals.bus import Publisher

            self.pub = Publisher(f"ipc://{run_dir}/{name}-up-lossy", "signals", context=ctx,
                                 lossless_endpoint=up_ep, shm_threshold=None)
            self.up = None
        else:
            self.up = ctx.socket(zmq.XPUB)
            self.up.setsockopt(zmq.XPUB_NODROP, 1)
            self.up.setsockopt(zmq.SNDHWM, HWM)
            self.up.setsockopt(zmq.SNDTIMEO, 30_000)
            self.up.setsockopt(zmq.LINGER, 0)
            self.up.bind(up_ep)
        out_ep = f"ipc://{run_dir}/{name}-out"
        env = dict(os.environ)
        if code:
            env["PYTHONPATH"] = code
        if impl == "fw":
            from genki_signals.nodes.config import InputEdge, NodeConfig

            self.ctl = ctx.socket(zmq.ROUTER)
            self.ctl.bind(f"ipc://{run_dir}/{name}-ctl")
            cfg = NodeConfig(
                id=NODE, kind="graph", params={"operators": demo_operators()},
                control_endpoint=f"ipc://{run_dir}/{name}-ctl", publish_endpoint=out_ep,
                inputs=(InputEdge(node="signals", endpoint=up_ep, topics=("signals/",),
                                  policy="lossless"),),
                clock_origin=time.monotonic(), spec_dir=str(REPO / "specs"))
            path = Path(run_dir) / f"{name}.json"
            path.write_text(cfg.to_json())
            cmd = [sys.executable, "-m", "genki_signals.nodes", "--config", str(path)]
        else:
            self.ctl = None
            cmd = [sys.executable, str(Path(__file__).resolve()), "--raw-worker", up_ep, out_ep]
        self.proc = subprocess.Popen(cmd, env=env)
        self.ps = psutil.Process(self.proc.pid)
        self.out = ctx.socket(zmq.SUB)
        self.out.setsockopt(zmq.RCVHWM, 100_000)
        self.out.setsockopt(zmq.SUBSCRIBE, OUT_TOPIC)
        self.out.connect(out_ep)
        if self.pub is not None:
            if not self.pub.wait_for_subscribers("signals/main", lossless=True, timeout=60):
                raise RuntimeError(f"{impl}: the node did not connect within 60 s")
        elif not self.up.poll(60_000, zmq.POLLIN):
            raise RuntimeError(f"{impl}: the process did not subscribe within 60 s")
        else:
            self.up.recv()
        self.seq = 0
        self.sample = 0

    def encode(self, frames: list[dict]) -> list[list]:
        from genki_signals.bus.codec import encode

        msgs = []
        for frame in frames:
            if self.pub is not None:  # published (encoded) by the Publisher in _send
                msgs.append(frame)
            elif self.impl == "fw":
                msgs.append(encode("signals/main", frame, node_id="signals", seq=self.seq,
                                   publish_time=float(frame["timestamp"][-1])))
            else:
                msgs.append([b"signals/main", pack_raw(frame, float(frame["timestamp"][-1]))])
            self.seq += 1
        return msgs

    def run(self, n: int, rate: float) -> float:
        """CPU seconds per frame of the process for ``n`` frames."""
        frames = make_frames(self.sample, n)
        self.sample += n * CHUNK
        msgs = self.encode(frames)
        self._wait_output_ready()
        cpu0 = self._cpu()
        send = self._send
        if rate:
            t0 = time.monotonic() + 0.002
            for i, m in enumerate(msgs):
                wait_until(t0 + i / rate)
                send(m)
        else:
            for m in msgs:
                send(m)
        got = 0
        while got < n:
            if not self.out.poll(30_000):
                raise RuntimeError(f"{self.impl}: {got}/{n} outputs after 30 s of silence")
            self.out.recv_multipart()
            got += 1
        return (self._cpu() - cpu0) / n

    def _send(self, msg) -> None:
        if self.pub is not None:
            self.pub.publish("signals/main", msg, publish_time=float(msg["timestamp"][-1]))
        else:
            self.up.send_multipart(msg, copy=False)

    def _wait_output_ready(self) -> None:
        """Warm the output path: frames sent before the SUB joined are lost, so probe first."""
        if getattr(self, "_ready", False):
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for m in self.encode(make_frames(self.sample, 1)):
                self._send(m)
            self.sample += CHUNK
            if self.out.poll(200):
                while self.out.poll(200):
                    self.out.recv_multipart()
                self._ready = True
                return
        raise RuntimeError(f"{self.impl}: no output within 60 s")

    def _cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def close(self) -> None:
        try:
            if self.ctl is not None:
                from genki_signals.bus import control

                self.ctl.send_multipart([NODE.encode(), control.pack("stop")])
            else:
                self.up.send_multipart([b""], flags=zmq.NOBLOCK)
            self.proc.wait(15)
        except (subprocess.TimeoutExpired, zmq.ZMQError):
            self.proc.kill()
            self.proc.wait(5)
        for sock in (self.up, self.out, self.ctl):
            if sock is not None:
                sock.close(0)
        if self.pub is not None:
            self.pub.close(wait=False)


def profile_node(ctx: zmq.Context, run_dir: str, frames: int, out: str) -> None:
    """py-spy samples of a fw node at saturation: self and inclusive us per frame."""
    prof_dir = Path(run_dir) / "prof"
    prof_dir.mkdir()
    side = Side("fw", ctx, str(prof_dir), None)
    n = 4 * frames
    try:
        side.run(500, 0.0)
        spy = subprocess.Popen(["py-spy", "record", "-p", str(side.proc.pid), "-r", "500",
                                "--function", "-f", "raw", "-o", out], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        cpu = side.run(n, 0.0)
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        spy.wait(30)
    finally:
        side.close()
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in Path(out).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        c = int(count)
        frames_ = stack.split(";")
        total += c
        leaf = frames_[-1]
        self_t[leaf] = self_t.get(leaf, 0) + c
        for f in set(frames_):
            incl[f] = incl.get(f, 0) + c
    # shares of the samples, scaled to this run's CPU per frame (py-spy itself slows the node)
    us = cpu * 1e6 / max(total, 1)
    print(f"\npy-spy of the fw node: {n} frames at saturation, {cpu * 1e6:.1f} us CPU/frame "
          f"while sampled, {total} samples (raw stacks in {out})")
    print("  self us/frame (share)  function")
    for f, c in sorted(self_t.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {c * us:8.1f} ({c / total:5.1%})  {f}")
    print("  inclusive us/frame (share)  function")
    for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:32]:
        print(f"  {c * us:8.1f} ({c / total:5.1%})  {f}")


def graph_only(n: int) -> float:
    """Seconds per frame of ``SignalGraph.process`` alone on the same frames."""
    from genki_signals.graph import SignalGraph
    from genki_signals.signals.base import Operator

    graph = SignalGraph([Operator.from_dict(op) for op in demo_operators()])
    frames = make_frames(0, n)
    for f in frames[:50]:
        graph.process(f)
    t0 = time.process_time()
    for f in frames:
        graph.process(f)
    return (time.process_time() - t0) / n


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--raw-worker":
        return raw_worker(sys.argv[2], sys.argv[3])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000, help="frames per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced mode, frames/s")
    parser.add_argument("--profile", metavar="OUT",
                        help="py-spy profile of the fw node (one extra run), stacks to OUT")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run the fw node on another checkout's code (e.g. /work/main), "
                             "interleaved: side 'base'")
    args = parser.parse_args(argv)
    print(f"machine: {machine_info()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    ctx = zmq.Context()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="gbench-") as run_dir:
        sides = {}
        try:
            for impl in ("fw", "raw"):
                sides[impl] = Side(impl, ctx, run_dir, None)
            if args.baseline:
                sides["base"] = Side("fw", ctx, run_dir, None, code=args.baseline)
            names = tuple(sides)
            for side in sides.values():  # warm-up
                side.run(500, 0.0)
            k = 0
            for rep in range(args.repeats):
                for mode, rate in (("sat", 0.0), ("paced", args.rate)):
                    order = names[k % len(names):] + names[:k % len(names)]  # rotate
                    k += 1
                    n = args.frames if mode == "sat" else min(args.frames,
                                                              int(2 * args.rate))
                    for impl in order:
                        per = sides[impl].run(n, rate)
                        results.setdefault((mode, impl), []).append(per)
                        print(f"  rep {rep + 1} {mode:>5} {impl:>3}: {per * 1e6:7.1f} us/frame",
                              file=sys.stderr, flush=True)
        finally:
            for side in sides.values():
                side.close()
        g = graph_only(args.frames)
        if args.profile:
            profile_node(ctx, run_dir, args.frames, args.profile)
    ctx.term()
    load = os.getloadavg()[0]
    print(f"load average at end: {load:.2f}; {args.repeats} repeats, {args.frames} frames per "
          f"saturated run, paced at {args.rate:g} frames/s; medians, spread = (max-min)/median")
    print(f"graph compute alone (SignalGraph.process, in-process): {g * 1e6:.1f} us/frame\n")
    print(f"{'mode':<8} {'fw us/frame':>12} {'raw us/frame':>13} {'fw/raw':>7} "
          f"{'per-run ratios':>24} {'spread fw/raw':>14}")
    for mode in ("sat", "paced"):
        fw, raw = results[(mode, "fw")], results[(mode, "raw")]
        pairs = [a / b for a, b in zip(fw, raw)]
        print(f"{mode:<8} {median(fw) * 1e6:12.1f} {median(raw) * 1e6:13.1f} "
              f"{median(fw) / median(raw):7.2f} {min(pairs):>11.2f}-{max(pairs):<12.2f}"
              f" {spread(fw):>6.0%}/{spread(raw):<6.0%}")
    if args.baseline:
        print(f"\nbaseline: the fw node on {args.baseline}'s code, same runs")
        print(f"{'mode':<8} {'base us/frame':>14} {'base/raw':>9} {'fw/base':>8} "
              f"{'per-run fw/base':>18}")
        for mode in ("sat", "paced"):
            fw, raw, base = (results[(mode, k)] for k in ("fw", "raw", "base"))
            pairs = [a / b for a, b in zip(fw, base)]
            print(f"{mode:<8} {median(base) * 1e6:14.1f} {median(base) / median(raw):9.2f} "
                  f"{median(fw) / median(base):8.2f} {min(pairs):>8.2f}-{max(pairs):<8.2f}")
    print("\ngoal (issue 16): fw <= 1.5x raw (graph compute + one raw pyzmq hop)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
