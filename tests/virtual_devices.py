"""Virtual input devices for the source tests: an X display, a microphone file, a PulseAudio sink.

Recipes from ../shared/hardware/testing-recipes.md (sections 1 and 2), with their gotchas:

* ``Xvfb`` runs with ``-displayfd`` (it picks a free display itself) and ``-noreset`` (without
  it the server resets whenever the last client leaves, and the pointer jumps back to the
  centre between two ``xdotool`` calls). ``xdotool`` moves the pointer and presses keys through
  XTEST; pynput's listener sees them through RECORD.
* ``alsa_virtual_mic`` writes an ALSA config (``$XDG_CONFIG_HOME/alsa/asoundrc``) whose
  ``virtmic`` device reads a raw file through the ``file`` plugin: sample-exact, not real time.
  The file's format and rate must equal the stream's (``plug`` conversion loses data in
  callback mode), and PortAudio reads the config only when it initialises.
* ``PulseNullSink`` runs a private ``pulseaudio`` with a null sink fed by ``pacat``; its monitor
  is a real-time microphone (ALSA's ``pulse`` device with ``PULSE_SOURCE``).

A missing tool is a test failure that says what to install, never a skip. Every process is
stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

INSTALL_HINT = "apt-get install {package} (or run tools/install-test-deps.sh as root)"


def require_tool(tool: str, package: str) -> str:
    """The tool's path, or fail the test saying which Debian package provides it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"'{tool}' not found: " + INSTALL_HINT.format(package=package),
                    pytrace=False)
    return path


def require_sounddevice():
    """sounddevice with PortAudio loaded, or fail saying what to install."""
    try:
        import sounddevice
    except ModuleNotFoundError:
        pytest.fail("sounddevice is not installed: pip install -e '.[test]'", pytrace=False)
    except OSError as exc:
        pytest.fail(f"PortAudio cannot be loaded ({exc}): "
                    + INSTALL_HINT.format(package="libportaudio2"), pytrace=False)
    return sounddevice


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Terminate one process by its PID, kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# ------------------------------------------------------------------ X display
class Xvfb:
    """A private X display. ``display`` is ``":N"``; ``stop()`` ends it by PID."""

    def __init__(self, size: str = "1280x800x24", extra: tuple[str, ...] = ()) -> None:
        require_tool("Xvfb", "xvfb")
        require_tool("xdotool", "xdotool")
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp",
             "-noreset", *extra], pass_fds=(w,), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        os.close(w)
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() else ""
            stop_process(self.proc)
            pytest.fail(f"Xvfb did not start: {err}", pytrace=False)
        self.display = f":{number}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display}

    def xdotool(self, *args: str, timeout: float = 10.0) -> None:
        subprocess.run(["xdotool", *args], check=True, timeout=timeout, env=self.env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def nudge(self) -> None:
        """One key and one pointer event: lets stopped pynput listener threads exit (pynput
        on X only notices its stop at the next recorded event)."""
        self.xdotool("key", "shift", "mousemove_relative", "1", "0")

    def stop(self) -> None:
        stop_process(self.proc)


# ------------------------------------------------------------------ ALSA file microphone
ASOUNDRC = """\
pcm.virtmic_raw {{
    type file
    slave.pcm "virtmic_null"
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.virtmic_null {{ type null }}
pcm.virtmic {{
    type plug
    slave {{
        pcm "virtmic_raw"
        format {fmt}
        rate {rate}
        channels {channels}
    }}
}}
"""

ALSA_FORMATS = {"float32": "FLOAT_LE", "int16": "S16_LE", "int32": "S32_LE"}


def alsa_virtual_mic(directory: Path, signal_: np.ndarray, rate: int, dtype: str = "float32",
                     as_default: bool = False) -> dict[str, str]:
    """Write a raw file and an ALSA config for the ``virtmic`` input device.

    ``signal_`` is ``(n,)`` or ``(n, channels)``; ``as_default``: ALSA's ``default`` device is
    ``virtmic`` too (so ``MicDataSource()`` records it, at its default rate ``rate``). Returns
    the environment (``XDG_CONFIG_HOME``) under which ALSA sees the device; PortAudio must be
    (re)initialised under it.
    """
    data = np.asarray(signal_, dtype=np.dtype(dtype).newbyteorder("<"))
    channels = 1 if data.ndim == 1 else data.shape[1]
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "mic.raw"
    raw.write_bytes(data.tobytes())
    (directory / "alsa").mkdir(exist_ok=True)
    config = ASOUNDRC.format(infile=raw, fmt=ALSA_FORMATS[dtype], rate=rate, channels=channels)
    if as_default:
        config += "pcm.!default virtmic\n"
    (directory / "alsa" / "asoundrc").write_text(config)
    return {"XDG_CONFIG_HOME": str(directory)}


def reinit_portaudio(sd) -> None:
    """Make PortAudio rescan devices (it reads the ALSA config only when it initialises).

    sounddevice's private ``_terminate``/``_initialize`` are what it runs at import; call only
    while no stream is open.
    """
    sd._terminate()
    sd._initialize()


# ------------------------------------------------------------------ PulseAudio null sink
class PulseNullSink:
    """A private PulseAudio server with a null sink ``vsink`` fed by ``pacat`` from a file.

    ``env()`` is the environment under which ALSA's ``pulse`` device records ``vsink.monitor``.
    """

    def __init__(self, directory: Path, signal_: np.ndarray, rate: int) -> None:
        require_tool("pulseaudio", "pulseaudio")
        require_tool("pacat", "pulseaudio-utils")
        if not Path("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so").exists() \
                and not list(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")):
            pytest.fail("ALSA's pulse plugin is missing: "
                        + INSTALL_HINT.format(package="libasound2-plugins"), pytrace=False)
        self.dir = directory
        run = directory / "run"
        home = directory / "home"
        run.mkdir(parents=True, exist_ok=True)
        home.mkdir(exist_ok=True)
        os.chmod(run, 0o700)
        self._env = {**os.environ, "XDG_RUNTIME_DIR": str(run),
                     "PULSE_RUNTIME_PATH": str(run / "pulse"), "HOME": str(home),
                     "PULSE_SOURCE": "vsink.monitor"}
        self._env.pop("PULSE_SERVER", None)
        self.log = open(directory / "pulseaudio.log", "wb")
        self.daemon = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--log-target=stderr",
             "--disallow-exit", "-L", "module-native-protocol-unix auth-anonymous=1",
             "-L", f"module-null-sink sink_name=vsink rate={rate} channels=1"],
            env=self._env, stdout=self.log, stderr=self.log)
        self.pacat: subprocess.Popen | None = None
        socket = run / "pulse" / "native"
        deadline = time.monotonic() + 20
        while not socket.exists():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"pulseaudio did not start: "
                            f"{(directory / 'pulseaudio.log').read_text()[-2000:]}",
                            pytrace=False)
            time.sleep(0.05)
        raw = directory / "tone.raw"
        raw.write_bytes(np.asarray(signal_, dtype="<f4").tobytes())
        self.pacat = subprocess.Popen(
            ["pacat", "--playback", "-d", "vsink", f"--rate={rate}", "--channels=1",
             "--format=float32le", str(raw)], env=self._env, stdout=self.log, stderr=self.log)

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def stop(self) -> None:
        if self.pacat is not None:
            stop_process(self.pacat)
        stop_process(self.daemon)
        self.log.close()


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child Python that imports this checkout's genki_signals."""
    env = {**os.environ, **(extra or {})}
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return env


PYTHON = sys.executable
