"""KeyboardDataSource: one 0/1 channel per named key, via pynput's keyboard listener.

Sampled, as in the seed notebook: ``Sampler({'keyboard': KeyboardDataSource(keys=['enter',
'shift'])}, sample_rate=100)`` gives ``keyboard`` ``(n, 2)`` float64, 1.0 while the key is held.

Key names are pynput's ``Key`` names (``enter``, ``shift``, ``ctrl_r``, ``f5``, ``space``...,
listed in ``KEY_NAMES``) or a single character (``a``, ``1``, ``/``; letters match either
case). ``shift``, ``ctrl``, ``alt`` and ``cmd`` mean either side; ``shift_l``/``shift_r`` and
friends mean one side. Names are checked at construction, without importing pynput, so a spec
is validated anywhere; an unknown name is an error listing the valid ones.

A key already held when ``start()`` runs reads 0 until it is released and pressed again (the
display server reports changes, not state). pynput is imported by ``start()``, never at import;
``stop()`` returns at once and never joins pynput's listener (on X its thread only exits after
one more input event; it is a daemon thread).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from genki_signals.clock import Clock
from genki_signals.data_sources.base import SourceParameterError
from genki_signals.data_sources.input_devices import (SampledInput, display_problem,
                                                      import_pynput, start_listener)
from genki_signals.data_sources.registry import UpdateRate
from genki_signals.errors import SourceError
from genki_signals.frames import TIMESTAMP
from genki_signals.params import Field, Float, Str, invalid, params

__all__ = ["KeyboardDataSource", "KeyboardParams", "KEY_NAMES", "key_name_problem"]

KEY_NAMES = (
    "alt", "alt_l", "alt_r", "alt_gr", "backspace", "caps_lock", "cmd", "cmd_l", "cmd_r",
    "ctrl", "ctrl_l", "ctrl_r", "delete", "down", "end", "enter", "esc",
    *(f"f{i}" for i in range(1, 21)),
    "home", "left", "page_down", "page_up", "right", "shift", "shift_l", "shift_r", "space",
    "tab", "up", "media_play_pause", "media_volume_mute", "media_volume_down",
    "media_volume_up", "media_previous", "media_next", "insert", "menu", "num_lock", "pause",
    "print_screen", "scroll_lock",
)
"""pynput's ``keyboard.Key`` names (the last six do not exist on macOS)."""

SIDES = {"shift": ("shift", "shift_l", "shift_r"), "ctrl": ("ctrl", "ctrl_l", "ctrl_r"),
         "alt": ("alt", "alt_l", "alt_r", "alt_gr"), "cmd": ("cmd", "cmd_l", "cmd_r")}
"""A side-less modifier name means any of these keys."""

STREAM = "keyboard"


def key_name_problem(name: Any) -> str | None:
    """Why ``name`` is not a key name, or None."""
    if isinstance(name, str) and (name in KEY_NAMES or (len(name) == 1 and name.isprintable())):
        return None
    return (f"unknown key {name!r}; valid keys: a single character, or one of "
            f"{', '.join(KEY_NAMES)}")


def _check_keys(keys: Any) -> list[str]:
    if isinstance(keys, str) or not isinstance(keys, Sequence) or not keys:
        return [f"'keys' must be a non-empty list of key names, got {keys!r}"]
    problems = [f"'keys' item {i}: {p}" for i, k in enumerate(keys)
                if (p := key_name_problem(k))]
    seen = [k.lower() if isinstance(k, str) and len(k) == 1 else k for k in keys]
    dup = sorted({str(k) for k in seen if seen.count(k) > 1})
    if dup:
        problems.append(f"'keys' names a key twice: {', '.join(dup)}")
    return problems


