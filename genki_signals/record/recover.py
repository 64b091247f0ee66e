"""``genki recover in.mcap out.mcap``: a crashed recording made whole for every MCAP tool.

A recorder that was killed leaves a file without its summary and often with a torn last
record. Our ``Recording`` reader salvages every complete chunk of it, but the ``mcap`` package's
readers stop at the torn tail (its stream reader raises, its indexed reader finds no summary).
``recover_recording`` reads the file with ``Recording`` and writes a new, closed MCAP file: the
same profile, the head's metadata records, one channel per topic, every salvaged message with
its original log time, publish time, sequence and bytes, then the summary and indexes. A
``genki.recovered`` metadata record says where it came from and what was skipped. The input is
never modified; the recorder's own closing path is unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from genki_signals.record.format import MESSAGE_ENCODING, PROFILE, RecordingError, pack_parts
from genki_signals.record.reader import ReadReport, Recording

__all__ = ["recover_recording", "RecoverResult", "META_RECOVERED"]

META_RECOVERED = "genki.recovered"


@dataclass
class RecoverResult:
    path: Path
    messages: int
    topics: int
    report: ReadReport  # what the reader found in the input


def recover_recording(path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      progress: bool | None = None) -> RecoverResult:
    """Write every message ``Recording`` salvages from ``path`` into a complete ``out``."""
    from mcap.writer import CompressionType, Writer

    from genki_signals.record.export import _with_progress

    path, out = Path(path), Path(out)
    if out.resolve() == path.resolve():
        raise RecordingError(f"{out}: recover writes a new file; give another output path")
    with Recording(path) as rec:
        compression = rec.metadata.get("genki.recording", {}).get("compression", "zstd")
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4}.get(
            compression, CompressionType.NONE)
        out.parent.mkdir(parents=True, exist_ok=True)
        channels: dict[str, int] = {}
        messages = 0
        with out.open("wb") as f:
            writer = Writer(f, compression=kind)
            writer.start(profile=rec.profile or PROFILE,
                         library=rec.library or "genki-signals")
            for name, values in rec.metadata.items():
                writer.add_metadata(name, values)
            stored = ((m, None) for m in rec.messages())
            for m, _ in _with_progress(rec, stored, "recovering", progress):
                channel = channels.get(m.topic)
                if channel is None:
                    channel = channels[m.topic] = writer.register_channel(
                        m.topic, MESSAGE_ENCODING, 0,
                        {"node": m.topic.split("/", 1)[0]})
                writer.add_message(channel, m.log_time, pack_parts(m.parts), m.publish_time,
                                   m.sequence)
                messages += 1
            report = rec.report
            writer.add_metadata(META_RECOVERED, {
                "source": str(path), "complete": str(report.complete).lower(),
                "messages": str(messages), "report": report.describe()})
            writer.finish()
    if not messages:
        raise RecordingError(f"{path}: nothing to recover ({report.describe()}); "
                             f"wrote an empty {out}")
    return RecoverResult(out, messages, len(channels), report)
