"""Frames on the wire: the codec, pub/sub sockets with queue policies, endpoints, counters.

See ``codec`` for the wire format and ``sockets`` for the lossy/lossless design.
"""

from genki_signals.bus.codec import (
    ALLOWED_DTYPES,
    DEFAULT_MAX_BYTES,
    INLINE_MAX_BYTES,
    KINDS,
    VERSION,
    DecodeError,
    EncodeError,
    Message,
    decode,
    encode,
    encode_eos,
)
from genki_signals.bus.endpoints import (
    EndpointError,
    check_bind_endpoint,
    free_tcp_endpoint,
    ipc_endpoint,
)
from genki_signals.bus.sockets import POLICIES, BusError, BusStalledError, Publisher, Subscriber
from genki_signals.bus.stats import BusStats, UpstreamStats

__all__ = [
    "ALLOWED_DTYPES",
    "DEFAULT_MAX_BYTES",
    "INLINE_MAX_BYTES",
    "KINDS",
    "POLICIES",
    "VERSION",
    "BusError",
    "BusStalledError",
    "BusStats",
    "DecodeError",
    "EncodeError",
    "EndpointError",
    "Message",
    "Publisher",
    "Subscriber",
    "UpstreamStats",
    "check_bind_endpoint",
    "decode",
    "encode",
    "encode_eos",
    "free_tcp_endpoint",
    "ipc_endpoint",
]
