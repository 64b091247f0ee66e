"""``genki record ADDRESS -o run.mcap``: record a running topology from outside it.

The launcher's directory names every publishing node, its endpoints, the spec and the clock.
The recorder subscribes to each node's lossy endpoint with a deep queue: a recorder attached
from outside is not a reader the spec declares, so it never slows the topology (lossless
endpoints admit declared readers only, see ``genki_signals.bus.gate``); frames lost show as
sequence gaps, counted and reported. To lose none, declare a ``recorder`` node in the spec. It stores the received parts
as they are, with their arrival time on the topology clock, until every recorded node has sent
end-of-stream, ``duration`` has passed, the topology is gone, or Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from genki_signals.bus.security import RemoteAccess
from genki_signals.clock import Clock
from genki_signals.errors import GenkiError

log = logging.getLogger(__name__)

DIRECTORY_CHECK_INTERVAL = 2.0
LOSSY_MAXLEN = 100_000


@dataclass
class AttachResult:
    path: Path
    frames: int
    bytes: int
    gaps: int  # lost before the recorder (sequence gaps)
    drops: int  # dropped by the recorder's own queue (lossy edges only)
    reason: str  # why recording stopped
    lossy_nodes: list[str]


def _prefixes_for(node: str, topics: list[str] | None) -> list[str]:
    own = f"{node}/"
    if topics is None:
        return [own]
    out = []
    for t in topics:
        if t.startswith(own):
            out.append(t)
        elif own.startswith(t):
            out.append(own)
    return sorted(set(out))


def record_topology(address: str, out: str | os.PathLike[str], *,
                    topics: Iterable[str] | None = None, duration: float | None = None,
                    metadata: Mapping[str, Any] | None = None, compression: str = "zstd",
                    flush_interval: float = 0.5, progress: bool | None = None,
                    stream: IO[str] | None = None, access: RemoteAccess | None = None
                    ) -> AttachResult:
    """Record the topology at ``address`` into ``out`` (see the module docstring).

    ``access``: keys for a topology on another host (``--key``/``--server-key``).
    """
    from genki_signals.bus.directory import directory
    from genki_signals.bus.security import publisher_keys
    from genki_signals.bus.sockets import Subscriber
    from genki_signals.record.export import progress_bar
    from genki_signals.record.recorder import Recorder

    stream = stream or sys.stderr
    d = directory(address, access=access)
    wanted = None if topics is None else list(topics)
    plan: dict[str, tuple[str, str, list[str]]] = {}  # node -> (endpoint, policy, prefixes)
    lossy: list[str] = []
    keys: dict[str, Any] = {}  # node -> CURVE client keys (None: ipc/loopback)
    for node in d["nodes"]:
        if not node.get("endpoint"):
            continue
        prefixes = _prefixes_for(node["id"], wanted)
        if not prefixes:
            continue
        plan[node["id"]] = (node["endpoint"], "drop_oldest", prefixes)
        keys[node["id"]] = publisher_keys(access, node["endpoint"], node.get("public_key"),
                                          f"the endpoint of node '{node['id']}'")
        lossy.append(node["id"])
    if not plan:
        available = ", ".join(sorted(d["topics"])) or "none"
        raise GenkiError(f"nothing to record: no published topic matches "
                         f"{' '.join(wanted or [])!r} (topics: {available})")
    clock = Clock().anchor(d["clock_origin"], d["wall_anchor"])
    recorder = Recorder(out, clock=clock, wall_anchor=d["wall_anchor"], topology=d.get("spec"),
                        topology_name=d.get("topology", ""),
                        nodes={n["id"]: n["kind"] for n in d["nodes"]}, metadata=metadata,
                        recorder="attach", topics=wanted, compression=compression,
                        flush_interval=flush_interval)
    print(f"recording topology '{d['topology']}' to {out}: "
          + ", ".join(f"{n} ({policy})" for n, (_, policy, _) in plan.items()), file=stream)
    print("  attached from outside: lossy delivery, frames lost are counted as gaps (declare a "
          "recorder node in the spec to lose none)", file=stream)
    sub = Subscriber(keep_parts=True, max_queue_bytes=256 << 20)  # a deep queue
    ended: set[str] = set()
    reason = "interrupted"
    start = time.monotonic()
    next_check = start + DIRECTORY_CHECK_INTERVAL
    misses = 0
    bar = progress_bar(None, "recording", " frames", progress)
    try:
        for node, (endpoint, policy, prefixes) in plan.items():
            sub.connect(endpoint, prefixes, policy=policy, maxlen=LOSSY_MAXLEN,
                        security=keys[node])
        shown = 0
        while True:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                reason = f"duration of {duration:g} s reached"
                break
            msg = sub.recv(timeout=0.1)
            if msg is not None:
                recorder.record_message(msg, log_time=clock.now())
                if msg.kind == "eos":
                    ended.add(msg.node_id)
                    if ended >= set(plan):
                        reason = "every recorded node sent end-of-stream"
                        break
            if now >= next_check:
                next_check = now + DIRECTORY_CHECK_INTERVAL
                try:
                    directory(address, timeout=1.0, access=access)
                    misses = 0
                except GenkiError:
                    misses += 1
                    if misses >= 2:
                        reason = "the topology is gone"
                        break
            if recorder.frames - shown >= 100 or (msg is None and recorder.frames != shown):
                bar.update(recorder.frames - shown)
                shown = recorder.frames
                bar.set_postfix(MB=f"{_file_mb(out):.1f}", gaps=recorder.gaps,
                                refresh=False)
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        bar.close()
        drops = sub.stats.drops
        sub.close()
        recorder.close()
    print(f"{recorder.summary()}; {drops} dropped by the recorder's queue; stopped: {reason}",
          file=stream)
    return AttachResult(Path(out), recorder.frames, recorder.bytes, recorder.gaps, drops,
                        reason, lossy)


def _file_mb(path: str | os.PathLike[str]) -> float:
    """Megabytes the recording takes on disk (compressed), 0 before it exists."""
    try:
        return os.path.getsize(path) / 1e6
    except OSError:
        return 0.0
