"""Reading recordings: a tolerant, sequential MCAP reader that never trusts the bytes.

``Recording(path)`` opens a file and checks that it is a genki recording (``RecordingError``
otherwise: missing file, not MCAP, an MCAP file of another profile). ``messages()`` then walks
the data section record by record:

* a complete chunk whose CRC matches is read; a chunk whose compression or CRC is broken is
  skipped and counted (``ReadReport.corrupt_chunks``);
* a record header that cannot be right (unknown opcode, a length past the end of the file, a
  chunk whose inner lengths do not add up) means the reader lost its place: it searches forward
  for the next well-formed chunk and goes on from there (``skipped_bytes``, ``resyncs``);
* a torn last record (the recorder was killed while writing) ends the data
  (``truncated_bytes``); a file without a summary (``complete`` False) is normal after a crash;
* a stored message whose framing is broken is skipped (``bad_messages``).

So no input makes it raise anything but ``RecordingError`` at open, and every byte is accounted
for in the report. It does not need the MCAP summary (written at close), so a crashed recording
reads like any other. The ``mcap`` package's own readers open complete recordings too.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genki_signals.bus.codec import DecodeError, Message, decode
from genki_signals.record.format import (
    MESSAGE_ENCODING,
    META_RECORDING,
    META_TOPOLOGY,
    PROFILE,
    RecordingError,
    unpack_parts,
)

__all__ = ["Recording", "RecordedMessage", "RecordRun", "ReadReport", "open_recording"]

MAGIC = bytes([137, 77, 67, 65, 80, 48, 13, 10])
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 1, 2, 3, 4, 5, 6
OP_METADATA, OP_DATA_END = 0x0C, 0x0F
KNOWN_OPS = frozenset(range(0x01, 0x10))
COMPRESSIONS = (b"", b"zstd", b"lz4")
MAX_CHUNK_BYTES = 1 << 32  # an uncompressed chunk larger than this is not ours
_REC = struct.Struct("<BQ")
_CHUNK_HEAD = struct.Struct("<QQQII")  # start, end, uncompressed size, crc, compression length
_MSG_HEAD = struct.Struct("<HIQQ")  # channel, sequence, log_time, publish_time
_U16 = struct.Struct("<H")


class _Broken(Exception):
    """A record's structure is impossible: the reader has lost its place."""


def _records(buf: memoryview) -> Iterator[tuple[int, int, int, int]]:
    """``(opcode, start, length, end)`` of each record of a chunk's body, in order; raises
    ``_Broken`` where a record's header or body runs past the chunk."""
    pos, size = 0, len(buf)
    while pos < size:
        if pos + 9 > size:
            raise _Broken("record header past the chunk")
        op, length = _REC.unpack_from(buf, pos)
        end = pos + 9 + length
        if end > size:
            raise _Broken("record past the chunk")
        yield op, pos, length, end
        pos = end


class _Damaged(Exception):
    """A record is well framed but its content is damaged (CRC, compression): skip it."""


@dataclass
class ReadReport:
    """What one pass over a recording found; every damaged byte is counted somewhere."""

    complete: bool = False  # reached the end of the data section: the file was closed cleanly
    chunks: int = 0
    messages: int = 0  # genki messages read
    corrupt_chunks: int = 0  # skipped: bad CRC, bad compression, bad inner records
    corrupt_records: int = 0  # other damaged records, skipped
    bad_messages: int = 0  # stored messages whose framing (or bus encoding) is broken
    foreign_messages: int = 0  # messages of channels in another encoding, ignored
    resyncs: int = 0  # times the reader lost its place and searched for the next chunk
    skipped_bytes: int = 0  # bytes passed over while searching
    truncated_bytes: int = 0  # unreadable tail (torn by a crash, or damaged)

    @property
    def damaged(self) -> bool:
        return bool(self.corrupt_chunks or self.corrupt_records or self.bad_messages
                    or self.skipped_bytes or self.truncated_bytes)

    def describe(self) -> str:
        """A one-line account: complete or not, and what was skipped."""
        state = "complete" if self.complete else "not closed (no summary: the recorder " \
                                                 "stopped without closing it)"
        parts = [f"{self.messages} messages in {self.chunks} chunks, {state}"]
        for name, label in (("corrupt_chunks", "corrupt chunks skipped"),
                            ("corrupt_records", "corrupt records skipped"),
                            ("bad_messages", "damaged messages skipped"),
                            ("foreign_messages", "messages of other encodings ignored"),
                            ("skipped_bytes", "bytes skipped to resynchronise"),
                            ("truncated_bytes", "bytes of torn tail")):
            value = getattr(self, name)
            if value:
                parts.append(f"{value} {label}")
        return "; ".join(parts)


