"""The ``aligner`` node kind: follower streams joined onto a leader stream's timestamps.

Spec::

    - id: joined
      kind: aligner
      inputs: [ring, mouse, mic]          # edge policies as usual
      params:
        leader: ring                      # default: the first input
        max_lag: 0.2                      # live wait for followers (s); null: wait for data.
                                          # default: null when every input edge is lossless
                                          # (a replay: reproducible), else 0.5
        followers:                        # optional; an input not listed follows with hold
          mouse: linear                   # method only
          mic: {method: hold, keys: [level], prefix: mic_, timeline: main}

Published on ``<id>/main``: ``timestamp`` and the streams of the leader's timeline, then each
follower's ``keys`` (default: all streams of its timeline) as ``prefix + key``. Unlike graph and
sink nodes, an aligner takes its frames as they arrive (input mode ``arrival``): it orders by
timestamp itself and waits only for what a leader sample needs.

Stats in the heartbeat: ``aligned`` samples, ``align_late`` (follower values held because of
``max_lag``), ``align_dropped``, ``align_pending``, and the added latency (arrival of a leader
sample to its publication) ``align_latency_p50`` / ``align_latency_p99`` over the last 1000.
"""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from genki_signals.frames import TIMESTAMP, Topic
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.logic import NodeLogic, Output
from genki_signals.signals.align import METHODS, Aligner

__all__ = ["AlignerNodeLogic", "check_aligner_params", "build_aligner", "DEFAULT_LIVE_MAX_LAG"]

PARAM_KEYS = ("leader", "followers", "max_lag", "leader_timeline")
FOLLOWER_KEYS = ("method", "keys", "prefix", "timeline")
DEFAULT_LIVE_MAX_LAG = 0.5
MAIN = "main"


def _f(path: str, message: str) -> str:
    return f"field '{path}': {message}"


def _resolve(params: Mapping[str, Any], input_nodes: list[str]
             ) -> tuple[list[str], str | None, dict[str, dict[str, Any]]]:
    """Problems, the leader, and each follower's options (timeline included), from params."""
    problems: list[str] = []
    for k in params:
        if k not in PARAM_KEYS:
            problems.append(_f(f"params.{k}", f"unknown field (allowed: {', '.join(PARAM_KEYS)})"))
    leader = params.get("leader", input_nodes[0] if input_nodes else None)
    if not isinstance(leader, str) or leader not in input_nodes:
        inputs = ", ".join(input_nodes) or "none"
        problems.append(_f("params.leader",
                           f"must be one of the inputs ({inputs}), got {leader!r}"))
        leader = None
    if "leader_timeline" in params and not isinstance(params["leader_timeline"], str):
        problems.append(_f("params.leader_timeline",
                           f"must be a timeline name, got {params['leader_timeline']!r}"))
    if "max_lag" in params:
        lag = params["max_lag"]
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, numbers.Real)
                                or not math.isfinite(lag) or lag < 0):
            problems.append(_f("params.max_lag", f"must be a number >= 0 (seconds) or null "
                                                 f"(wait for data), got {lag!r}"))
    raw = params.get("followers", {})
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(_f("params.followers", f"must be a mapping input -> method or "
                                               f"{{{', '.join(FOLLOWER_KEYS)}}}, got {raw!r}"))
        raw = {}
    followers: dict[str, dict[str, Any]] = {}
    for name, spec in raw.items():
        where = f"params.followers.{name}"
        if name not in input_nodes:
            problems.append(_f(where, f"'{name}' is not an input "
                                      f"(inputs: {', '.join(input_nodes)})"))
            continue
        if name == leader:
            problems.append(_f(where, f"'{name}' is the leader"))
            continue
        if isinstance(spec, str) or spec is None:
            spec = {"method": spec or "hold"}
        if not isinstance(spec, Mapping):
            problems.append(_f(where, f"must be a method ({', '.join(METHODS)}) or a mapping "
                                      f"{{{', '.join(FOLLOWER_KEYS)}}}, got {spec!r}"))
            continue
        ok = True
        for k in spec:
            if k not in FOLLOWER_KEYS:
                problems.append(_f(f"{where}.{k}", f"unknown field (allowed: "
                                                   f"{', '.join(FOLLOWER_KEYS)})"))
                ok = False
        if spec.get("method", "hold") not in METHODS:
            problems.append(_f(f"{where}.method", f"must be one of {', '.join(METHODS)}, "
                                                  f"got {spec.get('method')!r}"))
            ok = False
        keys = spec.get("keys")
        if keys is not None and (not isinstance(keys, list) or not keys or
                                 not all(isinstance(k, str) for k in keys)):
            problems.append(_f(f"{where}.keys", f"must be a non-empty list of stream names, "
                                                f"got {keys!r}"))
            ok = False
        for k in ("prefix", "timeline"):
            if k in spec and not isinstance(spec[k], str):
                problems.append(_f(f"{where}.{k}", f"must be a string, got {spec[k]!r}"))
                ok = False
        if ok:
            followers[name] = dict(spec)
    for name in input_nodes:
        if name != leader and name not in followers and name not in raw:
            followers[name] = {"method": "hold"}
    if leader is not None and not followers and not problems:
        problems.append(_f("inputs", "an aligner needs a leader and at least one follower input"))
    return problems, leader, followers


