"""Live plots: notebook widgets (bqplot) and a browser dashboard (Bokeh server), fed from a
DataBuffer.

* ``DataBuffer.plot(key, plot_type=...)`` (``genki_signals.plot.notebook``): a live bqplot
  Figure, updated from a background thread at a display rate.
* ``RemoteBuffer(address, topics=...)`` (``genki_signals.plot.remote``): a DataBuffer filled from
  a running topology's bus by a background thread; lossy by design, drops counted.
* ``Dashboard`` (``genki_signals.plot.dashboard``): a Bokeh server page with one panel per
  signal, served by ``genki plot ADDRESS`` and by the ``plot`` sink node.

The four plot types (``PLOT_TYPES``) are computed from the buffer by the same pure-numpy views
(``genki_signals.plot.views``) for both front ends. The plotting libraries are an optional
extra (``pip install 'genki-signals[plot]'``); nothing here imports them until a plot is made.
"""

from __future__ import annotations

from typing import Any

from genki_signals.plot.views import PLOT_TYPES, PanelSpec

__all__ = ["PLOT_TYPES", "PanelSpec", "RemoteBuffer", "Dashboard", "live_plot"]


def __getattr__(name: str) -> Any:  # lazy: bqplot / bokeh / zmq only when used
    if name == "RemoteBuffer":
        from genki_signals.plot.remote import RemoteBuffer

        return RemoteBuffer
    if name == "Dashboard":
        from genki_signals.plot.dashboard import Dashboard

        return Dashboard
    if name == "live_plot":
        from genki_signals.plot.notebook import live_plot

        return live_plot
    raise AttributeError(f"module 'genki_signals.plot' has no attribute {name!r}")


def missing_extra(package: str, exc: ImportError) -> ImportError:
    """The ImportError to raise when the plot extra is not installed."""
    return ImportError(f"live plots need {package}: pip install 'genki-signals[plot]' "
                       f"({exc})")
