"""Tools that attach to a running topology by its address: topics, echo, top."""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

import numpy as np

from genki_signals.bus.directory import directory
from genki_signals.bus.security import RemoteAccess, publisher_keys
from genki_signals.errors import GenkiError


def print_topics(address: str, out: IO[str] | None = None, *,
                 access: RemoteAccess | None = None) -> None:
    out = out or sys.stdout  # looked up at call time (tests capture sys.stdout)
    d = directory(address, access=access)
    print(f"topology '{d['topology']}' at {d['address']}", file=out)
    for topic, where in sorted(d["topics"].items()):
        print(f"  {topic:32s} {where['endpoint']}", file=out)


def echo(address: str, topic: str, count: int | None = None, duration: float | None = None,
         out: IO[str] | None = None, *, access: RemoteAccess | None = None) -> int:
    """Print decoded frames of ``topic`` (a prefix) with the measured frame and sample rate.

    ``access``: keys for a topology on another host (``--key``/``--server-key``).
    """
    out = out or sys.stdout
    from genki_signals.bus.sockets import Subscriber

    d = directory(address, access=access)
    matches = {t: w for t, w in d["topics"].items() if t.startswith(topic)}
    if not matches:
        raise GenkiError(f"no topic starts with {topic!r} (topics: "
                         f"{', '.join(sorted(d['topics'])) or 'none'})")
    sub = Subscriber()
    keys = {w["endpoint"]: w.get("public_key") for w in matches.values()}
    for endpoint in sorted(keys):
        sub.connect(endpoint, [topic], policy="drop_oldest", maxlen=1000,
                    security=publisher_keys(access, endpoint, keys[endpoint],
                                            f"the endpoint of {topic!r}"))
    received = 0
    start = time.monotonic()
    samples = 0
    try:
        while count is None or received < count:
            if duration is not None and time.monotonic() - start > duration:
                break
            msg = sub.recv(timeout=0.2)
            if msg is None:
                continue
            received += 1
            n = len(msg.frame.get("timestamp", ()))
            samples += n
            elapsed = max(time.monotonic() - start, 1e-9)
            fields = "  ".join(f"{k}={_describe(v)}" for k, v in msg.frame.items()
                               if k != "timestamp")
            t = msg.frame["timestamp"][-1] if n else math.nan
            print(f"{msg.topic} #{msg.seq} {msg.kind} t={t:.3f} n={n} "
                  f"({received / elapsed:.1f} frames/s, {samples / elapsed:.1f} samples/s)  "
                  f"{fields}", file=out, flush=True)
            if msg.kind == "eos":
                break
    finally:
        sub.close()
    return received


def top(address: str, interval: float = 1.0, iterations: int | None = None,
        out: IO[str] | None = None, *, access: RemoteAccess | None = None) -> None:
    """A live per-node table: state, rate, latency, age of frames in and out (p50/p99), drops,
    gaps, errors, CPU, memory."""
    out = out or sys.stdout
    i = 0
    while iterations is None or i < iterations:
        d = directory(address, access=access)
        if out.isatty():
            print("\x1b[2J\x1b[H", end="", file=out)
        print(format_top(d), file=out, flush=True)
        i += 1
        if iterations is None or i < iterations:
            time.sleep(interval)


def format_top(d: dict[str, Any]) -> str:
    # frames/s: what a node publishes, or for a sink (publishes nothing) what it receives
    head = (f"{'node':16s} {'kind':7s} {'state':10s} {'restarts':>8s} {'frames/s':>9s} "
            f"{'in/s':>7s} {'latency ms':>10s} {'age in ms':>13s} {'age out ms':>13s} "
            f"{'drops':>7s} {'gaps':>6s} {'errors':>6s} {'cpu %':>6s} {'mem MB':>7s} "
            f"{'host':10s} {'offset ms':>10s} {'+- us':>8s}")
    lines = [f"topology '{d['topology']}' at {d['address']}", head]
    for n in d["nodes"]:
        st = n.get("stats") or {}
        latency = st.get("latency")
        lat = f"{latency * 1000:10.1f}" if isinstance(latency, float) and \
            math.isfinite(latency) else f"{'-':>10s}"
        # bad input: undecodable, oversized, from an unwired node id or topic, or failing
        errors = sum(st.get(k, 0) for k in ("decode_errors", "oversized", "unexpected",
                                             "frame_errors"))
        lines.append(
            f"{n['id']:16s} {n['kind']:7s} {n['state']:10s} {n['restarts']:8d} "
            f"{_shown_rate(n['kind'], st):9.1f} {st.get('rate_in', 0.0):7.1f} {lat} "
            f"{_age(st, 'age_in'):>13s} {_age(st, 'age_out'):>13s} {st.get('drops', 0):7d} "
            f"{st.get('gaps', 0):6d} {errors:6d} {st.get('cpu_percent', 0.0):6.1f} "
            f"{st.get('rss_bytes', 0) / 1e6:7.1f} {_clock_columns(n, st)}")
    return "\n".join(lines)


def _age(stats: dict[str, Any], prefix: str) -> str:
    """``p50/p99`` in ms of a node's frame ages (see ``nodes.age``), ``-`` when none."""
    p50, p99 = stats.get(f"{prefix}_p50"), stats.get(f"{prefix}_p99")
    if not (isinstance(p50, float) and math.isfinite(p50) and isinstance(p99, float)
            and math.isfinite(p99)):
        return "-"
    return f"{p50 * 1000:.1f}/{p99 * 1000:.1f}"


def _clock_columns(node: dict[str, Any], stats: dict[str, Any]) -> str:
    """Host, clock offset to the leader (leader - local, ms) and its uncertainty (us)."""
    offset, unc = stats.get("clock_offset"), stats.get("clock_uncertainty")
    off = f"{offset * 1e3:10.3f}" if isinstance(offset, float) else f"{'-':>10s}"
    pm = f"{unc * 1e6:8.1f}" if isinstance(unc, float) and math.isfinite(unc) else f"{'-':>8s}"
    return f"{str(node.get('host') or '-'):10s} {off} {pm}"


def _shown_rate(kind: str, stats: dict[str, Any]) -> float:
    """frames/s of the table: published frames, received ones for sinks and recorders."""
    key = "rate_in" if kind in ("sink", "recorder") else "rate_out"
    return float(stats.get(key, 0.0) or 0.0)


def _describe(value: np.ndarray) -> str:
    arr = np.asarray(value)
    if arr.ndim == 1 and arr.size:
        return f"{arr[-1]:.4g}" if np.issubdtype(arr.dtype, np.number) else str(arr[-1])
    return f"<{arr.dtype} {arr.shape}>"
