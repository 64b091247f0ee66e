"""Reading spec files (YAML or JSON) with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from genki_signals.errors import GenkiError


class SpecError(GenkiError, ValueError):
    """A spec file cannot be read or is invalid; the message names the file and field."""


def load_spec_file(path: str | Path) -> Any:
    """Parse a ``.yaml``/``.yml``/``.json`` file; syntax errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SpecError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
