"""``genki plot ADDRESS [TOPIC...]``: a live browser dashboard of a running topology.

Attaches a ``RemoteBuffer`` (lossy edges, drops counted) and serves a ``Dashboard`` of it on a
local port; detaching (Ctrl-C) leaves the topology as it was. Without ``--panel``, every stream
of the chosen topics gets a panel: the outputs of ``FourierTransform`` operators in the
topology's spec become spectrograms with their window size and the source's sample rate, other
long vectors spectrograms too, everything else lines.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from genki_signals.plot.views import PanelSpec, guess_panel


def add_verb(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("plot", help="serve a live browser dashboard of a running topology")
    p.add_argument("address", help="control address or topology name")
    p.add_argument("topics", nargs="*", metavar="TOPIC",
                   help="topics, topic prefixes or node ids to show (default: all)")
    p.add_argument("--panel", action="append", default=[], metavar="KEY[:TYPE[:k=v,...]]",
                   help="a panel, e.g. wave_spectrum:spectrogram:sample_rate=100,"
                        "window_size=256 or probs:histogram:class_names=a|b|c (repeatable; "
                        "default: one per stream)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="HTTP port (default 0: any free port)")
    p.add_argument("--fps", type=float, default=30.0, help="display rate (default 30)")
    p.add_argument("--history", type=int, default=10_000,
                   help="samples kept per timeline (default 10000)")
    p.add_argument("--policy", choices=("drop_oldest", "latest"), default="drop_oldest",
                   help="queue policy of the viewer's edges (both lossy; default drop_oldest)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--open", action="store_true", help="open the page in a web browser")
    from genki_signals.bus.security import add_key_arguments

    add_key_arguments(p)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    return run_plot(args.address, args.topics or None, panels=args.panel, host=args.host,
                    port=args.port, fps=args.fps, history=args.history, policy=args.policy,
                    duration=args.duration, open_browser=args.open, key=args.key,
                    server_key=args.server_key)


def spectrogram_hints(spec: Mapping[str, Any] | None) -> dict[str, PanelSpec]:
    """Panels for the ``FourierTransform`` outputs named in a topology spec (from the directory).

    The sample rate is the topology's source rate when it has exactly one rate among its
    ``Sampler`` sources (otherwise the dashboard estimates it from the timestamps).
    """
    if not isinstance(spec, Mapping):
        return {}
    rates = {float(n["params"]["sample_rate"]) for n in spec.get("nodes", [])
             if n.get("kind") == "source" and isinstance(n.get("params"), Mapping)
             and isinstance(n["params"].get("sample_rate"), (int, float))}
    rate = rates.pop() if len(rates) == 1 else None
    hints: dict[str, PanelSpec] = {}
    for node in spec.get("nodes", []):
        params = node.get("params")
        if not isinstance(params, Mapping):
            continue
        for op in params.get("operators") or []:
            if isinstance(op, Mapping) and op.get("type") == "FourierTransform":
                name = op.get("name")
                if isinstance(name, str):
                    hints[name] = PanelSpec(name, "spectrogram", sample_rate=rate,
                                            window_size=op.get("window_size", 256))
    return hints


def run_plot(address: str, topics: list[str] | None = None, *, panels: list[str] | None = None,
             host: str = "127.0.0.1", port: int = 0, fps: float = 30.0, history: int = 10_000,
             policy: str = "drop_oldest", duration: float | None = None,
             open_browser: bool = False, out: IO[str] | None = None,
             key: str | None = None, server_key: str | None = None) -> int:
    from genki_signals.plot.dashboard import Dashboard
    from genki_signals.plot.remote import RemoteBuffer

    out = out or sys.stdout
    buffer = RemoteBuffer(address, topics, maxlen=history, policy=policy, key=key,
                          server_key=server_key)
    hints = spectrogram_hints(buffer.directory.get("spec"))

    def guess(key: str, shape: tuple[int, ...]) -> PanelSpec:
        return hints.get(key) or guess_panel(key, shape)

    where = ", ".join(p for prefixes in buffer.subscriptions.values() for p in prefixes)
    dashboard = Dashboard(buffer, [PanelSpec.parse(p) for p in panels or []], host=host,
                          port=port, fps=fps, title=str(buffer.topology),
                          subtitle=f"genki plot {where}", feed_stats=lambda: buffer.stats,
                          guess=guess)
    try:
        url = dashboard.start()
        print(f"genki plot: topology '{buffer.topology}' ({where}) at {url}", file=out,
              flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        end = None if duration is None else time.monotonic() + duration
        next_report = time.monotonic() + 10.0
        try:
            while end is None or time.monotonic() < end:
                time.sleep(0.1)
                if not buffer.attached:
                    print("genki plot: the bus reader stopped", file=out, flush=True)
                    return 1
                if time.monotonic() >= next_report:
                    next_report += 10.0
                    print(f"genki plot: {_summary(dashboard.stats())}", file=out, flush=True)
        except KeyboardInterrupt:
            pass
    finally:
        dashboard.stop()
        buffer.close()
    print(f"genki plot: detached; {_summary(dashboard.stats())}", file=out, flush=True)
    return 0


def _summary(stats: Mapping[str, Any]) -> str:
    return (f"frames {stats.get('frames', 0)}, samples {stats.get('samples', 0)}, "
            f"drops {stats.get('drops', 0)}, gaps {stats.get('gaps', 0)}, "
            f"browser sessions {stats.get('sessions', 0)}, panel updates "
            f"{stats.get('updates', 0)}")
