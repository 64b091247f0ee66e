"""``genki`` verbs for recordings: record, replay, inspect, export, recover."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

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
    p.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    p.add_argument("--flush-interval", type=float, default=0.5,
                   help="seconds between flushes: the most a crash loses (default 0.5)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_record)

    p = verbs.add_parser("replay", help="run a topology with some nodes replayed from a "
                                        "recording")
    p.add_argument("recording", type=Path)
    p.add_argument("spec", type=Path, help="topology spec (YAML or JSON)")
    p.add_argument("--replace", required=True, metavar="NODE[,NODE...]",
                   help="nodes whose recorded frames stand in for them")
    p.add_argument("--speed", type=_speed, default=None, metavar="X",
                   help="pace at X times real time (default: as fast as possible, 'max')")
    p.add_argument("--start", type=float, default=0.0, metavar="S",
                   help="start S seconds into the recording")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--record", type=Path, metavar="OUT",
                   help="also record every node's output to OUT (.mcap)")
    p.add_argument("--write-spec", type=Path, metavar="OUT",
                   help="write the rewritten spec (YAML, or JSON for .json)")
    p.add_argument("--no-run", action="store_true", help="only check (and write) the spec")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--grace", type=float, default=3.0)
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--address", help="control address (default: ipc:// in the run directory)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = verbs.add_parser("inspect", help="summarise a recording: topics, durations, rates, "
                                         "gaps")
    p.add_argument("recording", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = verbs.add_parser("export", help="export a recording to CSV files, a NumPy .npz or a "
                                        "Foxglove-decodable MCAP file")
    p.add_argument("recording", type=Path)
    p.add_argument("--csv", type=Path, metavar="DIR", help="one CSV per topic in DIR")
    p.add_argument("--npz", type=Path, metavar="FILE", help="one .npz, keys TOPIC/FIELD")
    p.add_argument("--foxglove", type=Path, metavar="FILE",
                   help="an MCAP file of JSON messages with JSON Schemas, one per sample "
                        "(Foxglove plots /TOPIC.FIELD)")
    p.add_argument("--topics", nargs="+", metavar="PREFIX")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_export)

    p = verbs.add_parser("recover", help="write a complete copy of a crashed (unclosed) "
                                         "recording that every MCAP tool opens")
    p.add_argument("recording", type=Path, help="the crashed recording (left unchanged)")
    p.add_argument("output", type=Path, help="the recovered recording to write")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_recover)


def cmd_record(args: argparse.Namespace) -> int:
    from genki_signals.record.attach import record_topology

    result = record_topology(args.address, args.output, topics=args.topics,
                             duration=args.duration, metadata=_metadata(args.meta),
                             compression=args.compression, flush_interval=args.flush_interval,
                             progress=_progress(args))
    return 0 if result.frames else 1


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
    from genki_signals.launch.spec import load_topology
    from genki_signals.record.export import progress_bar
    from genki_signals.record.reader import Recording
    from genki_signals.record.replace import replay_topology

    spec = load_topology(args.spec)
    with Recording(args.recording) as rec:  # a bad file fails here, before anything starts
        span = rec.span()
    if span is None:
        raise GenkiError(f"{args.recording}: no readable data in the recording")
    replace = [n.strip() for n in args.replace.split(",") if n.strip()]
    plan = replay_topology(spec, args.recording, replace, speed=args.speed, start=args.start,
                           loop=args.loop, record=args.record)
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
    watcher.start()
    try:
        launcher.start()
        code = launcher.run(duration=args.duration)
        if code == 0 and total is not None and not bar.disable:
            bar.n = total
            bar.refresh()
        return code
    finally:
        done.set()
        watcher.join(timeout=2)
        launcher.stop()
        bar.close()


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
