"""Static checks of the ``recorder`` and ``replay`` node kinds (used by ``launch.spec``).

``recorder`` params::

    path: run.mcap            # required; relative to the spec file's directory
    topics: [signals/, derived/main]   # optional topic prefixes to keep (default: everything)
    metadata: {subject: s01}  # optional, stored in the recording
    flush_interval: 0.5       # seconds, (0, 60]: the most a killed recorder loses
    chunk_size: 1048576       # bytes, >= 1024
    compression: zstd         # zstd | lz4 | none
    fsync: false              # also fsync at every flush (survives power loss)

``replay`` params::

    path: run.mcap            # required; an existing recording
    node: signals             # the recorded node whose topics it plays (default: its own id)
    speed: 1.0                # > 0, or max (as fast as possible)
    start: 0.0                # seconds into the recording
    loop: false
    batch: 64                 # frames per poll at full speed

A replay node's outputs are the streams the recorded node published, read from the recording.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORDER_KEYS = ("path", "topics", "metadata", "flush_interval", "chunk_size", "compression",
                 "fsync")
REPLAY_KEYS = ("path", "node", "speed", "start", "loop", "batch")


def _f(path: str, message: str) -> str:
    return f"field '{path}': {message}"


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _resolve(path: str, spec_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or spec_dir is None else spec_dir / p


def _common(params: Any, allowed: tuple[str, ...], what: str) -> list[str]:
    if not isinstance(params, Mapping):
        return [_f("params", f"must be a mapping ({what}), got {params!r}")]
    problems = [_f(f"params.{k}", f"unknown field (allowed: {', '.join(allowed)})")
                for k in params if k not in allowed]
    if "path" not in params:
        problems.append(_f("params.path", "missing required field"))
    elif not isinstance(params["path"], str) or not params["path"]:
        problems.append(_f("params.path", f"must be a non-empty string, got {params['path']!r}"))
    return problems


def check_recorder(ctx: Any) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.record.recorder import COMPRESSIONS

    params = ctx.params
    problems = _common(params, RECORDER_KEYS, "path: run.mcap, ...")
    if not isinstance(params, Mapping):
        return problems, None
    if isinstance(params.get("path"), str) and params["path"]:
        target = _resolve(params["path"], ctx.spec_dir)
        if target.is_dir():
            problems.append(_f("params.path", f"{str(target)!r} is a directory"))
    if "topics" in params:
        topics = params["topics"]
        if not isinstance(topics, list) or not topics or \
                not all(isinstance(t, str) and t for t in topics):
            problems.append(_f("params.topics", f"must be a non-empty list of topic prefixes, "
                                                f"got {topics!r}"))
        else:
            inputs = [f"{u.node}/" for u in ctx.upstreams if u.node != "?"]
            for i, t in enumerate(topics):
                if inputs and not any(t.startswith(n) or n.startswith(t) for n in inputs):
                    problems.append(_f(f"params.topics[{i}]", (
                        f"{t!r} matches no topic of the inputs (topics start with "
                        f"{', '.join(inputs)})")))
    if "metadata" in params:
        meta = params["metadata"]
        if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
            problems.append(_f("params.metadata", f"must be a mapping of names to values, "
                                                  f"got {meta!r}"))
    if "flush_interval" in params:
        v = params["flush_interval"]
        if not _number(v) or not 0 < v <= 60:
            problems.append(_f("params.flush_interval", f"must be a number of seconds in "
                                                        f"(0, 60], got {v!r}"))
    if "chunk_size" in params:
        v = params["chunk_size"]
        if not _int(v) or v < 1024:
            problems.append(_f("params.chunk_size", f"must be an integer >= 1024, got {v!r}"))
    if "compression" in params and params["compression"] not in COMPRESSIONS:
        problems.append(_f("params.compression", f"must be one of {', '.join(COMPRESSIONS)}, "
                                                 f"got {params['compression']!r}"))
    if "fsync" in params and not isinstance(params["fsync"], bool):
        problems.append(_f("params.fsync", f"must be true or false, got {params['fsync']!r}"))
    return problems, {}


def check_replay(ctx: Any) -> tuple[list[str], dict[str, str] | None]:
    from genki_signals.record.format import RecordingError
    from genki_signals.record.player import node_streams, recorded_topics
    from genki_signals.record.reader import Recording

    params = ctx.params
    problems = _common(params, REPLAY_KEYS, "path: run.mcap, node, speed, start, loop")
    if not isinstance(params, Mapping):
        return problems, None
    node = params.get("node", ctx.node_id)
    if not isinstance(node, str) or not node or "/" in node:
        problems.append(_f("params.node", f"must be a node id, got {node!r}"))
    if "speed" in params:
        v = params["speed"]
        if v != "max" and (not _number(v) or v <= 0):
            problems.append(_f("params.speed", f"must be a number > 0 or 'max', got {v!r}"))
    if "start" in params:
        v = params["start"]
        if not _number(v) or v < 0:
            problems.append(_f("params.start", f"must be a number of seconds >= 0, got {v!r}"))
    if "loop" in params and not isinstance(params["loop"], bool):
        problems.append(_f("params.loop", f"must be true or false, got {params['loop']!r}"))
    if "batch" in params:
        v = params["batch"]
        if not _int(v) or v < 1:
            problems.append(_f("params.batch", f"must be an integer >= 1, got {v!r}"))
    if problems or not isinstance(params.get("path"), str):
        return problems, None
    path = _resolve(params["path"], ctx.spec_dir)
    try:
        with Recording(path) as rec:
            streams = node_streams(rec, node)
            if not streams:
                topics = sorted(recorded_topics(rec))
                nodes = sorted({t.split("/", 1)[0] for t in topics})
                field = "params.node" if "node" in params else "params"
                return [_f(field, f"{path} holds no frames of node '{node}' (recorded "
                                  f"nodes: {', '.join(nodes) or 'none'}; "
                                  f"{rec.report.describe()})")], None
    except RecordingError as exc:
        return [_f("params.path", str(exc))], None
    return [], {name: timeline for name, (timeline, _, _) in streams.items()}
