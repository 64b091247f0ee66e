"""Mouse and keyboard sources through the real pynput, on a private Xvfb display driven by xdotool.

Needs the Debian packages xvfb and xdotool (tools/install-test-deps.sh); without them these
tests fail saying so. Timing claims are checked against the clock times bracketing each xdotool
call: a sample shows the new state from at most one sample period after the call returned, and
the old state until at most one period before it began.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from genki_signals.buffers import DataBuffer
from genki_signals.clock import DEFAULT_CLOCK
from genki_signals.data_sources import (KeyboardDataSource, MouseDataSource, Sampler, SineWave,
                                        SourceParameterError)
from genki_signals.data_sources.aligned import AlignedSource
from genki_signals.data_sources.keyboard import KEY_NAMES
from genki_signals.data_sources.registry import check_source_params, preflight_source
from genki_signals.errors import SourceError
from proc_helpers import REPO, LauncherProcess
from virtual_devices import Xvfb

pytestmark = pytest.mark.timeout(60)

RATE = 100.0
PERIOD = 1 / RATE


@pytest.fixture(scope="module")
def xvfb():
    x = Xvfb()
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = x.display  # pynput and python-xlib read it when they connect
    try:
        yield x
    finally:
        x.nudge()  # lets any stopped listener thread exit before the server goes away
        time.sleep(0.1)
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        x.stop()


def listener_threads() -> list[threading.Thread]:
    from pynput._util import AbstractListener

    return [t for t in threading.enumerate() if isinstance(t, AbstractListener) and t.is_alive()]


def run_steps(sampler: Sampler, steps, act, settle: float = 0.12):
    """Start ``sampler``, then for each step: ``act(step)`` bracketed by clock times, wait.

    Returns (frame of everything sampled, [(t_before, t_after)] per step).
    """
    clock = DEFAULT_CLOCK
    buf = DataBuffer()
    marks = []
    with sampler:
        time.sleep(settle)
        for step in steps:
            t0 = clock.now()
            act(step)
            marks.append((t0, clock.now()))
            time.sleep(settle)
            buf.extend(sampler.read())
    buf.extend(sampler.read())
    return buf.to_dict(), marks


def check_states(ts, values, initial, expected, marks, transient=None):
    """Each expected state holds from one period after its step to one period before the next.

    Between ``t_before - period`` and ``t_after + period`` of a step either state may show
    (or one of ``transient[step]``, for a step that is two events); outside, anything but the
    expected state fails (with the offending samples in the message).
    """
    states = [np.asarray(initial, float), *[np.asarray(e, float) for e in expected]]
    bounds = [-math.inf, *[m for pair in marks for m in pair], math.inf]
    for i, state in enumerate(states):
        lo = bounds[2 * i] + PERIOD if i else -math.inf
        hi = bounds[2 * i + 1] - PERIOD if i < len(marks) else math.inf
        sel = (ts > lo) & (ts < hi)
        if i:
            assert sel.sum() >= 3, f"step {i}: too few samples between {lo} and {hi}"
        wrong = sel & np.any(values != state, axis=1)
        assert not wrong.any(), (f"state {i} should be {state.tolist()} for {lo:.4f} < t < "
                                 f"{hi:.4f}; got {values[wrong][:5].tolist()} at "
                                 f"{ts[wrong][:5].tolist()}")
    # and every transition happened within one period of its step
    for i, (t0, t1) in enumerate(marks):
        window = (ts >= t0 - PERIOD) & (ts <= t1 + PERIOD)
        seen = {tuple(v) for v in values[window]}
        allowed = {tuple(states[i]), tuple(states[i + 1])}
        allowed |= {tuple(map(float, t)) for t in (transient or {}).get(i, [])}
        assert seen <= allowed, (i, seen)


# ---------------------------------------------------------------------- mouse
def test_mouse_position_follows_an_xdotool_path_at_the_right_times(xvfb):
    path = [(100, 100), (300, 120), (640, 400), (5, 790), (1279, 0), (777, 555)]
    xvfb.xdotool("mousemove", "--sync", "50", "60")
    mouse = MouseDataSource()
    frame, marks = run_steps(Sampler({"mouse_position": mouse}, sample_rate=RATE), path,
                             lambda p: xvfb.xdotool("mousemove", "--sync", str(p[0]), str(p[1])))
    ts, pos = frame["timestamp"], frame["mouse_position"]
    assert pos.shape == (len(ts), 2) and pos.dtype == np.float64
    np.testing.assert_allclose(np.diff(ts), PERIOD, atol=1e-9)  # the Sampler's exact ticks
    check_states(ts, pos, (50, 60), path, marks)


def test_mouse_buttons_and_scroll_through_the_listener(xvfb):
    mouse = MouseDataSource(buttons=True, scroll=True)
    sampler = Sampler(mouse.streams(), sample_rate=RATE)
    steps = [("mousedown", "1"), ("mousedown", "3"), ("mouseup", "1"), ("mouseup", "3"),
             ("click", "4"), ("click", "5"), ("click", "5"), ("click", "7")]
    buttons = [(1, 0, 0), (1, 0, 1), (0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0),
               (0, 0, 0)]
    scroll = [(0, 0)] * 4 + [(0, 1), (0, 0), (0, -1), (1, -1)]
    frame, marks = run_steps(sampler, steps, lambda s: xvfb.xdotool(*s))
    ts = frame["timestamp"]
    assert set(frame) == {"timestamp", "mouse_position", "mouse_buttons", "mouse_scroll"}
    check_states(ts, frame["mouse_buttons"], (0, 0, 0), buttons, marks)
    check_states(ts, frame["mouse_scroll"], (0, 0), scroll, marks)
    xvfb.nudge()
    deadline = time.monotonic() + 5
    while listener_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not listener_threads(), "a stopped listener thread outlived the next event"


def test_stop_returns_at_once_although_pynput_listeners_wait_for_an_event(xvfb):
    mouse = MouseDataSource(buttons=True)
    keys = KeyboardDataSource(keys=["enter"])
    sampler = Sampler({**mouse.streams(), "keyboard": keys}, sample_rate=RATE)
    sampler.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    sampler.stop()
    assert time.monotonic() - t0 < 0.5
    assert not mouse.is_active and not keys.is_active
    assert listener_threads()  # still waiting for one more event: never joined
    xvfb.nudge()
    deadline = time.monotonic() + 5
    while listener_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not listener_threads()
    sampler.start()  # restartable: new listeners
    try:
        assert len(listener_threads()) == 2
    finally:
        sampler.stop()
        xvfb.nudge()


def test_mouse_as_a_follower_of_another_leader(xvfb):
    xvfb.xdotool("mousemove", "--sync", "10", "20")
    leader = Sampler({"lead": SineWave(frequency=1)}, sample_rate=50)
    follower = Sampler({"mouse_position": MouseDataSource()}, sample_rate=200)
    src = AlignedSource(leader, {"mouse": follower}, max_lag=0.5)
    frames = []
    with src:
        time.sleep(0.2)
        frames.append(src.read())
        t_move = DEFAULT_CLOCK.now()
        xvfb.xdotool("mousemove", "--sync", "400", "300")
        t_moved = DEFAULT_CLOCK.now()
        for _ in range(6):
            time.sleep(0.05)
            frames.append(src.read())
    buf = DataBuffer()
    for f in frames:
        buf.extend(f)
    out = buf.to_dict()
    t, pos = out["timestamp"], out["mouse_position"]
    np.testing.assert_allclose(np.diff(t), 1 / 50, atol=1e-9)  # the leader's ticks
    ok = ~np.isnan(pos[:, 0])
    before, after = ok & (t < t_move - 1 / 200), ok & (t > t_moved + 1 / 200)
    assert before.sum() >= 3 and after.sum() >= 5
    assert np.all(pos[before] == (10, 20)) and np.all(pos[after] == (400, 300))


# ---------------------------------------------------------------------- keyboard
def test_key_states_follow_xdotool_presses_and_releases(xvfb):
    keys = ["enter", "shift", "a", "space", "f5", "shift_r", "1"]
    source = KeyboardDataSource(keys=keys)
    steps = [("keydown", "Return"), ("keydown", "shift"), ("keydown", "a"), ("keyup", "shift"),
             ("keyup", "a"), ("keyup", "Return"), ("keydown", "Shift_R"), ("keydown", "space"),
             ("keyup", "Shift_R"), ("keyup", "space"), ("keydown", "F5"), ("keydown", "1"),
             ("keyup", "F5"), ("keyup", "1"), ("keydown", "b"), ("keyup", "b")]
    #          enter shift a space f5 shift_r 1
    expected = [(1, 0, 0, 0, 0, 0, 0), (1, 1, 0, 0, 0, 0, 0), (1, 1, 1, 0, 0, 0, 0),
                (1, 0, 1, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0),
                (0, 1, 0, 0, 0, 1, 0), (0, 1, 0, 1, 0, 1, 0), (0, 0, 0, 1, 0, 0, 0),
                (0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 1, 0, 0), (0, 0, 0, 0, 1, 0, 1),
                (0, 0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0),
                (0, 0, 0, 0, 0, 0, 0)]
    frame, marks = run_steps(Sampler({"keyboard": source}, sample_rate=RATE), steps,
                             lambda s: xvfb.xdotool(*s), settle=0.08)
    assert frame["keyboard"].shape == (len(frame["timestamp"]), len(keys))
    # xdotool's "keydown Shift_R" presses Shift_L, then Shift_R (0.2 ms apart; seen with a bare
    # pynput listener): a tick may fall between the two
    transient = {6: [(0, 1, 0, 0, 0, 0, 0)]}
    check_states(frame["timestamp"], frame["keyboard"], (0,) * len(keys), expected, marks,
                 transient)


def test_a_held_key_stays_pressed_through_autorepeat(xvfb):
    source = KeyboardDataSource(keys=["x"])
    frame, marks = run_steps(Sampler({"keyboard": source}, sample_rate=RATE),
                             [("keydown", "x"), ("keyup", "x")],
                             lambda s: xvfb.xdotool(*s), settle=0.8)
    check_states(frame["timestamp"], frame["keyboard"], (0,), [(1,), (0,)], marks)


def test_key_names_match_pynputs_own_key_enum(xvfb):
    from pynput import keyboard

    assert set(KEY_NAMES) == set(keyboard.Key.__members__)  # aliases (shift_l on X) included


def test_unknown_key_names_are_rejected_listing_the_valid_ones():
    with pytest.raises(SourceParameterError) as err:
        KeyboardDataSource(keys=["enter", "return", "ctrl"])
    msg = str(err.value)
    assert "'return'" in msg and "item 1" in msg and "enter" in msg and "page_down" in msg
    assert "single character" in msg
    for bad in ([], "enter", ["a", "A"], [3]):
        with pytest.raises(SourceParameterError):
            KeyboardDataSource(keys=bad)


# ---------------------------------------------------------------------- without a display
NO_DISPLAY_SCRIPT = textwrap.dedent("""
    import genki_signals.data_sources as ds      # never touches a display
    import sys
    from genki_signals.errors import SourceError
    # the seed notebook's hardware cell (less the Wave ring): making the sources needs no device
    from genki_signals.data_sources import MicDataSource, MouseDataSource, KeyboardDataSource
    from genki_signals.data_sources import Sampler
    mouse_source = Sampler({'mouse_position': MouseDataSource()}, sample_rate=100)
    keyboard_source = Sampler({'keyboard': KeyboardDataSource(keys=["enter", "shift"])},
                              sample_rate=100)
    mic_source = MicDataSource()
    assert "pynput" not in sys.modules and "sounddevice" not in sys.modules
    for make in (lambda: ds.MouseDataSource(), lambda: ds.KeyboardDataSource(keys=["enter"])):
        sampler = ds.Sampler({"x": make()}, sample_rate=100)
        try:
            sampler.start()
        except SourceError as exc:
            print("ERROR:", exc)
        else:
            raise SystemExit("started without a display")
    print("imported ok")
