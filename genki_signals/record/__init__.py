"""Record and replay: crash-safe MCAP recordings of bus messages, exports, replay.

* ``Recorder``: writes messages exactly as they crossed the bus (also frames, in-process).
* ``Recording``: a tolerant reader (crashed, truncated or damaged files: counted skips).
* ``load_recording`` / ``load_buffers`` / ``export_csv`` / ``export_npz``: a recording as
  numpy arrays or DataBuffers per topic, no bus needed.
* ``inspect_recording``: topics, durations, rates, gaps.
* Process side: the ``recorder`` and ``replay`` node kinds, ``genki record``, ``genki replay``,
  ``genki inspect``, ``genki export``; in-process: ``System(..., recorder=...)`` and
  ``genki_signals.data_sources.ReplaySource``.

The format is described in ``genki_signals.record.format``; the choice of MCAP in
``docs/recording.md``.
"""

from genki_signals.record.format import RecordingError
from genki_signals.record.reader import ReadReport, RecordedMessage, Recording, open_recording
from genki_signals.record.recorder import Recorder

__all__ = ["Recorder", "Recording", "RecordedMessage", "ReadReport", "RecordingError",
           "open_recording", "load_recording", "load_buffers", "export_csv", "export_npz",
           "inspect_recording"]


def __getattr__(name: str):  # exports and inspect load lazily
    if name in ("load_recording", "load_buffers", "export_csv", "export_npz", "read_frames"):
        from genki_signals.record import export

        return getattr(export, name)
    if name == "inspect_recording":
        from genki_signals.record.inspect import inspect_recording

        return inspect_recording
    raise AttributeError(f"module 'genki_signals.record' has no attribute {name!r}")
