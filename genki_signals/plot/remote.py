"""RemoteBuffer: a DataBuffer filled from a running topology's bus, for plots and notebooks.

::

    buf = RemoteBuffer("demo", topics=["derived/main"])   # a name or a control address
    buf.plot("wave_with_noise")                            # the same live plots
    buf.stats                                              # frames, drops, gaps
    buf.close()                                            # detach; the topology runs on

Attaching asks the launcher's directory (``genki_signals.bus.directory``) where each
topic is published and subscribes to the publishers' *lossy* endpoints: the publisher never
waits for a viewer. The edge policy is lossy too (``drop_oldest`` with a short queue by default,
or ``latest``), with a small ZeroMQ receive queue, so a viewer that falls behind, or is
suspended, loses frames instead of slowing anyone: the loss shows up as ``drops`` (displaced from
the queue) and ``gaps`` (sequence numbers never received) in ``stats``. Detaching closes the
subscriber only; nothing in the topology changes (no node is told, no edge is added to it).

Frames of several topics land in one buffer, each key on its own topic's timeline
(``genki_signals.plot.feed.TopicMux``); event frames are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from genki_signals.buffers import DataBuffer
from genki_signals.errors import GenkiError
from genki_signals.frames import Topic
from genki_signals.plot.feed import TopicMux

log = logging.getLogger(__name__)

DEFAULT_MAXLEN = 10_000
VIEWER_QUEUE = 20  # frames a viewer may queue before the oldest are dropped
VIEWER_RCVHWM = 50  # ZeroMQ's receive queue for a viewer (small: a viewer needs no backlog)


def resolve_topics(directory: dict[str, Any], topics: Iterable[str] | None
                   ) -> dict[str, list[str]]:
    """Publisher endpoint -> topic prefixes to subscribe, for ``topics`` (None: every topic).

    A requested topic may be a full topic (``derived/main``), a prefix (``derived/``) or a node
    id (``derived``). Raises GenkiError naming the topics that exist when one matches nothing.
    """
    known: dict[str, dict[str, Any]] = directory.get("topics", {})
    nodes = {n["id"]: n for n in directory.get("nodes", []) if n.get("endpoint")}
    out: dict[str, list[str]] = {}
    if topics is None:
        for node_id, node in nodes.items():
            out.setdefault(node["endpoint"], []).append(f"{node_id}/")
        if not out:
            raise GenkiError(f"topology '{directory.get('topology')}' publishes no topics")
        return out
    for wanted in topics:
        if wanted in nodes:  # a node id: all of its topics
            out.setdefault(nodes[wanted]["endpoint"], []).append(f"{wanted}/")
            continue
        matches = {t: w for t, w in known.items() if t.startswith(wanted)}
        if not matches:
            raise GenkiError(f"no topic starts with {wanted!r} (topics: "
                             f"{', '.join(sorted(known)) or 'none'})")
        for where in matches.values():
            prefixes = out.setdefault(where["endpoint"], [])
            if wanted not in prefixes:
                prefixes.append(wanted)
    return out


class RemoteBuffer(DataBuffer):
    """A DataBuffer that a background thread fills from a running topology (see module doc).

    ``address``: a topology name or control address. ``topics``: topics, prefixes or node ids
    (None: all). ``policy``: ``drop_oldest`` (queue of ``queue`` frames) or ``latest``.
    Attaches at construction; ``close()`` (or leaving a ``with`` block) detaches.
    ``key`` / ``server_key``: for a topology on another host (a ``tcp://`` address that is not
    loopback): this client's key pair (a ``.key_secret`` file or a key name) and the public key
    of the host at ``address``; see docs/multihost.md. The key needs the ``read`` role.
    """

    def __init__(self, address: str, topics: Iterable[str] | str | None = None, *,
                 maxlen: int | None = DEFAULT_MAXLEN, policy: str = "drop_oldest",
                 queue: int = VIEWER_QUEUE, rcvhwm: int = VIEWER_RCVHWM,
                 timeout: float = 2.0, key: str | None = None,
                 server_key: str | bytes | None = None) -> None:
        super().__init__(maxlen=maxlen)
        if policy not in ("drop_oldest", "latest"):
            raise GenkiError(f"RemoteBuffer: policy must be 'drop_oldest' or 'latest' (a viewer "
                             f"never holds up the topology), got {policy!r}")
        from genki_signals.bus.directory import directory
        from genki_signals.bus.security import publisher_keys, remote_access

        self.address = address
        access = remote_access(key, server_key)
        self.directory = directory(address, timeout=timeout, access=access)
        self.topology = self.directory.get("topology")
        if isinstance(topics, str):
            topics = [topics]
        self.subscriptions = resolve_topics(self.directory, topics)
        public = {n.get("endpoint"): n.get("public_key") for n in self.directory.get("nodes", [])}
        self._keys = {ep: publisher_keys(access, ep, public.get(ep), f"publisher {ep}")
                      for ep in self.subscriptions}
        self.policy, self._queue, self._rcvhwm = policy, int(queue), int(rcvhwm)
        self.mux = TopicMux(self)
        self._stats: dict[str, int] = {"frames": 0, "samples": 0, "drops": 0, "gaps": 0,
                                       "decode_errors": 0, "frame_errors": 0}
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="genki-remote-buffer",
                                        daemon=True)
        self._thread.start()
        self._connected.wait(timeout=timeout)
        if self._error is not None:
            raise GenkiError(f"RemoteBuffer: cannot attach to {address}: {self._error}")

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        from genki_signals.bus.sockets import Subscriber

        try:
            sub = Subscriber()
            for endpoint, prefixes in self.subscriptions.items():
                sub.connect(endpoint, prefixes, policy=self.policy, maxlen=self._queue,
                            rcvhwm=self._rcvhwm, security=self._keys[endpoint])
        except BaseException as exc:  # reported by __init__
            self._error = exc
            self._connected.set()
            return
        self._connected.set()
        try:
            while not self._stop.is_set():
                msg = sub.recv(timeout=0.1)
                self._copy_stats(sub)
                if msg is None or msg.kind != "data":
                    continue
                try:
                    self.mux.extend(Topic.parse(msg.topic), msg.frame)
                except Exception as exc:  # a frame the buffer rejects is counted, not fatal
                    self._stats["frame_errors"] += 1
                    if self._stats["frame_errors"] <= 3:
                        log.warning("RemoteBuffer: skipped a frame of %s: %s", msg.topic, exc)
                self._stats["frames"] = self.mux.frames
                self._stats["samples"] = self.mux.samples
        finally:
            self._copy_stats(sub)
            sub.close()

    def _copy_stats(self, sub: Any) -> None:
        st = sub.stats
        self._stats["drops"] = st.drops
        self._stats["gaps"] = st.gaps
        self._stats["decode_errors"] = st.decode_errors

    # ------------------------------------------------------------------ API
    @property
    def stats(self) -> dict[str, int]:
        """frames and samples received; drops (queue overflow) and gaps (never received)."""
        return dict(self._stats)

    @property
    def attached(self) -> bool:
        return self._thread.is_alive()

    def wait_for(self, keys: Iterable[str] | str, timeout: float = 5.0) -> bool:
        """Wait until every key in ``keys`` has samples; False on timeout."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(k in self and len(self.timestamps(k)) for k in keys):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Detach from the bus (idempotent); the data received stays in the buffer."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    detach = close

    def __enter__(self) -> RemoteBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    def __repr__(self) -> str:
        return (f"RemoteBuffer({self.address!r}, topology={self.topology!r}, len={len(self)}, "
                f"keys={list(self.keys())}, stats={self.stats})")
