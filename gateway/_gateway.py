"""The composition root: every component built once, complete, and the nursery that owns their tasks.

One node and a cluster node differ only in the ports they are built with
(`_ports`): `Ownership` (always the owner, or the lease keeper) and
`SessionGate` (ask the actor, or read the persisted state). Nothing is wired
by assignment after construction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from actors import ActorPolicy, Backoff, OnWhatsApp, Pacing, ProfilePicture, Supervisor, TransportFactory, UserInfo
from ratelimit import PostgresLimiter

from ._accounts import Accounts
from ._actions import MessageActions
from ._auth import Authenticator
from ._clock import SYSTEM_CLOCK, Clock
from ._compose import Composer
from ._config import Config
from ._control import LocalGate, SessionControl
from ._events import EventBus, EventRecorder
from ._host import SessionHost
from ._incoming import IncomingMedia
from ._lids import LidBook
from ._limits import RateGuard
from ._logins import Logins
from ._lru import LruCache
from ._mail import Mailer, open_mailer
from ._media_store import FileMediaStore
from ._outbound import Outbound
from ._ports import SINGLE_NODE, Ownership, SessionGate
from ._queue import Queue
from ._send import Messages
from ._sessions import Sessions
from ._transports import open_transport_factory
from .cluster import Cluster, ClusterGate, NodeSessions, proxy_client
from .store import Store, open_store
from .webhooks import Dispatcher, H11Client, RetryPolicy

log = logging.getLogger("gateway")

ON_WHATSAPP_CACHE_MAX = 100_000
PROFILE_CACHE_MAX = 10_000  # per cache (pictures, about texts): (session, JID) → WhatsApp's answer
# A webhook claim outlives one attempt (its hard cap) plus the time to record it, with room
# to spare. It is kept short because it is also how long a delivery that was in flight on a
# node that died waits before another node retries it.
_WEBHOOK_LEASE_SLACK = 20.0
_LEAVE_TIMEOUT = 5.0


@dataclass
class Gateway:
    config: Config
    clock: Clock
    store: Store
    auth: Authenticator
    accounts: Accounts
    logins: Logins
    mailer: Mailer
    sessions: Sessions
    bus: EventBus
    control: SessionControl
    supervisor: Supervisor
    messages: Messages
    queue: Queue  # searching, cancelling and rescheduling queued messages
    actions: MessageActions  # reacting to, editing, revoking and voting on messages in a chat
    outbound: Outbound
    rates: RateGuard
    on_whatsapp_cache: LruCache[tuple[str, str], OnWhatsApp]
    # profile pictures and about texts as WhatsApp last answered them, for GATEWAY_ON_WHATSAPP_TTL
    picture_cache: LruCache[tuple[str, str], ProfilePicture]
    about_cache: LruCache[tuple[str, str], UserInfo]
    lids: LidBook  # the LID ↔ phone pairs each session learned (events, contact lists, lookups)
    recorder: EventRecorder
    dispatcher: Dispatcher
    media: IncomingMedia  # received media: downloads, the media store, the retention purge
    nursery: trio.Nursery
    cluster: Cluster | None = None  # cluster mode (PostgreSQL): this node's leases, routing, nudges


@asynccontextmanager
async def open_gateway(config: Config, *, transport_factory: TransportFactory | None = None,
                       node_address: str = "", clock: Clock = SYSTEM_CLOCK) -> AsyncIterator[Gateway]:
    """Open the store, build the components, and run their background tasks.

    The embedded SQLite store is migrated here; a PostgreSQL store is migrated
    by `gateway migrate` (the Procfile's release step). `transport_factory`
    replaces the configured transport (tests use it).

    With PostgreSQL this process is a cluster node: the lease keeper decides
    which sessions run here (instead of restoring them all), writes are
    fenced, rate limits are shared, and `node_address` is where other nodes
    send the requests they route to this one.
    """
    store = await open_store(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
    try:
        await _prepare_single_node_store(config, store, clock)
        async with AsyncExitStack() as stack:
            if transport_factory is None:
                transport_factory = await stack.enter_async_context(open_transport_factory(config))
            media_http = await stack.enter_async_context(httpx.AsyncClient(
                timeout=httpx.Timeout(config.media_timeout), follow_redirects=False,
                headers={"User-Agent": "trio-whatsapp-gateway"}))
            proxy_http = await stack.enter_async_context(proxy_client()) if config.cluster else None
            async with trio.open_nursery() as nursery:
                gateway = _build(config, store, clock, transport_factory, media_http, proxy_http, nursery,
                                 node_address)
                await _start(gateway)
                yield gateway
                await _stop(gateway)
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


async def _prepare_single_node_store(config: Config, store: Store, clock: Clock) -> None:
    if not config.database_url.startswith("sqlite:"):
        return
    applied = await store.migrate()
    if applied:
        log.info("migrations applied", extra={"fields": {"versions": applied}})
    # One process owns every session: whatever was mid-send when it stopped goes out again.
    requeued = await store.requeue_interrupted(None, clock.now_ms())
    if requeued:
        log.warning("requeued interrupted sends", extra={"fields": {"count": requeued}})


def _build(config: Config, store: Store, clock: Clock, transport_factory: TransportFactory,
           media_http: httpx.AsyncClient, proxy_http: httpx.AsyncClient | None, nursery: trio.Nursery,
           node_address: str) -> Gateway:
    limiter = PostgresLimiter(store.query_one) if config.cluster else None
    rates = RateGuard(config, limiter)
    bus = EventBus()
    cluster = None
    if proxy_http is not None:
        cluster = Cluster.create(config.database_url, store, bus, proxy_http, address=node_address,
                                 ttl=config.lease_ttl, limiter=limiter)
    dispatcher = _dispatcher(config, store)
    recorder = EventRecorder(store, bus, wake=dispatcher.wake, relay=cluster.relay.relay_nowait if cluster else None)
    ownership: Ownership = cluster.keeper if cluster else SINGLE_NODE
    outbound = Outbound(store, recorder, media_http, ownership, allow_private_urls=config.allow_private_urls,
                        media_timeout=config.media_timeout, clock=clock)
    media = IncomingMedia(FileMediaStore(Path(config.data_dir) / "media", store), max_bytes=config.media_max_bytes,
                          timeout=config.media_timeout, retention=config.media_retention, clock=clock)
    lids = LidBook(store, clock)
    host = SessionHost(store, recorder, ownership, on_receipt=outbound.on_receipt, clock=clock, media=media,
                       lids=lids)
    supervisor = Supervisor(transport_factory, host, policy=_actor_policy(config), queue=outbound)
    control = SessionControl(store, supervisor, rates, ownership, data_dir=config.data_dir, qr_wait=config.qr_wait,
                             command_timeout=config.shutdown_timeout, clock=clock,
                             default_proxy_url=config.default_proxy_url())
    gate: SessionGate = (ClusterGate(store, rates, cluster.keeper, cluster.notifier, control) if cluster
                         else LocalGate(control))
    composer = Composer(store, allow_private_urls=config.allow_private_urls,
                        needs_ffmpeg=config.transport == "whatsapp")
    auth = Authenticator(store, ttl=config.auth_cache_ttl, clock=clock)
    return Gateway(
        config=config, clock=clock, store=store, auth=auth, accounts=Accounts(store, clock=clock),
        logins=Logins(store, ttl=config.login_ttl, clock=clock),
        mailer=open_mailer(config.smtp_url, config.smtp_from),
        sessions=Sessions(store, auth, control, rates, allow_private_urls=config.allow_private_urls, clock=clock),
        bus=bus, control=control, supervisor=supervisor, outbound=outbound, rates=rates,
        messages=Messages(store, gate, rates, composer, queue_ttl=config.queue_ttl, clock=clock),
        queue=Queue(store, gate, recorder, queue_ttl=config.queue_ttl, clock=clock),
        actions=MessageActions(store, control, clock=clock),
        on_whatsapp_cache=LruCache(ON_WHATSAPP_CACHE_MAX, ttl=config.on_whatsapp_ttl),
        picture_cache=LruCache(PROFILE_CACHE_MAX, ttl=config.on_whatsapp_ttl),
        about_cache=LruCache(PROFILE_CACHE_MAX, ttl=config.on_whatsapp_ttl), lids=lids, recorder=recorder,
        dispatcher=dispatcher, media=media, nursery=nursery, cluster=cluster)


def _dispatcher(config: Config, store: Store) -> Dispatcher:
    # Many sessions often post to one backend: keep as many connections to one origin
    # alive as can be in flight at once, or each burst would reconnect.
    client = H11Client(timeout=config.webhook_timeout, max_idle_per_origin=max(16, config.webhook_concurrency),
                       max_idle=max(256, config.webhook_concurrency))
    return Dispatcher(store, client, RetryPolicy(max_attempts=config.webhook_max_attempts),
                      allow_private=config.allow_private_urls, max_in_flight=config.webhook_concurrency,
                      per_endpoint=config.webhook_per_endpoint, attempt_timeout=config.webhook_timeout + 5,
                      lease=config.webhook_timeout + 5 + _WEBHOOK_LEASE_SLACK)


def _actor_policy(config: Config) -> ActorPolicy:
    return ActorPolicy(reconnect=Backoff(initial=1.0, maximum=config.reconnect_max_delay),
                       connect_attempts=config.connect_attempts,
                       pacing=Pacing(min_gap=config.send_min_gap, jitter=config.send_jitter,
                                     typing=config.send_typing))


async def _start(gateway: Gateway) -> None:
    nursery = gateway.nursery
    await nursery.start(gateway.dispatcher.run)
    await nursery.start(gateway.supervisor.run)
    nursery.start_soon(gateway.outbound.expire_loop)
    nursery.start_soon(gateway.logins.purge_loop)
    await nursery.start(gateway.media.purge_loop)
    if gateway.cluster is not None:
        # The keeper brings sessions up from its first round: no restore here.
        sessions = NodeSessions(gateway.store, gateway.control, node_id=gateway.cluster.node_id, clock=gateway.clock)
        await nursery.start(gateway.cluster.run, sessions)
        return
    restored = await gateway.control.restore()
    if restored:
        log.info("sessions restored", extra={"fields": {"count": restored}})


async def _stop(gateway: Gateway) -> None:
    with trio.move_on_after(gateway.config.shutdown_timeout) as scope:
        scope.shield = True
        await gateway.supervisor.stop_all()
    if gateway.cluster is None:
        return
    # Hand the sessions over at once rather than when their leases expire (only once
    # their actors are stopped: never two live connections for one session).
    with trio.move_on_after(_LEAVE_TIMEOUT) as scope:
        scope.shield = True
        try:
            await gateway.cluster.leave()
        except Exception:
            log.exception("could not leave the cluster; leases expire by themselves")
