"""Aligner: follower streams on the leader's timestamps, against numpy references, for any
chunking and arrival order; the aligner node kind in a live topology."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genki_signals.frames import concat_frames
from genki_signals.signals.align import Aligner, AlignError


# ---------------------------------------------------------------------- helpers
def stream(rng, rate, seconds, start=None, jitter=0.0, dims=()):
    """A stream at ``rate`` Hz (random phase, optional timing jitter) with values of shape dims."""
    start = rng.uniform(0, 1 / rate) if start is None else start
    t = start + np.arange(int(seconds * rate)) / rate
    if jitter:
        t = np.sort(t + rng.uniform(0, jitter / rate, t.size))
    return {"timestamp": t, **{f"v{i}": rng.normal(size=(t.size, *dims)) for i in range(2)}}


def hold_ref(ft, fv, t):
    j = np.searchsorted(ft, t, side="right") - 1
    out = fv[np.clip(j, 0, None)].astype(np.float64)
    out[j < 0] = np.nan
    return out


def interp_ref(ft, fv, t):
    flat = fv.reshape(len(ft), -1)
    out = np.stack([np.interp(t, ft, flat[:, c]) for c in range(flat.shape[1])], axis=1)
    out = out.reshape((len(t), *fv.shape[1:]))
    out[t < ft[0]] = np.nan
    return out


def chunks(rng, frame, max_chunk):
    n = len(frame["timestamp"])
    cuts = [0]
    while cuts[-1] < n:
        cuts.append(min(n, cuts[-1] + int(rng.integers(0, max_chunk + 1))))
    return [{k: v[a:b] for k, v in frame.items()} for a, b in zip(cuts, cuts[1:])]


def interleave(rng, per_input: dict[str, list]) -> list[tuple[str, dict]]:
    """A random arrival order that keeps each input's own frame order."""
    order = [name for name, frames in per_input.items() for _ in frames]
    rng.shuffle(order)
    its = {name: iter(frames) for name, frames in per_input.items()}
    return [(name, next(its[name])) for name in order]


FOLLOWERS = {"a": {"method": "hold", "prefix": "a_"}, "b": {"method": "linear", "prefix": "b_"},
             "c": {"method": "hold", "keys": ["v1"], "prefix": "c_"}}


def run_streaming(aligner, arrivals, rng, pop_prob=0.5):
    out = []
    for name, frame in arrivals:
        aligner.push(name, frame)
        if rng.random() < pop_prob:
            out.append(aligner.pop())
    out.append(aligner.finish())
    return concat_frames([f for f in out if f])


# ---------------------------------------------------------------------- numpy references
@pytest.mark.parametrize("seed", range(8))
def test_matches_numpy_references_for_random_rates_and_chunkings(seed):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(5, 500, size=4)
    dims = [(), (3,), (), (2, 2)][seed % 4]
    lead = stream(rng, rates[0], 3.0, jitter=0.3)
    fol = {n: stream(rng, r, 3.2, start=rng.uniform(-0.05, 0.2), jitter=0.5, dims=dims)
           for n, r in zip("abc", rates[1:])}
    expected = Aligner.align(lead, fol, leader="L", followers=FOLLOWERS)
    t = lead["timestamp"]
    np.testing.assert_array_equal(expected["timestamp"], t)
    for key in ("v0", "v1"):
        np.testing.assert_array_equal(expected[key], lead[key])
        np.testing.assert_array_equal(expected[f"a_{key}"],
                                      hold_ref(fol["a"]["timestamp"], fol["a"][key], t))
        got = expected[f"b_{key}"]
        ref = interp_ref(fol["b"]["timestamp"], fol["b"][key], t)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(
        expected["c_v1"], hold_ref(fol["c"]["timestamp"], fol["c"]["v1"], t))
    assert "c_v0" not in expected

    # any chunking and any interleaving of the inputs: the same output, bit for bit
    for _ in range(3):
        per_input = {"L": chunks(rng, lead, 7), **{n: chunks(rng, f, 23) for n, f in fol.items()}}
        al = Aligner("L", FOLLOWERS)
        got = run_streaming(al, interleave(rng, per_input), rng)
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        assert al.late == {"a": 0, "b": 0, "c": 0} and al.pending == 0



def test_hold_reference_for_each_follower():
    rng = np.random.default_rng(42)
    lead = stream(rng, 100, 2.0)
    fol = {"a": stream(rng, 1000, 2.0), "b": stream(rng, 7, 2.0), "c": stream(rng, 100, 2.0)}
    out = Aligner.align(lead, fol, leader="L", followers=FOLLOWERS)
    t = lead["timestamp"]
    for key in ("v0", "v1"):
        np.testing.assert_array_equal(out[f"a_{key}"], hold_ref(fol["a"]["timestamp"],
                                                                fol["a"][key], t))
    # faster follower: downsampled; slower: upsampled (values repeat)
    assert len(np.unique(out["a_v0"][~np.isnan(out["a_v0"])])) == np.count_nonzero(
        ~np.isnan(out["a_v0"]))
    held = out["c_v1"][~np.isnan(out["c_v1"])]
    assert held.size > 0


