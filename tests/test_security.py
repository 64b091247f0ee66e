"""CurveZMQ keys, allow-lists and roles on one host (loopback tcp, real sockets and processes).

The same checks across network namespaces, with a packet capture, are in test_curve_netns.py.
"""

from __future__ import annotations

import ast
import io
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from genki_signals.bus import control
from genki_signals.bus.endpoints import EndpointError
from genki_signals.bus.security import (
    CONTROL,
    READ,
    ClientKeys,
    SecurityError,
    ServerKeys,
    allow_list,
    load_keypair,
    load_public_key,
    needs_keys,
    new_keys,
    peer_role,
    remote_access,
    resolve_access,
    secure_client,
    secure_server,
)
from genki_signals.bus.sockets import Publisher, Subscriber
from genki_signals.cli import main
from genki_signals.errors import GenkiError

PACKAGE = Path(__file__).resolve().parent.parent / "genki_signals"


@pytest.fixture
def keys(tmp_path):
    for name in ("srv", "ctl", "rd", "bad"):
        new_keys(name, tmp_path)
    return tmp_path


def server_keys(keydir: Path) -> ServerKeys:
    return ServerKeys(load_keypair(keydir / "srv.key_secret"),
                      allow_list(read=[keydir / "rd.key"], control=[keydir / "ctl.key"]))


def client(keydir: Path, name: str) -> ClientKeys | None:
    if name == "plain":
        return None
    return ClientKeys(load_keypair(keydir / f"{name}.key_secret"),
                      load_public_key(keydir / "srv.key"))


# ------------------------------------------------------------------------------ key files
def test_genki_keys_new_writes_a_pyzmq_certificate_pair_with_a_private_secret(tmp_path, capsys):
    assert main(["keys", "new", "lab", "--dir", str(tmp_path)]) == 0
    public, secret = tmp_path / "lab.key", tmp_path / "lab.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    pub_only, none = zmq.auth.load_certificate(public)  # pyzmq reads them back
    pub, sec = zmq.auth.load_certificate(secret)
    assert none is None and pub == pub_only and len(sec) == 40
    assert zmq.curve_public(sec) == pub  # a real pair
    assert pub.decode() in capsys.readouterr().out
    assert main(["keys", "new", "lab", "--dir", str(tmp_path)]) == 1  # never overwrites
    assert "exists" in capsys.readouterr().err


def test_key_loading_errors_name_the_file(tmp_path, monkeypatch):
    public, secret = new_keys("k", tmp_path)
    os.chmod(secret, 0o644)
    with pytest.raises(SecurityError, match=r"k\.key_secret.*readable by others"):
        load_keypair(secret)
    os.chmod(secret, 0o600)
    with pytest.raises(SecurityError, match=r"k\.key: holds no secret"):
        load_keypair(public)
    with pytest.raises(SecurityError, match="no such file"):
        load_public_key(tmp_path / "nope.key")
    with pytest.raises(SecurityError, match="Z85"):
        load_public_key("x" * 39 + "\x01")
    (tmp_path / "junk.key").write_text("not a certificate\n")
    with pytest.raises(SecurityError, match="junk.key"):
        load_public_key(tmp_path / "junk.key")
    # bare names are looked up in the key directory; Z85 text is a key as is
    monkeypatch.setenv("GENKI_KEYS_DIR", str(tmp_path))
    assert load_keypair("k").public == load_public_key("k") == load_public_key(
        load_public_key(public).decode())


def test_non_loopback_tcp_without_keys_is_an_error_naming_the_field():
    with pytest.raises(SecurityError, match="clock endpoint.*no CURVE keys"):
        needs_keys("tcp://10.0.0.1:5000", None, "clock endpoint")
    needs_keys("tcp://127.0.0.1:5000", None, "x")  # loopback and ipc stay key-free
    needs_keys("ipc:///tmp/x", None, "x")
    with pytest.raises(EndpointError, match="requires CurveZMQ keys"):
        Publisher("tcp://0.0.0.0:*", "n")
    with pytest.raises(SecurityError, match="--server-key needs --key"):
        remote_access(None, "srv")
    from genki_signals.launch.tools import print_topics

    with pytest.raises(GenkiError, match="ADDRESS.*--key"):
        print_topics("tcp://10.1.2.3:5000")


