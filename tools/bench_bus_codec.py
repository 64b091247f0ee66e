"""Inline vs zero-copy array transport on this machine: justifies ``codec.INLINE_MAX_BYTES``.

For array sizes from 64 B to 4 MiB, times one message (a frame with a float64 ``timestamp`` of 8
samples plus one uint8 field of the given size) through ``encode`` -> ipc PUSH/PULL
(``send_multipart(copy=False)``, ``recv_multipart(copy=False)``) -> ``decode``, once with the
field forced inline and once forced into its own zero-copy part. The pure ``encode + decode`` time
(no socket) is printed too. Prints the crossover: the smallest size from which zero-copy is
faster at every larger size.

    python tools/bench_bus_codec.py [--budget SECONDS_PER_CASE]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from genki_signals.bus.codec import INLINE_MAX_BYTES, decode, encode

SIZES = [64 * 2**k for k in range(17)]  # 64 B .. 4 MiB
INLINE, ZERO_COPY = 1 << 40, -1


def _time_per_call(fn, budget: float) -> float:
    """Best-of-5 mean seconds per call, each batch running about budget / 5."""
    fn()
    n, t0 = 1, time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(budget / 5 / one))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def _frame(size: int) -> dict[str, np.ndarray]:
    return {"timestamp": np.arange(8, dtype=np.float64), "x": np.ones(size, dtype=np.uint8)}


def _pure(frame, inline_max: int):
    def run():
        decode(encode("t", frame, node_id="bench", seq=1, inline_max=inline_max, publish_time=0.0))

    return run


def _socket(push: zmq.Socket, pull: zmq.Socket, frame, inline_max: int):
    def run():
        push.send_multipart(
            encode("t", frame, node_id="bench", seq=1, inline_max=inline_max, publish_time=0.0),
            copy=False,
        )
        decode(pull.recv_multipart(copy=False))

    return run


def crossover(rows: list[tuple[int, float, float]]) -> int | None:
    """Smallest size from which zero-copy is faster for this and every larger size."""
    best = None
    for size, t_inline, t_zc in reversed(rows):
        if t_zc < t_inline:
            best = size
        else:
            break
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.1, help="seconds per measured case")
    args = parser.parse_args(argv)
    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{Path(tmp) / 'bench.sock'}"
        push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        for s in (push, pull):
            s.setsockopt(zmq.LINGER, 0)
        pull.bind(endpoint)
        push.connect(endpoint)
        rows = []
        print(f"{'size':>9} {'pure inline':>12} {'pure zc':>9} {'ipc inline':>11} {'ipc zc':>9}  zc/inline")
        try:
            for size in SIZES:
                frame = _frame(size)
                p_in = _time_per_call(_pure(frame, INLINE), args.budget)
                p_zc = _time_per_call(_pure(frame, ZERO_COPY), args.budget)
                s_in = _time_per_call(_socket(push, pull, frame, INLINE), args.budget)
                s_zc = _time_per_call(_socket(push, pull, frame, ZERO_COPY), args.budget)
                rows.append((size, s_in, s_zc))
                print(
                    f"{size:>9} {p_in * 1e6:>10.1f}us {p_zc * 1e6:>7.1f}us "
                    f"{s_in * 1e6:>9.1f}us {s_zc * 1e6:>7.1f}us  {s_zc / s_in:>8.2f}"
                )
        finally:
            push.close(0)
            pull.close(0)
            ctx.term()
    cross = crossover(rows)
    print(f"crossover (ipc, encode+send+recv+decode): zero-copy faster from {cross} bytes on")
    print(f"codec.INLINE_MAX_BYTES = {INLINE_MAX_BYTES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