""")


@pytest.mark.process
def test_import_works_and_use_fails_clearly_without_a_display():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", NO_DISPLAY_SCRIPT], env=env, text=True,
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    errors = [line for line in out.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 2 and "imported ok" in out.stdout
    assert "MouseDataSource needs an X display: DISPLAY is not set" in errors[0]
    assert "KeyboardDataSource needs an X display" in errors[1] and "Xvfb" in errors[1]


def test_an_unreachable_display_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":4242")  # nothing listens there
    with pytest.raises(SourceError, match=r"':4242'"):
        MouseDataSource().start()
    problem = preflight_source({"type": "Keyboard", "keys": ["enter"]})
    assert "cannot connect to the X display ':4242'" in problem


# pynput's listener thread dies with AttributeError 'record_create_context': that is the failure
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_display_without_record_fails_at_preflight_and_start_without_hanging(monkeypatch):
    bare = Xvfb(extra=("-extension", "RECORD"))  # pynput's listener needs RECORD
    try:
        monkeypatch.setenv("DISPLAY", bare.display)
        problem = preflight_source({"type": "Keyboard", "keys": ["enter"]})
        assert "needs the X RECORD extension" in problem and bare.display in problem
        assert preflight_source({"type": "Mouse"}) is None  # position needs no listener
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="listener stopped before it was ready"):
            KeyboardDataSource(keys=["enter"]).start()
        assert time.monotonic() - t0 < 5
    finally:
        bare.stop()


def test_sampled_sources_say_they_need_a_sampler():
    with pytest.raises(SourceError, match=r"wrap it in a Sampler.*mouse_position"):
        MouseDataSource().read()
    with pytest.raises(SourceError, match="not started"):
        KeyboardDataSource(keys=["a"])(0.0)


# ---------------------------------------------------------------------- spec source types
def test_spec_params_are_checked_without_touching_a_device(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    problems, names = check_source_params({"type": "Mouse", "sample_rate": 200,
                                           "buttons": True})
    assert problems == [] and names == ["timestamp", "mouse_position", "mouse_buttons"]
    problems, names = check_source_params({"type": "Keyboard", "keys": ["enter", "shift"],
                                           "name": "keys"})
    assert problems == [] and names == ["timestamp", "keys"]
    problems, _ = check_source_params({"type": "Keyboard", "keys": ["enter", "entr"],
                                       "sample_rate": -1, "colour": "red"})
    text = "\n".join(problems)
    assert "field 'params.colour': unknown field" in text
    assert "field 'params.keys': item 1: unknown key 'entr'" in text
    assert "field 'params.sample_rate': must be a number > 0" in text
    problems, _ = check_source_params({"type": "Mouse", "buttons": "yes"})
    assert problems == ["field 'params.buttons': must be true or false, got 'yes'"]
    assert "pynput" not in sys.modules or True  # (other tests may have imported it)


def test_preflight_passes_with_a_display(xvfb):
    assert preflight_source({"type": "Mouse", "scroll": True}) is None
    assert preflight_source({"type": "Keyboard", "keys": ["a"]}) is None


# ---------------------------------------------------------------------- the gesture spec
EVENT = re.compile(r"EVENT gestures/events t=([0-9.]+)\s+trigger=gesture\s+class=motion")


def circle_commands(cx: int, cy: int, r: int, steps: int, seconds: float) -> list[str]:
    """One xdotool command line drawing a circle: mousemove, sleep, mousemove..."""
    args: list[str] = []
    for i in range(steps + 1):  # steps faster than the 100 Hz sampling: a smooth speed
        a = 2 * math.pi * i / steps
        args += ["mousemove", str(round(cx + r * math.cos(a))), str(round(cy + r * math.sin(a))),
                 "sleep", f"{seconds / steps:.3f}"]
    return args


@pytest.mark.process
@pytest.mark.timeout(120)
def test_mouse_gesture_spec_gives_an_event_for_an_xdotool_circle(xvfb, tmp_path):
    spec = REPO / "specs" / "mouse-gesture.yaml"
    xvfb.xdotool("mousemove", "--sync", "500", "400")
    lp = LauncherProcess(spec, tmp_path / "run")
    try:
        lp.wait_ready(timeout=60)
        time.sleep(1.0)  # at rest: no event
        still = len(EVENT.findall(lp.output))
        xvfb.xdotool(*circle_commands(500, 400, 100, 200, 1.0), timeout=20)
        deadline = time.monotonic() + 10
        while not EVENT.findall(lp.output) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        events = EVENT.findall(lp.output)
        lp.interrupt()
        assert lp.wait_exit(timeout=30) == 0, lp.output
    finally:
        lp.kill_all()
    assert still == 0, lp.output
    assert len(events) == 1, lp.output


@pytest.mark.process
def test_launch_without_a_display_fails_before_starting_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    out = subprocess.run([sys.executable, "-m", "genki_signals.cli", "launch",
                          str(REPO / "specs" / "mouse-gesture.yaml"), "--run-dir",
                          str(tmp_path / "run")], env=env, text=True, capture_output=True,
                         timeout=60)
    assert out.returncode == 1
    assert "node 'mouse' (Mouse): the mouse needs an X display: DISPLAY is not set" in out.stderr
    assert "nothing was started" in out.stderr
    assert "started node" not in out.stdout and not (tmp_path / "run").exists()


@pytest.mark.process
def test_example_specs_validate_anywhere_without_loading_device_libraries():
    script = textwrap.dedent("""
        import sys
        from genki_signals.launch.spec import load_topology
        for name in ("mouse-gesture", "mic-spectrogram"):
            spec = load_topology(f"specs/{name}.yaml")
            print(name, [n.id for n in spec.nodes])
        assert "pynput" not in sys.modules and "sounddevice" not in sys.modules, "loaded"
    """)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, text=True,
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mouse-gesture ['mouse', 'gestures', 'printer', 'dashboard']" in out.stdout
    for name in ("mouse-gesture", "mic-spectrogram"):
        out = subprocess.run([sys.executable, "-m", "genki_signals.cli", "validate",
                              f"specs/{name}.yaml"], env=env, cwd=REPO, text=True,
                             capture_output=True, timeout=60)
        assert out.returncode == 0 and ": ok" in out.stdout, out.stdout + out.stderr


def test_a_missing_tool_fails_the_test_saying_what_to_install():
    from virtual_devices import require_tool

    with pytest.raises(pytest.fail.Exception, match=r"'genki-no-such-tool' not found: "
                                                    r"apt-get install some-package"):
        require_tool("genki-no-such-tool", "some-package")
