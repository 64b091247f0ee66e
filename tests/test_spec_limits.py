"""A node's ``limits`` (spec field): the largest message, the receive queue and the merger buffer,
in bytes. Bad values are refused naming the field; a launched node really applies them (an
oversized message is counted and skipped, the node keeps running); the merger stays within its
byte bound."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from genki_signals.launch.spec import Limits, TopologySpecError, parse_topology
from genki_signals.nodes.merge import DEFAULT_MERGE_BYTES, TimestampMerger

SOURCE = {"id": "s", "kind": "source",
          "params": {"type": "Sampler", "sample_rate": 2000, "update_rate": 2,
                     "sources": {"x": {"type": "SineWave"}}}}


def scale(node_id: str, limits: dict | None = None) -> dict:
    node = {"id": node_id, "kind": "graph", "inputs": ["s"],
            "params": {"operators": [{"type": "Scale", "input": "x", "factor": 2.0,
                                      "name": "y"}]}}
    if limits is not None:
        node["limits"] = limits
    return node


def test_defaults_and_round_trip():
    spec = parse_topology({"nodes": [SOURCE, scale("g"), scale("h", {
        "max_message_bytes": 65536, "merge_buffer_bytes": 1 << 20})]})
    assert spec.node("g").limits == Limits() == Limits(256 << 20, 16 << 20, DEFAULT_MERGE_BYTES)
    assert "limits" not in spec.node("g").to_dict()
    assert spec.node("h").limits == Limits(65536, 16 << 20, 1 << 20)
    assert spec.node("h").to_dict()["limits"] == {"max_message_bytes": 65536,
                                                  "merge_buffer_bytes": 1 << 20}
    assert parse_topology(spec.to_dict()) == spec


def test_bad_limits_name_the_field():
    with pytest.raises(TopologySpecError) as info:
        parse_topology({"nodes": [
            dict(SOURCE, limits={"max_message_bytes": 4096}),
            scale("g", {"max_message_bytes": 10, "receive_queue_bytes": "16 MiB",
                        "merge_buffer_bytes": True, "colour": 1}),
            scale("h", [1024])]})
    assert info.value.problems == (
        "<topology>: node 's': field 'limits': a source node takes no inputs: its limits bound "
        "nothing",
        "<topology>: node 'g': field 'limits.max_message_bytes': must be a number of bytes "
        ">= 1024, got 10",
        "<topology>: node 'g': field 'limits.receive_queue_bytes': must be a number of bytes "
        ">= 1024, got '16 MiB'",
        "<topology>: node 'g': field 'limits.merge_buffer_bytes': must be a number of bytes "
        ">= 1024, got True",
        "<topology>: node 'g': field 'limits.colour': unknown field (allowed: "
        "max_message_bytes, receive_queue_bytes, merge_buffer_bytes)",
        "<topology>: node 'h': field 'limits': must be a mapping (max_message_bytes, "
        "receive_queue_bytes, merge_buffer_bytes), got [1024]",
    )


# 300 streams: a frame is over 4 KiB whatever its sample count (one sample: 6.5 kB encoded).
# A frame's sample count follows the timing of the source's reads; with one stream, a read
# that came early on a loaded machine made a frame small enough to pass the limit.
WIDE_SOURCE = {"id": "s", "kind": "source",
               "params": {"type": "Sampler", "sample_rate": 200, "update_rate": 2,
                          "sources": {"x": {"type": "SineWave"},
                                      **{f"x{i}": {"type": "SineWave"} for i in range(299)}}}}


@pytest.mark.timeout(240)
def test_a_launched_node_skips_messages_over_its_max_message_bytes(tmp_path, launcher_factory):
    """Frames of 300 streams (over 4 KiB even of one sample) against a 4 KiB limit: every one
    counted and skipped, the node stays ready and keeps heartbeating; its sibling with the
    default limit computes them."""
    spec = tmp_path / "limits.yaml"
    spec.write_text(yaml.safe_dump({"nodes": [
        WIDE_SOURCE, scale("small", {"max_message_bytes": 4096}), scale("big")]}))
    lp = launcher_factory(spec)
    lp.wait_ready(timeout=120)  # generous: the test machine's cores are shared

    def both_counted(d):
        st = {n["id"]: n["stats"] for n in d["nodes"]}
        small, big = st.get("small", {}), st.get("big", {})
        skipped = small.get("oversized", 0) + small.get("reconnects", 0)
        return (small, big) if skipped >= 3 and big.get("frames_out", 0) >= 3 else None

    small, big = lp.wait_for(both_counted, 60, "oversized messages counted")
    assert small.get("frames_in", 0) == 0 and small.get("frames_out", 0) == 0, small
    d = lp.directory()
    assert {n["id"]: n["state"] for n in d["nodes"]}["small"] == "ready"
    assert all(n["restarts"] == 0 for n in d["nodes"])


def test_merger_holds_at_most_its_byte_bound():
    """One input silent and no max_lag (a replay): the held frames stay within max_bytes; the
    oldest are released early and counted."""
    frame_bytes = 2 * 100 * 8
    merger = TimestampMerger(["a", "quiet"], max_lag=None, max_bytes=10 * frame_bytes)
    released = []
    for i in range(100):
        t = i + np.arange(100) / 100.0
        merger.push("a", {"timestamp": t, "x": np.zeros(100)})
        released += [f["timestamp"][0] for _, _, f in merger.pop_ready(0.0)]
        assert merger.nbytes <= 10 * frame_bytes
    assert merger.overflows == len(released) == 90
    assert released == sorted(released)  # still the oldest first
    unbounded = TimestampMerger(["a", "quiet"], max_lag=None, max_bytes=None)
    for i in range(100):
        unbounded.push("a", {"timestamp": np.array([float(i)]), "x": np.zeros(1)})
        assert unbounded.pop_ready(0.0) == []
    assert len(unbounded) == 100
