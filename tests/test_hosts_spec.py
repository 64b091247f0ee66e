"""The ``hosts:`` section and per-edge endpoint placement: pure checks, no process, no network."""

from __future__ import annotations

import pytest

from genki_signals.bus.security import new_keys
from genki_signals.launch.placement import Placement
from genki_signals.launch.spec import TopologySpecError, parse_topology

SRC = {"type": "Sampler", "sample_rate": 10, "sources": {"x": {"type": "SineWave"}}}


def spec(hosts, **placement):
    nodes = [
        {"id": "src", "kind": "source", "params": SRC},
        {"id": "graph", "kind": "graph", "inputs": [{"node": "src", "policy": "lossless"}],
         "params": {"operators": [{"type": "MovingAverage", "input": "x", "name": "y",
                                   "length": 3}]}},
        {"id": "out", "kind": "sink", "inputs": ["graph", "src"], "params": {"type": "null"}},
    ]
    for node in nodes:
        if node["id"] in placement:
            node["host"] = placement[node["id"]]
    return {"name": "mh", "hosts": hosts, "nodes": nodes}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A key pair per host (genki keys new), as a host's ``keys:`` field."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in "abc":
        public, secret = new_keys(name, d)
        out[name] = {"public": str(public), "secret_file": str(secret)}
    return out


@pytest.fixture
def HOSTS(keys):
    return {"a": {"start": "local", "address": "10.0.0.1", "keys": keys["a"]},
            "b": {"address": "10.0.0.2", "ssh": {"user": "pi", "port": 2222},
                  "keys": keys["b"]},
            "c": {"start": "manual", "address": "10.0.0.3", "bind": "0.0.0.0", "ports": 48000,
                  "keys": keys["c"]}}


def problems(data) -> list[str]:
    with pytest.raises(TopologySpecError) as info:
        parse_topology(data, path="mh.yaml")
    return list(info.value.problems)


def test_nodes_default_to_the_local_host_and_the_spec_round_trips(HOSTS):
    s = parse_topology(spec(HOSTS, src="b", out="c"), path="mh.yaml")
    assert {n.id: n.host for n in s.nodes} == {"src": "b", "graph": "a", "out": "c"}
    assert s.hosts["b"].ssh.port == 2222 and s.hosts["b"].start == "ssh"
    assert s.hosts["c"].bind == "0.0.0.0" and s.hosts["c"].address == "10.0.0.3"
    assert parse_topology(s.to_dict(), path="mh.yaml") == s


def test_every_mistake_is_named_by_file_node_and_field(HOSTS, keys):
    bad = spec({**HOSTS, "b": {"address": "10.0.0.2", "ssh": {"port": 0, "identity":
                                                              "/nonexistent/key"}},
                "c": {"start": "manual", "address": "10.0.0.3", "sshh": 1, "keys": keys["c"]}},
               src="nowhere")
    got = problems(bad)
    assert "mh.yaml: field 'hosts.b.ssh.port': must be an integer in 1..65535, got 0" in got
    assert ("mh.yaml: field 'hosts.c.sshh': unknown field (allowed: address, bind, start, ssh, "
            "ports, python, workdir, env, keys)") in got
    assert "mh.yaml: node 'src': field 'host': unknown host 'nowhere' (hosts: a, b, c)" in got


def test_identity_file_must_exist(tmp_path, HOSTS, keys):
    got = problems(spec({**HOSTS, "b": {"address": "10.0.0.2", "keys": keys["b"],
                                        "ssh": {"identity": str(tmp_path / "id")}}}))
    assert got == [f"mh.yaml: field 'hosts.b.ssh.identity': no such key file: {tmp_path / 'id'}"]


def test_a_host_reached_over_tcp_without_keys_is_an_error(HOSTS, keys):
    got = problems(spec({**HOSTS, "b": {"address": "10.0.0.2"}}))
    assert len(got) == 1 and got[0].startswith(
        "mh.yaml: field 'hosts.b.keys': missing: every tcp link between hosts is CurveZMQ"), got
    bad_key = {**HOSTS, "b": {"address": "10.0.0.2", "keys": {"public": "/no/such.key",
                                                              "secret_file": "/no/such"}}}
    got = problems(spec(bad_key))
    assert len(got) == 1 and got[0].startswith("mh.yaml: field 'hosts.b.keys.public': "), got
    got = problems({**spec(HOSTS), "access": {"read": ["/no/where.key"]}})
    assert len(got) == 1 and got[0].startswith("mh.yaml: field 'access': access.read[0]: "), got
    # loopback hosts (one machine, tests) may go without keys
    loop = {"a": {"start": "local", "address": "127.0.0.1"},
            "b": {"start": "manual", "address": "127.0.0.1", "ports": 47200}}
    assert parse_topology(spec(loop, src="b"), path="mh.yaml").hosts["b"].public_key is None


def test_exactly_one_local_host_and_no_port_clash_on_one_address(keys):
    two_local = {"a": {"start": "local", "address": "10.0.0.1", "keys": keys["a"]},
                 "b": {"start": "local", "address": "10.0.0.2", "keys": keys["b"]}}
    assert problems(spec(two_local)) == [
        "mh.yaml: field 'hosts': exactly one host must have 'start: local' (the machine "
        "`genki launch` runs on), got 2: a, b"]
    clash = {"a": {"start": "local", "address": "127.0.0.1"},
             "b": {"start": "manual", "address": "127.0.0.1", "ports": 47104}}
    got = problems(spec(clash, out="b"))
    assert got == ["mh.yaml: field 'hosts.b.ports': ports 47104-47109 overlap host 'a''s "
                   "47100-47107 on the same address"]


def test_a_remote_host_without_a_hosts_section_is_an_error(HOSTS):
    data = spec(HOSTS, src="b")
    del data["hosts"]
    assert problems(data) == [
        "mh.yaml: node 'src': field 'host': unknown host 'b': declare it in a top-level "
        "'hosts:' section (see docs/multihost.md)"]


def test_endpoints_per_edge_ipc_on_one_host_tcp_across(HOSTS):
    s = parse_topology(spec(HOSTS, src="b"), path="mh.yaml")
    p = Placement(s)
    # graph (a) reads src (b) lossless across hosts: b's tcp lossless port (src: b's node 0)
    assert p.input_endpoint("graph", "src", lossless=True) == "tcp://10.0.0.2:47103"
    # out (a) reads graph (a): ipc; and src (b): tcp, lossy
    assert p.input_endpoint("out", "graph", lossless=False).startswith("ipc://")
    assert p.input_endpoint("out", "src", lossless=False) == "tcp://10.0.0.2:47102"
    # graph is a's node 0, out a's node 1 (publishes nothing)
    assert p.endpoints["graph"].tcp_bind == "tcp://10.0.0.1:47102"
    assert "out" not in p.endpoints
    assert p.endpoints["graph"].tcp_lossless_bind is None  # nobody reads it lossless
    # the clock: a's nodes use the launcher's ipc server, b's nodes its tcp one on a
    assert p.clock_endpoints("a", "ipc://x") == ("ipc://x", "tcp://10.0.0.1:47101")
    assert p.clock_endpoints("b", "ipc://x") == ("tcp://10.0.0.1:47101", None)
    c = parse_topology(spec(HOSTS, out="c"), path="mh.yaml")
    # now src is a's node 0 and graph its node 1; c reads graph over tcp
    assert Placement(c).input_endpoint("out", "graph", False) == "tcp://10.0.0.1:47104"
