"""``genki foxglove ADDRESS [TOPIC...]``: serve a running topology to Foxglove, from outside it.

Attaches to the topology's bus like ``genki plot`` (lossy edges: a slow viewer loses frames,
counted, and never slows the topology) and serves the chosen topics over the Foxglove WebSocket
protocol on loopback (``ws://127.0.0.1:8765`` by default). Ctrl-C detaches.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import IO

from genki_signals.foxglove.sink import DEFAULT_PORT


def add_verb(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("foxglove", help="serve a running topology live to Foxglove "
                                          "(WebSocket protocol)")
    p.add_argument("address", help="control address or topology name")
    p.add_argument("topics", nargs="*", metavar="TOPIC",
                   help="topics, topic prefixes or node ids to serve (default: all)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"WebSocket port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(func=cmd_foxglove)


def cmd_foxglove(args: argparse.Namespace) -> int:
    return run_foxglove(args.address, args.topics or None, host=args.host, port=args.port,
                        duration=args.duration)


def run_foxglove(address: str, topics: list[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, duration: float | None = None,
                 out: IO[str] | None = None) -> int:
    from genki_signals.bus.sockets import Subscriber
    from genki_signals.clock import Clock
    from genki_signals.foxglove.sink import FoxgloveServer
    from genki_signals.bus.directory import directory
    from genki_signals.plot.remote import VIEWER_QUEUE, VIEWER_RCVHWM, resolve_topics

    out = out or sys.stdout
    d = directory(address)
    subscriptions = resolve_topics(d, topics)
    clock = Clock().anchor(d["clock_origin"], d["wall_anchor"])
    server = FoxgloveServer(host, port, name=f"{d['topology']} (genki foxglove)", clock=clock,
                            wall_anchor=d["wall_anchor"])
    sub = Subscriber()
    try:
        for endpoint, prefixes in subscriptions.items():
            sub.connect(endpoint, prefixes, policy="drop_oldest", maxlen=VIEWER_QUEUE,
                        rcvhwm=VIEWER_RCVHWM)
        where = ", ".join(p for prefixes in subscriptions.values() for p in prefixes)
        print(f"genki foxglove: topology '{d['topology']}' ({where}) at {server.url}",
              file=out, flush=True)
        end = None if duration is None else time.monotonic() + duration
        try:
            while end is None or time.monotonic() < end:
                msg = sub.recv(timeout=0.1)
                if msg is not None and msg.kind in ("data", "event"):
                    server.publish(msg.topic, msg.frame, msg.kind)
        except KeyboardInterrupt:
            pass
    finally:
        stats = sub.stats
        sub.close()
        server.stop()
    print(f"genki foxglove: detached; {server.messages} messages served, {stats.drops} "
          f"frames dropped, {stats.gaps} lost (gaps)", file=out, flush=True)
    return 0
