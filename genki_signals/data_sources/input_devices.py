"""Lazy access to pynput for the mouse and keyboard sources, and the display check they share.

pynput connects to the X server when it is *imported* (on Linux it raises ``ImportError`` when
``DISPLAY`` is unset or unreachable), so nothing in ``genki_signals`` imports it at module
level: ``import_pynput`` is called by a source's ``start()``, and turns every way of failing into
one ``SourceError`` that says what is missing and how to get it.

``display_problem`` is the launcher's preflight for these sources: it connects to the X display
with python-xlib (pynput's own X library) and closes the connection again, without importing
pynput or starting a listener, and says what is wrong, or None.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import time
from types import ModuleType
from typing import Any

from genki_signals.clock import Clock
from genki_signals.data_sources.base import Source
from genki_signals.errors import SourceError
from genki_signals.frames import Frame

__all__ = ["import_pynput", "display_problem", "start_listener", "SampledInput",
           "HARDWARE_EXTRA"]

HARDWARE_EXTRA = "pip install 'genki-signals[hardware]'"
"""How to install the hardware libraries (pynput, sounddevice)."""

_VIRTUAL_DISPLAY_HINT = ("run it in a desktop session, or on a headless machine start a virtual "
                         "display: Xvfb :99 -noreset & export DISPLAY=:99 (apt-get install xvfb)")


def _uses_x() -> bool:
    """pynput's backend on this platform is X11 (Linux and the BSDs; not macOS or Windows)."""
    return not sys.platform.startswith(("darwin", "win32", "cygwin")) \
        and os.environ.get("PYNPUT_BACKEND", "xorg") == "xorg"


def _no_display_message(who: str) -> str:
    wayland = " (WAYLAND_DISPLAY is set, but pynput reads input through X)" \
        if os.environ.get("WAYLAND_DISPLAY") else ""
    return f"{who} needs an X display: DISPLAY is not set{wayland}; {_VIRTUAL_DISPLAY_HINT}"


def import_pynput(who: str) -> tuple[ModuleType, ModuleType]:
    """``(pynput.mouse, pynput.keyboard)``, or a ``SourceError`` naming ``who`` and the cause."""
    if _uses_x() and not os.environ.get("DISPLAY"):
        raise SourceError(_no_display_message(who))
    try:
        mouse = importlib.import_module("pynput.mouse")
        keyboard = importlib.import_module("pynput.keyboard")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("pynput", "Xlib"):
            raise SourceError(f"{who} needs pynput, which is not installed: "
                              f"{HARDWARE_EXTRA}") from exc
        raise
    except ImportError as exc:  # pynput's platform probe: the display is unreachable
        display = os.environ.get("DISPLAY", "")
        raise SourceError(f"{who}: pynput cannot use the display {display!r}: {exc}; "
                          f"{_VIRTUAL_DISPLAY_HINT}") from exc
    return mouse, keyboard


def display_problem(who: str, listener: bool) -> str | None:
    """Why ``who`` could not start here (no display, no pynput, no RECORD), or None.

    ``listener``: the source needs pynput's event listener, which on X requires the RECORD
    extension (without it the listener thread dies and never reports ready).
    """
    if importlib.util.find_spec("pynput") is None:
        return f"{who} needs pynput, which is not installed: {HARDWARE_EXTRA}"
    if not _uses_x():
        return None
    name = os.environ.get("DISPLAY")
    if not name:
        return _no_display_message(who)
    try:
        from Xlib import display as xdisplay
        from Xlib import error as xerror
    except ImportError as exc:
        return f"{who} needs python-xlib (a pynput dependency): {exc}; {HARDWARE_EXTRA}"
    try:
        conn = xdisplay.Display(name)
    except (xerror.DisplayError, OSError) as exc:
        return f"{who} cannot connect to the X display {name!r}: {exc}; {_VIRTUAL_DISPLAY_HINT}"
    try:
        if listener and not conn.has_extension("RECORD"):
            return (f"{who} needs the X RECORD extension for pynput's listener, and the "
                    f"display {name!r} lacks it (Xvfb: do not pass '-extension RECORD')")
    finally:
        conn.close()
    return None


class SampledInput(Source):
    """A device read by a ``Sampler``: called as ``f(t)`` for its value *now*.

    The mouse and keyboard have no sample clock of their own (their state can be read at any
    time), so, as in the seed notebook, a ``Sampler`` calls them on its ticks and starts and
    stops them with itself: ``Sampler({'mouse_position': MouseDataSource()}, sample_rate=100)``.
    ``read()`` is not theirs to answer: it raises, saying so.
    """

    stream_hint = "value"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self._active = False
        self._listener: Any = None  # the pynput listener, when the device uses one

    @property
    def is_active(self) -> bool:
        return self._active

    def stop(self) -> None:
        """Stop at once (the listener is told to stop, never joined; see the module doc)."""
        self._active = False
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()

    def read(self) -> Frame:
        name = type(self).__name__
        raise SourceError(f"{name} is sampled, not read: wrap it in a Sampler, e.g. "
                          f"Sampler({{'{self.stream_hint}': {name}(...)}}, sample_rate=100)")

    def _require_started(self) -> None:
        if not self._active:
            raise SourceError(f"{type(self).__name__} is not started (a Sampler starts it: "
                              f"put the source itself in the Sampler's sources)")


def start_listener(listener: Any, who: str, timeout: float = 5.0) -> None:
    """Start a pynput listener and wait until it is ready, failing after ``timeout``.

    ``listener.wait()`` blocks forever when the listener thread dies before it is ready (on X
    without the RECORD extension), so it runs in a helper thread and the listener's liveness is
    watched here.
    """
    listener.start()
    ready = threading.Event()
    # when the listener dies unready, this helper stays blocked in wait(): a daemon thread,
    # the price of using pynput's public API only
    threading.Thread(target=lambda: (listener.wait(), ready.set()), daemon=True,
                     name=f"genki-{who}-listener-ready").start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.02):
        if not listener.is_alive():
            raise SourceError(f"{who}: pynput's listener stopped before it was ready (on X it "
                              f"needs the RECORD extension; see the log for its error)")
        if time.monotonic() > deadline:
            listener.stop()
            raise SourceError(f"{who}: pynput's listener was not ready after {timeout:g} s")
