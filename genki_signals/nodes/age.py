"""Per-frame age: how old the data in a frame is when a node receives or emits it.

Every frame carries the leader-clock acquisition time of the oldest sample it derives from (the
bus header's ``acq``). A node's age of a frame is ``now - acq`` on the same (leader) clock, so it
includes every hop, queue and computation upstream, and the clock's uncertainty. The runner
keeps the ages of what the node received and of what it emitted since its previous heartbeat
and reports their p50/p99 in node stats (``genki top``): along a chain the hop whose ages jump is
the slow one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

WINDOW = 4096  # ages kept per heartbeat (the newest), bounded whatever the frame rate


class AgeWindow:
    """The ages (seconds) recorded since the last ``report``, at most ``size`` of them."""

    __slots__ = ("_buf", "_n", "size")

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self._buf = np.empty(size, dtype=np.float64)
        self._n = 0  # ages recorded since the last report (may exceed size: a ring)

    def add(self, age: float) -> None:
        self._buf[self._n % self.size] = age
        self._n += 1

    def report(self, prefix: str) -> dict[str, Any]:
        """``{prefix}_p50``/``_p99`` in seconds (NaN when nothing was recorded); then empty."""
        n = min(self._n, self.size)
        self._n = 0
        if n == 0:
            return {f"{prefix}_p50": math.nan, f"{prefix}_p99": math.nan}
        p50, p99 = np.percentile(self._buf[:n], (50, 99))
        return {f"{prefix}_p50": float(p50), f"{prefix}_p99": float(p99)}
