"""A node process never outlives its launcher.

Two mechanisms, because each alone has a hole:

* Linux parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)`` through ctypes): the kernel
  sends SIGTERM the moment the parent dies, and the runner's SIGTERM handler stops the node
  cleanly (flush, ``eos``, close). It is set after ``exec``, so a launcher that died between
  ``fork`` and this call is caught by re-checking ``getppid()`` right after setting it. Linux
  sends the signal when the *thread* that forked the child ends, not the process: the launcher
  spawns nodes from the thread that runs it (see ``genki_signals.launch.launcher``).
* A watcher thread polls ``getppid()`` every ``POLL_INTERVAL`` seconds. On another OS (no
  prctl) it sends the SIGTERM itself; everywhere it is the hard deadline: a node that has not
  exited ``EXIT_GRACE`` seconds after its launcher died (a clean stop stuck on a full lossless
  reader, a logic blocked in a call) is ended with ``os._exit``.

So a node notices its launcher's death at once (Linux) or within ``POLL_INTERVAL``, and is gone
within ``POLL_INTERVAL + EXIT_GRACE`` (< 2 s) whatever it was doing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

LAUNCHER_PID_ENV = "GENKI_LAUNCHER_PID"  # the launcher tells its nodes its pid here
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_INTERVAL = 0.25
EXIT_GRACE = 1.2
ORPHAN_EXIT_CODE = 3  # nobody reads it (the parent is gone); says "orphaned" in a core dump


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (thread) dies; False if the
    platform has no prctl."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its launcher) is gone.

    Call once, early, from the main thread, before the runner installs its signal handlers:
    when the parent has already gone the process exits here at once.
    """
    has_signal = set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent_pid:  # died before the signal was armed
        os._exit(ORPHAN_EXIT_CODE)
    threading.Thread(target=_watch, args=(parent_pid, not has_signal), daemon=True,
                     name="genki-parent-watch").start()


def _watch(parent_pid: int, send_signal: bool) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_INTERVAL)
    if send_signal:
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's clean stop
    time.sleep(EXIT_GRACE)
    os._exit(ORPHAN_EXIT_CODE)
