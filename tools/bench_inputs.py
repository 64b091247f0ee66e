"""Benchmark: CPU cost of the mouse, keyboard and microphone sources vs bare library loops.

Each case runs in its own fresh process for ``--seconds`` and reports the process's CPU time
(every thread: pynput's listener, PortAudio's callback thread, the sampler) per wall second:

* ``mouse``: ``Sampler({'mouse_position': MouseDataSource()}, 100)`` read 25 times a second,
  against a bare loop: a thread reading ``pynput.mouse.Controller().position`` on a drift-free
  100 Hz schedule into a list, the main thread taking the list 25 times a second as an array.
* ``keyboard``: ``Sampler({'keyboard': KeyboardDataSource(4 keys)}, 100)`` against a bare
  ``pynput.keyboard.Listener`` updating a dict, read by a 100 Hz thread, taken 25 times a
  second; ``xdotool type`` presses about 20 keys a second during both.
* ``mic``: ``MicDataSource(48 kHz, 10 ms blocks)`` read 25 times a second, against a bare
  ``sounddevice.InputStream`` whose callback appends block copies to a list, concatenated 25
  times a second. CPU is counted from the first block on (PulseAudio takes 1-2 s to start).

The devices are virtual (tests/virtual_devices.py): a private Xvfb driven by xdotool, and a
private PulseAudio null sink at 48 kHz fed by pacat, recorded through ALSA's ``pulse`` device.
Repeats interleave the two variants; the table shows medians over the repeats and the median
of the per-repeat ratios genki / bare.

    python tools/bench_inputs.py [--seconds 5] [--repeats 5] [--only mouse,keyboard,mic]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
READ_PERIOD = 1 / 25
RATE = 100.0
MIC_RATE, MIC_BLOCK = 48000, 480
KEYS = ["enter", "shift", "a", "space"]


# ---------------------------------------------------------------------- one measured run
def _take_all(queue: collections.deque) -> int:
    """Take every queued value as one float64 array (what a reader of the bare loop does)."""
    got = [queue.popleft() for _ in range(len(queue))]
    return len(np.asarray(got, dtype=np.float64)) if got else 0


def _reader_loop(read, seconds: float) -> int:
    """Call ``read()`` 25 times a second for ``seconds``; the number of samples it returned."""
    n = 0
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        k += 1
        time.sleep(max(0.0, t0 + k * READ_PERIOD - time.monotonic()))
        n += read()
    return n


def _ticker(fn, stop: threading.Event) -> threading.Thread:
    """A thread calling ``fn()`` on a drift-free 100 Hz schedule until ``stop``."""
    def run():
        t0 = time.monotonic()
        k = 0
        while not stop.is_set():
            fn()
            k += 1
            stop.wait(max(0.0, t0 + k / RATE - time.monotonic()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_case(case: str, variant: str, seconds: float) -> dict:
    from genki_signals.frames import frame_length

    if case in ("mouse", "keyboard") and variant == "genki":
        from genki_signals.data_sources import KeyboardDataSource, MouseDataSource, Sampler

        source = (MouseDataSource() if case == "mouse" else KeyboardDataSource(keys=KEYS))
        sampler = Sampler({case: source}, sample_rate=RATE)
        c0, w0 = time.process_time(), time.monotonic()
        sampler.start()
        n = _reader_loop(lambda: frame_length(sampler.read()), seconds)
        sampler.stop()
    elif case == "mouse":
        from pynput import mouse

        controller = mouse.Controller()
        values: collections.deque = collections.deque()
        stop = threading.Event()
        c0, w0 = time.process_time(), time.monotonic()
        thread = _ticker(lambda: values.append(controller.position), stop)
        n = _reader_loop(lambda: _take_all(values), seconds)
        stop.set()
        thread.join()
    elif case == "keyboard":
        from pynput import keyboard

        held = {k: 0.0 for k in KEYS}

        def name(key):
            return getattr(key, "name", None) or getattr(key, "char", None)

        def on_press(key):
            if name(key) in held:
                held[name(key)] = 1.0

        def on_release(key):
            if name(key) in held:
                held[name(key)] = 0.0

        listener = keyboard.Listener(on_press=on_press, on_release=on_release)
        values = collections.deque()
        stop = threading.Event()
        c0, w0 = time.process_time(), time.monotonic()
        listener.start()
        listener.wait()
        thread = _ticker(lambda: values.append(list(held.values())), stop)
        n = _reader_loop(lambda: _take_all(values), seconds)
        stop.set()
        thread.join()
        listener.stop()
    elif case == "mic" and variant == "genki":
        from genki_signals.data_sources import MicDataSource

        mic = MicDataSource(device="pulse", sample_rate=MIC_RATE, blocksize=MIC_BLOCK)
        mic.start()
        while not frame_length(mic.read()):  # PulseAudio's slow start is not counted
            time.sleep(0.01)
        c0, w0 = time.process_time(), time.monotonic()
        n = _reader_loop(lambda: frame_length(mic.read()), seconds)
        mic.stop()
    elif case == "mic":
        import sounddevice as sd

        blocks: collections.deque = collections.deque()
        stream = sd.InputStream(samplerate=MIC_RATE, blocksize=MIC_BLOCK, device="pulse",
                                channels=1, dtype="float32",
                                callback=lambda indata, frames, t, status:
                                blocks.append(indata.copy()))
        stream.start()
        while not blocks:
            time.sleep(0.01)
        blocks.clear()
        c0, w0 = time.process_time(), time.monotonic()

        def take() -> int:
            got = [blocks.popleft() for _ in range(len(blocks))]
            return len(np.concatenate(got)) if got else 0

        n = _reader_loop(take, seconds)
        stream.abort()
        stream.close()
    else:
        raise SystemExit(f"unknown case {case}/{variant}")
    cpu, wall = time.process_time() - c0, time.monotonic() - w0
    return {"cpu": cpu, "wall": wall, "samples": n}


# ---------------------------------------------------------------------- the comparison
def one(case: str, variant: str, seconds: float, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--run", case, variant, "--seconds",
                          str(seconds)], env=env, capture_output=True, text=True,
                         timeout=seconds + 60)
    if out.returncode:
        raise SystemExit(f"{case}/{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="mouse,keyboard,mic")
    ap.add_argument("--run", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        print(json.dumps(run_case(*args.run, args.seconds)))
        return

    sys.path.insert(0, str(REPO / "tests"))
    from virtual_devices import PulseNullSink, Xvfb, python_env

    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the display and daemons are stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))

    cases = args.only.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="genki-bench-inputs-"))
    xvfb = Xvfb() if {"mouse", "keyboard"} & set(cases) else None
    pulse = None
    typist = None
    try:
        env = python_env()
        if xvfb is not None:
            env["DISPLAY"] = xvfb.display
        if "mic" in cases:
            t = np.arange(int((args.seconds + 20) * args.repeats * 2 * MIC_RATE)) / MIC_RATE
            pulse = PulseNullSink(tmp / "pulse", 0.3 * np.sin(2 * np.pi * 440 * t), MIC_RATE)
            for key in ("XDG_RUNTIME_DIR", "PULSE_RUNTIME_PATH", "HOME", "PULSE_SOURCE"):
                env[key] = pulse.env()[key]
        if "keyboard" in cases:  # ~20 key presses a second, all along
            typist = subprocess.Popen(
                ["xdotool", "type", "--delay", "50", "a" * 100000], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results: dict[str, dict[str, list]] = {c: {"genki": [], "bare": []} for c in cases}
        for r in range(args.repeats):
            for case in cases:
                order = ("genki", "bare") if r % 2 == 0 else ("bare", "genki")
                for variant in order:
                    results[case][variant].append(one(case, variant, args.seconds, env))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        if typist is not None:
            typist.kill()
            typist.wait()
        if pulse is not None:
            pulse.stop()
        if xvfb is not None:
            xvfb.stop()

    print(f"# {args.repeats} repeats of {args.seconds:g} s, medians; CPU = process CPU time / "
          f"wall time")
    print("| source | rate | genki CPU | bare CPU | samples/s genki / bare | "
          "CPU ratio genki / bare | ratio min-max | CPU per sample ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rates = {"mouse": "100 Hz", "keyboard": "100 Hz, ~20 keys/s", "mic": "48 kHz, 10 ms blocks"}
    for case in cases:
        g, b = results[case]["genki"], results[case]["bare"]
        cpu_g = statistics.median(x["cpu"] / x["wall"] for x in g)
        cpu_b = statistics.median(x["cpu"] / x["wall"] for x in b)
        ratios = [(x["cpu"] / x["wall"]) / (y["cpu"] / y["wall"]) for x, y in zip(g, b)]
        per_sample = [(x["cpu"] / max(x["samples"], 1)) / (y["cpu"] / max(y["samples"], 1))
                      for x, y in zip(g, b)]
        sps_g = statistics.median(x["samples"] / x["wall"] for x in g)
        sps_b = statistics.median(x["samples"] / x["wall"] for x in b)
        print(f"| {case} | {rates[case]} | {cpu_g:.2%} | {cpu_b:.2%} | {sps_g:,.0f} / "
              f"{sps_b:,.0f} | {statistics.median(ratios):.2f} | {min(ratios):.2f}-"
              f"{max(ratios):.2f} | {statistics.median(per_sample):.2f} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
