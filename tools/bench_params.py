"""Spec parsing cost: the params parser (pydantic v2) against msgspec and the hand-written checks.

Measured (medians of interleaved repeats, each in a fresh process where imports matter):

1. ``parse_topology(specs/demo.yaml)``: this tree against another checkout (``--baseline``, e.g.
   ``/work/main`` with the hand-written checks), per parse, after one warm-up parse;
2. the demo source node's params alone: ``genki_signals.params.parse`` (pydantic) against
   ``msgspec.convert`` into equivalent Structs (msgspec stops at the first error, so it is
   measured on valid params only). ``genki params`` also runs each function's constructor
   (its bound checks); "types only" is the same classes without them, as msgspec;
3. import time (``python -X importtime``, cumulative): pydantic, msgspec, ``launch.spec`` in both
   trees, and the node-kind registry (``node_kinds()``).

    python tools/bench_params.py --baseline /work/main [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEMO = REPO / "specs" / "demo.yaml"

_PARSE_SPEC = """
import json, sys, timeit
from genki_signals.specfile import load_spec_file
from genki_signals.launch.spec import parse_topology
data = load_spec_file({demo!r})
parse_topology(data, path={demo!r})
n = 20
t = min(timeit.repeat(lambda: parse_topology(data, path={demo!r}), number=n, repeat=3)) / n
print(json.dumps(t))
"""

_PARSE_PARAMS = """
import json, timeit
from typing import Literal, Union
import msgspec
from genki_signals.specfile import load_spec_file
from genki_signals.data_sources.registry import SOURCE_TYPES
from genki_signals.params import parse

class SineWave(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    frequency: float = 1.0
    amplitude: float = 1.0
    phase: float = 0.0

class RandomNoise(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    amplitude: float = 1.0
    seed: int | None = None

class Sampler(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    type: Literal["Sampler"]
    sample_rate: float
    sources: dict[str, Union[SineWave, RandomNoise]]
    update_rate: float = 25.0

from typing import Annotated
from pydantic import Field
from genki_signals.params import Float, Int, Str, params as params_class

@params_class
class PSine:
    type: Literal["SineWave"]
    frequency: Float = 1.0
    amplitude: Float = 1.0
    phase: Float = 0.0

@params_class
class PNoise:
    type: Literal["RandomNoise"]
    amplitude: Float = 1.0
    seed: Int | None = None

@params_class
class PSampler:
    type: Literal["Sampler"]
    sample_rate: Annotated[Float, Field(gt=0)]
    update_rate: Annotated[Float, Field(gt=0)] = 25.0
    sources: dict[Str, Annotated[Union[PSine, PNoise], Field(discriminator="type")]]

params = load_spec_file({demo!r})["nodes"][0]["params"]
cls = SOURCE_TYPES["Sampler"].params_class()
assert parse(cls, params)[1] == [] and parse(PSampler, params)[1] == []
msgspec.convert(params, Sampler, strict=True)
n = 200
out = {{}}
for name, fn in (("genki params (with checks)", lambda: parse(cls, params)),
                 ("pydantic, types only", lambda: parse(PSampler, params)),
                 ("msgspec, types only", lambda: msgspec.convert(params, Sampler, strict=True))):
    out[name] = min(timeit.repeat(fn, number=n, repeat=3)) / n
print(json.dumps(out))
"""


def _run(code: str, tree: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, text=True,
                          capture_output=True, cwd=tree).stdout


def _import_us(module_code: str, tree: Path) -> float:
    """Cumulative import time (us) of what ``module_code`` imports (the interpreter's own
    start-up imports, also logged, are left out: only the top-level entries of its package)."""
    root = re.match(r"import (\w+)", module_code)[1]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", module_code], env=env,
                         check=True, text=True, capture_output=True, cwd=tree).stderr
    total = 0
    for line in err.splitlines():  # top-level imports have one space of indent
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( ?)(\S.*)$", line)
        if m and m[2] == "" and (m[3] == root or m[3].startswith(root + ".")):
            total += int(m[1])
    return float(total)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True,
                    help="another checkout to compare with (e.g. /work/main)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    args = ap.parse_args(argv)
    trees = {"this tree": REPO, "baseline": args.baseline.resolve()}
    spec: dict[str, list[float]] = {k: [] for k in trees}
    params: dict[str, list[float]] = {}
    imports: dict[str, list[float]] = {}
    import_cases = [
        ("pydantic", "import pydantic, pydantic.dataclasses", REPO),
        ("msgspec", "import msgspec", REPO),
        ("launch.spec (baseline)", "import genki_signals.launch.spec", trees["baseline"]),
        ("launch.spec (this tree)", "import genki_signals.launch.spec", REPO),
        ("node_kinds() (this tree)",
         "import genki_signals.nodes.kinds as k; k.node_kinds()", REPO),
        ("a sink node's kind (this tree)",
         "import genki_signals.nodes.kinds as k; k.entries_of('sink')", REPO),
        ("nodes.kinds (baseline)", "import genki_signals.nodes.kinds", trees["baseline"]),
    ]
    for _ in range(args.repeats):
        for name, tree in trees.items():
            spec[name].append(json.loads(_run(_PARSE_SPEC.format(demo=str(DEMO)), tree)))
        for name, value in json.loads(_run(_PARSE_PARAMS.format(demo=str(DEMO)), REPO)).items():
            params.setdefault(name, []).append(value)
        for name, code, tree in import_cases:
            imports.setdefault(name, []).append(_import_us(code, tree))
    med = {k: statistics.median(v) for k, v in spec.items()}
    fastest = min(med.values())
    print(f"parse_topology(specs/demo.yaml), {args.repeats} interleaved repeats, median:")
    for k, v in med.items():
        print(f"  {k:28s} {v * 1e3:8.2f} ms   x{v / fastest:.2f}")
    med = {k: statistics.median(v) for k, v in params.items()}
    fastest = min(med.values())
    print("demo source params (Sampler, 3 functions) parsed alone, median:")
    for k, v in med.items():
        print(f"  {k:28s} {v * 1e6:8.1f} us   x{v / fastest:.1f}")
    print("import time (python -X importtime, cumulative), median:")
    for k, v in imports.items():
        print(f"  {k:28s} {statistics.median(v) / 1e3:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
