"""Fuzz soak: send N mutated bus messages into a real graph node process; report crashes, RSS
over time and the node's counters.

The tool plays the launcher (control ROUTER) and the node's upstream (an XPUB with NODROP, so
every message really reaches the node: the node's own reading pace sets the rate). A second
subscriber connects to the node's output and never reads (a stalled viewer), so the node's
per-reader send queue is exercised too. About 20% of the messages are valid frames (the node
keeps computing), one in ``--big-every`` is a valid 2 MiB frame, the rest are broken in the ways
listed in ``genki_signals.bus.fuzz``.

    PYTHONPATH=$PWD python tools/fuzz_soak.py --messages 1000000

Idle RSS: the node's RSS after 2000 valid frames, before the first mutated one. Exit code 1 if
the node crashed, stopped answering, or its RSS went above 1.5x idle.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import zmq

from genki_signals.bus import control
from genki_signals.bus.fuzz import Mutator
from genki_signals.nodes.config import InputEdge, NodeConfig

OPERATORS = [
    {"type": "Scale", "input": "x", "factor": 2.0, "name": "y"},
    {"type": "MovingAverage", "input": "y", "length": 10, "name": "avg"},
    {"type": "LowPass", "input": "x", "cutoff": 5.0, "sample_rate": 1000.0, "name": "lp"},
]


class Soak:
    def __init__(self, workdir: Path, seed: int, big_every: int) -> None:
        self.dir = workdir
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind(f"ipc://{workdir}/control")
        self.up = self.ctx.socket(zmq.XPUB)
        self.up.setsockopt(zmq.XPUB_NODROP, 1)
        self.up.setsockopt(zmq.SNDTIMEO, 5000)
        self.up.bind(f"ipc://{workdir}/up")
        self.mutator = Mutator("up/", "up", seed=seed, big_every=big_every)
        self.stats: dict = {}
        self.errors: list[str] = []  # ERROR log lines of the node
        self.crashes = 0
        self.proc: subprocess.Popen | None = None
        self.stalled: zmq.Socket | None = None

    def start_node(self) -> None:
        config = NodeConfig(
            id="g", kind="graph", params={"operators": OPERATORS},
            control_endpoint=f"ipc://{self.dir}/control",
            publish_endpoint=f"ipc://{self.dir}/g",
            inputs=(InputEdge(node="up", endpoint=f"ipc://{self.dir}/up", topics=("up/",),
                              policy="drop_oldest", maxlen=1000, streams=("timestamp", "x")),),
            heartbeat_interval=0.5)
        path = self.dir / "g.json"
        path.write_text(config.to_json())
        self.log = (self.dir / "node.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "genki_signals.nodes", "--config",
                                      str(path)], stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_control("ready", 30)
        if self.stalled is None:  # a viewer that subscribes and never reads
            self.stalled = self.ctx.socket(zmq.SUB)
            self.stalled.setsockopt(zmq.RCVHWM, 1)  # like a SIGSTOPped reader: no reading ahead
            self.stalled.setsockopt(zmq.RCVBUF, 4096)
            self.stalled.setsockopt(zmq.SUBSCRIBE, b"")
            self.stalled.connect(f"ipc://{self.dir}/g")
        while not self.up.poll(100):  # the node's subscription
            pass
        self.up.recv()

    def wait_control(self, msg_type: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.poll_control(0.1)
            if msg is not None and msg["type"] == msg_type:
                return msg
        raise RuntimeError(f"no {msg_type} from the node within {timeout} s")

    def poll_control(self, timeout: float) -> dict | None:
        if not self.router.poll(int(timeout * 1000)):
            return None
        _, data = self.router.recv_multipart()
        msg = control.unpack(data)
        if msg is not None and msg["type"] == "heartbeat":
            self.stats = msg["stats"]
        if msg is not None and msg["type"] == "log" and msg.get("level", 0) >= 40:
            self.errors.append(str(msg.get("message")))
        return msg

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def send(self, parts: list[bytes]) -> None:
        self.up.send_multipart(parts)

    def close(self) -> int | None:
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.router.send_multipart([b"g", control.pack("stop")])
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ctx.destroy(linger=0)
        return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--big-every", type=int, default=5000,
                   help="one valid 2 MiB frame every this many messages (0: none)")
    p.add_argument("--report-every", type=float, default=10.0, help="seconds between RSS lines")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="genki-fuzz-") as tmp:
        soak = Soak(Path(tmp), args.seed, args.big_every)
        try:
            soak.start_node()
            for _ in range(2000):
                soak.send(soak.mutator.valid())
            time.sleep(2.0)
            while soak.poll_control(0.05) is not None:
                pass
            idle = soak.rss()
            print(f"idle RSS {idle / 2**20:.1f} MiB (after 2000 valid frames)", flush=True)
            samples = [(0.0, 0, idle)]
            t0 = time.monotonic()
            next_report = t0 + args.report_every
            peak = idle
            for i in range(args.messages):
                soak.send(next(soak.mutator))
                if i % 256 == 0:
                    while soak.poll_control(0) is not None:
                        pass
                    if soak.proc.poll() is not None:
                        while soak.poll_control(0.2) is not None:
                            pass
                        soak.crashes += 1
                        tail = ((soak.dir / "node.log").read_text().splitlines()[-15:]
                                + soak.errors[-3:])
                        print(f"CRASH after {i} messages: exit {soak.proc.returncode}\n  "
                              + "\n  ".join(tail), flush=True)
                        soak.start_node()
                    now = time.monotonic()
                    if now >= next_report:
                        next_report = now + args.report_every
                        rss = soak.rss()
                        peak = max(peak, rss)
                        samples.append((now - t0, i, rss))
                        print(f"{now - t0:7.1f} s {i:>9} msgs  RSS {rss / 2**20:7.1f} MiB  "
                              f"decode_errors {soak.stats.get('decode_errors')}  "
                              f"frame_errors {soak.stats.get('frame_errors')}  "
                              f"drops {soak.stats.get('drops')}", flush=True)
            elapsed = time.monotonic() - t0
            time.sleep(2.0)
            soak.wait_control("heartbeat", 5)  # still answering
            rss = soak.rss()
            peak = max(peak, rss)
            samples.append((time.monotonic() - t0, args.messages, rss))
            stats = dict(soak.stats)
        finally:
            code = soak.close()
    ratio = peak / idle
    keys = ("frames_in", "decode_errors", "frame_errors", "drops", "gaps", "oversized",
            "unexpected_topics", "frames_out", "samples")
    print(f"sent {args.messages} messages in {elapsed:.1f} s ({args.messages / elapsed:.0f}/s); "
          f"crashes {soak.crashes}; clean stop exit code {code}")
    print(f"RSS idle {idle / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB "
          f"({ratio:.2f}x idle), end {rss / 2**20:.1f} MiB")
    print("counters: " + ", ".join(f"{k} {stats.get(k)}" for k in keys if k in stats))
    if args.json:
        args.json.write_text(json.dumps({"messages": args.messages, "seconds": elapsed,
                                         "crashes": soak.crashes, "exit_code": code,
                                         "rss_idle": idle, "rss_peak": peak,
                                         "rss_samples": samples, "stats": stats}, indent=1))
    return 0 if soak.crashes == 0 and code == 0 and ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
