"""Benchmark: the bus across a veth link between two network namespaces, with and without CURVE.

What runs
    Two namespaces joined by a veth pair (10.77.0.1 / 10.77.0.2, no route out), made by this
    script and deleted at the end (root and ``ip`` from iproute2 needed). One sender process in
    the first, one receiver process in the second, both started once; they run the same list of
    cases in the same order, one tcp port per case.

    * fw: ``Publisher.publish`` -> ``Subscriber.recv`` on the publisher's ``lossless_endpoint``
      with policy ``lossless`` (frames ``{"timestamp": (1,), "x": uint8 (N,)}``). CURVE: the
      Publisher's ``security`` (ServerKeys, the receiver's key in role ``control``) and the
      Subscriber's ``security``. Plain: ``allow_remote=True`` (the trusted-network opt-out).
    * raw: hand-written pyzmq, XPUB with ``XPUB_NODROP`` and the same high-water marks, parts
      ``[topic, msgpack{t}, payload]`` with ``copy=False``. CURVE: the same socket options and
      pyzmq's own ``ThreadAuthenticator`` with ``configure_curve`` (an allow-list folder).

    Both sides lossless with blocking back-pressure, so every frame arrives (the receiver
    checks its count) and a rate is what the slower end sustains.

Measurements (receiver clock ``time.monotonic()``, shared by namespaces: one kernel)
    * saturation: the sender publishes as fast as it can for ``--seconds``; rate =
      (frames - 1) / (last arrival - first arrival).
    * 1 kHz: the sender publishes on a drift-free 1 ms schedule for ``--seconds`` and stamps
      each frame; one-way latency = arrival - stamp; p50 and p99.

    Each round runs every case (2 sizes x plain/CURVE x raw/fw x 2 measurements); raw and fw
    alternate which goes first from round to round. The table gives the median over
    ``--rounds`` rounds of each figure and of the per-round fw/raw ratio (same CURVE setting,
    same round), and CURVE/plain for raw and fw as information.

    sudo python tools/bench_curve.py [--rounds 5] [--seconds 1.5]

Both ends share this machine's CPUs, so the figures are CPU-bound, not link-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np

A_ADDR, B_ADDR = "10.77.0.1", "10.77.0.2"
SIZES = (64, 65536)
HWM = 1000
BASE_PORT = 6100
REPO = Path(__file__).resolve().parent.parent


def cases(rounds: int) -> list[dict]:
    out = []
    for r in range(rounds):
        impls = ("raw", "fw") if r % 2 == 0 else ("fw", "raw")
        for size in SIZES:
            for sec in ("plain", "curve"):
                for metric in ("sat", "lat"):
                    for impl in impls:
                        out.append({"round": r, "size": size, "sec": sec, "metric": metric,
                                    "impl": impl, "port": BASE_PORT + 2 * len(out)})
    return out


# ------------------------------------------------------------------------------ keys
def make_keys(keydir: Path) -> None:
    import zmq.auth

    zmq.auth.create_certificates(keydir, "server")
    zmq.auth.create_certificates(keydir, "client")
    allowed = keydir / "allowed"
    allowed.mkdir()
    shutil.copy(keydir / "client.key", allowed / "client.key")
    for f in keydir.glob("*.key_secret"):
        os.chmod(f, 0o600)


def fw_server_keys(keydir: Path):
    from genki_signals.bus.security import ServerKeys, allow_list, load_keypair

    return ServerKeys(load_keypair(keydir / "server.key_secret"),
                      allow_list(control=[keydir / "client.key"]))


def fw_client_keys(keydir: Path):
    from genki_signals.bus.security import ClientKeys, load_keypair, load_public_key

    return ClientKeys(load_keypair(keydir / "client.key_secret"),
                      load_public_key(keydir / "server.key"))


# ------------------------------------------------------------------------------ sender
def wait_until(target: float) -> None:
    while True:
        remaining = target - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(remaining)


def run_sender(keydir: Path, rounds: int, seconds: float) -> None:
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    from genki_signals.bus.sockets import Publisher

    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)  # for the raw CURVE sockets (pyzmq's own authenticator)
    auth.start()
    auth.configure_curve(domain="*", location=str(keydir / "allowed"))
    server_public, server_secret = zmq.auth.load_certificate(keydir / "server.key_secret")
    print("ready", flush=True)
    for case in cases(rounds):
        endpoint = f"tcp://{A_ADDR}:{case['port']}"
        payload = np.random.default_rng(0).integers(0, 255, case["size"], dtype=np.uint8)
        if case["impl"] == "fw":
            pub = Publisher(f"tcp://{A_ADDR}:{case['port'] + 1}", "bench",
                            lossless_endpoint=endpoint,
                            sndhwm=HWM, allow_remote=case["sec"] == "plain",
                            security=fw_server_keys(keydir) if case["sec"] == "curve" else None)
            if not pub.wait_for_subscribers("bench/x", lossless=True, timeout=30):
                raise SystemExit(f"no receiver for {case}")

            def send(t: float, pub=pub, payload=payload) -> None:
                pub.publish("bench/x", {"timestamp": np.array([t]), "x": payload}, publish_time=t)

            def end(pub=pub) -> None:
                pub.publish_eos("bench/x")
                pub.close()
        else:
            sock = ctx.socket(zmq.XPUB)
            sock.setsockopt(zmq.SNDHWM, HWM)
            sock.setsockopt(zmq.XPUB_NODROP, 1)
            sock.setsockopt(zmq.LINGER, 5000)
            if case["sec"] == "curve":
                sock.curve_secretkey, sock.curve_publickey = server_secret, server_public
                sock.curve_server = True
            sock.bind(endpoint)
            if not sock.poll(30000):
                raise SystemExit(f"no receiver for {case}")
            sock.recv()  # the subscription

            def send(t: float, sock=sock, payload=payload) -> None:
                sock.send(b"bench/x", zmq.SNDMORE)
                sock.send(msgpack.packb({"t": t}), zmq.SNDMORE)
                sock.send(payload, copy=False)

            def end(sock=sock) -> None:
                sock.send_multipart([b"bench/x", b"", b"END"])
                sock.close()
        t0 = time.monotonic()
        if case["metric"] == "sat":
            while time.monotonic() - t0 < seconds:
                for _ in range(50):
                    send(time.monotonic())
        else:
            for i in range(int(seconds * 1000)):
                wait_until(t0 + i / 1000)
                send(time.monotonic())
        end()
    auth.stop()
    ctx.term()


# ------------------------------------------------------------------------------ receiver
def run_receiver(keydir: Path, rounds: int) -> None:
    import zmq.auth

    from genki_signals.bus.sockets import Subscriber

    ctx = zmq.Context()
    client_public, client_secret = zmq.auth.load_certificate(keydir / "client.key_secret")
    server_public, _ = zmq.auth.load_certificate(keydir / "server.key")
    print("ready", flush=True)
    for case in cases(rounds):
        endpoint = f"tcp://{A_ADDR}:{case['port']}"
        arrivals: list[float] = []
        stamps: list[float] = []
        if case["impl"] == "fw":
            sub = Subscriber(ctx)
            sub.connect(endpoint, ["bench/"], policy="lossless", rcvhwm=HWM,
                        security=fw_client_keys(keydir) if case["sec"] == "curve" else None)
            while True:
                msg = sub.recv(timeout=60)
                if msg is None:
                    raise SystemExit(f"timeout in {case}")
                if msg.kind == "eos":
                    break
                arrivals.append(time.monotonic())
                stamps.append(msg.publish_time)
            sub.close()
        else:
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, HWM)
            sock.setsockopt(zmq.LINGER, 0)
            if case["sec"] == "curve":
                sock.curve_serverkey = server_public
                sock.curve_publickey, sock.curve_secretkey = client_public, client_secret
            sock.setsockopt(zmq.SUBSCRIBE, b"bench/")
            sock.connect(endpoint)
            while True:
                if not sock.poll(60000):
                    raise SystemExit(f"timeout in {case}")
                parts = sock.recv_multipart(copy=False)
                if parts[2].bytes == b"END":
                    break
                arrivals.append(time.monotonic())
                stamps.append(msgpack.unpackb(parts[1].bytes)["t"])
                np.frombuffer(parts[2].buffer, dtype=np.uint8)
            sock.close()
        res = dict(case, frames=len(arrivals))
        if case["metric"] == "sat":
            res["rate"] = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        else:
            lat = np.array(arrivals) - np.array(stamps)
            res["p50_us"] = float(np.percentile(lat, 50) * 1e6)
            res["p99_us"] = float(np.percentile(lat, 99) * 1e6)
        print(json.dumps(res), flush=True)
    ctx.term()


# ------------------------------------------------------------------------------ main
def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def report(results: list[dict], rounds: int, seconds: float) -> str:
    def figures(size, sec, metric, impl, key):
        return [r[key] for r in results if (r["size"], r["sec"], r["metric"], r["impl"]) ==
                (size, sec, metric, impl)]

    def ratio(size, sec, metric, key):
        fw = {r["round"]: r[key] for r in results if (r["size"], r["sec"], r["metric"],
                                                      r["impl"]) == (size, sec, metric, "fw")}
        raw = {r["round"]: r[key] for r in results if (r["size"], r["sec"], r["metric"],
                                                       r["impl"]) == (size, sec, metric, "raw")}
        return statistics.median(fw[k] / raw[k] for k in fw if k in raw)

    med = statistics.median
    lines = [f"veth link between two namespaces, {rounds} interleaved rounds, {seconds:g} s per "
             f"case; medians over rounds; fw/raw = median of per-round ratios (same CURVE "
             f"setting, same round)", "",
             "| payload | security | fw frames/s | raw frames/s | throughput fw/raw | "
             "fw p50 / p99 us at 1 kHz | raw p50 / p99 us at 1 kHz | latency p50 fw/raw |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size in SIZES:
        for sec in ("plain", "curve"):
            fw_rate = med(figures(size, sec, "sat", "fw", "rate"))
            raw_rate = med(figures(size, sec, "sat", "raw", "rate"))
            lines.append(
                f"| {size if size < 1024 else f'{size // 1024} Ki'}B | {sec} | {fw_rate:,.0f} | "
                f"{raw_rate:,.0f} | {ratio(size, sec, 'sat', 'rate'):.2f} | "
                f"{med(figures(size, sec, 'lat', 'fw', 'p50_us')):.0f} / "
                f"{med(figures(size, sec, 'lat', 'fw', 'p99_us')):.0f} | "
                f"{med(figures(size, sec, 'lat', 'raw', 'p50_us')):.0f} / "
                f"{med(figures(size, sec, 'lat', 'raw', 'p99_us')):.0f} | "
                f"{ratio(size, sec, 'lat', 'p50_us'):.2f} |")
    lines += ["", "CURVE / plain (information; medians of the figures above):"]
    for size in SIZES:
        for impl in ("raw", "fw"):
            c = med(figures(size, "curve", "sat", impl, "rate"))
            p = med(figures(size, "plain", "sat", impl, "rate"))
            cl = med(figures(size, "curve", "lat", impl, "p50_us"))
            pl = med(figures(size, "plain", "lat", impl, "p50_us"))
            lines.append(f"  {size:>6d} B {impl:3s}: throughput x{c / p:.2f}, latency p50 "
                         f"{pl:.0f} -> {cl:.0f} us")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--role", choices=("sender", "receiver"), help=argparse.SUPPRESS)
    ap.add_argument("--keydir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "sender":
        run_sender(args.keydir, args.rounds, args.seconds)
        return 0
    if args.role == "receiver":
        run_receiver(args.keydir, args.rounds)
        return 0
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("bench_curve needs root and `ip` (Debian package iproute2)", file=sys.stderr)
        return 2
    tag = str(os.getpid() % 100000)
    ns_a, ns_b, va, vb = f"gbA{tag}", f"gbB{tag}", f"gba{tag}", f"gbb{tag}"
    procs: list[subprocess.Popen] = []
    try:
        ip("netns", "add", ns_a)
        ip("netns", "add", ns_b)
        ip("link", "add", va, "type", "veth", "peer", "name", vb)
        ip("link", "set", va, "netns", ns_a)
        ip("link", "set", vb, "netns", ns_b)
        ip("-n", ns_a, "addr", "add", f"{A_ADDR}/24", "dev", va)
        ip("-n", ns_b, "addr", "add", f"{B_ADDR}/24", "dev", vb)
        for ns, dev in ((ns_a, va), (ns_b, vb)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")
        with tempfile.TemporaryDirectory() as tmp:
            keydir = Path(tmp)
            make_keys(keydir)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO), os.environ.get("PYTHONPATH")])), PYTHONUNBUFFERED="1")
            common = [sys.executable, str(Path(__file__).resolve()), "--keydir", str(keydir),
                      "--rounds", str(args.rounds), "--seconds", str(args.seconds)]
            for ns, role in ((ns_a, "sender"), (ns_b, "receiver")):
                procs.append(subprocess.Popen(["ip", "netns", "exec", ns, *common, "--role", role],
                                              stdout=subprocess.PIPE, text=True, env=env,
                                              start_new_session=True))
            results = []
            for line in procs[1].stdout:
                if line.startswith("{"):
                    results.append(json.loads(line))
                    print(f"  {line.strip()}", file=sys.stderr, flush=True)
            procs[1].wait(timeout=60)
            procs[0].wait(timeout=60)
            if procs[1].returncode or procs[0].returncode:
                print("a peer failed", file=sys.stderr)
                return 1
        print(report(results, args.rounds, args.seconds))
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
