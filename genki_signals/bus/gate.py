"""Who may read a lossless endpoint: only the readers the spec declares.

A lossless (``ZMQ_XPUB_NODROP``) socket waits for its slowest subscriber, so any process that
subscribes there and stops reading (a suspended ``genki echo``, a stray script) would stall the
publisher. The launcher therefore gives the run a secret token, handed only to the nodes (in
their config files, mode 0600); a lossless socket is a ZeroMQ PLAIN server whose password is
that token, and a declared lossless reader connects with it. Everyone else is refused at the
handshake (counted in the publisher's ``refused``) and reads the lossy endpoint, where a slow
reader only loses its own messages. PLAIN sends the token in clear: fine on ``ipc://`` and
loopback. Over non-loopback tcp every socket is a CURVE server instead
(``genki_signals.bus.security``): the same handler checks the client's public key against the
socket's allow-list and answers with its role as User-Id; the lossless token is not used there
(a lossless CURVE socket admits the ``control`` role only, which are the topology's own hosts).

ZeroMQ asks a ZAP handler (RFC 27) bound at ``inproc://zeromq.zap.01`` in the socket's context.
``ReaderGate.for_context`` runs one per context in a small thread. Not pyzmq's
``ThreadAuthenticator``: it brings asyncio and ``zmq.asyncio`` into every node process, 0.44 s
of imports measured on this machine, for four message fields.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable

import zmq
import zmq.utils.z85

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
PLAIN_USERNAME = b"genki-reader"


class ReaderGate:
    """The ZAP handler of one context: PLAIN credentials are checked per ZAP domain, CURVE
    client keys against the allow-list of the domain (``allow_curve``); NULL (ipc and loopback
    sockets without security) is allowed as before."""

    _gates: dict[int, ReaderGate] = {}
    _gates_lock = threading.Lock()

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self._tokens: dict[str, tuple[bytes, Callable[[], None] | None]] = {}
        self._curve: dict[str, tuple[dict[bytes, str], Callable[[], None] | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="genki-zap")
        self._thread.start()
        self._ready.wait(5)
        if self._error is not None:
            raise self._error

    @classmethod
    def for_context(cls, context: zmq.Context) -> ReaderGate:
        with cls._gates_lock:
            gate = cls._gates.get(id(context))
            if gate is None or not gate._thread.is_alive():
                gate = cls._gates[id(context)] = cls(context)
            return gate

    def allow(self, domain: str, token: str, on_refused: Callable[[], None] | None = None
              ) -> None:
        """PLAIN clients of sockets with ZAP domain ``domain`` must give ``token``."""
        with self._lock:
            self._tokens[domain] = (token.encode(), on_refused)

    def allow_curve(self, domain: str, keys: dict[bytes, str],
                    on_refused: Callable[[], None] | None = None) -> None:
        """CURVE clients of sockets with ZAP domain ``domain`` must hold a key of ``keys``
        (Z85 public key -> role); the role becomes the connection's User-Id. A domain without
        an entry admits no CURVE client at all."""
        with self._lock:
            self._curve[domain] = (dict(keys), on_refused)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def forget(self, domain: str) -> None:
        """Drop ``domain``; the last one stops the thread (so the context can terminate)."""
        with self._lock:
            self._tokens.pop(domain, None)
            self._curve.pop(domain, None)
            last = not self._tokens and not self._curve
        if last:
            with ReaderGate._gates_lock:
                if ReaderGate._gates.get(id(self.context)) is self:
                    del ReaderGate._gates[id(self.context)]
            self._stop.set()
            self._thread.join(timeout=2)

    def _run(self) -> None:
        try:
            sock = self.context.socket(zmq.REP)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(ZAP_ENDPOINT)
        except BaseException as exc:  # e.g. another ZAP handler in this context
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                if sock.poll(100):
                    sock.send_multipart(self._answer(sock.recv_multipart()))
        finally:
            sock.close(0)

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, _address, _identity, mechanism = frames[:6]
        if mechanism == b"CURVE":
            return self._answer_curve(frames, domain)
        if mechanism != b"PLAIN":
            return [version, request_id, b"200", b"OK", b"", b""]
        creds = frames[6:]
        with self._lock:
            entry = self._tokens.get(domain.decode(errors="replace"))
        if entry is not None and len(creds) == 2 and creds[0] == PLAIN_USERNAME \
                and hmac.compare_digest(creds[1], entry[0]):
            return [version, request_id, b"200", b"OK", creds[0], b""]
        if entry is not None and entry[1] is not None:
            entry[1]()
        return [version, request_id, b"400", b"not a declared lossless reader", b"", b""]

    def _answer_curve(self, frames: list[bytes], domain: bytes) -> list[bytes]:
        version, request_id = frames[0], frames[1]
        with self._lock:
            entry = self._curve.get(domain.decode(errors="replace"))
        role = None
        if entry is not None and len(frames) == 7 and len(frames[6]) == 32:
            role = entry[0].get(zmq.utils.z85.encode(frames[6]))
        if role is not None:
            return [version, request_id, b"200", b"OK", role.encode(), b""]
        if entry is not None and entry[1] is not None:
            entry[1]()
        return [version, request_id, b"400", b"key not on the allow-list", b"", b""]
