"""Live sessions: the bridge between the API, the supervisor and the store.

`LiveSessions` is the `ActorHost` of every session actor: it persists state
changes and turns transport events into gateway events. It also carries out
the API's connection requests (connect, disconnect, QR, pairing code) and, at
start-up, brings back every session whose owner wanted it online.

In cluster mode it is also the lease keeper's `LeaseHost`: the keeper decides
which sessions run on this node (`resume`, `stop`), and every write an actor
causes carries the session's fence, so a node that lost a session cannot
change it any more. Checks that a single node answers from its actors (may
this session send?) read the persisted state instead, which the owner keeps
current, because the session may live on another node.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio

from actors import (
    ChatPresence, Connect, Connected, Disconnect, MessageReceived, NotConnected, Presence, QRCode, Receipt,
    SessionActor, SessionSpec, SessionState, Supervisor, Transport, TransportError, TransportEvent,
)

from ._config import Config
from ._events import Collector, EventSink, GatewayEvent, make_event
from ._limits import RateGuard
from ._messaging import Messaging
from .errors import ApiError, Conflict, ServiceUnavailable, SessionDisconnected, SessionNotFound, ValidationError
from ._clock import now_ms
from .store import Fence, SessionRecord, Store

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("gateway.live")

_RECENT_INBOUND: Final = 50_000  # inbound ids remembered for deduplication, across all sessions
_DOWN_STATES = (SessionState.DISCONNECTED, SessionState.LOGGED_OUT, SessionState.FAILED)


class QrNotAvailable(ApiError):
    """The session has no QR code now: it is not CONNECTING, or the code has not arrived yet."""

    status, code, default_message = 409, "QR_NOT_AVAILABLE", "No QR code: the session is not waiting for a scan"


class LiveSessions:
    def __init__(self, config: Config, store: Store, sink: EventSink, rates: RateGuard,
                 messaging: Messaging) -> None:
        self._config = config
        self._store = store
        self._sink = sink
        self.rates = rates
        self._messaging = messaging
        self.supervisor: Supervisor | None = None  # set once the supervisor runs
        self.cluster: Cluster | None = None  # set in cluster mode, once this node has joined
        self._recent_inbound: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- ActorHost ---------------------------------------------------------------

    async def state_changed(self, session_id: str, state: SessionState, reason: str | None) -> None:
        owner, fence = self._fence(session_id)
        if not owner:
            return
        changes: dict[str, Any] = {"status": state, "status_reason": reason}
        if state in (SessionState.LOGGED_OUT, SessionState.FAILED):
            changes["connect_on_start"] = False
        collect = Collector(lambda record: _state_events(record, reason))
        if await self._store.update_session(session_id, changes, now_ms(), events=collect, fence=fence) is not None:
            self._sink.published(collect.events)

    async def transport_event(self, session_id: str, event: TransportEvent) -> None:
        owner, fence = self._fence(session_id)
        if not owner:
            return  # a node that lost the session reports nothing more of it
        if isinstance(event, QRCode):
            await self._sink.record([make_event("session.qr", session_id, {"qr": event.code})])
        elif isinstance(event, Connected):
            if event.phone_number:
                record = await self._store.get_session(session_id)
                if record is not None and record.phone_number != event.phone_number:
                    await self._store.update_session(session_id, {"phone_number": event.phone_number}, now_ms(),
                                                     fence=fence)
        elif isinstance(event, MessageReceived):
            if self._seen_before(session_id, event.message_id):
                return  # transports deliver at least once; a repeat is not a new message
            await self._sink.record([make_event("message.received", session_id, _camel(event))])
        elif isinstance(event, Presence | ChatPresence):
            await self._sink.record([make_event("presence.update", session_id, _camel(event))])
        elif isinstance(event, Receipt):
            await self._messaging.on_receipt(session_id, event)

    def _fence(self, session_id: str) -> tuple[bool, Fence | None]:
        """(may this node act for the session, the fence its writes carry). A single node always may,
        unfenced; a cluster node only under a lease that is valid on its own clock."""
        if self.cluster is None:
            return True, None
        fence = self.cluster.keeper.fence(session_id)
        return fence is not None, fence

    def _seen_before(self, session_id: str, message_id: str) -> bool:
        key = (session_id, message_id)
        if key in self._recent_inbound:
            return True
        self._recent_inbound[key] = None
        if len(self._recent_inbound) > _RECENT_INBOUND:
            self._recent_inbound.popitem(last=False)
        return False

    # -- start-up ------------------------------------------------------------------

    async def restore(self) -> int:
        """Start an actor, connecting, for every session that was meant to be online."""
        assert self.supervisor is not None
        count = 0
        for record in await self._store.list_sessions_to_connect():
            try:
                await self.supervisor.start(self.spec(record), state=record.status, resume=True)
                count += 1
            except Exception:
                log.exception("could not restore session", extra={"fields": {"session": record.id}})
        return count

    # -- LeaseHost (cluster mode: the lease keeper decides what runs here) -------------

    async def resume(self, session_id: str) -> bool:
        """Start the session here as its new owner: what its last owner left mid-send is queued again."""
        assert self.supervisor is not None and self.cluster is not None
        record = await self._store.get_session(session_id)
        if record is None or not record.connect_on_start:
            return False
        requeued = await self._store.requeue_interrupted([session_id], now_ms(), node_id=self.cluster.node_id)
        if requeued:
            log.warning("requeued interrupted sends", extra={"fields": {"session": session_id, "count": requeued}})
        await self.supervisor.start(self.spec(record), state=record.status, resume=True)
        return True

    async def stop(self, session_id: str) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop(session_id)

    def idle(self, session_id: str) -> bool:
        actor = self.actor(session_id)
        return actor is None or (not actor.wants_connection and actor.state in _DOWN_STATES)

    def movable(self, session_id: str) -> bool:
        actor = self.actor(session_id)
        return actor is not None and actor.state is SessionState.CONNECTED

    def spec(self, record: SessionRecord) -> SessionSpec:
        self.rates.set_send_rate(record.id, record.send_limit)
        return SessionSpec(session_id=record.id, phone_number=record.phone_number,
                           data_dir=self._config.data_dir)

    # -- API operations --------------------------------------------------------------

    def actor(self, session_id: str) -> SessionActor | None:
        return self.supervisor.get(session_id) if self.supervisor else None

    def require_connected(self, session_id: str) -> Transport:
        """The live transport of a CONNECTED session, else 409 SESSION_DISCONNECTED."""
        actor = self.actor(session_id)
        if actor is None or actor.state is not SessionState.CONNECTED:
            state = actor.state.value if actor else "not running"
            raise SessionDisconnected(f"Session is {state}; connect it first (POST .../connect)")
        return actor.transport

    async def require_sendable(self, session_id: str) -> None:
        """409 SESSION_DISCONNECTED unless the session can send now.

        A single node asks its actor (no I/O). A cluster node reads the persisted
        state, which the owner keeps current wherever it runs, and refreshes the
        session's own send rate from the same record."""
        if self.cluster is None:
            self.require_connected(session_id)
            return
        record = await self._store.get_session(session_id)
        if record is None:
            raise SessionNotFound()
        self.rates.set_send_rate(session_id, record.send_limit)
        if record.status is not SessionState.CONNECTED:
            raise SessionDisconnected(f"Session is {record.status.value}; connect it first (POST .../connect)")

    def nudge(self, session_id: str) -> None:
        """Tell the session's sender that the queue has something new (wherever the session runs)."""
        if self.cluster is not None and not self.cluster.keeper.holds(session_id):
            self.cluster.notifier.publish_nowait(session_id)
            return
        actor = self.actor(session_id)
        if actor is not None:
            actor.nudge()

    async def connect(self, record: SessionRecord) -> tuple[SessionRecord, str | None]:
        supervisor = self._require_supervisor()
        wanted = record.connect_on_start
        if self.cluster is not None:
            # Wanted online before the lease is taken: a lease round must never see this node
            # holding a session that nobody wants and nothing runs, and release it under us.
            if not wanted:
                await self._store.update_session(record.id, {"connect_on_start": True}, now_ms())
                wanted = True
            await self._take(record.id)
        if record.status is not SessionState.CONNECTED or self.actor(record.id) is None:
            if not wanted or self.cluster is None:
                await self._store.update_session(record.id, {"connect_on_start": True}, now_ms())
            actor = await supervisor.start(self.spec(record), state=record.status)
            try:
                supervisor.send_nowait(record.id, Connect())
            except trio.WouldBlock:
                raise ServiceUnavailable("The session is busy; try again shortly",
                                         headers={"Retry-After": "1"}) from None
            with trio.move_on_after(self._config.qr_wait):
                while actor.qr is None and actor.state is not SessionState.CONNECTED:
                    await actor.qr_changed.wait()
        actor = self.actor(record.id)
        return await self._fresh(record.id), actor.qr if actor else None

    async def disconnect(self, record: SessionRecord) -> SessionRecord:
        await self._store.update_session(record.id, {"connect_on_start": False}, now_ms())
        if self.actor(record.id) is not None:
            await self._ask(record.id, Disconnect())
        elif record.status in (SessionState.CONNECTED, SessionState.CONNECTING):
            # Persisted as live but no actor here (e.g. it crashed out): make the record honest.
            await self._store.update_session(record.id, {"status": SessionState.DISCONNECTED}, now_ms())
        return await self._fresh(record.id)

    async def remove(self, record: SessionRecord) -> None:
        """Log the session out of WhatsApp (best effort) and stop its actor, before deletion."""
        supervisor = self._require_supervisor()
        if self.actor(record.id) is not None:
            with trio.move_on_after(self._config.shutdown_timeout):
                try:
                    await supervisor.disconnect(record.id, logout=True)
                except (KeyError, trio.WouldBlock):
                    pass
            await supervisor.stop(record.id)
        if self.cluster is not None:
            await self.cluster.keeper.release(record.id)

    def qr(self, record: SessionRecord) -> str:
        actor = self.actor(record.id)
        if actor is None or actor.state is not SessionState.CONNECTING or actor.qr is None:
            state = actor.state.value if actor else record.status.value
            raise QrNotAvailable(f"Session is {state}; a QR code exists only while it is CONNECTING and "
                                 "unpaired. Call connect first.")
        return actor.qr

    async def pairing_code(self, record: SessionRecord, phone_number: str) -> str:
        actor = self.actor(record.id)
        if actor is None or actor.state is SessionState.CONNECTED or not actor.wants_connection:
            raise Conflict("A pairing code can be requested only while the session is CONNECTING "
                           "and unpaired; call connect first")
        try:
            with trio.fail_after(30):
                return await actor.transport.pair_phone(phone_number)
        except trio.TooSlowError:
            raise ServiceUnavailable("WhatsApp did not answer in time", headers={"Retry-After": "5"}) from None
        except NotConnected as exc:
            raise Conflict(f"Session is not ready for pairing: {exc.reason}") from None
        except TransportError as exc:
            raise ValidationError.at("$.phoneNumber", exc.reason) from None

    async def _ask(self, session_id: str, command: Any) -> None:
        supervisor = self._require_supervisor()
        try:
            supervisor.send_nowait(session_id, command)
        except KeyError:
            return
        except trio.WouldBlock:
            raise ServiceUnavailable("The session is busy; try again shortly", headers={"Retry-After": "1"}) from None
        with trio.move_on_after(self._config.shutdown_timeout):
            await command.done.wait()

    async def _take(self, session_id: str) -> None:
        """Cluster mode: hold the session's lease before running it here (connect)."""
        assert self.cluster is not None
        if self.cluster.keeper.holds(session_id):
            return
        if await self.cluster.keeper.acquire(session_id) is None:
            raise ServiceUnavailable("Another node took this session a moment ago; retry",
                                     headers={"Retry-After": "1"})
        await self._store.requeue_interrupted([session_id], now_ms(), node_id=self.cluster.node_id)

    def _require_supervisor(self) -> Supervisor:
        if self.supervisor is None:
            raise ServiceUnavailable("Sessions are not running yet", headers={"Retry-After": "1"})
        return self.supervisor

    async def _fresh(self, session_id: str) -> SessionRecord:
        record = await self._store.get_session(session_id)
        if record is None:
            raise SessionNotFound()
        return record


def _state_events(record: SessionRecord, reason: str | None) -> list[GatewayEvent]:
    state = record.status
    if state is SessionState.CONNECTED:
        return [make_event("session.connected", record.id, {"status": state.value,
                                                            "phoneNumber": record.phone_number})]
    if state in _DOWN_STATES:
        return [make_event("session.disconnected", record.id, {"status": state.value, "reason": reason})]
    return []


def _camel(event: TransportEvent) -> dict[str, Any]:
    data = msgspec.to_builtins(event)
    data.pop("event", None)
    return {_to_camel(k): v for k, v in data.items()}


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
