"""Aligner: follower streams sampled on the ticks of a leader stream (the seed's leader/follower).

For every sample of the *leader* stream at time ``t``, the aligner emits each *follower*'s value
at ``t``: ``hold`` (the latest follower sample at or before ``t``, as ``np.searchsorted(ft, t,
"right") - 1``) or ``linear`` (interpolated between the follower samples around ``t``, as
``np.interp``). A follower faster than the leader is thereby downsampled, a slower one upsampled.
Before a follower's first sample its values are NaN; after its last one (it ended, or it is
late, see below) its last value is held.

Timestamps alone decide. A leader sample at ``t`` is complete once every follower has delivered
a sample at or after ``t`` (then neither ``hold`` nor ``linear`` can change), or has ended. So
the output does not depend on how the streams' frames interleave or are chunked: a replay gives
the live run's frames. Each stream must arrive in its own time order (what the bus guarantees
per topic); samples older than what a stream already delivered are dropped and counted.

Live, a follower that falls silent must not stall the output: with ``max_lag`` (seconds), a
leader sample that has waited longer than ``max_lag`` since it arrived is emitted anyway with the
late followers' last values held; each such value is counted in ``late[follower]``. With
``max_lag=None`` the aligner waits for data (or end of stream), which is what a lossless replay
wants: its output is then reproducible exactly.

Not an ``Operator``. An operator reads streams of *one* timeline, chunk by chunk with equal
lengths (``op(*chunks)``), which is exactly what an aligner cannot do: its inputs are streams on
different timelines whose frames arrive independently. So it is its own small class with the
same discipline: validated parameters, explicit state, ``reset()``, a JSON round trip
(``to_dict`` / ``Aligner.from_dict``), and any chunking or interleaving of the inputs giving the
one-shot result. It is what the ``aligner`` node kind runs, and ``AlignedSource`` runs it over
in-process sources.

Output frame: ``timestamp`` (the leader's), the leader's streams, then every follower's chosen
``keys``, renamed ``prefix + key``. ``hold`` keeps a floating (or complex) dtype and turns other
dtypes into float64 (NaN marks "no value yet"); ``linear`` gives float64 (complex128).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genki_signals.errors import GenkiError
from genki_signals.frames import TIMESTAMP, Frame, companion, is_companion
from genki_signals.signals.state import copy_state

__all__ = ["Aligner", "AlignError", "FollowerSpec", "METHODS"]

METHODS = ("hold", "linear")
_FOLLOWER_KEYS = ("method", "keys", "prefix")


class AlignError(GenkiError, ValueError):
    """Bad aligner parameters, or input frames the aligner cannot join."""


@dataclass(frozen=True)
class FollowerSpec:
    """How one follower is joined: method, the keys taken (None: all), a prefix for their names."""

    name: str
    method: str = "hold"
    keys: tuple[str, ...] | None = None
    prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "keys": None if self.keys is None else list(self.keys),
                "prefix": self.prefix}


@dataclass
class _Follower:
    spec: FollowerSpec
    ts: np.ndarray = field(default_factory=lambda: np.empty(0))
    values: dict[str, np.ndarray] = field(default_factory=dict)
    pending: list[Frame] = field(default_factory=list)
    keys: tuple[str, ...] | None = None  # known after the first frame
    out_dtypes: dict[str, np.dtype] = field(default_factory=dict)
    latest: float = -math.inf
    ended: bool = False

    @property
    def horizon(self) -> float:
        """Leader samples up to here are complete as far as this follower is concerned."""
        return math.inf if self.ended else self.latest


class Aligner:
    """Joins follower streams onto a leader stream's timestamps (see the module docstring).

    ``followers``: names (``hold``), or name -> method, or name -> ``{method, keys, prefix}``.
    Use: ``push(name, frame, arrival)`` as frames come, ``pop(now)`` for what is complete,
    ``end(name)`` at an input's end of stream, ``finish()`` at the very end.
    """

    def __init__(self, leader: str,
                 followers: Sequence[str] | Mapping[str, str | Mapping[str, Any]],
                 max_lag: float | None = None) -> None:
        if not isinstance(leader, str) or not leader:
            raise AlignError(f"Aligner: field 'leader' must be an input name, got {leader!r}")
        self.leader = leader
        self.followers: dict[str, FollowerSpec] = _follower_specs(followers, leader)
        if max_lag is not None and (isinstance(max_lag, bool) or
                                    not isinstance(max_lag, (int, float)) or
                                    not math.isfinite(max_lag) or max_lag < 0):
            raise AlignError(f"Aligner: field 'max_lag' must be a number >= 0 or None, "
                             f"got {max_lag!r}")
        self.max_lag = None if max_lag is None else float(max_lag)
        self.reset()

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.leader, *self.followers)

    def reset(self) -> None:
        """Back to the state right after construction."""
        self._fol = {name: _Follower(spec) for name, spec in self.followers.items()}
        self._lead_chunks: list[tuple[np.ndarray, dict[str, np.ndarray], float]] = []
        self._lt = np.empty(0)
        self._lv: dict[str, np.ndarray] = {}
        self._la = np.empty(0)
        self._leader_keys: tuple[str, ...] | None = None
        self._leader_latest = -math.inf
        self._leader_ended = False
        self._last_arrival = -math.inf
        self._checked = False
        self.late: dict[str, int] = {name: 0 for name in self.followers}
        self.out_of_order: dict[str, int] = {name: 0 for name in self.inputs}
        self.dropped = 0
        self.emitted = 0
        self.emitted_arrivals = np.empty(0)

    # ------------------------------------------------------------------ input
    def push(self, name: str, frame: Mapping[str, Any], arrival: float | None = None) -> None:
        """Queue a frame of input ``name``; ``arrival`` (any clock, seconds) is for ``max_lag``."""
        ts = frame.get(TIMESTAMP)
        if ts is None:
            raise AlignError(f"Aligner: frame of '{name}' has no '{TIMESTAMP}'")
        ts = np.asarray(ts, dtype=np.float64).reshape(-1)
        if not ts.size:
            return
        if name == self.leader:
            latest = self._leader_latest
        elif name in self._fol:
            latest = self._fol[name].latest
        else:
            raise AlignError(f"Aligner: unknown input '{name}' (inputs: "
                             f"{', '.join(self.inputs)})")
        keep = None
        if ts[0] < latest or (ts.size > 1 and bool((ts[1:] < ts[:-1]).any())):
            # older than what this stream already delivered: cannot be placed, drop it
            keep = ts >= np.maximum.accumulate(np.concatenate(([latest], ts)))[:-1]
            keep &= ts >= latest
            self.out_of_order[name] += int(ts.size - keep.sum())
            ts = ts[keep]
            if not ts.size:
                return
        if name == self.leader:
            self._push_leader(ts, frame, keep, arrival)
        else:
            self._push_follower(self._fol[name], ts, frame, keep)

    def _push_leader(self, ts: np.ndarray, frame: Mapping[str, Any], keep: np.ndarray | None,
                     arrival: float | None) -> None:
        if self._leader_keys is None:
            self._leader_keys = _main_keys(frame)
        values = {}
        for key in self._leader_keys:
            if key not in frame:
                raise AlignError(f"Aligner: a frame of leader '{self.leader}' lacks '{key}'")
            v = np.asarray(frame[key])
            values[key] = v if keep is None else v[keep]
        arrival = self._last_arrival if arrival is None else max(arrival, self._last_arrival)
        self._last_arrival = arrival
        self._lead_chunks.append((ts, values, arrival))
        self._leader_latest = float(ts[-1])

    def _push_follower(self, f: _Follower, ts: np.ndarray, frame: Mapping[str, Any],
                       keep: np.ndarray | None) -> None:
        if f.keys is None:
            keys = f.spec.keys if f.spec.keys is not None else _main_keys(frame)
            missing = [k for k in keys if k not in frame]
            if missing:
                raise AlignError(f"Aligner: follower '{f.spec.name}' has no stream(s) "
                                 f"{', '.join(map(repr, missing))} (has: "
                                 f"{', '.join(_main_keys(frame))})")
            f.keys = tuple(keys)
            for k in f.keys:
                dt = np.asarray(frame[k]).dtype
                if f.spec.method == "linear":
                    dt = np.dtype(np.complex128 if dt.kind == "c" else np.float64)
                elif dt.kind not in "fc":
                    dt = np.dtype(np.float64)
                f.out_dtypes[k] = dt
        part: Frame = {TIMESTAMP: ts}
        for k in f.keys:
            if k not in frame:
                raise AlignError(f"Aligner: a frame of follower '{f.spec.name}' lacks '{k}'")
            v = np.asarray(frame[k])
            part[k] = v if keep is None else v[keep]
        f.pending.append(part)
        f.latest = float(ts[-1])

    def end(self, name: str) -> None:
        """Input ``name`` ended: it no longer holds leader samples back."""
        if name == self.leader:
            self._leader_ended = True
        elif name in self._fol:
            self._fol[name].ended = True
        else:
            raise AlignError(f"Aligner: unknown input '{name}'")

    @property
    def all_ended(self) -> bool:
        return self._leader_ended and all(f.ended for f in self._fol.values())

    @property
    def pending(self) -> int:
        """Leader samples waiting for followers."""
        return len(self._lt) + sum(len(c[0]) for c in self._lead_chunks)

    # ------------------------------------------------------------------ output
    def pop(self, now: float | None = None) -> Frame:
        """The complete leader samples (and, live, those past ``max_lag``), or ``{}``."""
        horizon = min((f.horizon for f in self._fol.values()), default=math.inf)
        # fast path (called after every frame): is even the oldest pending sample ready?
        if self._lt.size:
            first_t, first_arrival = self._lt[0], self._la[0]
        elif self._lead_chunks:
            first_t, first_arrival = self._lead_chunks[0][0][0], self._lead_chunks[0][2]
        else:
            return {}
        if first_t > horizon and (self.max_lag is None or now is None or
                                  now - first_arrival <= self.max_lag):
            return {}
        self._consolidate()
        lt = self._lt
        n = int(np.searchsorted(lt, horizon, side="right"))
        if self.max_lag is not None and now is not None:
            n = max(n, int(np.searchsorted(self._la, now - self.max_lag, side="left")))
        if n == 0:
            return {}
        t = lt[:n]
        self.emitted_arrivals = self._la[:n]
        out: Frame | None = {TIMESTAMP: t}
        for key in self._leader_keys or ():
            out[key] = self._lv[key][:n]
        for f in self._fol.values():
            if f.keys is None:  # never delivered: its streams and shapes are unknown
                out = None
                continue
            if not f.ended:
                self.late[f.spec.name] += int(np.count_nonzero(t > f.latest))
            if out is not None:
                for key, value in self._values(f, t).items():
                    out[f.spec.prefix + key] = value
        self._lt, self._la = lt[n:], self._la[n:]
        self._lv = {k: v[n:] for k, v in self._lv.items()}
        for f in self._fol.values():
            self._trim(f, float(t[-1]))
        if out is None:
            self.dropped += n
            return {}
        if not self._checked:
            self._check_names(out)
        self.emitted += n
        return out

    def finish(self) -> Frame:
        """End every input and return everything still pending."""
        for name in self.inputs:
            self.end(name)
        return self.pop()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything held as plain data (``signals.state`` encodes it): the leader samples
        waiting for followers, each follower's samples still needed, how far each input has
        got, and the counters. ``load_state_dict`` on an aligner with the same parameters
        continues exactly (see ``Operator.state_dict``)."""
        self._consolidate()  # the pending chunks as arrays: what pop() would do first
        return copy_state({
            "leader": {"t": self._lt, "arrival": self._la, "values": dict(self._lv),
                       "keys": None if self._leader_keys is None else list(self._leader_keys),
                       "latest": self._leader_latest, "ended": self._leader_ended,
                       "last_arrival": self._last_arrival, "checked": self._checked},
            "followers": {name: {"t": f.ts, "values": dict(f.values),
                                 "keys": None if f.keys is None else list(f.keys),
                                 "dtypes": {k: d.str for k, d in f.out_dtypes.items()},
                                 "latest": f.latest, "ended": f.ended}
                          for name, f in self._fol.items()},
            "counters": {"late": dict(self.late), "out_of_order": dict(self.out_of_order),
                         "dropped": self.dropped, "emitted": self.emitted},
        })

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict`` output (``AlignError`` naming what does not fit)."""
        try:
            lead, fols, counters = state["leader"], state["followers"], state["counters"]
            if set(fols) != set(self._fol):
                raise AlignError(f"Aligner: state has followers {sorted(fols)}, this aligner "
                                 f"{sorted(self._fol)}")
            self.reset()
            self._lt = np.asarray(lead["t"], dtype=np.float64)
            self._la = np.asarray(lead["arrival"], dtype=np.float64)
            self._lv = {str(k): np.asarray(v) for k, v in lead["values"].items()}
            self._leader_keys = None if lead["keys"] is None else tuple(lead["keys"])
            self._leader_latest, self._leader_ended = float(lead["latest"]), bool(lead["ended"])
            self._last_arrival, self._checked = float(lead["last_arrival"]), bool(lead["checked"])
            for name, fs in fols.items():
                f = self._fol[name]
                f.ts = np.asarray(fs["t"], dtype=np.float64)
                f.values = {str(k): np.asarray(v) for k, v in fs["values"].items()}
                f.keys = None if fs["keys"] is None else tuple(fs["keys"])
                f.out_dtypes = {str(k): np.dtype(d) for k, d in fs["dtypes"].items()}
                f.latest, f.ended = float(fs["latest"]), bool(fs["ended"])
            self.late.update(counters["late"])
            self.out_of_order.update(counters["out_of_order"])
            self.dropped, self.emitted = int(counters["dropped"]), int(counters["emitted"])
        except AlignError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.reset()
            raise AlignError(f"Aligner: state does not fit: {type(exc).__name__}: {exc}") \
                from None

    @classmethod
    def align(cls, leader_frame: Mapping[str, Any], follower_frames: Mapping[str, Any],
              leader: str = "leader", **options: Any) -> Frame:
        """One-shot: join whole follower frames onto a whole leader frame."""
        followers = options.pop("followers", list(follower_frames))
        al = cls(leader, followers, **options)
        al.push(leader, leader_frame)
        for name, frame in follower_frames.items():
            al.push(name, frame)
        return al.finish()

    def _consolidate(self) -> None:
        if self._lead_chunks:
            chunks, self._lead_chunks = self._lead_chunks, []
            self._lt = np.concatenate([self._lt, *(c[0] for c in chunks)])
            self._la = np.concatenate([self._la, *(np.full(len(c[0]), c[2]) for c in chunks)])
            for key in self._leader_keys or ():
                parts = [c[1][key] for c in chunks]
                old = self._lv.get(key)
                self._lv[key] = np.concatenate(parts if old is None else [old, *parts])
        for f in self._fol.values():
            if f.pending:
                parts, f.pending = f.pending, []
                f.ts = np.concatenate([f.ts, *(p[TIMESTAMP] for p in parts)])
                for key in f.keys or ():
                    vals = [p[key] for p in parts]
                    old = f.values.get(key)
                    f.values[key] = np.concatenate(vals if old is None else [old, *vals])

    @staticmethod
    def _values(f: _Follower, t: np.ndarray) -> dict[str, np.ndarray]:
        ft = f.ts
        m = ft.size
        j = ft.searchsorted(t, side="right") - 1  # <= m - 1 by construction
        before = j < 0
        any_before = bool(before.any())
        jc = np.maximum(j, 0) if any_before else j
        linear = f.spec.method == "linear" and m > 1
        if linear:
            j1 = np.minimum(jc + 1, m - 1)
            inside = (j1 > jc) & (t > ft[jc]) & ~before  # strictly between two samples
            ii = np.flatnonzero(inside)
            x0 = ft[jc[ii]]
            dx = ft[j1[ii]] - x0
            dt = t[ii] - x0
        out = {}
        for key in f.keys or ():
            v = f.values[key]
            r = v[jc]  # fancy indexing: a new array
            if r.dtype != f.out_dtypes[key]:
                r = r.astype(f.out_dtypes[key])
            if linear and ii.size:
                shape = (-1,) + (1,) * (v.ndim - 1)
                y0 = v[jc[ii]].astype(r.dtype)
                slope = (v[j1[ii]].astype(r.dtype) - y0) / dx.reshape(shape)
                r[ii] = slope * dt.reshape(shape) + y0  # np.interp's formula
            if any_before:
                r[before] = np.nan
            out[key] = r
        return out

    @staticmethod
    def _trim(f: _Follower, t_last: float) -> None:
        """Keep only the follower samples later leader samples (t >= t_last) can still use."""
        if not f.ts.size:
            return
        j = int(np.searchsorted(f.ts, t_last, side="right")) - 1
        if j > 0:
            f.ts = f.ts[j:]
            f.values = {k: v[j:] for k, v in f.values.items()}

    def _check_names(self, out: Frame) -> None:
        seen: dict[str, str] = {k: f"leader '{self.leader}'" for k in self._leader_keys or ()}
        for f in self._fol.values():
            for key in f.keys or ():
                name = f.spec.prefix + key
                if name == TIMESTAMP or name in seen:
                    raise AlignError(
                        f"Aligner: follower '{f.spec.name}' stream '{key}' would be named "
                        f"'{name}', which {seen.get(name, 'is the leader timestamp')} already "
                        f"has: give follower '{f.spec.name}' a prefix")
                seen[name] = f"follower '{f.spec.name}'"
        self._checked = True

    # ------------------------------------------------------------------ serialising
    def to_dict(self) -> dict[str, Any]:
        return {"type": "Aligner", "leader": self.leader,
                "followers": {n: s.to_dict() for n, s in self.followers.items()},
                "max_lag": self.max_lag}

    @staticmethod
    def from_dict(spec: Mapping[str, Any]) -> Aligner:
        if not isinstance(spec, Mapping) or spec.get("type", "Aligner") != "Aligner":
            raise AlignError(f"Aligner spec must be a mapping with type 'Aligner', got {spec!r}")
        unknown = sorted(set(spec) - {"type", "leader", "followers", "max_lag"})
        if unknown:
            raise AlignError(f"Aligner: unknown field(s) {', '.join(map(repr, unknown))} "
                             f"(allowed: leader, followers, max_lag)")
        if "leader" not in spec or "followers" not in spec:
            raise AlignError("Aligner: fields 'leader' and 'followers' are required")
        return Aligner(spec["leader"], spec["followers"], max_lag=spec.get("max_lag"))

    def stats(self) -> dict[str, Any]:
        return {"aligned": self.emitted, "align_pending": self.pending,
                "align_late": sum(self.late.values()), "align_dropped": self.dropped,
                "align_out_of_order": sum(self.out_of_order.values()),
                "align_late_by_follower": dict(self.late)}

    def __repr__(self) -> str:
        return (f"Aligner(leader={self.leader!r}, followers="
                f"{ {n: s.method for n, s in self.followers.items()} }, max_lag={self.max_lag})")


def _main_keys(frame: Mapping[str, Any]) -> tuple[str, ...]:
    """The frame's streams on its main timeline (not timestamp, no companion timelines)."""
    return tuple(k for k in frame if k != TIMESTAMP and not is_companion(k)
                 and companion(k) not in frame)


