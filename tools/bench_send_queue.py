"""How much memory a publisher holds for one reader that stopped reading, by SNDHWM.

ZeroMQ bounds a reader's send queue in messages (SNDHWM), not bytes; this measures what that
means in bytes. A Publisher sends ``--frames`` frames of ``--mib`` MiB each (a fresh array
per frame, as a node does) to a SUB that subscribed and never reads (RCVHWM 1, a 4 KiB kernel
receive buffer: a suspended process). Each SNDHWM runs in its own process; the figure is that
process's RSS growth after the sends.

    PYTHONPATH=$PWD python tools/bench_send_queue.py --hwm 1000 100 4
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time, numpy as np, psutil, zmq
from genki_signals.bus.sockets import Publisher
hwm, frames, mib, where = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ctx = zmq.Context()
pub = Publisher(f"ipc://{where}/pub", "p", context=ctx, sndhwm=hwm)
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 1)
sub.setsockopt(zmq.RCVBUF, 4096)
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(pub.endpoint)
assert pub.wait_for_subscribers("p/main", timeout=5)
n = int(mib * 2**20 / 8)
rss0 = psutil.Process().memory_info().rss
for i in range(frames):
    pub.publish("p/main", {"timestamp": np.full(n, float(i))})
time.sleep(1.0)
print((psutil.Process().memory_info().rss - rss0) / 2**20)
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hwm", type=int, nargs="+", default=[1000, 100, 4])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--mib", type=float, default=4.0)
    args = p.parse_args(argv)
    print(f"{args.frames} frames of {args.mib:g} MiB to a reader that does not read")
    print(f"{'SNDHWM':>7}  {'RSS growth (MiB)':>16}  {'bound: SNDHWM x frame (MiB)':>27}")
    for hwm in args.hwm:
        with tempfile.TemporaryDirectory(prefix="genki-sndq-") as where:
            t0 = time.monotonic()
            out = subprocess.run([sys.executable, "-c", CHILD, str(hwm), str(args.frames),
                                  str(args.mib), where], capture_output=True, text=True,
                                 timeout=600)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            growth = float(out.stdout.strip())
            bound = min(hwm, args.frames) * args.mib
            print(f"{hwm:>7}  {growth:>16.1f}  {bound:>27.0f}   ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
