"""``genki`` verbs that run or attach to a topology: launch, topics, echo, top (and the
recording verbs of ``genki_signals.record.commands``: record, replay, inspect, export, and
``genki_signals.plot.cli``'s plot)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("launch", help="run a topology spec as one process per node")
    p.add_argument("spec", type=Path)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--grace", type=float, default=3.0,
                   help="seconds a node gets to stop before it is killed (default 3)")
    p.add_argument("--run-dir", type=Path,
                   help="where sockets and node configs live (default: $TMPDIR/genki-USER/NAME)")
    p.add_argument("--address", help="control address (default: ipc:// in the run directory)")
    p.set_defaults(func=cmd_launch)

    p = verbs.add_parser("topics", help="list the topics of a running topology")
    p.add_argument("address", help="control address (ipc://..., tcp://...) or topology name")
    p.set_defaults(func=cmd_topics)

    p = verbs.add_parser("echo", help="print decoded frames of a topic, with their rate")
    p.add_argument("address", help="control address or topology name")
    p.add_argument("topic", help="topic or topic prefix, e.g. derived/main")
    p.add_argument("-n", "--count", type=int, help="stop after this many frames")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(func=cmd_echo)

    p = verbs.add_parser("top", help="live per-node table: rate, latency, drops, CPU, memory")
    p.add_argument("address", help="control address or topology name")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("-n", "--iterations", type=int, help="print this many tables, then exit")
    p.set_defaults(func=cmd_top)

    from genki_signals.record.commands import add_verbs as add_record_verbs

    add_record_verbs(verbs)  # record, replay, inspect, export

    from genki_signals.plot.cli import add_verb as add_plot_verb

    add_plot_verb(verbs)  # plot: a live browser dashboard (genki_signals.plot)

    from genki_signals.foxglove.cli import add_verb as add_foxglove_verb

    add_foxglove_verb(verbs)  # foxglove: live view in Foxglove (genki_signals.foxglove)


def cmd_launch(args: argparse.Namespace) -> int:
    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import load_topology

    spec = load_topology(args.spec)  # every problem reported before any process starts
    launcher = Launcher(spec, run_dir=args.run_dir, control_address=args.address,
                        grace=args.grace)
    try:
        launcher.start()
        return launcher.run(duration=args.duration)
    finally:
        launcher.stop()


def cmd_topics(args: argparse.Namespace) -> int:
    from genki_signals.launch.tools import print_topics

    print_topics(args.address)
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from genki_signals.launch.tools import echo

    echo(args.address, args.topic, count=args.count, duration=args.duration)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from genki_signals.launch.tools import top

    top(args.address, interval=args.interval, iterations=args.iterations)
    return 0
