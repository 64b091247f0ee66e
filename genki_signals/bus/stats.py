"""Bus counters that a node runner reports in its heartbeats."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(slots=True)
class BusStats:
    """Counters of one Publisher, one Subscriber, or their sum (``a + b``).

    ``gaps`` are messages lost before they reached the subscriber (sequence jumps: publisher
    queue full, peer restart window); ``drops`` are messages the subscriber received but discarded
    by its queue policy. ``stalls`` counts publishes that found a lossless subscriber full and so
    waited for it (however briefly). ``resets`` counts sequence numbers that went backwards or
    jumped further than ``codec.MAX_GAP`` (a restarted or forged publisher): each is one reset,
    never a gap count. ``oversized``: messages over the subscriber's ``max_bytes`` (skipped);
    ``reconnects``: connections re-opened after they dropped (a part over ``max_bytes`` makes
    libzmq drop the connection; a publisher restart too); ``unexpected``: messages from a node
    id or topic the edge does not carry (``Subscriber.connect(node=)``: forged or misrouted,
    an ``eos`` included) or of a ``(node id, topic)`` pair beyond the subscriber's
    ``max_upstreams`` (skipped); ``refused``:
    connections to a publisher's lossless endpoint refused (not a declared reader, see
    ``bus.gate``), or a CURVE key not on a socket's allow-list (``bus.security``); a
    subscriber's ``refused``: its handshakes a CURVE publisher refused (key not listed, or a
    security mismatch); a publisher's ``drops``: lossless messages not sent after its ``on_stall``
    gave up waiting, or frames a degraded lossless reader had no room for.

    Lossless edges (``bus.lossless``): ``duplicates``: frames a reader received again in the
    same epoch (a resend overlapping what it had), dropped; ``evicted``: frames the publisher's
    retention bounds dropped before every declared reader acknowledged them; ``resent``: frames
    sent again to a reader that reconnected; ``degraded``/``failed_readers``: readers whose
    stall policy acted; ``retained_bytes``: bytes held in the publisher's retention (a gauge). ``torn``: frames dropped because the
    publisher reused their shared-memory slot before or while it was read (a too-slow lossy
    reader; see ``bus.shm``).
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    gaps: int = 0
    drops: int = 0
    decode_errors: int = 0
    stalls: int = 0
    resets: int = 0
    oversized: int = 0
    reconnects: int = 0
    unexpected: int = 0
    refused: int = 0
    duplicates: int = 0
    evicted: int = 0
    resent: int = 0
    degraded: int = 0
    failed_readers: int = 0
    retained_bytes: int = 0
    torn: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: BusStats) -> BusStats:
        if not isinstance(other, BusStats):
            return NotImplemented
        return BusStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(slots=True)
class UpstreamStats:
    """What a subscriber saw from one upstream ``(node_id, topic)``.

    ``resets`` counts sequence numbers that went backwards (publisher restarted or duplicated)
    or jumped implausibly far (``codec.MAX_GAP``); the gap count restarts from the new number.
    """

    last_seq: int
    frames: int = 0
    gaps: int = 0
    drops: int = 0
    resets: int = 0
