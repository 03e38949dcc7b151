"""This process as a node of the cluster: its identity and the tasks that make it one."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import httpx
import msgspec
import trio

from ratelimit import PostgresLimiter

from .._events import EventSink
from ..store import Store
from ._keeper import KeeperStatistics, LeaseHost, LeaseKeeper
from ._notify import Notifier
from ._relay import EventRelay
from ._router import PROXY_TIMEOUT, Router

log = logging.getLogger("gateway.cluster")

SWEEP_INTERVAL: Final = 60.0


def new_node_id() -> str:
    """Readable in logs and in `gateway nodes`: host, pid, and a random tail (pids are reused)."""
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{secrets.token_hex(3)}"


class ClusterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    keeper: KeeperStatistics
    proxied: int
    proxy_failures: int
    notifications_sent: int
    notifications_received: int
    events_relayed: int
    events_received: int


@dataclass
class Cluster:
    node_id: str
    address: str
    keeper: LeaseKeeper
    router: Router
    notifier: Notifier
    relay: EventRelay

    async def leave(self) -> None:
        """Graceful exit, once the actors are stopped: release every lease and tell the others now."""
        await self.keeper.leave()
        await self.notifier.announce_released()

    def statistics(self) -> ClusterStatistics:
        return ClusterStatistics(keeper=self.keeper.statistics(), proxied=self.router.proxied,
                                 proxy_failures=self.router.proxy_failures,
                                 notifications_sent=self.notifier.sent, notifications_received=self.notifier.received,
                                 events_relayed=self.relay.relayed, events_received=self.relay.received)


@asynccontextmanager
async def open_cluster(url: str, store: Store, host: LeaseHost, sink: EventSink, *, address: str, ttl: float,
                       limiter: PostgresLimiter | None = None) -> AsyncIterator[Cluster]:
    """Join the cluster for the duration of the block; leaving is the caller's `cluster.leave()`.

    `host` runs the sessions (the gateway's LiveSessions); `sink` is where its
    events are published (they are relayed to other nodes' stream subscribers);
    `address` is the base URL other nodes reach this one at ('' when it cannot
    be reached: routed requests to it then fail with 503).
    """
    node_id = new_node_id()
    token = secrets.token_urlsafe(24)

    def nudge_held(session_ids: list[str]) -> None:
        for sid in session_ids:
            if keeper.holds(sid):
                host.nudge(sid)

    notifier = Notifier(url, store, node_id=node_id, on_queue=nudge_held, on_released=lambda: keeper.poke())
    keeper = LeaseKeeper(store, host, node_id=node_id, ttl=ttl, on_released=notifier.released_nowait)
    relay = EventRelay(node_id, notifier, sink.bus, interval=keeper.interval)
    keeper.on_round = relay.announce_all
    sink.relay = relay.relay_nowait
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=PROXY_TIMEOUT, follow_redirects=False,
                                 trust_env=False) as http, trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        await nursery.start(lambda task_status: keeper.run(address=address, token=token, host=socket.gethostname(),
                                                           pid=os.getpid(), task_status=task_status))
        if limiter is not None:
            nursery.start_soon(_sweep_forever, limiter)
        yield Cluster(node_id=node_id, address=address, keeper=keeper,
                      router=Router(store, keeper, http, token=token), notifier=notifier, relay=relay)
        nursery.cancel_scope.cancel()


async def _sweep_forever(limiter: PostgresLimiter) -> None:
    while True:
        await trio.sleep(SWEEP_INTERVAL)
        try:
            await limiter.sweep()
        except Exception:
            log.exception("rate bucket sweep failed")
