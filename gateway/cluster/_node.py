"""This process as a node of the cluster: its identity and the tasks that make it one."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from functools import partial
from typing import Final

import httpx
import msgspec
import trio

from ratelimit import PostgresLimiter

from .._events import EventBus
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
    """This node's cluster parts, built complete by `create` and run by `run` (in the gateway's nursery)."""

    node_id: str
    address: str
    token: str
    keeper: LeaseKeeper
    router: Router
    notifier: Notifier
    relay: EventRelay
    limiter: PostgresLimiter | None = None

    @classmethod
    def create(cls, url: str, store: Store, bus: EventBus, http: httpx.AsyncClient, *, address: str, ttl: float,
               limiter: PostgresLimiter | None = None) -> Cluster:
        """`address` is the base URL other nodes reach this one at ('' when it cannot be reached:
        routed requests to it then fail with 503); `http` is the client for those routed requests."""
        node_id = new_node_id()
        token = secrets.token_urlsafe(24)
        # The keeper and the notifier tell each other about released sessions.
        notifier = Notifier(url, store, node_id=node_id, on_queue=lambda sids: keeper.nudge_held(sids),
                            on_released=lambda: keeper.poke())
        keeper = LeaseKeeper(store, node_id=node_id, ttl=ttl, on_released=notifier.released_nowait,
                             on_round=lambda: relay.announce_all())  # after each round, the relay re-announces
        relay = EventRelay(node_id, notifier, bus, interval=keeper.interval)
        return cls(node_id=node_id, address=address, token=token, keeper=keeper,
                   router=Router(store, keeper, http, token=token), notifier=notifier, relay=relay, limiter=limiter)

    async def run(self, sessions: LeaseHost, *, task_status: trio.TaskStatus[Cluster] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Be a node until cancelled: nudges, leases (driving `sessions`), and the rate-bucket sweep."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.notifier.run)
            await nursery.start(partial(self.keeper.run, sessions, address=self.address, token=self.token,
                                        host=socket.gethostname(), pid=os.getpid()))
            if self.limiter is not None:
                nursery.start_soon(_sweep_forever, self.limiter)
            task_status.started(self)

    async def leave(self) -> None:
        """Graceful exit, once the actors are stopped: release every lease and tell the others now."""
        await self.keeper.leave()
        await self.notifier.announce_released()

    def statistics(self) -> ClusterStatistics:
        return ClusterStatistics(keeper=self.keeper.statistics(), proxied=self.router.proxied,
                                 proxy_failures=self.router.proxy_failures,
                                 notifications_sent=self.notifier.sent, notifications_received=self.notifier.received,
                                 events_relayed=self.relay.relayed, events_received=self.relay.received)


def proxy_client() -> httpx.AsyncClient:
    """The HTTP client a node routes requests to other nodes with (the caller closes it)."""
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=32),
                             timeout=PROXY_TIMEOUT, follow_redirects=False, trust_env=False)


async def _sweep_forever(limiter: PostgresLimiter) -> None:
    while True:
        await trio.sleep(SWEEP_INTERVAL)
        try:
            await limiter.sweep()
        except Exception:
            log.exception("rate bucket sweep failed")
