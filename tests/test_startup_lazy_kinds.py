"""Start-up: ``genki launch`` and ``genki validate`` import only what the spec at hand names.

A spec names its node kinds and sink types; the registry (``genki_signals.nodes.kinds``) finds
each by its module name, so checking the demo spec never imports the LSL, Foxglove, ONNX or
inference kinds, the device sources, or the commands of other verbs. These tests run fresh
interpreters and a real ``genki launch`` run and read ``sys.modules``, never a mock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from proc_helpers import REPO, env_with_tests_on_path

pytestmark = pytest.mark.timeout(180)

DEMO = REPO / "specs" / "demo.yaml"

# modules the demo (a Sampler source, a graph, a printer and a plot sink) has no use for
NOT_FOR_THE_DEMO = (
    "genki_signals.nodes.kinds.sink_lsl", "genki_signals.nodes.kinds.sink_foxglove",
    "genki_signals.nodes.kinds.inference", "genki_signals.nodes.kinds.custom",
    "genki_signals.nodes.kinds.recorder", "genki_signals.nodes.kinds.replay",
    "genki_signals.nodes.kinds.aligner", "genki_signals.data_sources.lsl",
    "genki_signals.data_sources.keyboard", "genki_signals.data_sources.microphone",
    "genki_signals.data_sources.mouse", "genki_signals.data_sources.wave.source",
    "genki_signals.foxglove", "genki_signals.foxglove.cli", "genki_signals.export",
    "genki_signals.export.command", "genki_signals.plot.cli", "genki_signals.record.commands",
    "genki_signals.bus.keys_cli",
)
# and what its check must import (a guard against a test that passes by importing nothing)
FOR_THE_DEMO = ("genki_signals.nodes.kinds.source", "genki_signals.nodes.kinds.graph",
                "genki_signals.nodes.kinds.sink_printer", "genki_signals.nodes.kinds.sink_plot")


def run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout on its path); its last stdout line
    is JSON."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120, cwd=REPO, env=env_with_tests_on_path(),
                         check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def imported(names: tuple[str, ...], modules: list[str]) -> list[str]:
    return [n for n in names if n in modules]


@pytest.mark.process
def test_genki_validate_of_the_demo_imports_only_the_kinds_it_names():
    got = run_python("""
        import contextlib, io, json, sys
        from genki_signals.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main(["validate", "specs/demo.yaml"])
        print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
    """)
    assert got["code"] == 0 and "ok (topology 'demo': 4 nodes" in got["out"]
    assert imported(FOR_THE_DEMO, got["modules"]) == list(FOR_THE_DEMO)
    assert imported(NOT_FOR_THE_DEMO, got["modules"]) == []


@pytest.mark.process
def test_genki_launch_of_the_demo_imports_only_the_kinds_it_names(tmp_path):
    """The whole command (``cli.main``, nodes forked from its fork server) to the end of a short
    run; the command's modules are written when it exits (the fork server and its nodes leave
    with ``os._exit``, without exit handlers)."""
    modules_file = tmp_path / "modules.json"
    code = textwrap.dedent(f"""
        import atexit, json, sys
        atexit.register(lambda: open({str(modules_file)!r}, "w").write(
            json.dumps(sorted(sys.modules))))
        from genki_signals.cli import main
        sys.exit(main(["launch", {str(DEMO)!r}, "--duration", "1",
                       "--run-dir", {str(tmp_path / "run")!r}]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=150, cwd=REPO, env=env_with_tests_on_path(),
                         start_new_session=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[printer] derived/main" in out.stdout, out.stdout  # it ran: frames arrived
    modules = json.loads(modules_file.read_text())
    assert imported(FOR_THE_DEMO, modules) == list(FOR_THE_DEMO)
    assert imported(NOT_FOR_THE_DEMO, modules) == []


@pytest.mark.process
def test_a_sink_type_imports_its_own_module_and_an_alias_still_resolves():
    got = run_python("""
        import json, sys
        from genki_signals.nodes.kinds import select_kind
        entry, _, problems = select_kind("sink", {"type": "printer"})
        after_printer = sorted(m for m in sys.modules if m.startswith("genki_signals.nodes.kinds."))
        alias, params, alias_problems = select_kind("sink", {"type": None})  # YAML's null
        print(json.dumps({"type": entry.type, "problems": [str(p) for p in problems],
                          "after_printer": after_printer, "alias": alias.type,
                          "params": params, "alias_problems": [str(p) for p in alias_problems]}))
    """)
    assert got["type"] == "printer" and got["problems"] == []
    assert "genki_signals.nodes.kinds.sink_printer" in got["after_printer"]
    assert not {"genki_signals.nodes.kinds.sink_lsl", "genki_signals.nodes.kinds.sink_foxglove",
                "genki_signals.nodes.kinds.sink_plot"} & set(got["after_printer"])
    assert got["alias"] == "null" and got["params"] == {"type": "null"}
    assert got["alias_problems"] == []


def test_an_unknown_kind_or_type_is_still_named_with_every_known_one():
    from genki_signals.launch.spec import parse_topology
    from genki_signals.nodes.kinds import kind_names
    from genki_signals.specfile import SpecError

    source = {"id": "s", "kind": "source", "params": {
        "type": "Sampler", "sample_rate": 10, "sources": {"x": {"type": "SineWave"}}}}
    with pytest.raises(SpecError) as err:
        parse_topology({"nodes": [source, {"id": "t", "kind": "teapot", "params": {}},
                                  {"id": "u", "kind": ["not", "a", "name"], "params": {}}]},
                       path="spec.yaml")
    text = str(err.value)
    known = ", ".join(kind_names())
    assert "spec.yaml" in text and "node 't'" in text, text
    assert f"field 'kind': unknown kind 'teapot' (known: {known})" in text, text
    assert "node 'u'" in text and "unknown kind ['not', 'a', 'name']" in text, text
    with pytest.raises(SpecError, match=r"node 'c'.*unknown sink type 'teapot' \(known: "
                                        r"printer, csv, null, plot, lsl, foxglove\)"):
        parse_topology({"nodes": [source, {"id": "c", "kind": "sink", "inputs": ["s"],
                                           "params": {"type": "teapot"}}]}, path="spec.yaml")


def test_a_kind_entry_in_a_module_not_named_after_it_is_refused(tmp_path, monkeypatch):
    """The registry finds a kind (or sink type) by its module's name: an entry elsewhere would
    be missed by a spec naming it, so listing the kinds refuses it."""
    from genki_signals.nodes import kinds

    (tmp_path / "sink_counting.py").write_text(textwrap.dedent("""
        from typing import Literal
        from genki_signals.nodes.kinds import NodeKind
        from genki_signals.params import params

        @params
        class CounterParams:
            type: Literal["counter"]

        KIND = NodeKind(kind="sink", type="counter", params=CounterParams, build=None,
                        inputs="required", publishes=False, doc="counts")
    """))
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    caches = (kinds.node_kinds, kinds.entries_of, kinds._entries, kinds.kind_info)
    for cache in caches:
        cache.cache_clear()
    try:
        with pytest.raises(TypeError, match=r"sink_counting: an entry of kind 'sink' type "
                                            r"'counter' belongs in sink_counter.py"):
            kinds.node_kinds()
    finally:
        monkeypatch.undo()
        for cache in caches:
            cache.cache_clear()
        sys.modules.pop("genki_signals.nodes.kinds.sink_counting", None)


@pytest.mark.process
def test_the_data_sources_package_imports_device_sources_on_first_use():
    got = run_python("""
        import json, sys
        import genki_signals.data_sources as ds
        before = [m for m in ("genki_signals.data_sources.lsl",
                              "genki_signals.data_sources.microphone",
                              "genki_signals.data_sources.wave.source") if m in sys.modules]
        from genki_signals.data_sources import WaveDataSource, Sampler
        print(json.dumps({"before": before, "wave": WaveDataSource.__module__,
                          "all": all(hasattr(ds, n) for n in ds.__all__)}))
    """)
    assert got == {"before": [], "wave": "genki_signals.data_sources.wave.source", "all": True}


def test_the_launch_options_with_values_are_the_ones_the_spec_guess_skips():
    """``cli`` guesses ``genki launch``'s spec argument before its parser exists (for the fork
    server's preload): it must know every option of ``launch`` that takes a value."""
    import argparse

    from genki_signals.cli import (
        LAUNCH_VALUE_OPTIONS,
        _launch_spec_argument,
        build_parser,
    )

    parser = build_parser("launch")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    launch = sub.choices["launch"]
    with_values = {s for a in launch._actions if a.option_strings and a.nargs != 0
                   for s in a.option_strings}
    assert with_values == LAUNCH_VALUE_OPTIONS
    assert _launch_spec_argument(["launch", "--duration", "3", "--run-dir", "r", "a.yaml"]) \
        == "a.yaml"
    assert _launch_spec_argument(["launch", "--run-dir=r", "b.json", "--grace", "1"]) == "b.json"
    assert _launch_spec_argument(["launch", "--", "-odd.yaml"]) == "-odd.yaml"
    assert _launch_spec_argument(["launch", "--duration", "3"]) is None


@pytest.mark.process
def test_the_launch_parser_alone_leaves_the_other_verbs_modules_out():
    got = run_python("""
        import json, sys
        from genki_signals.cli import build_parser
        build_parser("launch").parse_args(["launch", "x.yaml"])
        launch_only = sorted(sys.modules)
        build_parser()  # genki --help: every verb
        print(json.dumps({"launch_only": launch_only, "all": sorted(sys.modules)}))
    """)
    others = ("genki_signals.foxglove.cli", "genki_signals.plot.cli",
              "genki_signals.record.commands", "genki_signals.export.command",
              "genki_signals.bus.keys_cli")
    assert "genki_signals.launch.commands" in got["launch_only"]
    assert imported(others, got["launch_only"]) == []
    assert imported(others, got["all"]) == list(others)


def test_the_fork_servers_spec_preload_imports_the_named_kinds_and_ignores_a_bad_spec(tmp_path):
    got = run_python(f"""
        import json, sys
        from genki_signals.launch.forkserver import preload_spec_kinds
        bad = preload_spec_kinds({str(tmp_path / "missing.yaml")!r})
        found = preload_spec_kinds("specs/demo.yaml")
        print(json.dumps({{"bad": bad, "found": found, "modules": sorted(sys.modules)}}))
    """)
    assert got["bad"] is None
    assert got["found"] == ["source/Sampler", "graph", "sink/printer", "sink/plot"]
    assert imported(FOR_THE_DEMO, got["modules"]) == list(FOR_THE_DEMO)
    assert imported(NOT_FOR_THE_DEMO, got["modules"]) == []
    assert os.path.exists(DEMO)


@pytest.mark.process
@pytest.mark.parametrize("spec, recording", [
    (DEMO, False),  # no recorder or replay node: mcap, zstandard, lz4 stay out
    (REPO / "tests" / "specs" / "valid-recorder.yaml", True),
    (REPO / "tests" / "specs" / "no-such-spec.yaml", True),  # unreadable: everything
])
def test_the_fork_server_preloads_the_recording_modules_only_for_a_spec_that_records(
        spec, recording):
    """A real fork server (a fork of a fresh interpreter) given the spec; whether it imported
    zstandard is read from its memory map (the extension module is mapped once imported)."""
    got = run_python(f"""
        import json
        from genki_signals.launch.forkserver import start_fork_server
        server = start_fork_server(spec={str(spec)!r})
        try:
            ready = server.wait_ready(120)
            with open(f"/proc/{{server.pid}}/maps") as f:
                maps = f.read()
            print(json.dumps({{"how": server.how, "ready": ready,
                              "zstandard": "/zstandard/" in maps}}))
        finally:
            server.close()
    """)
    assert got["how"] == "fork" and got["ready"] is True
    assert got["zstandard"] is recording
