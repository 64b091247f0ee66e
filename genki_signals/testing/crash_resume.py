"""Kill -9 of a graph node mid-stream, restart, and compare with an uncrashed run.

Shared by ``tests/test_crash_resume.py`` (the acceptance test of issue 12) and
``tools/bench_crash_resume.py`` (restart time and bytes retained upstream). Everything is real:
``genki launch`` in a subprocess, a ``replay`` node playing a recording (so that both runs see
the same input, paced at recorded speed), a graph node running a Butterworth low-pass, a moving
average and a GRU (a real ONNX model from ``testing/onnx_builders.py``) on lossless edges, and a
``recorder`` node whose file is the output compared.

Every process started here is killed by PID (the launcher and its whole tree) when a run ends,
whatever happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

from genki_signals.bus import control
from genki_signals.bus.codec import encode

GRAPH = "g"
SOURCE = "src"


@dataclass(frozen=True)
class Scenario:
    """One input stream: ``rate`` samples/s in frames of ``frame_size``, ``seconds`` long."""

    rate: float
    frame_size: int
    seconds: float
    channels: int = 2
    seed: int = 0

    @property
    def frames(self) -> int:
        return int(self.seconds * self.rate) // self.frame_size


SCENARIOS = {
    "100Hz": Scenario(rate=100.0, frame_size=5, seconds=8.0),     # 20 frames/s
    "1kHz": Scenario(rate=1000.0, frame_size=20, seconds=8.0),    # 50 frames/s
}


def write_input(path: Path, sc: Scenario) -> None:
    """A recording of node ``src`` publishing a noisy two-tone signal, paced in real time."""
    from genki_signals.record.recorder import Recorder

    rng = np.random.default_rng(sc.seed)
    n = sc.frames * sc.frame_size
    t = np.arange(n) / sc.rate
    v = np.stack([np.sin(2 * np.pi * 1.5 * t) + 0.3 * rng.normal(size=n),
                  np.cos(2 * np.pi * 0.7 * t) + 0.3 * rng.normal(size=n)], axis=1)
    with Recorder(path, wall_anchor=1.7e9, topology={"name": "input", "nodes": []}) as rec:
        for i in range(sc.frames):
            sl = slice(i * sc.frame_size, (i + 1) * sc.frame_size)
            when = float(t[sl][-1])
            parts = encode(f"{SOURCE}/main", {"timestamp": t[sl], "v": v[sl]}, node_id=SOURCE,
                           seq=i, publish_time=when)
            rec.record_parts(parts, log_time=when)


def write_spec(folder: Path, name: str, sc: Scenario, *, every_frames: int = 10,
               every_seconds: float = 0.5, enabled: bool | None = None,
               paced: bool = True) -> Path:
    """The topology: replay -> graph (lossless) -> recorder (lossless), in ``folder``.
    ``enabled=False`` turns the graph node's checkpoints off (the control experiment).
    ``paced=False`` replays as fast as the lossless edges take it, frame by frame (speed max,
    coalescing off, so the graph sees the recorded frames): an uncrashed reference run in a
    fraction of the time, whose output must not depend on the pacing."""
    from genki_signals.testing.onnx_builders import make_gru

    make_gru(folder / "gru.onnx", features=sc.channels, hidden=16, classes=3, seed=7)
    operators = [
        {"type": "LowPass", "input": "v", "cutoff": sc.rate / 10, "sample_rate": sc.rate,
         "order": 4, "name": "lp"},
        {"type": "MovingAverage", "input": "lp", "length": 8, "name": "ma"},
        {"type": "Inference", "input": "ma", "model": "gru.onnx", "stateful": True,
         "name": "gru"},
    ]
    spec = {"name": name, "nodes": [
        {"id": SOURCE, "kind": "replay", "params": {"path": "input.mcap", "node": SOURCE,
                                                    **({} if paced else {"speed": "max",
                                                                         "coalesce": 0})}},
        {"id": GRAPH, "kind": "graph", "inputs": [{"node": SOURCE, "policy": "lossless"}],
         "restart": {"policy": "on-failure", "backoff": 0.1},
         "params": {"operators": operators,
                    "checkpoint": {"enabled": enabled, "every_frames": every_frames,
                                   "every_seconds": every_seconds}}},
        {"id": "rec", "kind": "recorder", "inputs": [{"node": GRAPH, "policy": "lossless"}],
         "params": {"path": "out.mcap", "flush_interval": 0.2}},
    ]}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class RunResult:
    """What one run gave: the graph's recorded frames and, for a crashed run, the figures."""

    frames: list[dict[str, np.ndarray]]
    exit_code: int
    output: str
    restart_seconds: float | None = None  # kill -> first frame the restarted node published
    retained_bytes_max: int | None = None  # upstream retention while the node was down
    restarts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


