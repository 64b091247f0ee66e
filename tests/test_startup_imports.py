"""Start-up: what ``genki launch`` imports, and what its fork server preloads.

Importing ``scipy.signal`` costs over a second (scipy 1.17 imports scipy.stats, interpolate and
optimize with it); the demo needs none of it. These tests run fresh interpreters and real
``genki launch`` processes and read what was imported from ``sys.modules`` or from the memory
map of the process (``/proc/PID/maps``: a scipy.signal extension module is mapped once it is
imported), never from a mock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
from proc_helpers import REPO, env_with_tests_on_path
from test_supervision import wait_all_gone

pytestmark = pytest.mark.timeout(180)

DEMO = REPO / "specs" / "demo.yaml"

FILTER_SPEC = """
    name: {name}
    nodes:
      - id: signals
        kind: source
        params:
          type: Sampler
          sample_rate: 100
          sources: {{x: {{type: SineWave, frequency: 2}}}}
      - id: derived
        kind: graph
        inputs: [signals]
        params:
          operators:
            - {{type: LowPass, input: x, cutoff: 5, sample_rate: 100, name: y}}
      - id: out
        kind: sink
        inputs: [{{node: derived, policy: lossless}}]
        params: {{type: "null"}}
"""


def run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout on its path); its last stdout line
    is JSON."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120, cwd=REPO, env=env_with_tests_on_path(),
                         check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def maps_scipy_signal(pid: int) -> bool:
    """Whether process ``pid`` has a scipy.signal extension module mapped (it imported it)."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return any("/scipy/signal/" in line for line in f)


@pytest.mark.process
def test_checking_the_demo_spec_does_not_import_scipy_signal():
    got = run_python("""
        import json, sys
        from genki_signals.launch.spec import load_topology
        spec = load_topology("specs/demo.yaml")  # builds and dry-runs every graph
        print(json.dumps({"nodes": len(spec.nodes), "signal": "scipy.signal" in sys.modules,
                          "ndimage": "scipy.ndimage" in sys.modules}))
    """)
    assert got == {"nodes": 4, "signal": False, "ndimage": False}


@pytest.mark.process
def test_checking_a_spec_with_a_filter_imports_scipy_signal_and_lists_it_to_preload(tmp_path):
    spec = tmp_path / "filtered.yaml"
    spec.write_text(textwrap.dedent(FILTER_SPEC.format(name="filtered")))
    got = run_python(f"""
        import json, sys
        from genki_signals.launch.forkserver import preloadable
        before = set(sys.modules)
        from genki_signals.launch.spec import load_topology
        load_topology({str(spec)!r})
        names = preloadable(set(sys.modules) - before)
        print(json.dumps({{"signal": "scipy.signal" in names,
                          "graph": "genki_signals.graph" in names,
                          "foreign": [n for n in names if n.split(".")[0] not in
                                      ("genki_signals", "numpy", "scipy", "zmq", "msgpack",
                                       "msgspec", "psutil", "pydantic", "pydantic_core",
                                       "yaml", "mcap", "zstandard", "lz4")
                                      and n.split(".")[0] not in sys.stdlib_module_names]}}))
    """)
    assert got == {"signal": True, "graph": True, "foreign": []}


@pytest.mark.parametrize("size", [*range(2, 300), 511, 512, 1000, 1023, 1024, 4096, 65537])
def test_numpy_periodic_hann_is_scipys_bit_for_bit(size):
    import scipy.signal

    from genki_signals.signals.spectral import periodic_hann

    assert periodic_hann(size).tobytes() == scipy.signal.get_window("hann", size).tobytes()


def test_fourier_transform_with_the_default_window_equals_scipys_hann_bit_for_bit():
    from genki_signals.signals.spectral import FourierTransform

    x = np.random.default_rng(3).normal(size=(1000, 2))
    numpy_window = FourierTransform("x", window_size=256, window_overlap=128)  # "hann"
    scipy_window = FourierTransform("x", window_size=256, window_overlap=128, window=["hann"])
    assert numpy_window._win.tobytes() == scipy_window._win.tobytes()
    a, b = numpy_window(x), scipy_window(x)
    assert a.shape == (1000, 129, 2) and a.tobytes() == b.tobytes()