def _follower_specs(followers: Any, leader: str) -> dict[str, FollowerSpec]:
    if isinstance(followers, str) or not isinstance(followers, (Mapping, Sequence)):
        raise AlignError(f"Aligner: field 'followers' must be a list of names or a mapping "
                         f"name -> method or {{method, keys, prefix}}, got {followers!r}")
    items = followers.items() if isinstance(followers, Mapping) \
        else [(name, "hold") for name in followers]
    out: dict[str, FollowerSpec] = {}
    for name, spec in items:
        where = f"Aligner: follower '{name}'"
        if not isinstance(name, str) or not name:
            raise AlignError(f"Aligner: follower names must be non-empty strings, got {name!r}")
        if name == leader:
            raise AlignError(f"{where} is also the leader")
        if name in out:
            raise AlignError(f"{where} is listed twice")
        if spec is None:
            spec = {}
        if isinstance(spec, str):
            spec = {"method": spec}
        if not isinstance(spec, Mapping):
            raise AlignError(f"{where}: must be a method name or {{method, keys, prefix}}, "
                             f"got {spec!r}")
        unknown = sorted(set(spec) - set(_FOLLOWER_KEYS))
        if unknown:
            raise AlignError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
                             f"(allowed: {', '.join(_FOLLOWER_KEYS)})")
        method = spec.get("method", "hold")
        if method not in METHODS:
            raise AlignError(f"{where}: field 'method' must be one of {', '.join(METHODS)}, "
                             f"got {method!r}")
        keys = spec.get("keys")
        if keys is not None and (isinstance(keys, str) or not isinstance(keys, Sequence) or
                                 not keys or not all(isinstance(k, str) for k in keys)):
            raise AlignError(f"{where}: field 'keys' must be a non-empty list of stream names, "
                             f"got {keys!r}")
        prefix = spec.get("prefix", "")
        if not isinstance(prefix, str):
            raise AlignError(f"{where}: field 'prefix' must be a string, got {prefix!r}")
        out[name] = FollowerSpec(name, method, None if keys is None else tuple(keys), prefix)
    if not out:
        raise AlignError("Aligner: needs at least one follower")
    return out
