"""Mutated bus messages for fuzzing a node process (used by ``tools/fuzz_soak.py`` and tests).

``Mutator(topic_prefix, node_id)`` turns valid encoded frames into mostly-broken ones: bit flips
and truncation of any part, random bytes, dropped / duplicated / extra parts, and structured
changes of the msgpack header (wrong types, huge or negative shapes and sequence numbers, other
node ids and topics under the subscribed prefix, forged kinds, disallowed dtypes, big but
well-formed frames). Deterministic for a given seed. No sockets here: the caller sends.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import numpy as np

from genki_signals.bus.codec import encode

BIG_FRAME_SAMPLES = 1 << 17  # a valid frame of 128 Ki samples (1 MiB per float64 field)


class Mutator:
    """Yields lists of bytes parts, each one message (valid, broken, or valid but hostile)."""

    def __init__(self, topic_prefix: str, node_id: str, *, seed: int = 0,
                 samples: int = 10, big_every: int = 5000) -> None:
        self.rng = random.Random(seed)
        self.prefix = topic_prefix
        self.node_id = node_id
        self.samples = samples
        self.big_every = big_every
        self.seq = 0
        self.t = 0.0
        self.count = 0

    def valid(self, n: int | None = None) -> list[bytes]:
        """A well-formed data frame (``timestamp`` and ``x``), next sequence number."""
        n = self.samples if n is None else n
        ts = self.t + np.arange(n) / 1000.0
        self.t += n / 1000.0
        parts = encode(f"{self.prefix}main", {"timestamp": ts, "x": np.sin(ts)},
                       node_id=self.node_id, seq=self.seq, publish_time=float(ts[-1]))
        self.seq += 1
        return [bytes(p) for p in parts]

    def __next__(self) -> list[bytes]:
        self.count += 1
        if self.big_every and self.count % self.big_every == 0:
            return self.valid(BIG_FRAME_SAMPLES)  # well-formed, 2 MiB: queues must bound bytes
        r = self.rng.random()
        if r < 0.2:
            return self.valid()
        parts = self.valid()
        if r < 0.55:
            return self._mutate_header(parts)
        if r < 0.8:
            return self._mutate_bytes(parts)
        return self._mutate_parts(parts)

    def __iter__(self) -> Mutator:
        return self

    # ------------------------------------------------------------------ mutations
    def _mutate_bytes(self, parts: list[bytes]) -> list[bytes]:
        rng = self.rng
        i = rng.randrange(len(parts))
        b = bytearray(parts[i])
        op = rng.randrange(4)
        if op == 0 and b:  # flip bits
            for _ in range(rng.randint(1, 8)):
                k = rng.randrange(len(b))
                b[k] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            b = b[:rng.randrange(len(b) + 1)]
        elif op == 2:  # insert random bytes
            k = rng.randrange(len(b) + 1)
            b[k:k] = rng.randbytes(rng.randint(1, 64))
        else:  # replace with random bytes
            b = bytearray(rng.randbytes(rng.randint(0, 256)))
        if i == 0 and not bytes(b).startswith(self.prefix.encode()):
            b = bytearray(self.prefix.encode()) + b  # keep it past the SUB filter
        parts[i] = bytes(b)
        return parts

    def _mutate_parts(self, parts: list[bytes]) -> list[bytes]:
        rng = self.rng
        op = rng.randrange(4)
        if op == 0:
            return parts[:1]
        if op == 1:
            return parts + [rng.randbytes(rng.randint(0, 128)) for _ in range(rng.randint(1, 4))]
        if op == 2:
            return parts + parts[1:]
        return [parts[0], parts[1], parts[1]]

    def _mutate_header(self, parts: list[bytes]) -> list[bytes]:
        rng = self.rng
        header: dict[str, Any] = msgpack.unpackb(parts[1], raw=False)
        hostile: list[Any] = [None, -1, 2**64 - 1, 2**63, 1e308, float("nan"), "x" * 300, b"\x00",
                              [], {}, [[1, 2]], True, -(2**63)]
        op = rng.randrange(9)
        if op == 0:  # a field with a wrong type or value
            key = rng.choice(sorted(header))
            header[key] = rng.choice(hostile)
        elif op == 1:  # sequence jumps and restarts
            header["seq"] = rng.choice([0, 2**64 - 1, 2**64 - 2, self.seq + 10**12,
                                        max(0, self.seq - 5)])
        elif op == 2:  # another node id under the same topic
            header["node"] = f"n{rng.randrange(10**9)}"
        elif op == 3:  # another topic under the subscribed prefix
            parts[0] = f"{self.prefix}t{rng.randrange(10**9)}".encode()
        elif op == 4:  # forged kinds (no "eos": from the wired upstream it is a genuine end)
            header["kind"] = rng.choice(["event", "data", "EOS", "", "eos "])
        elif op == 5 and header["fields"]:  # shapes: huge, negative, mismatched
            f = rng.choice(header["fields"])
            f[2] = rng.choice([[10**12], [-1], [0], [1, 2, 3], [2**31, 2**31], list(range(40))])
        elif op == 6 and header["fields"]:  # dtypes
            f = rng.choice(header["fields"])
            f[1] = rng.choice(["|O", "<U8", "|V8", "<f8", "|S99999", ">i8", "<M8[s]", 7])
        elif op == 7 and header["fields"]:  # names: duplicates, huge, non-str
            f = rng.choice(header["fields"])
            f[0] = rng.choice(["timestamp", "x", "y" * 10000, 5, ""])
        else:  # extra or missing keys
            if rng.random() < 0.5:
                header.pop(rng.choice(sorted(header)))
            else:
                header["extra"] = 1
        parts[1] = msgpack.packb(header, use_bin_type=True)
        return parts
