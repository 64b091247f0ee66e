"""Publisher and reader processes for tests/test_bus_shm.py (run as scripts, killed by PID).

    python shm_peers.py publish LOSSY_EP LOSSLESS_EP|- N ITEMS RING_BYTES PERIOD_S
        publishes N frames on topic "big" ({"x": expected(seq, ITEMS)}), lossless readers first
        awaited; prints "READY", then "SENT <seq>" per frame, "DONE" at the end; then waits
        for stdin to close.
    python shm_peers.py read ENDPOINT POLICY
        subscribes to "big", holds every received array, prints "GOT <seq> <ok>" per frame
        (ok: the content equals expected(seq)), and runs until killed.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from genki_signals.bus.sockets import Publisher, Subscriber


def expected(seq: int, items: int) -> np.ndarray:
    """The array sent as frame ``seq``: computed independently by publisher and checker."""
    return np.arange(items, dtype=np.float64) * 3.0 + seq


def publish(lossy: str, lossless: str, n: int, items: int, ring: int, period: float) -> None:
    pub = Publisher(lossy, "peer", lossless_endpoint=None if lossless == "-" else lossless,
                    shm_threshold=1024, shm_ring_bytes=ring, close_timeout=1.0,
                    lossless_timeout=60)
    if lossless != "-":
        assert pub.wait_for_subscribers("big", lossless=True, timeout=20)
    else:
        assert pub.wait_for_subscribers("big", timeout=20)
    time.sleep(0.05)
    print("READY", flush=True)
    for seq in range(n):
        pub.publish("big", {"x": expected(seq, items)})
        print(f"SENT {seq}", flush=True)
        if period:
            time.sleep(period)
    print("DONE", flush=True)
    sys.stdin.read()
    pub.close(wait=False)


def read(endpoint: str, policy: str) -> None:
    sub = Subscriber()
    sub.connect(endpoint, ["big"], policy=policy, maxlen=10_000)
    held = []
    print("READY", flush=True)
    while True:
        msg = sub.recv(1.0)
        if msg is None or msg.kind != "data":
            continue
        x = msg.frame["x"]
        held.append(x)
        ok = np.array_equal(x, expected(msg.seq, x.size))
        print(f"GOT {msg.seq} {int(ok)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        a = sys.argv[2:]
        publish(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]))
    else:
        read(sys.argv[2], sys.argv[3])
