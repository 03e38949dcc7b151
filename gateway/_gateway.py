"""The gateway's components, wired together, and the nursery that owns their tasks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import trio

import httpx

from actors import ActorPolicy, Backoff, Pacing, Supervisor, TransportFactory
from ratelimit import PostgresLimiter

from ._accounts import Accounts
from ._auth import Authenticator
from ._config import Config
from ._events import EventBus, EventSink
from ._limits import RateGuard
from .api.directory import OnWhatsAppCache
from ._live import LiveSessions
from ._messaging import Messaging
from ._sessions import Sessions
from ._transports import open_transport_factory
from .cluster import Cluster, open_cluster
from ._clock import now_ms
from .store import Store, open_store
from .webhooks import Dispatcher, H11Client, RetryPolicy

log = logging.getLogger("gateway")


@dataclass
class Gateway:
    config: Config
    store: Store
    auth: Authenticator
    accounts: Accounts
    sessions: Sessions
    bus: EventBus
    live: LiveSessions
    supervisor: Supervisor
    messaging: Messaging
    rates: RateGuard
    on_whatsapp_cache: OnWhatsAppCache
    sink: EventSink
    dispatcher: Dispatcher
    nursery: trio.Nursery
    cluster: Cluster | None = None  # cluster mode (PostgreSQL): this node's leases, routing, nudges


# A webhook claim outlives one attempt (its hard cap) plus the time to record it, with room
# to spare. It is kept short because it is also how long a delivery that was in flight on a
# node that died waits before another node retries it.
_WEBHOOK_LEASE_SLACK = 20.0
_LEAVE_TIMEOUT = 5.0


@asynccontextmanager
async def open_gateway(config: Config, *, transport_factory: TransportFactory | None = None,
                       node_address: str = "") -> AsyncIterator[Gateway]:
    """Open the store, build the components, and run their background tasks.

    The embedded SQLite store is migrated here; a PostgreSQL store is migrated
    by `gateway migrate` (the Procfile's release step). `transport_factory`
    replaces the configured transport (tests use it).

    With PostgreSQL this process is a cluster node: the lease keeper decides
    which sessions run here (instead of restoring them all), writes are
    fenced, rate limits are shared, and `node_address` is where other nodes
    send the requests they route to this one.
    """
    store = await open_store(config.database_url)
    try:
        if config.database_url.startswith("sqlite:"):
            applied = await store.migrate()
            if applied:
                log.info("migrations applied", extra={"fields": {"versions": applied}})
        auth = Authenticator(store, ttl=config.auth_cache_ttl)
        bus = EventBus()
        rates = RateGuard(config, PostgresLimiter(store.query_one) if config.cluster else None)
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(
                timeout=httpx.Timeout(config.media_timeout), follow_redirects=False,
                headers={"User-Agent": "trio-whatsapp-gateway"}))
            sink = EventSink(store, bus)
            # Many sessions often post to one backend: keep as many connections to one origin
            # alive as can be in flight at once, or each burst would reconnect.
            webhook_client = H11Client(timeout=config.webhook_timeout,
                                       max_idle_per_origin=max(16, config.webhook_concurrency),
                                       max_idle=max(256, config.webhook_concurrency))
            messaging = Messaging(config, store, sink, http)
            live = LiveSessions(config, store, sink, rates, messaging)
            if transport_factory is None:
                transport_factory = await stack.enter_async_context(open_transport_factory(config))
            policy = ActorPolicy(reconnect=Backoff(initial=1.0, maximum=config.reconnect_max_delay),
                                 connect_attempts=config.connect_attempts,
                                 pacing=Pacing(min_gap=config.send_min_gap, jitter=config.send_jitter,
                                               typing=config.send_typing))
            if config.database_url.startswith("sqlite:"):
                # One process owns every session: whatever was mid-send when it stopped goes out again.
                requeued = await store.requeue_interrupted(None, now_ms())
                if requeued:
                    log.warning("requeued interrupted sends", extra={"fields": {"count": requeued}})
            async with trio.open_nursery() as nursery, AsyncExitStack() as node:
                dispatcher = await nursery.start(Dispatcher(
                    store, webhook_client, RetryPolicy(max_attempts=config.webhook_max_attempts),
                    allow_private=config.allow_private_urls, max_in_flight=config.webhook_concurrency,
                    per_endpoint=config.webhook_per_endpoint, attempt_timeout=config.webhook_timeout + 5,
                    lease=config.webhook_timeout + 5 + _WEBHOOK_LEASE_SLACK).run)
                sink.attach_dispatcher(dispatcher.wake)
                supervisor = await nursery.start(
                    Supervisor(transport_factory, live, policy=policy, queue=messaging).run)
                live.supervisor = supervisor
                nursery.start_soon(messaging.expire_loop)
                cluster = None
                if config.cluster:
                    # The keeper brings sessions up from its first round: no restore here.
                    cluster = await node.enter_async_context(open_cluster(
                        config.database_url, store, live, sink, address=node_address, ttl=config.lease_ttl,
                        limiter=rates.limiter if isinstance(rates.limiter, PostgresLimiter) else None))
                    live.cluster = cluster
                    messaging.ownership = cluster.keeper
                else:
                    restored = await live.restore()
                    if restored:
                        log.info("sessions restored", extra={"fields": {"count": restored}})
                yield Gateway(
                    config=config, store=store, auth=auth, accounts=Accounts(store),
                    sessions=Sessions(store, auth, live, allow_private_urls=config.allow_private_urls),
                    bus=bus, live=live, supervisor=supervisor, messaging=messaging, rates=rates,
                    on_whatsapp_cache=OnWhatsAppCache(config.on_whatsapp_ttl), sink=sink, dispatcher=dispatcher,
                    nursery=nursery, cluster=cluster)
                with trio.move_on_after(config.shutdown_timeout) as scope:
                    scope.shield = True
                    await supervisor.stop_all()
                if cluster is not None:
                    # Hand the sessions over at once rather than when their leases expire (only once
                    # their actors are stopped: never two live connections for one session).
                    with trio.move_on_after(_LEAVE_TIMEOUT) as scope:
                        scope.shield = True
                        try:
                            await cluster.leave()
                        except Exception:
                            log.exception("could not leave the cluster; leases expire by themselves")
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
