"""Where a path written in a spec may point: inside the spec's folder, unless the spec allows more.

A spec file is data that may come from someone else (a shared example, a download, a colleague's
repository). Its paths (``model:``, a recorder's or csv sink's ``path:``, a replay's recording)
must not reach files the person running it did not mean to expose: ``../../../../etc/passwd`` or
a symlink to ``~/.ssh`` are refused. ``PathPolicy.check`` applies the rules:

* a relative path resolves against the spec file's folder (``root``);
* the resolved path (symlinks followed, ``..`` removed) must lie inside ``root`` or inside one
  of the folders the spec lists in its top-level ``allow_paths`` (relative to the spec's folder,
  or absolute), or be one of the ``trusted`` files: absolute paths given on the command line
  (``genki replay REC.mcap``, ``--record OUT``), which the user typed and so may be anywhere;
* never under ``/proc``, ``/sys`` or ``/dev`` (virtual files and devices), whatever the spec
  allows, and never a non-regular file: a directory where a file is expected, a device, a fifo,
  a socket;
* a file to read (``must_exist``) must exist; a file to write may not exist yet (its folder is
  checked as the file would be).

A spec built in code without a file (``parse_topology(dict)``) has no folder to stay inside: its
relative paths resolve against the current directory and are not confined (the program that
builds it could open those files itself); the regular-file rules still hold
(``PathPolicy(None)``). See docs/topology-spec.md, "Paths".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PathPolicy", "VIRTUAL_ROOTS"]

VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Never opened from a spec: kernel interfaces and devices, not data files."""


@dataclass(frozen=True)
class PathPolicy:
    """The folders a spec's paths may resolve into (see the module doc)."""

    root: Path | None
    """The spec file's folder; None for a spec without a file (not confined, cwd-relative)."""
    allow: tuple[Path, ...] = ()
    """Further folders (resolved) from the spec's ``allow_paths``."""
    trusted: frozenset[Path] = frozenset()
    """Files (resolved) given on the command line: allowed wherever they are."""

    @classmethod
    def make(cls, root: Path | None, allow: Iterable[str | os.PathLike[str]] = (),
             trusted: Iterable[str | os.PathLike[str]] = ()) -> PathPolicy:
        base = root if root is not None else Path.cwd()
        return cls(root=_real(root) if root is not None else None,
                   allow=tuple(_real(_join(base, a)) for a in allow),
                   trusted=frozenset(_real(Path(t).expanduser()) for t in trusted))

    def resolve(self, value: str | os.PathLike[str], base: str | os.PathLike[str] | None = None
                ) -> Path:
        """``value`` as written, made absolute against ``base`` if given, else the spec's
        folder (or the cwd)."""
        if base is not None:
            return _join(self.resolve(base), value)
        return _join(self.root if self.root is not None else Path.cwd(), value)

    def check(self, value: str | os.PathLike[str], *, must_exist: bool,
              base: str | os.PathLike[str] | None = None) -> tuple[Path, str | None]:
        """The resolved path, and what is wrong with it (None when it may be used).

        ``base``: the folder a relative ``value`` is relative to, when not the spec's (an
        operator's own ``base_dir``; itself relative to the spec's folder)."""
        target = self.resolve(value, base)
        real = _real(target)
        shown = f"'{value}'" + (f" (resolves to {real})" if str(real) != str(value) else "")
        for virtual in VIRTUAL_ROOTS:
            if real == virtual or real.is_relative_to(virtual):
                return real, f"{shown} is under {virtual}: a spec may not name kernel or " \
                             f"device files"
        if self.root is not None and real not in self.trusted and not any(
                real.is_relative_to(folder) for folder in (self.root, *self.allow)):
            allowed = ", ".join(str(f) for f in (self.root, *self.allow))
            return real, (f"{shown} is outside the spec's folder (allowed: {allowed}); list "
                          f"its folder in the spec's top-level 'allow_paths' to allow it")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            return real, (f"{shown} does not exist" if must_exist else None)
        except OSError as exc:
            return real, f"{shown} cannot be read: {exc.strerror or exc}"
        if stat.S_ISDIR(mode):
            return real, f"{shown} is a directory, not a file"
        if not stat.S_ISREG(mode):
            return real, f"{shown} is not a regular file ({_file_type(mode)})"
        return real, None


def _join(base: Path, value: str | os.PathLike[str]) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _real(p: Path) -> Path:
    """``p`` with every symlink followed and ``..`` removed (missing tails kept as written)."""
    return Path(os.path.realpath(p))


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
