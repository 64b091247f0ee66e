"""``genki`` verbs for recordings: record, inspect, export, recover (``genki replay`` runs a
topology, so it lives with the launch verbs in ``genki_signals.launch.commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from genki_signals.errors import GenkiError


def _metadata(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GenkiError(f"--meta {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("record", help="record a running topology's frames to an MCAP file")
    p.add_argument("address", help="control address (ipc://..., tcp://...) or topology name")
    p.add_argument("-o", "--output", required=True, type=Path, help="recording to write (.mcap)")
    p.add_argument("--topics", nargs="+", metavar="PREFIX",
                   help="topic prefixes to record (default: every topic)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="metadata stored in the recording (repeatable)")
    p.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd",
                   help="chunk compression (default zstd)")
    p.add_argument("--flush-interval", type=float, default=0.5,
                   help="seconds between flushes: the most a crash loses (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    from genki_signals.bus.security import add_key_arguments

    add_key_arguments(p)
    p.set_defaults(func=cmd_record)

    p = verbs.add_parser("inspect", help="summarise a recording: topics, durations, rates, "
                                         "gaps")
    p.add_argument("recording", type=Path, help="an MCAP recording made by genki record")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    p.set_defaults(func=cmd_inspect)

    p = verbs.add_parser("export", help="export a recording to CSV files, a NumPy .npz or a "
                                        "Foxglove-decodable MCAP file")
    p.add_argument("recording", type=Path, help="an MCAP recording made by genki record")
    p.add_argument("--csv", type=Path, metavar="DIR", help="one CSV per topic in DIR")
    p.add_argument("--npz", type=Path, metavar="FILE", help="one .npz, keys TOPIC/FIELD")
    p.add_argument("--foxglove", type=Path, metavar="FILE",
                   help="an MCAP file of JSON messages with JSON Schemas, one per sample "
                        "(Foxglove plots /TOPIC.FIELD)")
    p.add_argument("--topics", nargs="+", metavar="PREFIX",
                   help="export only topics starting with these prefixes")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    p.set_defaults(func=cmd_export)

    p = verbs.add_parser("recover", help="write a complete copy of a crashed (unclosed) "
                                         "recording that every MCAP tool opens")
    p.add_argument("recording", type=Path, help="the crashed recording (left unchanged)")
    p.add_argument("output", type=Path, help="the recovered recording to write")
    p.add_argument("--no-progress", action="store_true", help="show no progress bar")
    p.set_defaults(func=cmd_recover)


def cmd_record(args: argparse.Namespace) -> int:
    from genki_signals.bus.security import remote_access
    from genki_signals.record.attach import record_topology

    result = record_topology(args.address, args.output, topics=args.topics,
                             duration=args.duration, metadata=_metadata(args.meta),
                             compression=args.compression, flush_interval=args.flush_interval,
                             progress=_progress(args),
                             access=remote_access(args.key, args.server_key))
    return 0 if result.frames else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from genki_signals.record.inspect import format_summary, inspect_recording, to_json

    summary = inspect_recording(args.recording, progress=_progress(args))
    print(to_json(summary) if args.json else format_summary(summary))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from genki_signals.record.export import export_csv, export_npz

    if not args.csv and not args.npz and not args.foxglove:
        raise GenkiError("export: give --csv DIR, --npz FILE and/or --foxglove FILE")
    if args.foxglove:
        from genki_signals.record.foxglove import export_foxglove

        result = export_foxglove(args.recording, args.foxglove, args.topics,
                                 progress=_progress(args))
        print(f"wrote {result.path}: {result.messages} messages on {result.channels} channels "
              f"(json + JSON Schema)")
    if args.npz:
        out = export_npz(args.recording, args.npz, args.topics, progress=_progress(args))
        print(f"wrote {out}")
    if args.csv:
        files = export_csv(args.recording, args.csv, args.topics, progress=_progress(args))
        print(f"wrote {len(files)} CSV files to {args.csv}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from genki_signals.record.recover import recover_recording

    result = recover_recording(args.recording, args.output, progress=_progress(args))
    print(f"wrote {result.path}: {result.messages} messages on {result.topics} topics, closed "
          f"with a summary (read: {result.report.describe()})")
    return 0
