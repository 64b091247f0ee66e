"""Genki Signals: causal signal processing and ML on live sensor streams.

The same operators run in-process (``System``/``DataBuffer``, the notebook API) and as a
topology of processes exchanging msgpack frames over ZeroMQ (``genki launch``).
"""

__version__ = "0.1.0"
