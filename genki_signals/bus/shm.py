"""Shared memory for large arrays between processes on one host.

A Publisher whose endpoints are all ``ipc://`` copies every array of at least ``threshold`` bytes
into a ring of slots in a shared-memory segment and puts a reference in the msgpack header
instead of the bytes (``codec`` field ``where`` = ``["shm", pid, fd, token, slot, gen]``). The
ZeroMQ message then carries only the header: the array's bytes never go through a socket.

Segments are anonymous (``memfd_create``): nothing ever appears in ``/dev/shm``, so nothing can
leak there when a process is killed (``kill -9`` of a publisher or a reader). A reader opens the
publisher's segment through ``/proc/<pid>/fd/<fd>`` (same host, same user, same PID namespace),
checks its magic and 16-byte random token, and maps it; the memory lives until the last process
that maps it unmaps it (the kernel frees it then).

Layout of a segment (little-endian)::

    0     b"GENKISHM", u32 layout version, u32 slots, u64 slot bytes, u32 max readers, u32 0,
          16 B token, u32 fd of the wake-up pipe's write end, u32 0, u64 publisher waiting
    64    u64 generation per slot (0 while the publisher writes it; generations are unique)
    1024  reader rows: 16 B reader id, u64 join generation, u64 released generation per slot
    ...   slots, each ``slot bytes`` long, 4096-aligned

Two kinds of reader:

* **Lossless readers are protected.** A Subscriber's lossless ``ipc://`` edge gives a 16-byte
  reader id in its hello (``bus.lossless``, field ``shm``); the publisher's ``LosslessServer``
  registers it here (``add_reader``) while the reader is served lossless, and unregisters it
  (``remove_reader``) when it disconnects (closed, or died: the kernel closes its socket), is
  degraded to lossy or failed. A registered reader gets a row (``join generation`` = the next
  generation), and the publisher does not reuse a slot it sent to that reader until the reader
  has written the slot's generation into its row's ``released`` cell. The reader hands out a
  **zero-copy**, read-only array; the cell is written when the last view of it is
  garbage-collected (and a byte is written to the publisher's wake-up pipe, opened like the
  segment, if the publisher is waiting for a slot: it sleeps in ``select`` rather than
  polling). The publisher waits for a slot (``lossless`` semantics, ``lossless_timeout`` and
  ``on_stall`` apply). Memory is bounded by the ring (``ring_bytes`` per publisher). A frame
  resent to a restarted reader from the publisher's retention is read from its slot like a
  lossy one: if the slot was reused since, it is a torn read (docs/supervision.md).
* **Lossy readers copy on receive** (and lossless readers for messages sent before they were
  registered): check the slot's generation, copy, check again; a changed generation means the
  publisher reused the slot meanwhile, so the copy is discarded and counted as a torn read
  (``BusStats.torn``): a slow lossy reader loses frames, never reads overwritten data. The
  publisher never waits for a lossy reader.

The generation checks rely on the stores of one process being seen in order by another (true on
x86-64, which this project targets; numpy issues no memory fences).
"""

from __future__ import annotations

import collections
import contextlib
import mmap
import os
import select
import stat
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from genki_signals.bus.codec import DecodeError

MAGIC = b"GENKISHM"
LAYOUT_VERSION = 1
DEFAULT_THRESHOLD = 1024 * 1024
"""Arrays of at least this many bytes travel through shared memory. ``tools/bench_shm.py`` on a
loaded 2-core machine (docs/benchmarks.md): at 1 MiB shared memory matched or beat the socket
path; at 256 KiB it cost 1.27x less CPU per frame but reached 0.79x its throughput, at 64 KiB
0.66x."""
DEFAULT_RING_BYTES = 16 * 1024 * 1024
"""Shared memory per publisher: bounds what lossless readers can hold unreleased."""
MAX_SLOTS = 64
MIN_SLOTS = 4
MAX_READERS = 32
HOLD_TIMEOUT = 2.0
"""Seconds a publisher waits for lossless readers to release a slot before it sends the array
through the socket instead (and keeps doing so, without waiting, while every slot stays held)."""