@dataclass(slots=True)
class RecordedMessage:
    """One stored bus message: its topic, times (Unix ns), sequence and raw parts."""

    topic: str
    log_time: int
    publish_time: int
    sequence: int
    parts: list[memoryview] = field(repr=False)

    def decode(self) -> Message:
        """The bus message (``codec.decode``; raises ``DecodeError`` when damaged)."""
        return decode(self.parts)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)


@dataclass(slots=True)
class RecordRun:
    """Consecutive message records of one channel, each ``size`` bytes (record header
    included), at ``starts`` in a chunk's ``body``: what ``record.bulk`` decodes at once."""

    topic: str  # of the channel
    body: bytes = field(repr=False)
    starts: list[int]
    size: int
    channel: int
    report: ReadReport = field(repr=False)
    prefixes: tuple[str, ...] | None = None
    start_ns: int | None = None

    def messages(self) -> list[RecordedMessage]:
        """The run's messages one by one, exactly as ``Recording.messages`` reads them."""
        buf = memoryview(self.body)
        channels = {self.channel: (self.topic, MESSAGE_ENCODING)}
        out = []
        for pos in self.starts:
            msg = Recording._message(buf, pos + 9, pos + self.size, channels, self.report,
                                     self.prefixes, self.start_ns)
            if msg is not None:
                out.append(msg)
        return out