def test_name_clash_is_an_error_naming_the_follower():
    rng = np.random.default_rng(0)
    lead, fol = stream(rng, 10, 1.0), stream(rng, 10, 1.0)
    with pytest.raises(AlignError, match="follower 'a' stream 'v0' .*prefix"):
        Aligner.align(lead, {"a": fol}, leader="L", followers=["a"])


def test_bad_parameters_name_the_field():
    with pytest.raises(AlignError, match="'method' must be one of hold, linear"):
        Aligner("L", {"a": "cubic"})
    with pytest.raises(AlignError, match="also the leader"):
        Aligner("L", ["L"])
    with pytest.raises(AlignError, match="max_lag"):
        Aligner("L", ["a"], max_lag=-1)
    with pytest.raises(AlignError, match="unknown field"):
        Aligner("L", {"a": {"methd": "hold"}})
    al = Aligner("L", FOLLOWERS, max_lag=0.25)
    again = Aligner.from_dict(al.to_dict())
    assert again.to_dict() == al.to_dict()
    import json
    assert Aligner.from_dict(json.loads(json.dumps(al.to_dict()))).to_dict() == al.to_dict()


def test_live_max_lag_holds_a_silent_follower_and_counts_it():
    al = Aligner("L", {"f": {"method": "linear", "prefix": "f_"}}, max_lag=0.1)
    al.push("f", {"timestamp": np.array([0.0, 1.0]), "x": np.array([0.0, 10.0])}, arrival=1.0)
    al.push("L", {"timestamp": np.array([0.5, 1.5, 2.5])}, arrival=2.6)
    out = al.pop(now=2.6)  # 0.5 is complete (f has data past it); 1.5 and 2.5 wait
    np.testing.assert_array_equal(out["timestamp"], [0.5])
    np.testing.assert_array_equal(out["f_x"], [5.0])
    assert al.pop(now=2.65) == {}
    out = al.pop(now=2.71)  # waited more than max_lag: held, counted
    np.testing.assert_array_equal(out["f_x"], [10.0, 10.0])
    assert al.late == {"f": 2}
    # the follower comes back: later leader samples use its data again
    al.push("f", {"timestamp": np.array([3.0]), "x": np.array([40.0])}, arrival=3.0)
    al.push("L", {"timestamp": np.array([2.75])}, arrival=3.0)
    np.testing.assert_array_equal(al.pop(now=3.0)["f_x"], [36.25])


def test_waits_for_data_without_max_lag_and_end_of_stream_releases():
    al = Aligner("L", {"f": {"prefix": "f_"}})
    al.push("L", {"timestamp": np.array([1.0, 2.0])})
    assert al.pop(now=1e9) == {}  # no max_lag: arrival time is irrelevant
    al.push("f", {"timestamp": np.array([0.0]), "x": np.array([3])})
    assert al.pop() == {}
    al.end("f")
    out = al.pop()
    np.testing.assert_array_equal(out["f_x"], [3.0, 3.0])
    assert out["f_x"].dtype == np.float64  # ints become float64 (NaN means "no value yet")


def test_before_the_first_follower_sample_is_nan_and_out_of_order_is_dropped():
    al = Aligner("L", {"f": {"prefix": "f_"}})
    al.push("f", {"timestamp": np.array([1.0, 2.0]), "x": np.array([1.0, 2.0])})
    al.push("f", {"timestamp": np.array([1.5, 3.0]), "x": np.array([9.0, 3.0])})  # 1.5: stale
    al.push("L", {"timestamp": np.array([0.5, 1.2, 2.9])})
    out = al.pop()
    np.testing.assert_array_equal(out["f_x"], [np.nan, 1.0, 2.0])
    assert al.out_of_order["f"] == 1


def test_aligned_source_joins_independent_samplers_on_one_timeline():
    import time

    from genki_signals.data_sources import Sampler, SineWave
    from genki_signals.data_sources.aligned import AlignedSource

    leader = Sampler({"lead": SineWave(frequency=1)}, sample_rate=50)
    fast = Sampler({"fast": lambda t: t}, sample_rate=200)
    slow = Sampler({"slow": lambda t: t}, sample_rate=20)
    src = AlignedSource(leader, {"fast": fast, "slow": {"source": slow, "method": "linear"}},
                        max_lag=0.5)
    frames = []
    with src:
        for _ in range(12):
            time.sleep(0.05)
            frames.append(src.read())
    out = concat_frames([f for f in frames if f])
    t = out["timestamp"]
    assert len(t) >= 15
    np.testing.assert_allclose(np.diff(t), 1 / 50, atol=1e-9)
    ok = ~np.isnan(out["fast"])
    # hold: the latest fast sample at or before t, i.e. t rounded down to the 200 Hz grid
    assert np.all(out["fast"][ok] <= t[ok] + 1e-12) and np.all(t[ok] - out["fast"][ok] < 1 / 200)
    ok = ~np.isnan(out["slow"])
    np.testing.assert_allclose(out["slow"][ok], t[ok], atol=1e-9)  # linear of f(t) = t
    assert math.isfinite(out["slow"][-1])