class KeyboardDataSource(SampledInput):
    """``(len(keys),)`` 0/1 when called: which of ``keys`` are held now."""

    stream_hint = STREAM

    def __init__(self, keys: Sequence[str], clock: Clock | None = None) -> None:
        super().__init__(clock)
        problems = _check_keys(keys)
        if problems:
            raise SourceParameterError("KeyboardDataSource: " + "; ".join(problems))
        self.keys = list(keys)
        self._targets: list[frozenset[tuple]] = []
        self._held: set[tuple] = set()
        self._state = np.zeros(len(self.keys))
        self._listener: Any = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start pynput's listener; raises ``SourceError`` without a display."""
        if self._active:
            return
        _, keyboard = import_pynput("KeyboardDataSource")
        self._targets = [self._targets_of(keyboard, name) for name in self.keys]
        self._held = set()
        self._state = np.zeros(len(self.keys))
        listener = keyboard.Listener(on_press=self._on_press, on_release=self._on_release)
        start_listener(listener, "KeyboardDataSource")
        self._listener = listener
        self._active = True

    # ------------------------------------------------------------ key identity
    @staticmethod
    def _identity(key: Any) -> tuple:
        """A hashable identity of a pynput key: its Key name, character (lower) or code."""
        if isinstance(key, enum.Enum):  # a pynput Key
            return ("key", key.name)
        char = getattr(key, "char", None)
        if char is not None:
            return ("char", char.lower())
        return ("vk", getattr(key, "vk", None))

    @classmethod
    def _targets_of(cls, keyboard: Any, name: str) -> frozenset[tuple]:
        """Every identity a press of the key called ``name`` can arrive as."""
        if len(name) == 1:
            return frozenset({("char", name.lower())})
        out = set()
        for member_name in SIDES.get(name, (name,)):
            member = getattr(keyboard.Key, member_name, None)
            if member is None:
                raise SourceError(f"KeyboardDataSource: key {member_name!r} does not exist "
                                  f"on this platform")
            out.add(("key", member.name))  # an alias (shift_l on X) gives its canonical name
            if member.value.vk is not None:
                out.add(("vk", member.value.vk))
            if member.value.char is not None:
                out.add(("char", member.value.char.lower()))
        return frozenset(out)

    # ------------------------------------------------------------ listener callbacks
    def _on_press(self, key: Any) -> None:
        self._held.add(self._identity(key))
        self._update()

    def _on_release(self, key: Any) -> None:
        self._held.discard(self._identity(key))
        self._update()

    def _update(self) -> None:
        held = self._held
        # replaced, never mutated: a tick reads one whole state
        self._state = np.array([0.0 if held.isdisjoint(t) else 1.0 for t in self._targets])

    # ------------------------------------------------------------ sampling
    def __call__(self, t: float) -> np.ndarray:
        """1.0 for each key held now, ``(len(keys),)`` float64."""
        if not self._active:
            self._require_started()
        return self._state

    def __repr__(self) -> str:
        return f"KeyboardDataSource(keys={self.keys!r}, active={self._active})"


# ------------------------------------------------------------------ spec source type
def _key_names(keys: tuple[str, ...]) -> tuple[str, ...]:
    problems = [p.replace("'keys' ", "", 1) for p in _check_keys(keys)]
    if problems:
        raise invalid("; ".join(problems))
    return keys


def _stream_name(name: str) -> str:
    from genki_signals.data_sources.registry import STREAM_NAME

    if not STREAM_NAME.match(name) or name == TIMESTAMP:
        raise invalid(f"bad stream name {name!r} (letters, digits, underscore; "
                      f"not '{TIMESTAMP}')")
    return name


@params
class KeyboardParams:
    """A ``Keyboard`` source node: named keys sampled at ``sample_rate``."""

    type: Literal["Keyboard"]
    keys: Annotated[tuple[Str, ...], pydantic.AfterValidator(_key_names), Field(
        description="a non-empty list of key names")]
    """Key names (see ``KEY_NAMES``) or single characters; one 0/1 channel each."""
    sample_rate: Annotated[Float, Field(gt=0)] = 100.0
    """Samples per second."""
    name: Annotated[Str, pydantic.AfterValidator(_stream_name)] = STREAM
    """The stream's name."""
    update_rate: UpdateRate = 25.0
    """Frames the node publishes per second."""


def keyboard_streams(p: KeyboardParams) -> list[str]:
    return [TIMESTAMP, p.name]


def keyboard_samples(p: KeyboardParams) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-sample shape and dtype of the stream (for the spec checker's dry run)."""
    return {p.name: ((len(p.keys),), np.dtype(np.float64).str)}


def build_keyboard_source(p: KeyboardParams) -> Any:
    from genki_signals.data_sources.sampler import Sampler

    return Sampler({p.name: KeyboardDataSource(list(p.keys))}, sample_rate=p.sample_rate)


def keyboard_preflight(p: KeyboardParams) -> str | None:
    return display_problem("the keyboard", listener=True)
