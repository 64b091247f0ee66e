"""A node process's clock: leader time from the start, wired once by the node runner.

``start_node_clock(config)`` is called by the runner before the node's logic starts:

* no clock endpoint (a node run by hand or by a test without a launcher): the default clock
  stays anchored at ``config.clock_origin`` (a test skew still applies);
* this node is the clock leader: it binds the clock endpoint with a ``TimeServer`` answering
  with its own local clock, which *is* leader time;
* any other node: a ``ClockSync`` probes the leader (a blocking warm-up first, so the first
  sample is already stamped in leader time) and the process's default clock follows it.

``active()`` is the process's clock service (for nodes that report their clock in frames).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import zmq

from genki_signals.clock import default_clock
from genki_signals.clocksync.sync import (TEST_CLOCK_ENV, ClockSync, TimeServer, injected_skew,
                                          local_clock)

__all__ = ["NodeClock", "start_node_clock", "active"]

log = logging.getLogger(__name__)

# Steady-state seconds between probe bursts to a leader on this host (an ipc:// endpoint). Both
# ends read the same CLOCK_MONOTONIC, so there is no drift to follow; a burst costs ~3 ms of
# CPU (both ends), which every 2 s (the default, for another host's leader) was ~0.2% of a core
# per node of the idle demo. Injected test clocks (GENKI_TEST_CLOCK) keep the default.
SAME_HOST_INTERVAL = 10.0


class NodeClock(Protocol):
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class LeaderClock:
    """The leader's side: a time server over the node's own local clock."""

    def __init__(self, server: TimeServer) -> None:
        self.server = server

    def uncertainty(self) -> float:
        return 0.0

    def stats(self) -> dict[str, Any]:
        return self.server.stats()

    def close(self) -> None:
        self.server.close()


class LocalClock:
    """No clock service: the launcher's origin anchor only (or no launcher at all)."""

    def uncertainty(self) -> float:
        return float("nan")

    def stats(self) -> dict[str, Any]:
        return {"clock_role": "local"}

    def close(self) -> None:
        pass


_ACTIVE: Any = None


def active() -> Any:
    """The running process's clock service (``ClockSync``, ``LeaderClock``, ``LocalClock``)."""
    return _ACTIVE


def start_node_clock(node_id: str, origin: float, leader: str | None, endpoint: str | None,
                     context: zmq.Context | None = None, warmup_timeout: float = 5.0,
                     leader_security: Any = None, follower_security: Any = None,
                     **sync_options: Any) -> NodeClock:
    """Set up this process's default clock for node ``node_id`` (see the module docstring).

    ``leader_security`` / ``follower_security``: CURVE keys of the time server this node binds
    as the leader / of its connection to the leader, when that is tcp between hosts."""
    global _ACTIVE
    skew = injected_skew(node_id)
    local = local_clock(origin, skew)
    clock = default_clock()
    if skew is not None:
        clock.follow(local)
    if endpoint is None:
        _ACTIVE = LocalClock()
    elif leader == node_id:
        _ACTIVE = LeaderClock(TimeServer(endpoint, local, context,
                                         security=leader_security).start())
    else:
        if endpoint.startswith("ipc://") and not os.environ.get(TEST_CLOCK_ENV):
            sync_options.setdefault("interval", SAME_HOST_INTERVAL)
        sync = ClockSync(endpoint, local, context=context, identity=node_id,
                         security=follower_security, **sync_options)
        if not sync.warm_up(timeout=warmup_timeout):
            log.warning("clock leader '%s' did not answer within %g s: stamping on the local "
                        "clock until it does", leader, warmup_timeout)
        clock.follow(sync.now)
        sync.start()
        _ACTIVE = sync
    return _ACTIVE


def stop_node_clock() -> None:
    global _ACTIVE
    if _ACTIVE is not None:
        _ACTIVE.close()
        _ACTIVE = None
