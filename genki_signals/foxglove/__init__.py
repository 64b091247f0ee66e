"""Live view in Foxglove: the ``foxglove`` sink and ``genki foxglove ADDRESS [TOPIC...]``.

Both serve a topology's topics over the Foxglove WebSocket protocol with the ``foxglove-sdk``
package (the ``foxglove`` extra), bound to loopback unless told otherwise: open Foxglove, "Open
connection", ``ws://127.0.0.1:8765``. Messages are the JSON form of
``genki_signals.record.foxglove`` (one message per sample, a JSON Schema per channel), so a
live view and an exported recording look the same.
"""

from genki_signals.foxglove.sink import FoxgloveSinkLogic, FoxgloveSinkParams

__all__ = ["FoxgloveSinkLogic", "FoxgloveSinkParams"]
