"""MouseDataSource: the pointer's position (and optionally its buttons and scroll), via pynput.

Sampled, as in the seed notebook: ``Sampler({'mouse_position': MouseDataSource()},
sample_rate=100)`` reads the position on every tick (pynput's ``mouse.Controller().position``:
one round trip to the display server, so the value is the pointer's position at the tick).
Buttons and scroll are events, not state the display server can be asked for, so with
``buttons=True`` or ``scroll=True`` a pynput listener keeps them up to date and the ticks read
its latest state::

    mouse = MouseDataSource(buttons=True, scroll=True)
    sampler = Sampler(mouse.streams(), sample_rate=100)   # mouse_position, mouse_buttons, ...

Streams: ``mouse_position`` ``(n, 2)`` pixels (x, y from the top-left corner of the screen),
``mouse_buttons`` ``(n, 3)`` 0/1 for left, middle, right, ``mouse_scroll`` ``(n, 2)`` the
scroll steps (dx, dy) accumulated since ``start()`` (a state, so every tick has a value; its
difference is the scrolling), all float64.

pynput is imported by ``start()``, never at import (it connects to the display when imported);
without a display ``start()`` raises a ``SourceError`` saying what is missing. ``stop()``
returns at once: pynput's listener thread on X only exits after one more input event, so it is
told to stop and never joined (it is a daemon thread).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np

from genki_signals.clock import Clock
from genki_signals.data_sources.input_devices import (SampledInput, display_problem,
                                                      import_pynput, start_listener)
from genki_signals.data_sources.registry import UpdateRate
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP
from genki_signals.params import Bool, Field, Float, params

__all__ = ["MouseDataSource", "MouseParams", "POSITION", "BUTTONS", "SCROLL"]

POSITION, BUTTONS, SCROLL = "mouse_position", "mouse_buttons", "mouse_scroll"
BUTTON_NAMES = ("left", "middle", "right")


class MouseDataSource(SampledInput):
    """The pointer position ``(2,)`` when called; ``read_buttons``/``read_scroll`` likewise."""

    stream_hint = POSITION

    def __init__(self, buttons: bool = False, scroll: bool = False,
                 clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.track_buttons = bool(buttons)
        self.track_scroll = bool(scroll)
        self._controller: Any = None
        self._listener: Any = None
        self._buttons = np.zeros(len(BUTTON_NAMES))
        self._scroll = np.zeros(2)

    @property
    def uses_listener(self) -> bool:
        return self.track_buttons or self.track_scroll

    def streams(self) -> dict[str, Callable[[Any], Any]]:
        """The Sampler sources for everything this mouse tracks, by their stream names."""
        out: dict[str, Callable[[Any], Any]] = {POSITION: self}
        if self.track_buttons:
            out[BUTTONS] = self.read_buttons
        if self.track_scroll:
            out[SCROLL] = self.read_scroll
        return out

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect to the display (and start the listener); raises ``SourceError`` if absent."""
        if self._active:
            return
        mouse, _ = import_pynput("MouseDataSource")
        try:
            controller = mouse.Controller()
            _ = controller.position  # fail here, not on the first tick
        except Exception as exc:  # Xlib's connection errors have no common public base
            display = os.environ.get("DISPLAY", "")
            raise SourceError(f"MouseDataSource cannot read the pointer on the display "
                              f"{display!r}: {type(exc).__name__}: {exc}") from exc
        self._controller = controller
        self._buttons = np.zeros(len(BUTTON_NAMES))
        self._scroll = np.zeros(2)
        if self.uses_listener:
            listener = mouse.Listener(on_click=self._on_click, on_scroll=self._on_scroll)
            start_listener(listener, "MouseDataSource")
            self._listener = listener
        self._active = True

    def stop(self) -> None:
        super().stop()
        self._controller = None

    # ------------------------------------------------------------ listener callbacks
    def _on_click(self, x: int, y: int, button: Any, pressed: bool) -> None:
        name = getattr(button, "name", "")
        if name in BUTTON_NAMES:
            state = self._buttons.copy()  # replaced, never mutated: readers see whole states
            state[BUTTON_NAMES.index(name)] = 1.0 if pressed else 0.0
            self._buttons = state

    def _on_scroll(self, x: int, y: int, dx: int, dy: int) -> None:
        self._scroll = self._scroll + (dx, dy)

    # ------------------------------------------------------------ sampling
    def __call__(self, t: float) -> np.ndarray:
        """The pointer position now, ``(2,)`` float64 pixels."""
        controller = self._controller
        if controller is None:
            self._require_started()
        return np.asarray(controller.position, dtype=np.float64)

    def read_buttons(self, t: float) -> np.ndarray:
        """Left, middle, right: 1.0 while held, ``(3,)``."""
        self._require_tracked(self.track_buttons, "buttons")
        return self._buttons

    def read_scroll(self, t: float) -> np.ndarray:
        """Scroll steps (dx, dy) accumulated since ``start()``, ``(2,)``."""
        self._require_tracked(self.track_scroll, "scroll")
        return self._scroll

    def _require_tracked(self, tracked: bool, what: str) -> None:
        if not tracked:
            raise SourceError(f"MouseDataSource({what}=False) does not track {what}")
        self._require_started()

    def __repr__(self) -> str:
        return (f"MouseDataSource(buttons={self.track_buttons}, scroll={self.track_scroll}, "
                f"active={self._active})")


# ------------------------------------------------------------------ spec source type
@params
class MouseParams:
    """A ``Mouse`` source node: the pointer sampled at ``sample_rate``."""

    type: Literal["Mouse"]
    sample_rate: Annotated[Float, Field(gt=0)] = 100.0
    """Samples per second."""
    buttons: Bool = False
    """Also publish ``mouse_buttons`` (left, middle, right: 0/1)."""
    scroll: Bool = False
    """Also publish ``mouse_scroll`` (accumulated scroll steps dx, dy)."""
    update_rate: UpdateRate = 25.0
    """Frames the node publishes per second."""


def mouse_streams(p: MouseParams) -> list[str]:
    return [TIMESTAMP, POSITION, *([BUTTONS] if p.buttons else []),
            *([SCROLL] if p.scroll else [])]


def mouse_samples(p: MouseParams) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-sample shape and dtype of each stream (for the spec checker's dry run)."""
    f8 = np.dtype(np.float64).str
    return {POSITION: ((2,), f8), **({BUTTONS: ((len(BUTTON_NAMES),), f8)} if p.buttons else {}),
            **({SCROLL: ((2,), f8)} if p.scroll else {})}


def build_mouse_source(p: MouseParams) -> Any:
    from genki_signals.data_sources.sampler import Sampler

    return Sampler(MouseDataSource(buttons=p.buttons, scroll=p.scroll).streams(),
                   sample_rate=p.sample_rate)


def mouse_preflight(p: MouseParams) -> str | None:
    return display_problem("the mouse", listener=p.buttons or p.scroll)