def test_only_secure_server_makes_a_curve_server():
    """libzmq admits any key on a CURVE server without a ZAP handler: no other code may set it."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "security.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else \
                node.id if isinstance(node, ast.Name) else None
            if name in ("CURVE_SERVER", "curve_server"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


# ------------------------------------------------------------------------------ data sockets
def wait_frames(pub, subs, seconds=2.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pub.publish("n/x", {"timestamp": np.array([time.monotonic()])})
        for s in subs.values():
            s.recv(0)
        time.sleep(0.005)


def test_publisher_admits_listed_keys_per_role_and_nothing_else(keys):
    pub = Publisher("tcp://127.0.0.1:*", "n", lossless_endpoint="tcp://127.0.0.1:*",
                    security=server_keys(keys))
    lossy, lossless = {}, {}
    try:
        for name in ("ctl", "rd", "bad", "plain"):
            lossy[name] = Subscriber()
            lossy[name].connect(pub.endpoint, [""], security=client(keys, name))
            lossless[name] = Subscriber()
            lossless[name].connect(pub.lossless_endpoint, [""], policy="lossless",
                                   security=client(keys, name))
        wait_frames(pub, {**{f"a{k}": v for k, v in lossy.items()},
                          **{f"b{k}": v for k, v in lossless.items()}})
        got = {k: s.stats.frames_in for k, s in lossy.items()}
        assert got["ctl"] > 0 and got["rd"] > 0 and got["bad"] == 0 and got["plain"] == 0, got
        got = {k: s.stats.frames_in for k, s in lossless.items()}
        # the lossless endpoint is for the topology's own hosts: control role only
        assert got["ctl"] > 0 and got["rd"] == 0 and got["bad"] == 0 and got["plain"] == 0
        assert lossy["bad"].stats.refused >= 1 and lossy["plain"].stats.refused >= 1
        assert lossless["rd"].stats.refused >= 1
        assert lossy["ctl"].stats.refused == 0 and lossy["ctl"].stats.reconnects == 0
        # refused clients are not re-opened in a loop (libzmq retries on its own schedule)
        assert lossy["plain"].stats.reconnects == 0 and lossy["bad"].stats.reconnects == 0
        assert pub.stats.refused >= 2  # bad (both sockets) and rd (lossless), by the ZAP handler
    finally:
        for s in [*lossy.values(), *lossless.values()]:
            s.close()
        pub.close(wait=False)


def test_a_curve_server_refuses_every_key_when_its_allow_list_is_empty(keys):
    pub = Publisher("tcp://127.0.0.1:*", "n",
                    security=ServerKeys(load_keypair(keys / "srv.key_secret"), {}))
    sub = Subscriber()
    try:
        sub.connect(pub.endpoint, [""], security=client(keys, "ctl"))
        wait_frames(pub, {"s": sub}, 1.0)
        assert sub.stats.frames_in == 0 and sub.stats.refused >= 1
    finally:
        sub.close()
        pub.close(wait=False)


def test_zap_answers_the_role_as_user_id_and_control_allows_read_only_directory(keys):
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    guard = secure_server(router, server_keys(keys), domain="test-control")
    router.bind("tcp://127.0.0.1:*")
    endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
    dealers = []
    try:
        seen = {}
        for name in ("ctl", "rd"):
            d = ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            secure_client(d, client(keys, name))
            d.connect(endpoint)
            d.send(name.encode())
            dealers.append(d)
        while len(seen) < 2 and router.poll(5000):
            _, body = router.recv_multipart(copy=False)
            seen[body.bytes.decode()] = peer_role(body)
        assert seen == {"ctl": CONTROL, "rd": READ}
    finally:
        for d in dealers:
            d.close(0)
        router.close(0)
        guard.release()
        ctx.term()
    assert control.allowed("directory", READ) and not control.allowed("stop", READ)
    assert not control.allowed("log", READ) and control.allowed("log", CONTROL)
    assert control.allowed("heartbeat", None)  # ipc / loopback peers are trusted


# ------------------------------------------------------------------------------ remote tools
def test_remote_buffer_and_echo_attach_through_the_curve_control_socket(keys, tmp_path,
                                                                         capsys):
    """A launcher whose remote control socket is a CURVE server: a read key gets the
    directory and the frames; an unlisted key gets a clear error."""
    import threading

    from genki_signals.launch.launcher import Launcher
    from genki_signals.launch.spec import load_topology
    from genki_signals.plot.remote import RemoteBuffer

    spec = load_topology(Path(__file__).parent / "specs" / "valid-minimal.yaml")
    with zmq.Context() as probe_ctx:
        s = probe_ctx.socket(zmq.ROUTER)
        s.bind("tcp://127.0.0.1:*")
        remote = s.getsockopt_string(zmq.LAST_ENDPOINT)
        s.close(0)
    la = Launcher(spec, run_dir=tmp_path / "run", remote_address=remote,
                  remote_security=server_keys(keys), out=io.StringIO())
    la.start()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (la.run(duration=60), done.set()), daemon=True)
    thread.start()
    try:
        buf = RemoteBuffer(remote, ["src"], key=str(keys / "rd.key_secret"),
                           server_key=str(keys / "srv.key"), timeout=5)
        try:
            deadline = time.monotonic() + 20
            while buf.stats["frames"] < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert buf.stats["frames"] >= 3, buf.stats
        finally:
            buf.close()
        assert main(["echo", remote, "src", "-n", "2", "--key", str(keys / "rd.key_secret"),
                     "--server-key", str(keys / "srv.key")]) == 0
        assert capsys.readouterr().out.count("src/") >= 2
        with pytest.raises(GenkiError, match="allow-list"):
            RemoteBuffer(remote, ["src"], key=str(keys / "bad.key_secret"),
                         server_key=str(keys / "srv.key"), timeout=1)
        assert la.refused_keys >= 1
    finally:
        la._stop_requested = True
        thread.join(timeout=30)
        la.stop()


def test_resolve_access_builds_the_allow_list_of_a_spec_and_names_bad_entries(keys):
    srv = load_public_key(keys / "srv.key")
    allow = resolve_access({"read": [str(keys / "rd.key"), str(keys / "ctl.key")],
                            "control": [str(keys / "ctl.key")]}, host_keys=[srv])
    assert allow == {load_public_key(keys / "rd.key"): READ,
                     load_public_key(keys / "ctl.key"): CONTROL, srv: CONTROL}
    # a relative path is taken from the spec's folder
    rel = resolve_access({"read": [f"{keys.name}/rd.key"]}, base_dir=keys.parent)
    assert rel == {load_public_key(keys / "rd.key"): READ}
    with pytest.raises(SecurityError, match=r"access\.read\[1\]: .*no such file"):
        resolve_access({"read": [str(keys / "rd.key"), str(keys / "missing.key")]})
    with pytest.raises(SecurityError, match="unknown role"):
        resolve_access({"write": []})


def test_a_launcher_whose_curve_control_address_is_taken_fails_naming_it(keys, tmp_path):
    from genki_signals.launch.launcher import Launcher, LaunchError
    from genki_signals.launch.spec import load_topology

    spec = load_topology(Path(__file__).parent / "specs" / "valid-minimal.yaml")
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as taken:
        taken.bind("tcp://127.0.0.1:*")
        address = taken.getsockopt_string(zmq.LAST_ENDPOINT)
        with pytest.raises(SecurityError, match="control address.*no CURVE keys"):
            Launcher(spec, run_dir=tmp_path / "r0", control_address="tcp://10.1.2.3:5000")
        la = Launcher(spec, run_dir=tmp_path / "run", control_address=address,
                      control_security=server_keys(keys), out=io.StringIO())
        try:
            with pytest.raises(LaunchError, match="cannot bind the control address"):
                la.start()
        finally:
            la.stop()
        assert la._control_guard is None  # its allow-list left the ZAP handler


def test_the_clock_service_answers_control_keys_only(keys):
    from genki_signals.clocksync.sync import ClockSync, TimeServer

    with zmq.Context() as ctx:
        server = TimeServer("tcp://127.0.0.1:*", time.monotonic, ctx,
                            security=server_keys(keys)).start()
        followers = {name: ClockSync(server.endpoint, time.monotonic, context=ctx,
                                     security=client(keys, name), probe_timeout=0.1)
                     for name in ("ctl", "rd", "plain")}
        try:
            assert followers["ctl"].warm_up(timeout=5, bursts=1)
            time.sleep(0.5)  # a ctl probe that timed out under load may still be answered
            answered = server.answered
            assert not followers["rd"].warm_up(timeout=1, bursts=1)
            assert not followers["plain"].warm_up(timeout=1, bursts=1)
            assert server.answered == answered
        finally:
            for f in followers.values():
                f.close()
            server.close()
