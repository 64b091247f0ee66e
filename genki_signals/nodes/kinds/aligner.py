"""The ``aligner`` kind: follower inputs joined onto the leader input's timestamps
(``genki_signals.signals.align``; the logic: ``nodes/aligner_node.py``). Params::

    leader: ring                      # default: the first input
    max_lag: 0.2                      # live wait for followers (s); null: wait for data.
                                      # default (auto): null when every input edge is
                                      # lossless (a replay: reproducible), else 0.5
    followers:                        # optional; an input not listed follows with hold
      mouse: linear                   # method only
      mic: {method: hold, keys: [level], prefix: mic_, timeline: main}
    leader_timeline: main             # the leader's timeline to align on

Published on ``<id>/main``: ``timestamp`` and the streams of the leader's timeline, then each
follower's ``keys`` (default: all streams of its timeline) as ``prefix + key``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from genki_signals.frames import TIMESTAMP
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import MAIN, KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Float, Name, Names, Problem, Str, params

DEFAULT_LIVE_MAX_LAG = 0.5
Method = Literal["hold", "linear"]  # signals.align.METHODS (a test checks; importing it here
# would import scipy into every node process that lists the kinds)


@params
class FollowerParams:
    method: Method = "hold"
    keys: Names | None = None  # default: every stream of its timeline
    prefix: Str = ""
    timeline: Str = MAIN


def _method_shorthand(value: Any) -> Any:
    return {"method": value or "hold"} if value is None or isinstance(value, str) else value


Follower = Annotated[FollowerParams, pydantic.BeforeValidator(
    _method_shorthand, json_schema_input_type=Method | None | FollowerParams)]


@params
class AlignerParams:
    leader: Name | None = None  # default: the first input
    followers: Annotated[dict[Str, Follower], Field(
        description="a mapping input -> method or {method, keys, prefix, timeline}")] | None = None
    max_lag: Annotated[Annotated[Float, Field(ge=0)] | None | Literal["auto"], Field(
        description="a number >= 0 (seconds) or null (wait for data)")] = "auto"
    leader_timeline: Str = MAIN


def resolve(p: Any, inputs: list[str]) -> tuple[list[Problem], str | None,
                                                  dict[str, FollowerParams]]:
    """Problems, the leader, and every follower (an unlisted input follows with hold)."""
    problems: list[Problem] = []
    leader = p.leader if p.leader is not None else (inputs[0] if inputs else None)
    if leader not in inputs:
        problems.append(Problem("params.leader", f"must be one of the inputs "
                                                 f"({', '.join(inputs) or 'none'}), got {leader!r}"))
        leader = None
    listed = p.followers or {}
    followers: dict[str, FollowerParams] = {}
    for name, follower in listed.items():
        if name not in inputs:
            problems.append(Problem(f"params.followers.{name}", f"'{name}' is not an input "
                                                                f"(inputs: {', '.join(inputs)})"))
        elif name == leader:
            problems.append(Problem(f"params.followers.{name}", f"'{name}' is the leader"))
        else:
            followers[name] = follower
    followers.update({n: FollowerParams() for n in inputs if n != leader and n not in listed})
    if leader is not None and not followers and not problems:
        problems.append(Problem("inputs", "an aligner needs a leader and at least one follower "
                                          "input"))
    return problems, leader, followers


def _outputs(p: Any, ctx: KindContext) -> Outputs:
    problems, leader, followers = resolve(p, ctx.input_nodes)
    if problems or not ctx.streams_known or leader is None:
        return problems, None
    streams = {u.node: dict(u.streams or {}) for u in ctx.upstreams}

    def on(node: str, timeline: str) -> list[str]:
        return [k for k, line in streams[node].items() if line == timeline and k != TIMESTAMP]

    lead_keys = on(leader, p.leader_timeline)
    if p.leader_timeline != MAIN and not lead_keys:
        problems.append(Problem("params.leader_timeline", f"leader '{leader}' publishes no "
                                                          f"timeline '{p.leader_timeline}'"))
    owner = {k: f"leader '{leader}'" for k in lead_keys}
    for name, f in followers.items():
        problems += _follower_outputs(name, f, on(name, f.timeline), owner)
    if not problems:  # what each output sample is, for the dry run of the graphs downstream
        ctx.published_samples.update(_aligned_samples(ctx, leader, lead_keys, followers, on))
    return problems, (None if problems else {TIMESTAMP: MAIN, **{k: MAIN for k in owner}})


def _aligned_samples(ctx: KindContext, leader: str, lead_keys: list[str],
                     followers: dict[str, FollowerParams], on: Any) -> dict[str, Any]:
    """Per-sample shape and dtype of each output, when every input declares its own: a leader
    stream as it is; a follower stream with the dtype the aligner gives it (``linear``:
    float64, or complex128; ``hold``: float and complex kept, others float64, NaN meaning
    "no value yet"). Empty when an input declares nothing."""
    import numpy as np

    samples = {u.node: u.samples for u in ctx.upstreams}
    if any(v is None for v in samples.values()):
        return {}
    out: dict[str, Any] = {TIMESTAMP: ((), np.dtype(np.float64).str)}
    try:
        for k in lead_keys:
            out[k] = samples[leader][k]  # type: ignore[index]
        for name, f in followers.items():
            for k in f.keys or on(name, f.timeline):
                shape, dtype = samples[name][k]  # type: ignore[index]
                kind = np.dtype(dtype).kind
                if f.method == "linear":
                    dtype = np.dtype(np.complex128 if kind == "c" else np.float64).str
                elif kind not in "fc":
                    dtype = np.dtype(np.float64).str
                out[f.prefix + k] = (shape, dtype)
    except KeyError:  # a stream whose shape its input does not declare
        return {}
    return out


def _follower_outputs(name: str, f: FollowerParams, available: list[str],
                      owner: dict[str, str]) -> list[Problem]:
    """Problems with one follower's keys; its published names are added to ``owner``."""
    where = f"params.followers.{name}"
    if not available:
        return [Problem(f"{where}.timeline" if f.timeline != MAIN else where,
                        f"input '{name}' publishes no streams on timeline '{f.timeline}'")]
    problems = []
    for i, k in enumerate(f.keys or available):
        out = f.prefix + k
        if k not in available:
            problems.append(Problem(f"{where}.keys[{i}]", (
                f"stream '{k}' is not on input '{name}' timeline '{f.timeline}' "
                f"(available: {', '.join(available)})")))
        elif out in owner or out == TIMESTAMP:
            problems.append(Problem(where, (
                f"stream '{k}' would be published as '{out}', which "
                f"{owner.get(out, 'is the timestamp')} already publishes: give '{name}' a "
                f"prefix")))
        else:
            owner[out] = f"follower '{name}'"
    return problems


def _build(p: Any, config: NodeConfig) -> NodeLogic:
    from genki_signals.nodes.aligner_node import AlignerNodeLogic

    problems, leader, followers = resolve(p, [e.node for e in config.inputs])
    if problems:
        raise ValueError(f"node '{config.id}': " + "; ".join(map(str, problems)))
    max_lag = p.max_lag
    if max_lag == "auto":  # lossless everywhere (a replay): wait for data, reproducibly
        lossless = all(e.policy == "lossless" for e in config.inputs)
        max_lag = None if lossless else DEFAULT_LIVE_MAX_LAG
    specs = {name: {"method": f.method, "timeline": f.timeline, "prefix": f.prefix,
                    **({"keys": list(f.keys)} if f.keys else {})}
             for name, f in followers.items()}
    return AlignerNodeLogic(leader, specs, max_lag,  # type: ignore[arg-type]
                            leader_timeline=p.leader_timeline)


KIND = NodeKind(kind="aligner", params=AlignerParams, build=_build, inputs="required",
                publishes=True, outputs=_outputs, order=5,
                doc="joins follower inputs onto the leader input's timestamps "
                    "(params.leader, followers: hold | linear, max_lag)")
