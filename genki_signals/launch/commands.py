"""``genki`` verbs that run or attach to a topology: launch, replay, topics, echo, top."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
from pathlib import Path
from typing import Any

from genki_signals.bus.security import add_key_arguments, remote_access
from genki_signals.errors import GenkiError


def _speed(text: str) -> float | None:
    if text in ("max", "0", "inf"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or 'max', got {text!r}") \
            from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or 'max', got {text!r}")
    return value


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("launch", help="run a topology spec as one process per node")
    p.add_argument("spec", type=Path, help="topology spec file (YAML or JSON)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--grace", type=float, default=3.0,
                   help="seconds a node gets to stop before it is killed (default 3)")
    p.add_argument("--run-dir", type=Path,
                   help="where sockets and node configs live (default: $TMPDIR/genki-USER/NAME)")
    p.add_argument("--address", help="control address (default: ipc:// in the run directory)")
    p.add_argument("--host", metavar="NAME",
                   help="start only this host's share of a multi-host spec (a 'manual' host, "
                        "or any host by hand); default: every host, ssh ones over ssh")
    # set by the launching host when it starts a share over ssh (launch.remote)
    p.add_argument("--spec-data", help=argparse.SUPPRESS)
    p.add_argument("--session", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--skip", default="", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_launch)

    p = verbs.add_parser("replay", help="run a topology with some nodes replayed from a "
                                        "recording")
    p.add_argument("recording", type=Path, help="an MCAP recording made by genki record")
    p.add_argument("spec", type=Path, help="topology spec (YAML or JSON)")
    p.add_argument("--replace", required=True, metavar="NODE[,NODE...]",
                   help="nodes whose recorded frames stand in for them")
    p.add_argument("--speed", type=_speed, default=None, metavar="X",
                   help="pace at X times real time (default: as fast as possible, 'max')")
    p.add_argument("--start", type=float, default=0.0, metavar="S",
                   help="start S seconds into the recording")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--with-display", action="store_true",
                   help="as fast as possible, keep the display nodes (plot, foxglove sinks), "
                        "which are left out by default")
    p.add_argument("--coalesce", type=int, default=None, metavar="N",
                   help="as fast as possible, join consecutive frames of a topic into frames "
                        "of up to N samples (default 1024; 0: publish the recorded frames)")
    p.add_argument("--record", type=Path, metavar="OUT",
                   help="also record every node's output to OUT (.mcap)")
    p.add_argument("--write-spec", type=Path, metavar="OUT",
                   help="write the rewritten spec (YAML, or JSON for .json)")
    p.add_argument("--no-run", action="store_true", help="only check (and write) the spec")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--grace", type=float, default=3.0,
                   help="seconds a node gets to stop before it is killed (default 3)")
    p.add_argument("--run-dir", type=Path,
                   help="directory for the run's control socket and node configs")
    p.add_argument("--address", help="control address (default: ipc:// in the run directory)")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    p.set_defaults(func=cmd_replay)

    p = verbs.add_parser("topics", help="list the topics of a running topology")
    p.add_argument("address", help="control address (ipc://..., tcp://...) or topology name")
    add_key_arguments(p)
    p.set_defaults(func=cmd_topics)

    p = verbs.add_parser("echo", help="print decoded frames of a topic, with their rate")
    p.add_argument("address", help="control address or topology name")
    p.add_argument("topic", help="topic or topic prefix, e.g. derived/main")
    p.add_argument("-n", "--count", type=int, help="stop after this many frames")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    add_key_arguments(p)
    p.set_defaults(func=cmd_echo)

    p = verbs.add_parser("top", help="live per-node table: rate, latency, drops, CPU, memory")
    p.add_argument("address", help="control address or topology name")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between tables (default 1)")
    p.add_argument("-n", "--iterations", type=int, help="print this many tables, then exit")
    add_key_arguments(p)
    p.set_defaults(func=cmd_top)


def cmd_launch(args: argparse.Namespace) -> int:
    from genki_signals.launch.launcher import Launcher

    # what the spec check imports, the fork server imports too (not the launcher's own modules:
    # they would cost the server ~50 ms after the check, before its first fork, for nothing)
    before = set(sys.modules)
    from genki_signals.launch.spec import load_topology

    if args.spec_data:  # a share started over ssh: the spec came with the command
        from genki_signals.launch.spec import parse_topology
        data = json.loads(base64.b64decode(args.spec_data))
        spec = parse_topology(data, path=args.spec)
    else:
        spec = load_topology(args.spec)  # every problem reported before any process starts
    if args.host is not None or spec.hosts:
        launcher = _multihost_launcher(spec, args)
    else:
        launcher = Launcher(spec, run_dir=args.run_dir, control_address=args.address,
                            grace=args.grace)
    server = getattr(args, "fork_server", None)  # started by cli.main before the parsing
    if server is not None:
        from genki_signals.launch.forkserver import preloadable

        launcher.use_fork_server(server, preloadable(set(sys.modules) - before))
        args.fork_server = None  # the launcher's now
    try:
        launcher.start()
        return launcher.run(duration=args.duration)
    finally:
        launcher.stop()


def _multihost_launcher(spec: Any, args: argparse.Namespace) -> Any:
    """The launcher of one host's share (``--host``) or of every host (docs/multihost.md)."""
    from genki_signals.launch.remote import MultiHostLauncher
    from genki_signals.launch.share import HostLauncher

    if not spec.hosts:
        raise GenkiError(f"{args.spec}: --host {args.host}: the spec has no 'hosts:' section")
    if args.host is None:
        return MultiHostLauncher(spec, run_dir=args.run_dir, control_address=args.address,
                                 grace=args.grace)
    if args.host not in spec.hosts:
        raise GenkiError(f"{args.spec}: --host {args.host}: unknown host (hosts: "
                         f"{', '.join(spec.hosts)})")
    return HostLauncher(spec, args.host, run_dir=args.run_dir, control_address=args.address,
                        grace=args.grace, skip=[s for s in args.skip.split(",") if s],
                        ready_timeout=60.0,
                        session=args.session)


