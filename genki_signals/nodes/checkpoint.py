"""Checkpoints of a node's state, so that a crashed node resumes exactly where it was.

A checkpoint is what a restarted node needs to continue a stream as if it had never stopped:

* ``state``: its logic's ``state_dict()`` (a graph node: every operator's carried state);
* ``consumed``: per input topic, the sequence number of the last frame whose effect is in
  ``state``, and ``epochs``: per upstream node, the numbering those sequence numbers belong to
  (``bus.lossless.Lineage``). Restarted, the node asks each lossless upstream to resend from the
  frame after it (``Subscriber.connect(resume=...)``); after writing a checkpoint it
  acknowledges ``consumed`` upstream (``Subscriber.ack``), which then forgets those frames;
* ``lineage``: its own publisher's epoch and next sequence number per topic
  (``Publisher.lineage``): restarted, it republishes what it computed after the checkpoint
  under the same numbers, which its readers drop as duplicates.

The file is ``<run dir>/<node id>.checkpoint``: a magic line, a CRC-32 of the body and the body,
msgpack with arrays as dtype/shape/bytes (``signals.state``; never pickle). It is replaced
atomically (write a temporary file, fsync it, rename it over the old one, fsync the directory),
so a crash while writing leaves the previous checkpoint intact, never a torn one. A damaged or
foreign file raises ``CheckpointError`` naming the file.

How often (``CheckpointParams``, the ``checkpoint`` field of the graph and inference kinds):
after ``every_frames`` input frames or ``every_seconds`` seconds, whichever comes first, and
only between frames (never with a frame half processed).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from genki_signals.errors import GenkiError
from genki_signals.params import Bool, Field, Float, Int, params
from genki_signals.signals.state import StateError, decode_state, encode_state

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointParams",
    "CheckpointSchedule",
    "CheckpointStore",
    "checkpoint_path",
]

MAGIC = b"GENKI-CHECKPOINT 1\n"
_CRC = struct.Struct(">I")
_KEYS = {"node", "consumed", "epochs", "lineage", "state", "frames", "written"}

DEFAULT_EVERY_FRAMES = 50
DEFAULT_EVERY_SECONDS = 0.5


class CheckpointError(GenkiError, ValueError):
    """A checkpoint file that cannot be read, or state that cannot be written."""


@params
class CheckpointParams:
    """When a node writes its checkpoint (the ``checkpoint`` field of graph/inference nodes).

    ``enabled``: null (the default) checkpoints when at least one input edge is ``lossless``
    (only then can the upstream resend what the node had not checkpointed); ``true``/``false``
    force it. ``every_frames``/``every_seconds``: a checkpoint after that many input frames or
    that many seconds since the last one, whichever comes first. Frames after the last
    checkpoint are computed again after a crash, so these bound the work repeated and the
    bytes an upstream retains, not correctness.
    """

    enabled: Bool | None = None
    every_frames: Annotated[Int, Field(ge=1)] = DEFAULT_EVERY_FRAMES
    every_seconds: Annotated[Float, Field(gt=0)] = DEFAULT_EVERY_SECONDS


@dataclass
class Checkpoint:
    """One node's state at a frame boundary (see the module docstring)."""

    node: str
    consumed: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)
    lineage: dict[str, Any] | None = None  # Lineage.to_dict() of the node's publisher
    state: dict[str, Any] = field(default_factory=dict)
    frames: int = 0  # input frames consumed since the node first started (all incarnations)
    written: float = 0.0  # time.time() when written

    def to_bytes(self) -> bytes:
        body = encode_state({"node": self.node, "consumed": dict(self.consumed),
                             "epochs": dict(self.epochs), "lineage": self.lineage,
                             "state": self.state, "frames": self.frames,
                             "written": self.written})
        return MAGIC + _CRC.pack(zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "checkpoint") -> Checkpoint:
        head = len(MAGIC) + _CRC.size
        if not data.startswith(MAGIC) or len(data) < head:
            raise CheckpointError(f"{where}: not a genki checkpoint (bad magic)")
        (crc,) = _CRC.unpack_from(data, len(MAGIC))
        body = data[head:]
        if zlib.crc32(body) != crc:
            raise CheckpointError(f"{where}: damaged (CRC mismatch over {len(body)} bytes)")
        try:
            tree = decode_state(body)
        except StateError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        if set(tree) != _KEYS:
            raise CheckpointError(f"{where}: fields {sorted(tree)}, expected {sorted(_KEYS)}")
        for key in ("consumed", "epochs"):
            seqs = tree[key]
            if not isinstance(seqs, dict) or not all(
                    isinstance(k, str) and type(v) is int and v >= 0 for k, v in seqs.items()):
                raise CheckpointError(f"{where}: field '{key}' must map names to integers")
        lineage = tree["lineage"]
        if lineage is not None and (not isinstance(lineage, dict)
                                    or set(lineage) != {"epoch", "next_seq"}):
            raise CheckpointError(f"{where}: field 'lineage' must be null or "
                                  f"{{epoch, next_seq}}")
        if not isinstance(tree["node"], str) or not isinstance(tree["state"], dict) \
                or type(tree["frames"]) is not int:
            raise CheckpointError(f"{where}: malformed node, state or frames field")
        return cls(**tree)


def checkpoint_path(run_dir: str | os.PathLike[str], node_id: str) -> Path:
    """Where a node of a run keeps its checkpoint."""
    return Path(run_dir) / f"{node_id}.checkpoint"


