"""Processes of the CurveZMQ tests, run inside network namespaces (``ip netns exec``).

    python curve_peers.py publish KEYDIR ENDPOINT MODE SECONDS
        A Publisher at ENDPOINT (MODE ``curve``: CURVE server with the allow-list read=rd,
        control=ctl; ``plain``: no security) publishing frames that carry MARKER at ~1 kHz.
        Prints ``ready``, then its stats as one JSON line at the end.
    python curve_peers.py subscribe KEYDIR ENDPOINT KEY SECONDS
        A Subscriber with key KEY (``plain``: none) against the server key ``srv``;
        prints {"frames": n, "refused": n} as JSON.
    python curve_peers.py launcher KEYDIR SPEC RUNDIR REMOTE SECONDS
        A Launcher of SPEC whose remote control socket (CURVE, read=rd, control=ctl) is REMOTE.
    python curve_peers.py control KEYDIR ADDRESS KEY
        As peer KEY (``plain``: no CURVE): ask ``directory``, then send a ``log`` message as
        node ``src`` (a control message); prints {"directory": bool} as JSON.
    python curve_peers.py sniff IFACE SECONDS
        Counts MARKER in every packet seen on IFACE (an AF_PACKET socket); prints the count.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from genki_signals.bus import control
from genki_signals.bus.security import (
    ClientKeys,
    ServerKeys,
    allow_list,
    load_keypair,
    secure_client,
)
from genki_signals.bus.sockets import Publisher, Subscriber

MARKER = b"GENKI-PLAINTEXT-MARKER-7f3a"


def server_keys(keydir: Path) -> ServerKeys:
    return ServerKeys(load_keypair(keydir / "srv.key_secret"),
                      allow_list(read=[keydir / "rd.key"], control=[keydir / "ctl.key"]))


def client_keys(keydir: Path, key: str) -> ClientKeys | None:
    if key == "plain":
        return None
    return ClientKeys(load_keypair(keydir / f"{key}.key_secret"),
                      load_keypair(keydir / "srv.key_secret").public)


def publish(keydir: Path, endpoint: str, mode: str, seconds: float) -> None:
    security = server_keys(keydir) if mode == "curve" else None
    pub = Publisher(endpoint, "src", security=security, allow_remote=security is None)
    marker = np.frombuffer(MARKER * 4, dtype=np.uint8)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        pub.publish("src/main", {"timestamp": np.array([n / 1000.0]), "marker": marker})
        n += 1
        time.sleep(0.001)
    print(json.dumps({"published": n, "refused": pub.stats.refused}), flush=True)
    pub.close(wait=False)


def subscribe(keydir: Path, endpoint: str, key: str, seconds: float) -> None:
    sub = Subscriber()
    sub.connect(endpoint, [""], security=client_keys(keydir, key))
    frames = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = sub.recv(timeout=0.1)
        if msg is not None and bytes(msg.frame["marker"][:len(MARKER)]) == MARKER:
            frames += 1
    print(json.dumps({"frames": frames, "refused": sub.stats.refused}), flush=True)
    sub.close()


def launcher(keydir: Path, spec: str, run_dir: str, remote: str, seconds: float) -> None:
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import load_topology

    la = Launcher(load_topology(spec), run_dir=run_dir, remote_address=remote,
                  remote_security=server_keys(keydir))
    try:
        la.start()
        print("ready", flush=True)
        la.run(duration=seconds)
    finally:
        la.stop()
    print(json.dumps({"refused_control": la.refused_control, "refused_keys": la.refused_keys}),
          flush=True)


def _send(sock: zmq.Socket, data: bytes) -> None:
    try:  # a refused DEALER has no peer to queue for: a blocking send would wait forever
        sock.send(data, zmq.NOBLOCK)
    except zmq.Again:
        pass


def send_control(keydir: Path, address: str, key: str) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, b"src")  # as node src (which is on the local ipc socket)
    keys = client_keys(keydir, key)
    if keys is not None:
        secure_client(sock, keys)
    sock.connect(address)
    _send(sock, control.pack("directory"))
    answered = bool(sock.poll(3000))
    if answered:
        sock.recv()
    # A control message (only nodes and control-role peers may send them)
    _send(sock, control.pack("log", node="src", level=40, logger="x", message=MARKER.decode(),
                             time=0.0))
    time.sleep(0.5)
    print(json.dumps({"directory": answered}), flush=True)
    sock.close(0)


def sniff(iface: str, seconds: float) -> None:
    import socket

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
    s.bind((iface, 0))
    s.settimeout(0.2)
    print("ready", flush=True)
    hits = packets = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        packets += 1
        hits += data.count(MARKER)
    print(json.dumps({"packets": packets, "hits": hits}), flush=True)


if __name__ == "__main__":
    cmd, keydir, *rest = sys.argv[1:]
    kd = Path(keydir)
    if cmd == "publish":
        publish(kd, rest[0], rest[1], float(rest[2]))
    elif cmd == "subscribe":
        subscribe(kd, rest[0], rest[1], float(rest[2]))
    elif cmd == "launcher":
        launcher(kd, rest[0], rest[1], rest[2], float(rest[3]))
    elif cmd == "sniff":
        sniff(keydir, float(rest[0]))
    elif cmd == "control":
        send_control(kd, rest[0], rest[1])
    else:
        raise SystemExit(f"unknown command {cmd!r}")