class _BarOut:
    """A text stream for the launcher's lines that keeps a progress bar below them."""

    def __init__(self, bar: Any, out: Any) -> None:
        self.bar, self.out, self._buf = bar, out, ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._buf += text
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                if self.bar.disable:
                    print(line, file=self.out, flush=True)
                else:
                    self.bar.write(line, file=self.out)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def cmd_replay(args: argparse.Namespace) -> int:
    import json

    import yaml

    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.replay import replay_topology
    from genki_signals.launch.spec import load_topology
    from genki_signals.record.export import progress_bar
    from genki_signals.record.reader import Recording

    spec = load_topology(args.spec)
    with Recording(args.recording) as rec:  # a bad file fails here, before anything starts
        span = rec.span()
    if span is None:
        raise GenkiError(f"{args.recording}: no readable data in the recording")
    replace = [n.strip() for n in args.replace.split(",") if n.strip()]
    plan = replay_topology(spec, args.recording, replace, speed=args.speed, start=args.start,
                           loop=args.loop, record=args.record,
                           with_display=args.with_display, coalesce=args.coalesce)
    for note in plan.notes:
        print(f"genki: note: {note}", file=sys.stderr)
    if args.write_spec:
        text = json.dumps(plan.data, indent=2) if args.write_spec.suffix == ".json" \
            else yaml.safe_dump(plan.data, sort_keys=False)
        args.write_spec.write_text(text, encoding="utf-8")
        print(f"wrote {args.write_spec}", file=sys.stderr)
    if args.no_run:
        return 0
    total = None if args.loop else round(max(0.0, (span[1] - span[0]) / 1e9 - args.start), 1)
    bar = progress_bar(total, "replay", "s", _progress(args))
    launcher = Launcher(plan.spec, run_dir=args.run_dir, control_address=args.address,
                        grace=args.grace, out=_BarOut(bar, sys.stdout),
                        node_extra=plan.node_extra)
    done = threading.Event()

    def follow() -> None:  # the replay nodes' heartbeats drive the bar
        while not done.wait(0.5):
            positions = [n.stats.get("replay_position") for i, n in launcher.nodes.items()
                         if i in plan.replaced]
            positions = [p for p in positions if isinstance(p, (int, float))]
            if positions and not bar.disable:
                bar.n = round(min(positions), 1)
                bar.refresh()

    watcher = threading.Thread(target=follow, daemon=True)
    try:
        launcher.start()  # before any thread of ours: the launcher forks its fork server
        watcher.start()
        code = launcher.run(duration=args.duration)
        if code == 0 and total is not None and not bar.disable:
            bar.n = total
            bar.refresh()
        return code
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join(timeout=2)
        launcher.stop()
        bar.close()


def cmd_topics(args: argparse.Namespace) -> int:
    from genki_signals.launch.tools import print_topics

    print_topics(args.address, access=remote_access(args.key, args.server_key))
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from genki_signals.launch.tools import echo

    echo(args.address, args.topic, count=args.count, duration=args.duration,
         access=remote_access(args.key, args.server_key))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from genki_signals.launch.tools import top

    top(args.address, interval=args.interval, iterations=args.iterations,
        access=remote_access(args.key, args.server_key))
    return 0
