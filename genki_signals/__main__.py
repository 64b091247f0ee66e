"""``python -m genki_signals ...``: the ``genki`` command (e.g. on a remote host's Python)."""

from genki_signals.cli import main

raise SystemExit(main())