_HEADER = 64
_ROWS = 1024
_ROW_BYTES = 16 + 8 + 8 * MAX_SLOTS
_DATA = -(-(_ROWS + MAX_READERS * _ROW_BYTES) // 4096) * 4096
_PAGE = 4096
_U8 = np.dtype(np.uint8)
_RELEASED = (_ROWS + 24) // 8  # u64 index of row 0's first released cell
_ROW_WORDS = _ROW_BYTES // 8
_MAX_SEGMENTS = 16  # segments a reader keeps mapped (per Subscriber)


class ShmError(DecodeError):
    """A shared-memory reference cannot be resolved (bad reference, segment gone or foreign)."""


class TornRead(ShmError):
    """The publisher reused the slot before or while it was read: the frame is dropped."""


# ------------------------------------------------------------------------------ segment


class _Segment:
    """A mapped segment: the publisher's own (``create``) or a reader's view of one (``open``)."""

    def __init__(self, fd: int, mm: mmap.mmap, token: bytes, nslots: int, slot_bytes: int,
                 pid: int) -> None:
        self.fd = fd
        self.mm = mm
        self.token = token
        self.nslots = nslots
        self.slot_bytes = slot_bytes
        self.pid = pid
        self.bytes = np.frombuffer(mm, np.uint8)  # holds an export: mm stays mapped while used
        self.addr = self.bytes.ctypes.data
        self.gens = np.ndarray((nslots,), "<u8", buffer=mm, offset=_HEADER)
        self.row_ids = [bytes(16)] * MAX_READERS  # publisher side: who owns each row
        self.released = [np.ndarray((nslots,), "<u8", buffer=mm, offset=_ROWS + r * _ROW_BYTES + 24)
                         for r in range(MAX_READERS)]
        self.join = [np.ndarray((1,), "<u8", buffer=mm, offset=_ROWS + r * _ROW_BYTES + 16)
                     for r in range(MAX_READERS)]
        self.waiting = np.ndarray((1,), "<u8", buffer=mm, offset=56)
        self.u64 = memoryview(mm).cast("Q")  # Python ints, faster than numpy scalars per item
        self.wake = -1  # reader side: our write end of the publisher's wake-up pipe

    def poke(self) -> None:
        """Reader side: wake the publisher if it waits for a slot (after a release)."""
        if self.waiting[0]:
            if self.wake < 0:
                wfd = int.from_bytes(self.mm[48:52], "little")
                try:
                    self.wake = os.open(f"/proc/{self.pid}/fd/{wfd}",
                                        os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError:
                    self.wake = -2  # cannot: the publisher notices within its poll interval
            if self.wake >= 0:
                try:
                    os.write(self.wake, b"\0")
                except OSError:  # full (it has been woken already) or gone
                    pass

    @classmethod
    def create(cls, nslots: int, slot_bytes: int, wake_fd: int) -> _Segment:
        size = _DATA + nslots * slot_bytes
        fd = os.memfd_create("genki-shm", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        token = os.urandom(16)
        mm[:_HEADER] = (MAGIC + LAYOUT_VERSION.to_bytes(4, "little") + nslots.to_bytes(4, "little")
                        + slot_bytes.to_bytes(8, "little") + MAX_READERS.to_bytes(4, "little")
                        + bytes(4) + token + wake_fd.to_bytes(4, "little")
                        + bytes(_HEADER - 52))
        return cls(fd, mm, token, nslots, slot_bytes, os.getpid())

    @classmethod
    def open(cls, pid: int, fd: int, token: bytes) -> _Segment:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            own = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise ShmError(f"cannot open shared-memory segment {path} ({exc.strerror}): the "
                           "publisher has exited, or runs as another user or in another PID "
                           "namespace") from None
        try:
            st = os.fstat(own)
            head = os.pread(own, _HEADER, 0) if stat.S_ISREG(st.st_mode) else b""
            if len(head) < 48 or head[:8] != MAGIC or head[32:48] != token:
                raise ShmError(f"{path} is not the shared-memory segment named in the message")
            if int.from_bytes(head[8:12], "little") != LAYOUT_VERSION:
                raise ShmError(f"{path}: unsupported shared-memory layout version")
            nslots = int.from_bytes(head[12:16], "little")
            slot_bytes = int.from_bytes(head[16:24], "little")
            if not (0 < nslots <= MAX_SLOTS) or slot_bytes % _PAGE or \
                    st.st_size != _DATA + nslots * slot_bytes:
                raise ShmError(f"{path}: inconsistent shared-memory segment header")
            mm = mmap.mmap(own, st.st_size)
        finally:
            os.close(own)  # the mapping keeps the memory
        return cls(-1, mm, token, nslots, slot_bytes, pid)

    def slot(self, s: int) -> np.ndarray:
        start = _DATA + s * self.slot_bytes
        return self.bytes[start:start + self.slot_bytes]

    def close(self) -> None:
        """Drop this process's mapping (arrays still using it keep it alive until collected)."""
        self.gens = self.released = self.join = self.bytes = None  # type: ignore[assignment]
        if self.u64 is not None:
            self.u64.release()
            self.u64 = None  # type: ignore[assignment]
        self.waiting = None  # type: ignore[assignment]
        if self.wake >= 0:
            os.close(self.wake)
        self.wake = -1
        try:
            self.mm.close()
        except BufferError:  # views still held: the mapping goes with the last of them
            pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ------------------------------------------------------------------------------ publisher


class _Reader:
    __slots__ = ("rid", "topics")

    def __init__(self, rid: bytes, topics: list[bytes]) -> None:
        self.rid = rid
        self.topics = topics


_Rows = tuple[tuple[int, bytes], ...]


class ShmWriter:
    """The publisher's side: puts large arrays into a ring and tracks lossless readers.

    Hooks the Publisher sets: ``wait`` is called about every 10 ms while every slot is held by
    a lossless reader; it may update the reader set (``add_reader`` / ``remove_reader``, from the
    XPUB subscription messages), raise (a stall timeout), or return True to give up, in which case
    ``put`` returns None and the caller sends the array the ordinary way. ``wanted`` False: no
    one subscribes, ``put`` returns None without touching the ring. ``hot`` True: every reader
    is a registered lossless reader (none copies out of the ring), so the lowest free slot is
    reused rather than the next in ring order.
    """

    wait: Callable[[], bool] | None = None
    wanted: Callable[[], bool] | None = None
    hot: Callable[[], bool] | None = None

    def __init__(self, threshold: int = DEFAULT_THRESHOLD,
                 ring_bytes: int = DEFAULT_RING_BYTES, hold_timeout: float = HOLD_TIMEOUT
                 ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(f"shared-memory threshold must be a positive int, got {threshold!r}")
        if isinstance(ring_bytes, bool) or not isinstance(ring_bytes, int) or ring_bytes < 1:
            raise ValueError(f"shared-memory ring_bytes must be a positive int, got {ring_bytes!r}")
        self.threshold = threshold
        self.ring_bytes = ring_bytes
        self.pid = os.getpid()
        self.readers: dict[bytes, _Reader] = {}
        self._seg: _Segment | None = None
        self._retired: list[tuple[_Segment, list[int], list[_Rows]]] = []
        self._gen = 1
        self._next = 0
        self._slot_gen: list[int] = []
        self._slot_rows: list[_Rows] = []  # per slot: the (row, reader) that must release it
        self.waits = 0
        self.fallbacks = 0  # arrays sent through the socket because readers held every slot
        self.hold_timeout = hold_timeout
        self._hoarded = False  # the last wait ran out: do not wait again until a slot frees
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._loan: tuple[_Segment, int] | None = None  # the slot handed out by ``loan``
        self._loan_addr = 0
        self._loan_arr: np.ndarray | None = None
        self._rows: dict[bytes, _Rows] = {}  # per topic: the rows that must release its slots

    # readers ------------------------------------------------------------------
    def add_reader(self, rid: bytes, topics: list[bytes]) -> None:
        self._rows.clear()
        if rid in self.readers:
            self.remove_reader(rid)
        self.readers[rid] = _Reader(rid, topics)
        if self._seg is not None:
            self._assign_row(self._seg, rid)

    def remove_reader(self, rid: bytes) -> None:
        if self.readers.pop(rid, None) is None:
            return
        self._rows.clear()
        for seg in [self._seg] + [r[0] for r in self._retired]:
            if seg is not None and rid in seg.row_ids:
                r = seg.row_ids.index(rid)
                seg.row_ids[r] = bytes(16)
                seg.mm[_ROWS + r * _ROW_BYTES:_ROWS + r * _ROW_BYTES + 16] = bytes(16)

    def _assign_row(self, seg: _Segment, rid: bytes) -> None:
        free = [r for r, x in enumerate(seg.row_ids) if x == bytes(16)]
        if not free:
            return  # more readers than rows: this one copies and may see torn reads
        r = free[0]
        seg.released[r][:] = 0
        seg.join[r][0] = self._gen
        seg.row_ids[r] = rid
        seg.mm[_ROWS + r * _ROW_BYTES:_ROWS + r * _ROW_BYTES + 16] = rid

    # ring ---------------------------------------------------------------------
    def _new_segment(self, nbytes: int) -> _Segment | None:
        slot_bytes = max(_PAGE, 1 << (nbytes - 1).bit_length())
        nslots = min(MAX_SLOTS, self.ring_bytes // slot_bytes)
        if nslots < MIN_SLOTS:
            return None
        seg = _Segment.create(nslots, slot_bytes, self._wake_w)
        if self._seg is not None:
            self._retired.append((self._seg, self._slot_gen, self._slot_rows))
        self._seg = seg
        self._slot_gen = [0] * nslots
        self._slot_rows = [()] * nslots
        self._next = 0
        self._rows.clear()
        self._loan = self._loan_arr = None
        for rid in self.readers:
            self._assign_row(seg, rid)
        return seg

    def _free(self, seg: _Segment, slot_gen: list[int], slot_rows: list[_Rows],
              s: int) -> bool:
        loan = self._loan
        if loan is not None and loan[1] == s and loan[0] is seg:
            return False  # loaned: being filled
        g = slot_gen[s]
        rows = slot_rows[s]
        if not rows:
            return True
        # a row whose reader left (or was replaced by another reader) no longer holds the slot
        u64, ids = seg.u64, seg.row_ids
        left = tuple((r, rid) for r, rid in rows
                     if ids[r] == rid and u64[_RELEASED + r * _ROW_WORDS + s] != g)
        slot_rows[s] = left
        return not left

    def _collect_retired(self) -> None:
        keep = []
        for seg, gens, rows in self._retired:
            if all(self._free(seg, gens, rows, s) for s in range(seg.nslots)):
                seg.close()
            else:
                keep.append((seg, gens, rows))
        self._retired = keep

    def _reserve(self, nbytes: int) -> tuple[_Segment, int] | None:
        """A segment with slots of at least ``nbytes`` and a free slot in it, or None (the
        array goes the ordinary way: too big for the ring, or ``wait`` gave up)."""
        seg = self._seg
        if seg is None or nbytes > seg.slot_bytes:
            if self._retired:
                self._collect_retired()
            if len(self._retired) >= 4 and nbytes > (seg.slot_bytes if seg else 0):
                return None  # a reader holds old segments: do not grow memory further
            seg = self._new_segment(nbytes)
            if seg is None:
                return None
        s = self._find_slot(seg, self.wait)
        if s is None:
            return None
        return seg, s

    def loan(self, nbytes: int, dtype: np.dtype = _U8, shape: Any = None) -> np.ndarray | None:
        """A writable array of ``nbytes`` (1-d uint8, or ``dtype`` and ``shape``) in a free slot
        of the ring, for the producer to fill in place; ``put`` of an array over exactly this
        memory then copies nothing.

        One loan at a time, until its ``put`` or ``end_frame`` (the publisher calls it after
        encoding each frame): no other ``put`` takes its slot meanwhile, and a second ``loan``
        returns None. None also when the ring cannot take ``nbytes`` now (too big, nobody
        subscribes, or lossless readers hold every slot past ``wait``): fill an ordinary array.
        While loaned, the slot's generation is 0, so lossy readers of an older frame there see a
        torn slot, as they do while ``put`` copies.
        """
        if self._loan is not None or self.wanted is not None and not self.wanted():
            return None
        got = self._reserve(nbytes)
        if got is None:
            return None
        seg, s = got
        seg.gens[s] = 0  # being written
        self._loan = got
        self._next = (s + 1) % seg.nslots  # the frame's other fields take the slots after it
        self._loan_addr = seg.addr + _DATA + s * seg.slot_bytes
        start = _DATA + s * seg.slot_bytes
        arr = seg.bytes[start:start + nbytes]
        if dtype is not _U8 or shape is not None:
            arr = arr.view(dtype).reshape(-1 if shape is None else shape)
        self._loan_arr = arr  # put recognises it by identity first (cheaper than its address)
        return arr

    def end_frame(self) -> None:
        """The frame is encoded: a loan it did not publish is dropped (its slot, never stamped,
        is free again)."""
        self._loan = self._loan_arr = None

    def owns(self, arr: np.ndarray) -> bool:
        """Whether ``arr``'s memory lies in one of this writer's segments (a loan): the codec
        must then copy it before sending it through a socket, since the slot will be reused."""
        addr = arr.__array_interface__["data"][0]
        for seg in [self._seg] + [r[0] for r in self._retired]:
            if seg is not None and seg.addr <= addr < seg.addr + len(seg.mm):
                return True
        return False

    def put(self, arr: np.ndarray, topic: bytes) -> list[Any] | None:
        """Put the C-contiguous ``arr`` into a free slot (a copy, unless ``arr`` is the current
        ``loan``); return the header reference, or None when the array should go the ordinary
        way (too big for the ring, nobody subscribes, or ``wait`` gave up)."""
        loan = self._loan
        if loan is not None:
            seg, s = loan
            if seg is self._seg and (arr is self._loan_arr or arr.nbytes <= seg.slot_bytes
                                     and arr.__array_interface__["data"][0] == self._loan_addr):
                self._loan = self._loan_arr = None
                return self._commit(seg, s, topic, False)  # filled in place: nothing to copy
        if self.wanted is not None and not self.wanted():
            return None
        nbytes = arr.nbytes
        got = self._reserve(nbytes)
        if got is None:
            return None
        seg, s = got
        seg.gens[s] = 0  # being written: readers that check now see a torn slot
        start = _DATA + s * seg.slot_bytes
        np.copyto(seg.bytes[start:start + nbytes], arr.reshape(-1).view(np.uint8))
        return self._commit(seg, s, topic)

    def _commit(self, seg: _Segment, s: int, topic: bytes, advance: bool = True) -> list[Any]:
        """Publish slot ``s`` (written, its generation 0): stamp a new generation, note the
        readers that must release it, and return the header reference. ``advance``: the ring
        order continues after ``s`` (a loan moved it on when it was made)."""
        rows = self._rows.get(topic)
        if rows is None:
            rows = self._rows[topic] = self._rows_for(seg, topic)
        g = self._gen
        self._gen = g + 1
        seg.gens[s] = g
        self._slot_gen[s] = g
        self._slot_rows[s] = rows
        if advance:
            self._next = (s + 1) % seg.nslots
        return ["shm", self.pid, seg.fd, seg.token, s, g]

    def _rows_for(self, seg: _Segment, topic: bytes) -> _Rows:
        if not self.readers:
            return ()
        out = []
        for r, rid in enumerate(seg.row_ids):
            reader = self.readers.get(rid)
            if reader is not None and any(topic.startswith(p) for p in reader.topics):
                out.append((r, rid))
        return tuple(out)

    def _find_slot(self, seg: _Segment, wait: Callable[[], bool] | None) -> int | None:
        n = seg.nslots
        s = self._next
        hot = self.hot is not None and self.hot()
        if hot:
            # Every reader is protected: reuse the lowest free slot, still in cache from its last
            # use, instead of cycling through the whole ring (a write to a cold slot costs about
            # twice as much: docs/benchmarks.md). Copying readers need the ring order: it gives
            # them the whole ring's time to copy before a slot is reused.
            for c in range(n):
                if self._free(seg, self._slot_gen, self._slot_rows, c):
                    self._hoarded = False
                    return c
        elif self._free(seg, self._slot_gen, self._slot_rows, s):
            self._hoarded = False
            return s
        if self._hoarded:  # readers keep every slot: no waiting, the socket takes the array
            for k in range(1, n + 1):
                c = (s + k) % n
                if self._free(seg, self._slot_gen, self._slot_rows, c):
                    self._hoarded = False
                    return c
            self.fallbacks += 1
            return None
        self.waits += 1
        next_wait = time.monotonic() + 0.01
        give_up = time.monotonic() + self.hold_timeout
        # Readers release in publication order: wait until the eighth of the ring holding the
        # oldest frames is free, then publish that many without waiting (one wake-up per burst,
        # not one per frame). In ring order that is the next slots; reused hot, the slots of the
        # lowest generations (a loaned slot aside: it is not released, it is being filled).
        if hot:
            loaned = self._loan[1] if self._loan is not None and self._loan[0] is seg else -1
            oldest = sorted((c for c in range(n) if c != loaned), key=self._slot_gen.__getitem__)
            burst = oldest[:max(1, n // 8)]
            s = min(burst)
        else:
            burst = [(s + k) % n for k in range(max(1, n // 8))]
        seg.waiting[0] = 1  # readers poke the wake-up pipe when they release
        try:
            while True:
                if all(self._free(seg, self._slot_gen, self._slot_rows, c) for c in burst):
                    return s
                # a poke can be missed (no fence between a reader's two writes): poll anyway
                if select.select([self._wake_r], [], [], 0.002)[0]:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                now = time.monotonic()
                if now >= next_wait:
                    next_wait = now + 0.01
                    for k in range(1, n):  # a reader keeps one slot: take any free one
                        c = (s + k) % n
                        if self._free(seg, self._slot_gen, self._slot_rows, c):
                            return c
                    if wait is not None and wait():
                        return None
                    if now >= give_up:  # a reader keeps its arrays: never deadlock on them
                        self._hoarded = True
                        self.fallbacks += 1
                        return None
        finally:
            seg.waiting[0] = 0

    def close(self) -> None:
        for seg in [self._seg] + [r[0] for r in self._retired]:
            if seg is not None:
                seg.close()
        self._seg = None
        self._retired.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1


# ------------------------------------------------------------------------------ reader


class _Held:
    """The owner of a zero-copy array: when it is collected, its slot is released."""

    __slots__ = ("__array_interface__", "buf", "gen", "rid", "row", "seg", "slot")

    def __init__(self, seg: _Segment, row: int, rid: bytes, slot: int, gen: int,
                 dtype: np.dtype, nbytes: int) -> None:
        self.seg = seg
        self.buf = seg.bytes  # an export of the mapping: it stays mapped while this lives
        self.row = row
        self.rid = rid
        self.slot = slot
        self.gen = gen
        addr = seg.addr + _DATA + slot * seg.slot_bytes
        self.__array_interface__ = {"version": 3, "shape": (nbytes // dtype.itemsize,),
                                    "typestr": dtype.str, "data": (addr, True)}

    def __del__(self) -> None:
        seg = self.seg
        u64 = seg.u64
        if u64 is None:  # the reader closed: nothing to tell
            return
        r = self.row
        start = _ROWS + r * _ROW_BYTES
        if seg.mm[start:start + 16] == self.rid:  # still our row
            u64[_RELEASED + r * _ROW_WORDS + self.slot] = self.gen
            seg.poke()


class ShmReader:
    """The subscriber's side: maps publishers' segments and resolves header references.

    One per Subscriber. ``resolver(rid)`` returns the callable ``codec.decode`` uses for one
    edge: ``rid`` is the edge's reader id for a lossless edge (zero-copy when protected), None for
    a lossy one (copy on receive). ``zero_copy=False`` copies on every edge (for measurements).
    """

    def __init__(self, *, zero_copy: bool = True) -> None:
        self.zero_copy = zero_copy
        self._segments: collections.OrderedDict[tuple[int, int, bytes], _Segment] = \
            collections.OrderedDict()
        self._rows: dict[tuple[bytes, bytes], int] = {}  # (token, rid) -> row
        self.resolved = 0  # fields read from shared memory (callers compare before/after)
        self.resolved_bytes = 0  # and their bytes (queues bound what they hold in bytes)

    @staticmethod
    def new_reader_id() -> bytes:
        return uuid.uuid4().bytes

    def resolver(self, rid: bytes | None) -> Callable[[Any, np.dtype, int], np.ndarray]:
        def resolve(ref: Any, dtype: np.dtype, nbytes: int) -> np.ndarray:
            return self.resolve(ref, dtype, nbytes, rid)
        return resolve

    def _segment(self, pid: int, fd: int, token: bytes) -> _Segment:
        key = (pid, fd, token)
        seg = self._segments.get(key)
        if seg is None:
            seg = _Segment.open(pid, fd, token)
            self._segments[key] = seg
            while len(self._segments) > _MAX_SEGMENTS:
                _, old = self._segments.popitem(last=False)
                old.close()
                for key in [k for k in self._rows if k[0] == old.token]:
                    del self._rows[key]
        return seg

    def _row(self, seg: _Segment, rid: bytes) -> int | None:
        key = (seg.token, rid)
        r = self._rows.get(key)
        mm = seg.mm
        if r is not None and mm[_ROWS + r * _ROW_BYTES:_ROWS + r * _ROW_BYTES + 16] == rid:
            return r
        for r in range(MAX_READERS):
            if mm[_ROWS + r * _ROW_BYTES:_ROWS + r * _ROW_BYTES + 16] == rid:
                self._rows[key] = r
                return r
        return None

    def resolve(self, ref: Any, dtype: np.dtype, nbytes: int, rid: bytes | None) -> np.ndarray:
        """The 1-d array of ``nbytes // dtype.itemsize`` items that ``ref`` points to."""
        if not (type(ref) is list and len(ref) == 6 and ref[0] == "shm"
                and all(type(x) is int for x in (ref[1], ref[2], ref[4], ref[5]))
                and type(ref[3]) is bytes and len(ref[3]) == 16):
            raise ShmError(f"bad shared-memory reference {str(ref)[:80]}")
        _, pid, fd, token, s, g = ref
        if pid <= 0 or fd < 0 or g <= 0:
            raise ShmError(f"bad shared-memory reference {str(ref)[:80]}")
        seg = self._segment(pid, fd, token)
        if not 0 <= s < seg.nslots or nbytes > seg.slot_bytes:
            raise ShmError(f"shared-memory reference outside its segment (slot {s}, {nbytes} B)")
        gens = seg.gens
        if gens[s] != g:
            raise TornRead(f"slot {s} reused before it was read (generation {g})")
        self.resolved += 1
        self.resolved_bytes += nbytes
        r = None
        if rid is not None:
            r = self._row(seg, rid)
            if r is not None and seg.join[r][0] > g:
                r = None  # sent before the publisher registered us: not protected
            if r is not None and self.zero_copy:  # protected: the publisher waits for us
                return np.asarray(_Held(seg, r, rid, s, g, dtype, nbytes))
        start = _DATA + s * seg.slot_bytes
        out = seg.bytes[start:start + nbytes].copy()
        if r is not None:
            seg.released[r][s] = g  # copied: the slot is free for the publisher again
            seg.poke()
        elif gens[s] != g:
            raise TornRead(f"slot {s} reused while it was read (generation {g})")
        out = out.view(dtype)
        out.flags.writeable = False
        return out

    def close(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._rows.clear()


def shm_options(extra: dict[str, Any]) -> dict[str, Any]:
    """``Publisher`` keyword arguments from a node's config ``extra`` (the spec's node field
    ``shm_threshold``: bytes, 0 for off, absent for ``DEFAULT_THRESHOLD``)."""
    threshold = extra.get("shm_threshold")
    if threshold is None:
        return {}
    return {"shm_threshold": int(threshold) or None}
