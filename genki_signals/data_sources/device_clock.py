"""DeviceClocked: a source with its own device clock, re-stamped in leader time.

A device source (the Wave ring, an audio card) stamps each sample with the host's arrival time
(``timestamp``, on the default clock: leader time in a topology node) and carries the device's
own stamp (``timestamp_us``, a sample counter). Wrapping it in ``DeviceClocked`` maps the device
stamps to leader time with ``genki_signals.clocksync.device.DeviceClockFit``, so ``timestamp``
no longer carries the transport jitter; the raw device field stays in the frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genki_signals.clocksync.device import DeviceClockFit
from genki_signals.data_sources.base import Source
from genki_signals.frames import TIMESTAMP, Frame

__all__ = ["DeviceClocked"]


class DeviceClocked(Source):
    """A source whose frames carry device stamps, re-stamped in leader time.

    The wrapped source's ``timestamp`` is taken as each sample's host arrival time; its
    ``device_key`` field holds the device stamps (kept in the output frame). The output
    ``timestamp`` is the device stamp mapped by a ``DeviceClockFit`` updated with every read,
    made non-decreasing across reads (a refit moves the mapping by microseconds).
    """

    def __init__(self, source: Source, device_key: str, scale: float = 1e-6,
                 **fit_options: Any) -> None:
        super().__init__(source.clock)
        self.source = source
        self.device_key = device_key
        self.fit = DeviceClockFit(scale, **fit_options)
        self.sample_rate = source.sample_rate
        self.finite = source.finite
        self.stream_names = source.stream_names
        self._last = -math.inf

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        self.source.stop()

    @property
    def is_active(self) -> bool:
        return self.source.is_active

    def read(self) -> Frame:
        frame = self.source.read()
        ts = frame.get(TIMESTAMP)
        if ts is None or len(ts) == 0:
            return frame
        mapped = self.fit.update(frame[self.device_key], ts)
        mapped = np.fmax.accumulate(np.concatenate(([self._last], mapped)))[1:]
        self._last = float(mapped[-1])
        return {**frame, TIMESTAMP: mapped}