def _string(buf: memoryview, pos: int, end: int) -> tuple[str, int]:
    if pos + 4 > end:
        raise _Broken("string length past the record")
    (n,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    if pos + n > end:
        raise _Broken("string past the record")
    try:
        return str(buf[pos:pos + n], "utf-8"), pos + n
    except UnicodeDecodeError:
        raise _Broken("string is not UTF-8") from None


def _string_map(buf: memoryview, pos: int, end: int) -> tuple[dict[str, str], int]:
    if pos + 4 > end:
        raise _Broken("map length past the record")
    (n,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    stop = pos + n
    if stop > end:
        raise _Broken("map past the record")
    out: dict[str, str] = {}
    while pos < stop:
        key, pos = _string(buf, pos, stop)
        value, pos = _string(buf, pos, stop)
        out[key] = value
    return out, stop


class Recording:
    """A recording opened for reading (see the module docstring). Use as a context manager.

    ``metadata`` holds the metadata records of the file's head (``genki.recording``,
    ``genki.topology``, ``genki.nodes``, ``genki.user``), completed by later ones (``genki.stats``)
    as passes over the file meet them. ``report`` describes the last pass.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise RecordingError(f"{self.path}: not a recording: a directory")
        try:
            self._file = self.path.open("rb")
        except FileNotFoundError:
            raise RecordingError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot open: {exc}") from None
        self._mm: mmap.mmap | None = None
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            head = self._file.read(len(MAGIC))
            if len(head) < len(MAGIC) or head != MAGIC:
                what = "empty" if self.size == 0 else "not an MCAP file (bad magic bytes)"
                raise RecordingError(f"{self.path}: not a recording: {what}")
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self.profile: str | None = None
            self.library: str | None = None
            self.metadata: dict[str, dict[str, str]] = {}
            self.report = ReadReport()
            self._read_head()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ head
    def _read_head(self) -> None:
        """Header and the metadata written before the first chunk."""
        buf = memoryview(self._mm)
        try:
            pos = len(MAGIC)
            for _ in range(64):
                if pos + 9 > self.size:
                    break
                op, length = _REC.unpack_from(buf, pos)
                end = pos + 9 + length
                if op not in KNOWN_OPS or end > self.size or op in (OP_CHUNK, OP_MESSAGE,
                                                                    OP_DATA_END):
                    break
                try:
                    if op == OP_HEADER:
                        self.profile, p = _string(buf, pos + 9, end)
                        self.library, _ = _string(buf, p, end)
                    elif op == OP_METADATA:
                        self._metadata(buf, pos + 9, end)
                except _Broken:
                    break
                pos = end
        finally:
            buf.release()
        if self.profile is not None and self.profile != PROFILE and \
                META_RECORDING not in self.metadata:
            raise RecordingError(
                f"{self.path}: not a genki recording: an MCAP file of profile "
                f"{self.profile or '(none)'!r} written by {self.library or 'an unknown library'!r}")

    def _metadata(self, buf: memoryview, pos: int, end: int) -> None:
        name, pos = _string(buf, pos, end)
        values, _ = _string_map(buf, pos, end)
        self.metadata[name] = values

    @property
    def wall_anchor_ns(self) -> int | None:
        """Unix nanoseconds of the recorded topology clock's zero, when the head has it."""
        value = self.metadata.get(META_RECORDING, {}).get("wall_anchor_ns")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    def topology(self) -> dict[str, Any] | None:
        """The topology spec stored by the recorder (a dict), if any."""
        import json

        text = self.metadata.get(META_TOPOLOGY, {}).get("spec")
        if not text:
            return None
        try:
            spec = json.loads(text)
        except ValueError:
            return None
        return spec if isinstance(spec, dict) else None

    # ------------------------------------------------------------------ passes
    def messages(self, topics: Iterable[str] | None = None, *,
                 start_ns: int | None = None) -> Iterator[RecordedMessage]:
        """Every readable message in file order (the order the recorder received them).

        ``topics``: prefixes to keep (None: all). ``start_ns``: skip messages logged before
        this Unix time (whole chunks that end before it are not even decompressed). The pass
        fills a fresh ``report``.
        """
        prefixes = None if topics is None else tuple(topics)
        report = self.report = ReadReport()
        if self._mm is None:
            raise RecordingError(f"{self.path}: recording is closed")
        return self._scan(report, prefixes, start_ns)

    def runs(self, topics: Iterable[str] | None = None, *, start_ns: int | None = None
             ) -> Iterator[RecordedMessage | RecordRun]:
        """Like ``messages``, but consecutive messages of one channel with the same record
        length within a chunk come as one ``RecordRun`` (for ``record.bulk``, which decodes a
        run with numpy); single messages and those outside chunks come as ``RecordedMessage``.
        Nothing in a run is checked beyond its record framing: ``RecordRun.messages`` gives
        what ``messages`` would have (the fallback when a run does not decode in bulk)."""
        prefixes = None if topics is None else tuple(topics)
        report = self.report = ReadReport()
        if self._mm is None:
            raise RecordingError(f"{self.path}: recording is closed")
        return self._scan(report, prefixes, start_ns, runs=True)

    def _scan(self, report: ReadReport, prefixes: tuple[str, ...] | None,
              start_ns: int | None, runs: bool = False) -> Iterator[RecordedMessage]:
        mm = self._mm
        size = self.size
        channels: dict[int, tuple[str, str]] = {}
        pos = len(MAGIC)
        while pos < size:
            if pos + 9 > size:
                report.truncated_bytes += size - pos
                return
            op, length = _REC.unpack_from(mm, pos)
            end = pos + 9 + length
            if op not in KNOWN_OPS or end > size:
                pos = self._skip_damage(pos, size, report)
                if pos is None:
                    return
                continue
            if op == OP_CHUNK:
                try:
                    body = self._chunk_body(pos + 9, end, start_ns)
                except _Broken:
                    pos = self._skip_damage(pos, size, report)
                    if pos is None:
                        return
                    continue
                except _Damaged:
                    report.corrupt_chunks += 1
                    pos = end
                    continue
                pos = end
                if body is None:  # ends before start_ns
                    continue
                report.chunks += 1
                per_chunk = self._chunk_runs if runs else self._chunk_messages
                yield from per_chunk(body, channels, report, prefixes, start_ns)
                continue
            if op in (OP_DATA_END, OP_FOOTER):
                report.complete = True
                return
            try:
                if op == OP_METADATA:
                    with memoryview(mm) as buf:
                        self._metadata(buf, pos + 9, end)
                elif op == OP_CHANNEL:
                    with memoryview(mm) as buf:
                        self._channel(buf, pos + 9, end, channels)
                elif op == OP_MESSAGE:
                    data = mm[pos + 9:end]  # a copy: nothing handed out points into the map
                    msg = self._message(memoryview(data), 0, len(data), channels, report,
                                        prefixes, start_ns)
                    if msg is not None:
                        yield msg
            except _Broken:
                report.corrupt_records += 1
            pos = end

    def _skip_damage(self, pos: int, size: int, report) -> int | None:
        """Skip a broken record: the next good record's position (counted), or None at the end."""
        nxt = self._resync(pos + 1)
        if nxt is None:
            report.truncated_bytes += size - pos
            return None
        report.resyncs += 1
        report.skipped_bytes += nxt - pos
        return nxt

    def _resync(self, start: int) -> int | None:
        """Offset of the next well-formed chunk record at or after ``start``, or None."""
        mm, size = self._mm, self.size
        i = start
        while True:
            i = mm.find(b"\x06", i)
            if i < 0 or i + 9 + 40 > size:
                return None
            (length,) = struct.unpack_from("<Q", mm, i + 1)
            if 40 <= length <= size - i - 9 and self._chunk_shape_ok(i + 9, length):
                return i
            i += 1

    def _chunk_shape_ok(self, pos: int, length: int) -> bool:
        mm = self._mm
        start, end, usize, _, clen = _CHUNK_HEAD.unpack_from(mm, pos)
        if clen > 4 or start > end or usize > MAX_CHUNK_BYTES or 40 + clen > length:
            return False
        if mm[pos + 32:pos + 32 + clen] not in COMPRESSIONS:
            return False
        (dlen,) = struct.unpack_from("<Q", mm, pos + 32 + clen)
        return 40 + clen + dlen == length

    def _chunk_body(self, pos: int, end: int, start_ns: int | None) -> bytes | None:
        """The chunk's uncompressed records (checked against its CRC); None: before start."""
        length = end - pos
        if length < 40 or not self._chunk_shape_ok(pos, length):
            raise _Broken("chunk lengths do not add up")
        mm = self._mm
        _, msg_end, usize, crc, clen = _CHUNK_HEAD.unpack_from(mm, pos)
        if start_ns is not None and msg_end < start_ns:
            return None
        compression = mm[pos + 32:pos + 32 + clen]
        data = mm[pos + 40 + clen:end]  # a copy
        try:
            # the frame's own size field is checked first: a damaged one must not allocate
            if compression == b"zstd":
                import zstandard

                if zstandard.frame_content_size(data) not in (usize, -1):
                    raise _Damaged("compressed size field does not match the chunk")
                out = zstandard.ZstdDecompressor().decompress(data, max_output_size=usize)
            elif compression == b"lz4":
                import lz4.frame

                if lz4.frame.get_frame_info(data).get("content_size") not in (usize, 0):
                    raise _Damaged("compressed size field does not match the chunk")
                out = lz4.frame.decompress(data)
            else:
                out = data
        except _Damaged:
            raise
        except Exception as exc:  # noqa: BLE001 - any decompression failure is damage
            raise _Damaged(f"cannot decompress: {exc}") from None
        if len(out) != usize or (crc and zlib.crc32(out) != crc):
            raise _Damaged("CRC mismatch")
        return out

    def _chunk_messages(self, body: bytes, channels: dict[int, tuple[str, str]],
                        report: ReadReport, prefixes: tuple[str, ...] | None,
                        start_ns: int | None) -> Iterator[RecordedMessage]:
        buf = memoryview(body)
        out = []
        try:
            for op, pos, _, end in _records(buf):
                if op == OP_MESSAGE:
                    msg = self._message(buf, pos + 9, end, channels, report, prefixes,
                                        start_ns)
                    if msg is not None:
                        out.append(msg)
                elif op == OP_CHANNEL:
                    self._channel(buf, pos + 9, end, channels)
        except _Broken:
            report.corrupt_chunks += 1
        return iter(out)

    def _chunk_runs(self, body: bytes, channels: dict[int, tuple[str, str]],
                    report: ReadReport, prefixes: tuple[str, ...] | None,
                    start_ns: int | None) -> Iterator[RecordedMessage | RecordRun]:
        """``_chunk_messages`` with runs of one channel and record length kept together."""
        buf = memoryview(body)
        out: list[RecordedMessage | RecordRun] = []
        key: tuple[int, int] | None = None
        starts: list[int] = []

        def flush() -> None:
            if len(starts) == 1:
                msg = self._message(buf, starts[0] + 9, starts[0] + 9 + key[1], channels,
                                    report, prefixes, start_ns)
                if msg is not None:
                    out.append(msg)
            elif starts:
                out.append(RecordRun(channels[key[0]][0], body, starts.copy(), 9 + key[1],
                                     key[0], report, prefixes, start_ns))
            starts.clear()

        try:
            for op, pos, length, end in _records(buf):
                if op == OP_MESSAGE:
                    known = channels.get(_U16.unpack_from(buf, pos + 9)[0]) \
                        if length >= 22 else None
                    if known is not None and known[1] == MESSAGE_ENCODING and (
                            prefixes is None or known[0].startswith(prefixes)):
                        k = (_U16.unpack_from(buf, pos + 9)[0], length)
                        if k != key:
                            flush()
                            key = k
                        starts.append(pos)
                    else:
                        flush()
                        msg = self._message(buf, pos + 9, end, channels, report, prefixes,
                                            start_ns)
                        if msg is not None:
                            out.append(msg)
                elif op == OP_CHANNEL:
                    flush()  # a channel id may be redefined
                    key = None
                    self._channel(buf, pos + 9, end, channels)
        except _Broken:
            report.corrupt_chunks += 1
        flush()
        return iter(out)

    @staticmethod
    def _channel(buf: memoryview, pos: int, end: int,
                 channels: dict[int, tuple[str, str]]) -> None:
        if pos + 4 > end:
            raise _Broken("channel record too short")
        channel_id, _ = struct.unpack_from("<HH", buf, pos)
        topic, p = _string(buf, pos + 4, end)
        encoding, _ = _string(buf, p, end)
        channels[channel_id] = (topic, encoding)

    @staticmethod
    def _message(buf: memoryview, pos: int, end: int, channels: dict[int, tuple[str, str]],
                 report: ReadReport, prefixes: tuple[str, ...] | None,
                 start_ns: int | None) -> RecordedMessage | None:
        if pos + 22 > end:
            report.bad_messages += 1
            return None
        channel_id, seq, log_time, publish_time = _MSG_HEAD.unpack_from(buf, pos)
        known = channels.get(channel_id)
        if known is not None:
            if known[1] != MESSAGE_ENCODING:
                report.foreign_messages += 1
                return None
            if prefixes is not None and not known[0].startswith(prefixes):
                return None
        if start_ns is not None and log_time < start_ns:
            return None
        try:
            parts = unpack_parts(buf[pos + 22:end])
            topic = str(parts[0], "utf-8")
        except (RecordingError, UnicodeDecodeError):
            report.bad_messages += 1
            return None
        if prefixes is not None and not topic.startswith(prefixes):
            return None
        report.messages += 1
        return RecordedMessage(topic, log_time, publish_time, seq, parts)

    # ------------------------------------------------------------------ helpers
    def decoded(self, topics: Iterable[str] | None = None, *, start_ns: int | None = None
                ) -> Iterator[tuple[RecordedMessage, Message]]:
        """``(stored, decoded)`` pairs; undecodable ones are counted in ``bad_messages``."""
        stored = self.messages(topics, start_ns=start_ns)
        report = self.report
        for rec in stored:
            try:
                msg = rec.decode()
            except DecodeError:
                report.bad_messages += 1
                report.messages -= 1
                continue
            yield rec, msg

    def span(self) -> tuple[int, int] | None:
        """(first, last) log time in Unix ns from the chunk headers alone (cheap), or None."""
        mm, size = self._mm, self.size
        pos, first, last = len(MAGIC), None, None
        while pos + 9 <= size:
            op, length = _REC.unpack_from(mm, pos)
            end = pos + 9 + length
            if op not in KNOWN_OPS or end > size:
                nxt = self._resync(pos + 1)
                if nxt is None:
                    break
                pos = nxt
                continue
            if op == OP_CHUNK and length >= 40 and self._chunk_shape_ok(pos + 9, length):
                start, stop = struct.unpack_from("<QQ", mm, pos + 9)
                first = start if first is None else min(first, start)
                last = stop if last is None else max(last, stop)
            elif op in (OP_DATA_END, OP_FOOTER):
                break
            pos = end
        return None if first is None else (first, last)

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a pass still holds a view; the map goes with it
                pass
            self._mm = None
        self._file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Recording({str(self.path)!r})"


def open_recording(path: str | os.PathLike[str]) -> Recording:
    """Open a recording (raises ``RecordingError`` for anything that is not one)."""
    return Recording(path)