class CheckpointStore:
    """Reads and atomically replaces one node's checkpoint file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.writes = 0
        self.last_bytes = 0
        self.last_write_seconds = 0.0

    def load(self) -> Checkpoint | None:
        """The checkpoint, or None when there is none yet (the node's first start)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"checkpoint '{self.path}': cannot be read: {exc}") from None
        return Checkpoint.from_bytes(data, f"checkpoint '{self.path}'")

    def save(self, checkpoint: Checkpoint) -> int:
        """Write ``checkpoint`` atomically; the number of bytes written."""
        start = time.perf_counter()
        try:
            data = checkpoint.to_bytes()
        except StateError as exc:
            raise CheckpointError(f"checkpoint '{self.path}': state of node "
                                  f"'{checkpoint.node}' cannot be stored: {exc}") from None
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)
        self.writes += 1
        self.last_bytes = len(data)
        self.last_write_seconds = time.perf_counter() - start
        return len(data)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class CheckpointSchedule:
    """Says when the next checkpoint is due: every ``every_frames`` frames or
    ``every_seconds`` seconds (monotonic) since the last one, whichever comes first; never
    when no frame was consumed since (nothing changed)."""

    def __init__(self, every_frames: int = DEFAULT_EVERY_FRAMES,
                 every_seconds: float = DEFAULT_EVERY_SECONDS) -> None:
        self.every_frames = every_frames
        self.every_seconds = every_seconds
        self.frames_since = 0
        self._last = time.monotonic()

    def consumed(self, frames: int = 1) -> None:
        self.frames_since += frames

    def due(self, mono: float) -> bool:
        return self.frames_since > 0 and (self.frames_since >= self.every_frames
                                          or mono - self._last >= self.every_seconds)

    def done(self, mono: float) -> None:
        self.frames_since = 0
        self._last = mono


def checkpoint_settings(params: Any, lossless_inputs: bool) -> Mapping[str, Any] | None:
    """The ``extra["checkpoint"]`` the launcher passes a node (None: no checkpoints), from the
    kind's params (``params.checkpoint``, a ``CheckpointParams``) and its input edges."""
    ck = getattr(params, "checkpoint", None)
    if not isinstance(ck, CheckpointParams):
        return None
    enabled = ck.enabled if ck.enabled is not None else lossless_inputs
    if not enabled:
        return None
    return {"every_frames": ck.every_frames, "every_seconds": ck.every_seconds}


class NodeCheckpointer:
    """The runner's side of checkpoints: restore once at start, then save when due.

    The runner calls ``restore`` before it binds or connects anything (the checkpoint says where
    to resume), ``consumed`` per frame handed to the logic, and ``after`` after each round of
    dispatches with the feeder's ``consumed``, its publisher's lineage and its upstreams'
    epochs; ``after`` writes the checkpoint when the schedule says so and returns it (the runner
    then acknowledges upstream up to ``consumed``).
    """

    def __init__(self, node_id: str, logic: Any, store: CheckpointStore,
                 schedule: CheckpointSchedule) -> None:
        self.node_id, self.logic, self.store, self.schedule = node_id, logic, store, schedule
        self.frames = 0
        self.restored: Checkpoint | None = None

    @classmethod
    def for_config(cls, config: Any, logic: Any) -> NodeCheckpointer | None:
        """From ``config.extra["checkpoint"]`` (the launcher sets it, with ``run_dir``);
        None when the node is not checkpointed or its logic keeps no checkpointable state."""
        settings = config.extra.get("checkpoint")
        run_dir = config.extra.get("run_dir")
        if not settings or not run_dir or logic.state_dict() is None:
            return None
        return cls(config.id, logic, CheckpointStore(checkpoint_path(run_dir, config.id)),
                   CheckpointSchedule(int(settings.get("every_frames", DEFAULT_EVERY_FRAMES)),
                                      float(settings.get("every_seconds",
                                                         DEFAULT_EVERY_SECONDS))))

    def restore(self) -> Checkpoint | None:
        """Load the checkpoint (if any) into the logic; what it says about sequences."""
        ckpt = self.store.load()
        if ckpt is None:
            return None
        if ckpt.node != self.node_id:
            raise CheckpointError(f"checkpoint '{self.store.path}' belongs to node "
                                  f"'{ckpt.node}', not '{self.node_id}'")
        self.logic.load_state_dict(ckpt.state)
        self.frames = ckpt.frames
        self.restored = ckpt
        return ckpt

    def consumed(self, frames: int) -> None:
        self.frames += frames
        self.schedule.consumed(frames)

    def due(self, mono: float | None = None, force: bool = False) -> bool:
        """Whether ``after`` would write now (so a caller gathers its arguments only then)."""
        mono = time.monotonic() if mono is None else mono
        return self.schedule.due(mono) or (force and self.schedule.frames_since > 0)

    def after(self, consumed: Mapping[str, int], lineage: Mapping[str, Any] | None,
              epochs: Mapping[str, int], mono: float | None = None,
              force: bool = False) -> Checkpoint | None:
        """Write a checkpoint if due (or ``force`` and anything changed); it, or None.
        What a restored checkpoint knew and nothing since changed is kept."""
        mono = time.monotonic() if mono is None else mono
        if not (self.schedule.due(mono) or (force and self.schedule.frames_since)):
            return None
        old = self.restored
        ckpt = Checkpoint(node=self.node_id,
                          consumed={**(old.consumed if old else {}), **consumed},
                          epochs={**(old.epochs if old else {}), **epochs},
                          lineage=dict(lineage) if lineage is not None else None,
                          state=self.logic.state_dict(), frames=self.frames,
                          written=time.time())
        self.store.save(ckpt)
        self.schedule.done(mono)
        return ckpt

    def stats(self) -> dict[str, Any]:
        return {"checkpoints": self.store.writes, "checkpoint_bytes": self.store.last_bytes}
