"""Benchmark: what single pyzmq calls cost, the numbers the bus's per-frame code is shaped by.

One process, a PAIR socket pair over ``inproc`` (no I/O thread in the way), 40-byte messages.
Each call is timed in batches of 1000 with the thread's CPU clock (``time.thread_time``, which
other processes' load disturbs less than wall time); the figure is the best batch over
``--rounds`` rounds, the calls interleaved round by round. Compared:

* ``zmq.Socket.send`` (pyzmq's Python wrapper) against ``zmq.backend.Socket.send`` (the compiled
  method it wraps, what ``genki_signals.bus.zcalls.send`` is), copied and ``copy=False``;
* ``recv`` copied against ``recv(copy=False)`` + ``Frame.more``;
* the readiness checks: ``getsockopt(RCVMORE)``, ``getsockopt(EVENTS)``, ``Poller.poll(0)``
  on an empty socket, and a ``NOBLOCK`` recv that finds nothing (raises ``zmq.Again``).

    python tools/bench_zmq_calls.py [--rounds 100]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import zmq
from zmq.backend import Socket as CompiledSocket

BATCH = 1000
DATA = b"x" * 40


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.setsockopt(zmq.SNDHWM, 0)
        b.setsockopt(zmq.RCVHWM, 0)
        a.bind("inproc://bench-zmq-calls")
        b.connect("inproc://bench-zmq-calls")
        csend, crecv = CompiledSocket.send, CompiledSocket.recv
        rcvmore, events = int(zmq.RCVMORE), int(zmq.EVENTS)
        poller = zmq.Poller()
        poller.register(b, zmq.POLLIN)

        def fill() -> None:
            for _ in range(BATCH):
                csend(a, DATA, 0)

        def drain() -> None:
            while True:
                try:
                    crecv(b, zmq.NOBLOCK)
                except zmq.Again:
                    return

        def failed_recv() -> None:
            try:
                crecv(b, zmq.NOBLOCK)
            except zmq.Again:
                pass

        # (name, call, before each batch, after each batch)
        cases: list[tuple[str, Callable[[], object], Callable[[], None] | None,
                          Callable[[], None] | None]] = [
            ("zmq.Socket.send (wrapper), copied", lambda: a.send(DATA, 0), None, drain),
            ("zmq.Socket.send (wrapper), copy=False", lambda: a.send(DATA, 0, copy=False),
             None, drain),
            ("zmq.backend.Socket.send, copied", lambda: csend(a, DATA, 0), None, drain),
            ("zmq.backend.Socket.send, copy=False", lambda: csend(a, DATA, 0, False), None,
             drain),
            ("recv, copied", lambda: crecv(b, 0), fill, None),
            ("recv(copy=False) + Frame.more", lambda: crecv(b, 0, False).more, fill, None),
            ("getsockopt(RCVMORE)", lambda: b.getsockopt(rcvmore), None, None),
            ("getsockopt(EVENTS)", lambda: b.getsockopt(events), None, None),
            ("Poller.poll(0), nothing waiting", lambda: poller.poll(0), None, None),
            ("recv(NOBLOCK), nothing waiting (raises)", failed_recv, None, None),
        ]
        best = {name: float("inf") for name, *_ in cases}
        clock = time.thread_time
        for _ in range(args.rounds):
            for name, call, before, after in cases:
                if before is not None:
                    before()
                t0 = clock()
                for _ in range(BATCH):
                    call()
                best[name] = min(best[name], (clock() - t0) / BATCH)
                if after is not None:
                    after()
        print(f"pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}; best of {args.rounds} "
              f"batches of {BATCH}, thread CPU time, us per call:")
        for name, value in best.items():
            print(f"  {value * 1e6:6.2f}  {name}")
    finally:
        a.close(0)
        b.close(0)
        ctx.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