def check_aligner_params(ctx: Any) -> tuple[list[str], dict[str, str] | None]:
    """Static check for ``launch.spec`` (a ``KindContext``): problems and output streams."""
    params = ctx.params
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return [_f("params", f"must be a mapping {{leader, followers, max_lag}}, "
                             f"got {params!r}")], None
    nodes = [u.node for u in ctx.upstreams if u.node != "?"]
    problems, leader, followers = _resolve(params, nodes)
    if problems or not ctx.streams_known or leader is None:
        return problems, None
    streams = {u.node: dict(u.streams or {}) for u in ctx.upstreams}

    def on(node: str, timeline: str) -> list[str]:
        return [k for k, line in streams[node].items() if line == timeline and k != TIMESTAMP]

    lead_line = params.get("leader_timeline", MAIN)
    outputs: dict[str, str] = {TIMESTAMP: MAIN}
    owner: dict[str, str] = {}
    lead_keys = on(leader, lead_line)
    if lead_line != MAIN and not lead_keys:
        problems.append(_f("params.leader_timeline", f"leader '{leader}' publishes no timeline "
                                                     f"'{lead_line}'"))
    for k in lead_keys:
        outputs[k] = MAIN
        owner[k] = f"leader '{leader}'"
    for name, spec in followers.items():
        where = f"params.followers.{name}"
        line = spec.get("timeline", MAIN)
        available = on(name, line)
        keys = spec.get("keys") or available
        if not available:
            problems.append(_f(f"{where}.timeline" if "timeline" in spec else where,
                               f"input '{name}' publishes no streams on timeline '{line}'"))
            continue
        for i, k in enumerate(keys):
            if k not in available:
                problems.append(_f(f"{where}.keys[{i}]", f"stream '{k}' is not on input "
                                                         f"'{name}' timeline '{line}' "
                                                         f"(available: {', '.join(available)})"))
                continue
            out = spec.get("prefix", "") + k
            if out in owner or out == TIMESTAMP:
                problems.append(_f(where, f"stream '{k}' would be published as '{out}', which "
                                          f"{owner.get(out, 'is the timestamp')} already "
                                          f"publishes: give '{name}' a prefix"))
                continue
            owner[out] = f"follower '{name}'"
            outputs[out] = MAIN
    return problems, (None if problems else outputs)


class AlignerNodeLogic(NodeLogic):
    """Runs an ``Aligner`` over frames as they arrive; publishes joined frames on ``main``."""

    input_mode = "arrival"

    def __init__(self, leader: str, followers: Mapping[str, Mapping[str, Any]],
                 max_lag: float | None, leader_timeline: str = MAIN) -> None:
        self.topics = {Topic(leader, leader_timeline): leader}
        specs = {}
        for name, spec in followers.items():
            spec = dict(spec)
            self.topics[Topic(name, spec.pop("timeline", MAIN))] = name
            specs[name] = spec
        self.aligner = Aligner(leader, specs, max_lag=max_lag)
        self._latency: collections.deque[float] = collections.deque(maxlen=1000)

    def on_frame(self, topic: Topic, frame: dict[str, np.ndarray], now: float
                 ) -> list[Output]:
        name = self.topics.get(topic)
        if name is None:
            return []  # another timeline of an input: not aligned
        self.aligner.push(name, frame, arrival=now)
        return []  # the runner calls tick() right after every frame: one pop per frame

    def on_eos(self, topic: Topic, now: float) -> list[Output]:
        name = self.topics.get(topic)
        if name is not None:
            self.aligner.end(name)
        return self._pop(now)

    def tick(self, now: float) -> list[Output]:
        """After every frame, and at least every 50 ms (``max_lag`` timeouts)."""
        return self._pop(now)

    def _pop(self, now: float) -> list[Output]:
        out = self.aligner.pop(now)
        if not out:
            return []
        self._latency.extend((now - self.aligner.emitted_arrivals).tolist())
        return [Output(MAIN, out)]

    def stats(self) -> dict[str, Any]:
        out = self.aligner.stats()
        if self._latency:
            lat = np.fromiter(self._latency, dtype=np.float64)
            out["align_latency_p50"] = float(np.percentile(lat, 50))
            out["align_latency_p99"] = float(np.percentile(lat, 99))
        return out


def build_aligner(config: NodeConfig) -> AlignerNodeLogic:
    params = dict(config.params or {})
    problems, leader, followers = _resolve(params, [e.node for e in config.inputs])
    if problems:
        raise ValueError(f"node '{config.id}': " + "; ".join(problems))
    if "max_lag" in params:
        max_lag = params["max_lag"]
    else:  # lossless everywhere (a replay): wait for data, so the output is reproducible
        lossless = all(e.policy == "lossless" for e in config.inputs)
        max_lag = None if lossless else DEFAULT_LIVE_MAX_LAG
    return AlignerNodeLogic(leader, followers, max_lag,
                            leader_timeline=params.get("leader_timeline", MAIN))