# ---------------------------------------------------------------------- a live topology
def read_csv(path):
    import csv

    with open(path) as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(header)
            if name != "topic"}


@pytest.mark.process
@pytest.mark.timeout(90)
def test_live_aligner_node_equals_the_same_frames_in_shuffled_order(tmp_path):
    """The shipped example with lossless edges (so the aligner waits for data) and CSV
    recorders of every input and of the output: the live output equals an in-process aligner
    fed the recorded inputs in random frame orders, and the numpy references."""
    import yaml

    from proc_helpers import REPO, LauncherProcess

    spec = yaml.safe_load((REPO / "specs" / "aligned.yaml").read_text())
    spec["name"] = "aligned_test"
    spec["nodes"] = [n for n in spec["nodes"] if n["kind"] != "sink"]
    joined = next(n for n in spec["nodes"] if n["id"] == "joined")
    joined["inputs"] = [{"node": i, "policy": "lossless"} for i in joined["inputs"]]
    del joined["params"]["max_lag"]  # default with lossless inputs: wait for data
    for node in ("leader", "fast", "slow", "joined"):
        spec["nodes"].append({"id": f"{node}_csv", "kind": "sink",
                              "inputs": [{"node": node, "policy": "lossless"}],
                              "params": {"type": "csv", "path": str(tmp_path / f"{node}.csv")}})
    path = tmp_path / "aligned.yaml"
    path.write_text(yaml.safe_dump(spec))
    lp = LauncherProcess(path, tmp_path / "run", "--duration", "4")
    try:
        assert lp.wait_exit(timeout=60) == 0, lp.output
    finally:
        lp.kill_all()
    data = {n: read_csv(tmp_path / f"{n}.csv") for n in ("leader", "fast", "slow", "joined")}
    live = data["joined"]
    assert len(live["timestamp"]) >= 150, lp.output
    # rows the recorders fully cover (they stop at the same moment as the aligner)
    horizon = min(data["fast"]["timestamp"][-1], data["slow"]["timestamp"][-1])
    m = int(np.searchsorted(live["timestamp"], horizon, side="right"))
    assert m >= 150
    t = live["timestamp"][:m]
    np.testing.assert_array_equal(t, data["leader"]["timestamp"][:m])
    np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-9)  # the leader's ticks, untouched
    np.testing.assert_array_equal(live["lead"][:m], data["leader"]["lead"][:m])
    np.testing.assert_array_equal(
        live["fast"][:m], hold_ref(data["fast"]["timestamp"], data["fast"]["fast"], t))
    np.testing.assert_allclose(
        live["slow"][:m], interp_ref(data["slow"]["timestamp"], data["slow"]["slow"][:, None],
                                     t)[:, 0], rtol=1e-12, atol=1e-12, equal_nan=True)
    # the same frames, delivered in shuffled orders, give the live output bit for bit
    rng = np.random.default_rng(5)
    frames = {n: {"timestamp": data[n]["timestamp"], n if n != "leader" else "lead":
                  data[n][n if n != "leader" else "lead"]} for n in ("leader", "fast", "slow")}
    for _ in range(3):
        per_input = {n: chunks(rng, f, 6) for n, f in frames.items()}
        al = Aligner("leader", {"fast": "hold", "slow": "linear"})
        got = run_streaming(al, interleave(rng, per_input), rng)
        for key in ("timestamp", "lead", "fast", "slow"):
            np.testing.assert_array_equal(got[key][:m], live[key][:m], err_msg=key)


def test_aligner_spec_errors_name_node_and_field():
    from genki_signals.launch.spec import TopologySpecError, parse_topology

    def spec(params, inputs=("a", "b")):
        src = {"type": "Sampler", "sample_rate": 10, "sources": {"x": {"type": "SineWave"}}}
        return {"name": "t", "nodes": [
            {"id": "a", "kind": "source", "params": src},
            {"id": "b", "kind": "source", "params": src},
            {"id": "j", "kind": "aligner", "inputs": list(inputs), "params": params}]}

    ok = parse_topology(spec({"followers": {"b": {"prefix": "b_"}}}))
    assert ok.output_streams("j") == ["timestamp", "x", "b_x"]
    cases = {
        "field 'params.followers.b': stream 'x' would be published as 'x'": {},
        "field 'params.followers.c': 'c' is not an input": {"followers": {"c": "hold"}},
        "field 'params.followers.b.method': must be one of hold, linear":
            {"followers": {"b": {"method": "nearest", "prefix": "b_"}}},
        "field 'params.max_lag': must be a number >= 0": {"max_lag": -1,
                                                          "followers": {"b": {"prefix": "p"}}},
        "field 'params.leader': must be one of the inputs": {"leader": "z"},
        "field 'params.followers.b.keys[0]': stream 'y' is not on input 'b'":
            {"followers": {"b": {"keys": ["y"], "prefix": "b_"}}},
    }
    for message, params in cases.items():
        with pytest.raises(TopologySpecError) as err:
            parse_topology(spec(params))
        assert f"node 'j': {message}" in str(err.value), str(err.value)
    with pytest.raises(TopologySpecError, match="at least one follower"):
        parse_topology(spec({}, inputs=("a",)))