def _remember(proc: subprocess.Popen, known: dict[int, psutil.Process]) -> None:
    """Note the launcher's children now, so they can be killed by PID even if it dies."""
    try:
        for p in psutil.Process(proc.pid).children(recursive=True):
            known.setdefault(p.pid, p)
    except psutil.NoSuchProcess:
        pass


def _directory(address: str) -> dict | None:
    try:
        return control.request(address, "directory", timeout=0.5)
    except (TimeoutError, OSError):
        return None


def _kill_tree(proc: subprocess.Popen, known: dict[int, psutil.Process]) -> None:
    _remember(proc, known)
    for p in known.values():
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(known.values()), timeout=5)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


# ``genki launch SPEC --run-dir DIR`` (launch/commands.py) with a longer ready timeout: on a
# loaded machine three interpreters importing numpy, scipy and ONNX Runtime can take > 20 s.
_LAUNCH = """
import sys
from genki_signals.launch.launcher import Launcher
from genki_signals.launch.spec import load_topology
launcher = Launcher(load_topology(sys.argv[1]), run_dir=sys.argv[2],
                    ready_timeout=float(sys.argv[3]))
try:
    launcher.start()
    code = launcher.run()
finally:
    launcher.stop()
sys.exit(code)
"""


def run(spec: Path, run_dir: Path, *, kill_after: float | None = None,
        timeout: float = 150.0, ready_timeout: float = 90.0) -> RunResult:
    """Launch ``spec`` (as ``genki launch`` does, in its own process); with ``kill_after``,
    SIGKILL the graph node that many seconds after every node is ready. Waits for the natural
    end (every node finished) and reads ``out.mcap`` next to the spec."""
    from genki_signals.record.export import read_frames
    from genki_signals.record.reader import Recording

    address = f"ipc://{run_dir / 'control'}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCH, str(spec), str(run_dir),
                             str(ready_timeout)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n")
                                                          for line in proc.stdout), daemon=True)
    reader.start()
    known: dict[int, psutil.Process] = {}
    result = RunResult([], -1, "")
    deadline = time.monotonic() + timeout
    try:
        d = _wait(proc, address, deadline, lines, lambda d: d["nodes"] and all(
            n["state"] == "ready" for n in d["nodes"]), "every node ready")
        killed_at = None
        if kill_after is not None:
            time.sleep(kill_after)
            d = _directory(address) or d
            victim = next(n for n in d["nodes"] if n["id"] == GRAPH)
            os.kill(victim["pid"], signal.SIGKILL)
            killed_mono = time.monotonic()
            killed_at = killed_mono - d["clock_origin"]  # topology time of the kill
            retained = 0
            while time.monotonic() < min(deadline, killed_mono + 15.0):
                d = _directory(address)
                if d is None:
                    break
                _remember(proc, known)
                src = next(n for n in d["nodes"] if n["id"] == SOURCE)
                retained = max(retained, int(src["stats"].get("retained_bytes", 0)))
                g = next(n for n in d["nodes"] if n["id"] == GRAPH)
                result.stats = dict(g["stats"])
                if g["state"] == "ready" and g["restarts"] >= 1 and \
                        time.monotonic() > killed_mono + 1.5:
                    break
                time.sleep(0.05)
            result.retained_bytes_max = retained
        result.exit_code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        reader.join(timeout=5)
        result.output = "\n".join(lines)
        out = spec.parent / "out.mcap"
        result.frames = read_frames(out).get(f"{GRAPH}/main", [])
        result.restarts = sum("restarting" in line and f"'{GRAPH}'" in line for line in lines)
        if killed_at is not None:
            # the first frame the restarted node published (publish times are on the topology
            # clock; a frame published before the kill may still be received after it)
            with Recording(out) as rec:
                after = [t for m in rec.messages([f"{GRAPH}/"])
                         if (t := m.decode().publish_time) > killed_at]
            result.restart_seconds = (min(after) - killed_at) if after else None
        return result
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the run did not end within {timeout} s:\n"
                             + "\n".join(lines)) from None
    finally:
        _kill_tree(proc, known)


def _wait(proc: subprocess.Popen, address: str, deadline: float, lines: list[str],
          predicate: Any, what: str) -> dict:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"launcher exited ({proc.returncode}) while waiting for "
                                 f"{what}:\n" + "\n".join(lines))
        d = _directory(address)
        if d is not None and predicate(d):
            return d
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(lines))


def prepare(folder: Path, name: str, sc: Scenario, **spec_options: Any) -> Path:
    """``folder`` with the input recording, the model and the spec; the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_input(folder / "input.mcap", sc)
    return write_spec(folder, name, sc, **spec_options)


def frames_equal(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]
                 ) -> str | None:
    """None when ``a`` and ``b`` are the same frames bit for bit, else what differs first."""
    if len(a) != len(b):
        return f"{len(a)} frames vs {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if list(x) != list(y):
            return f"frame {i}: keys {list(x)} vs {list(y)}"
        for k in x:
            if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape \
                    or x[k].tobytes() != y[k].tobytes():
                return f"frame {i}, '{k}': values differ"
    return None
