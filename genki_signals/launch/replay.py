"""Rewriting a topology so that recordings stand in for some of its nodes (``genki replay``).

``replay_topology(spec, recording, ["signals"])`` returns a new spec where each named node is a
``replay`` node with the same id (so its downstream nodes, which subscribe to ``signals/``, run
unchanged) and the run settings that make an offline run reproduce the live one:

* every edge fed by a replay node is ``lossless``: backpressure instead of drops;
* as fast as possible (``speed=None``), every edge downstream of a replay node is ``lossless``
  too, since real-time drop policies would silently lose data at full speed (dora does the
  same), and those nodes merge their inputs by timestamp alone (``max_lag: None``: never
  release a frame early because another input is slow), so the outputs depend only on the
  recorded frames;
* as fast as possible, nodes that only display (``plot`` and ``foxglove`` sinks) are left out
  unless ``with_display`` (nobody can watch an hour go by in seconds, and a display at the end
  of a lossless edge would set the pace); the plan's notes say which were left out;
* the replay nodes never restart (a replay that ended has nothing left to play);
* a recorder of the spec that would write over the recording being replayed is an error;
* ``record=PATH`` adds a recorder of every publishing node (all lossless).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genki_signals.errors import GenkiError
from genki_signals.launch.spec import TopologySpec, parse_topology, publishes
from genki_signals.nodes.kinds import kind_info

__all__ = ["DISPLAY_SINKS", "ReplayPlan", "replay_topology"]

DISPLAY_SINKS = frozenset({"plot", "foxglove"})  # sink types that only display


class ReplayPlan:
    """The rewritten spec, the per-node runtime settings, and notes for the user."""

    def __init__(self, spec: TopologySpec, data: dict[str, Any],
                 node_extra: dict[str, dict[str, Any]], replaced: list[str],
                 downstream: set[str], notes: list[str]) -> None:
        self.spec = spec
        self.data = data
        self.node_extra = node_extra
        self.replaced = replaced
        self.downstream = downstream
        self.notes = notes


def _closure(spec: TopologySpec, roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        for n in spec.downstream(todo.pop()):
            if n.id not in seen:
                seen.add(n.id)
                todo.append(n.id)
    return seen


def _resolved(path: str, spec: TopologySpec) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and spec.path is not None:
        p = spec.path.parent / p
    return p.resolve()


def replay_topology(spec: TopologySpec, recording: str | Path, replace: Iterable[str], *,
                    speed: float | None = None, start: float = 0.0, loop: bool = False,
                    record: str | Path | None = None, name: str | None = None,
                    with_display: bool = False, coalesce: int | None = None) -> ReplayPlan:
    """The plan to run ``spec`` with the nodes in ``replace`` played from ``recording``.

    ``coalesce``: as fast as possible, the replay nodes join consecutive frames of a topic into
    frames of up to this many samples (0: off; None: the replay kind's default)."""
    recording = Path(recording).expanduser().resolve()
    replace = list(dict.fromkeys(replace))
    _check_replace(spec, replace)
    _check_overwrites(spec, recording, record)
    fed = set(replace)
    below = _closure(spec, replace) - fed
    data = spec.to_dict()
    data["name"] = name or f"{spec.name}-replay"
    replay_params = {"path": str(recording), "speed": "max" if speed is None else float(speed),
                     "start": float(start), "loop": bool(loop)}
    if coalesce is not None:
        replay_params["coalesce"] = int(coalesce)
    lossless = fed | (below if speed is None else set())  # edges from these become lossless
    nodes = [_replay_node(raw, replay_params) if raw["id"] in fed else _lossless(raw, lossless)
             for raw in data["nodes"]]
    skipped = [] if speed is not None or with_display else \
        [n["id"] for n in nodes if _displays(n) and n["id"] in below]
    nodes = [n for n in nodes if n["id"] not in skipped]
    below -= set(skipped)
    if record is not None:
        nodes.append(_recorder_node(nodes, [n.id for n in spec.nodes], record))
    data["nodes"] = nodes
    notes = []
    if skipped:
        notes.append(f"display nodes left out at full speed: {', '.join(skipped)} "
                     f"(--with-display keeps them)")
    live = [n.id for n in spec.nodes if n.id not in fed and n.id not in below
            and kind_info(n.kind).inputs == "none"]
    if live:
        notes.append(f"live nodes not replayed: {', '.join(live)}; the run ends when they "
                     f"stop (--duration, Ctrl-C), not at the recording's end")
    # the recording and --record were given on the command line: allowed wherever they are
    trusted = [recording] + ([Path(record).expanduser().resolve()] if record is not None else [])
    new_spec = parse_topology(data, path=spec.path, trusted_paths=trusted)
    extra = {n: {"max_lag": None} for n in below} if speed is None else {}
    return ReplayPlan(new_spec, data, extra, replace, below, notes)


def _check_replace(spec: TopologySpec, replace: list[str]) -> None:
    ids = [n.id for n in spec.nodes]
    if not replace:
        raise GenkiError("--replace: name at least one node to replay")
    for node_id in replace:
        if node_id not in ids:
            raise GenkiError(f"--replace: topology '{spec.name}' has no node '{node_id}' "
                             f"(nodes: {', '.join(ids)})")
        kind = spec.node(node_id).kind
        if not publishes(kind):
            raise GenkiError(f"--replace: node '{node_id}' is a {kind} and publishes nothing "
                             f"to replay")


def _check_overwrites(spec: TopologySpec, recording: Path, record: str | Path | None) -> None:
    for n in spec.nodes:
        if n.kind == "recorder" and isinstance(n.params.get("path"), str) and \
                _resolved(n.params["path"], spec) == recording:
            raise GenkiError(f"recorder '{n.id}' would write over {recording}, the recording "
                             f"being replayed: give it another path")
    if record is not None and Path(record).expanduser().resolve() == recording:
        raise GenkiError(f"--record {record}: that is the recording being replayed")


def _replay_node(raw: dict[str, Any], replay_params: dict[str, Any]) -> dict[str, Any]:
    """A replay node in place of ``raw``, keeping where it runs and binds."""
    node = {"id": raw["id"], "kind": "replay",
            "params": {"path": replay_params["path"], "node": raw["id"],
                       **{k: v for k, v in replay_params.items() if k != "path"}},
            "restart": "never"}
    for key in ("host", "cpu", "endpoint"):
        if key in raw:
            node[key] = copy.deepcopy(raw[key])
    return node


def _displays(raw: dict[str, Any]) -> bool:
    params = raw.get("params")
    return raw.get("kind") == "sink" and isinstance(params, dict) and \
        params.get("type") in DISPLAY_SINKS


def _lossless(raw: dict[str, Any], upstreams: set[str]) -> dict[str, Any]:
    for edge in raw.get("inputs", []):
        if edge["node"] in upstreams:
            edge["policy"] = "lossless"
    return raw


def _recorder_node(nodes: list[dict[str, Any]], ids: list[str], record: str | Path
                   ) -> dict[str, Any]:
    recorder_id = "replay_recorder"
    while recorder_id in ids:
        recorder_id += "_"
    publishing = [n["id"] for n in nodes if publishes(n["kind"])]
    return {"id": recorder_id, "kind": "recorder",
            "inputs": [{"node": p, "policy": "lossless"} for p in publishing],
            "params": {"path": str(Path(record).expanduser().resolve())}}
