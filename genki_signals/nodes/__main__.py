"""Process entry point of a node: ``python -m genki_signals.nodes --config CONFIG.json``.

Wiring only: read the config, build the node's logic, hand both to the runner. The launcher's
fork server (``genki_signals.launch.forkserver``) calls ``main`` in a forked child instead of
starting a new interpreter.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from genki_signals.clock import default_clock
from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import build_logic
from genki_signals.nodes.parent_watch import LAUNCHER_PID_ENV, exit_with_parent
from genki_signals.nodes.runner import NodeRunner


def main(argv: list[str] | None = None, parent_pid: int | None = None) -> int:
    """Run one node; ``parent_pid``: the process whose death ends this one (default: the
    launcher named in ``GENKI_LAUNCHER_PID``; a forked node's parent is the fork server)."""
    parser = argparse.ArgumentParser(prog="python -m genki_signals.nodes")
    parser.add_argument("--config", required=True, help="resolved node config (JSON file)")
    args = parser.parse_args(argv)
    if parent_pid is None and os.environ.get(LAUNCHER_PID_ENV):
        parent_pid = int(os.environ[LAUNCHER_PID_ENV])
    if parent_pid:  # started by a launcher: never outlive it
        exit_with_parent(parent_pid)
    config = NodeConfig.from_file(args.config)
    default_clock().anchor(config.clock_origin)  # every node counts from the launcher's origin
    try:
        runner = NodeRunner(config, build_logic(config))  # checks the logic's input mode
    except Exception as exc:  # a bad node fails loudly, with its id, before any socket opens
        print(f"node '{config.id}': cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return runner.run()


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