@pytest.mark.process
def test_fork_server_imports_a_preload_request_before_its_next_fork():
    """A fresh interpreter (no thread: the server is a fork of it) starts a server without
    scipy.signal, asks it to preload scipy.signal and a module that does not exist."""
    got = run_python("""
        import json, sys
        from genki_signals.launch.forkserver import start_fork_server
        server = start_fork_server(preload=("json",))
        try:
            assert server.wait_ready(60)
            def mapped():
                with open(f"/proc/{server.pid}/maps") as f:
                    return any("/scipy/signal/" in line for line in f)
            before = mapped()
            server.preload(["scipy.signal", "genki_signals.no_such_module"])
            ready = server.wait_ready(120)
            print(json.dumps({"how": server.how, "before": before, "after": mapped(),
                              "ready": ready, "failed": server.preload_failures,
                              "here": "scipy.signal" in sys.modules}))
        finally:
            server.close()
    """)
    assert got == {"how": "fork", "before": False, "after": True, "ready": True,
                   "failed": ["genki_signals.no_such_module"], "here": False}


def fork_server_of(launcher_pid: int) -> psutil.Process:
    servers = [p for p in psutil.Process(launcher_pid).children()
               if "genki_signals.launch.forkserver" in " ".join(p.cmdline())]
    assert len(servers) == 1, [p.cmdline() for p in psutil.Process(launcher_pid).children()]
    return servers[0]


@pytest.mark.process
def test_genki_launch_forks_the_demo_without_scipy_signal(launcher_factory):
    lp = launcher_factory(DEMO)
    d = lp.wait_ready(timeout=90)
    server = fork_server_of(lp.proc.pid)
    nodes = {n["id"]: n["pid"] for n in d["nodes"]}
    assert all(psutil.Process(pid).ppid() == server.pid for pid in nodes.values())
    assert not maps_scipy_signal(server.pid)
    assert not maps_scipy_signal(lp.proc.pid)
    assert not maps_scipy_signal(nodes["derived"])  # the FourierTransform's hann is numpy's
    everything = lp.remember_children()
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output
    assert wait_all_gone(everything, within=3.0) == [], lp.output


@pytest.mark.process
def test_genki_launch_preloads_what_the_spec_check_imported(tmp_path, launcher_factory):
    spec = tmp_path / "filtered.yaml"
    spec.write_text(textwrap.dedent(FILTER_SPEC.format(name="filtered")))
    lp = launcher_factory(spec)
    d = lp.wait_ready(timeout=90)
    server = fork_server_of(lp.proc.pid)
    assert maps_scipy_signal(server.pid)  # preloaded after the check: the node has it at fork
    derived = next(n for n in d["nodes"] if n["id"] == "derived")
    assert psutil.Process(derived["pid"]).ppid() == server.pid
    lp.wait_for(lambda d: next(n for n in d["nodes"] if n["id"] == "out")["stats"]
                .get("samples", 0) > 0, 30, "filtered samples at the sink")
    lp.interrupt()
    assert lp.wait_exit(timeout=30) == 0, lp.output


@pytest.mark.process
def test_a_spec_that_fails_its_check_starts_no_node_and_leaves_no_fork_server(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(textwrap.dedent(FILTER_SPEC.format(name="bad")).replace(
        "cutoff: 5", "cutoff: 500"))  # above the Nyquist frequency
    proc = subprocess.Popen([sys.executable, "-m", "genki_signals.cli", "launch", str(spec),
                             "--run-dir", str(tmp_path / "run")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env_with_tests_on_path(),
                            start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        me = psutil.Process(proc.pid)
        while proc.poll() is None:  # every process the command starts, while it runs
            try:
                for child in me.children(recursive=True):
                    seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.005)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "cutoff" in output and "Nyquist" in output, output
    assert "started node" not in output, output
    titles = []
    for p in seen.values():
        try:
            titles.append(" ".join(p.cmdline()))
        except psutil.Error:
            pass  # gone already
    assert not any("genki_signals.nodes" in t for t in titles), titles
    assert wait_all_gone(list(seen.values()), within=3.0) == [], titles
