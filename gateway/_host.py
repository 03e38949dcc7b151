"""The session actors' host: what an actor reports becomes stored state and gateway events.

`SessionHost` is the `ActorHost` of every actor. A state change is persisted
with its history and its webhook event in one store call, both stamped with
one reading of the clock; transport events become gateway events (received
messages deduplicated, since transports deliver at least once), and receipts
go to the outbound queue. A node that does not own the session (cluster mode:
its lease lapsed) reports nothing more of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from actors import ChatPresence, Connected, MessageReceived, Presence, QRCode, Receipt, SessionState, TransportEvent

from ._clock import Clock
from ._events import Collector, EventRecorder, GatewayEvent, make_event
from ._lru import LruCache
from ._ports import Ownership
from .store import SessionRecord, Store

RECENT_INBOUND: Final = 50_000  # inbound ids remembered for deduplication, across all sessions
DOWN_STATES: Final = (SessionState.DISCONNECTED, SessionState.LOGGED_OUT, SessionState.FAILED)

OnReceipt = Callable[[str, Receipt], Awaitable[None]]


class SessionHost:
    def __init__(self, store: Store, recorder: EventRecorder, ownership: Ownership, *, on_receipt: OnReceipt,
                 clock: Clock) -> None:
        self._store = store
        self._recorder = recorder
        self._ownership = ownership
        self._on_receipt = on_receipt
        self._clock = clock
        self._recent_inbound: LruCache[tuple[str, str], bool] = LruCache(RECENT_INBOUND)

    async def state_changed(self, session_id: str, state: SessionState, reason: str | None) -> None:
        owner, fence = self._ownership.write_fence(session_id)
        if not owner:
            return
        changes: dict[str, Any] = {"status": state, "status_reason": reason}
        if state in (SessionState.LOGGED_OUT, SessionState.FAILED):
            changes["connect_on_start"] = False
        at = self._clock.now_ms()
        collect = Collector(lambda record: state_events(record, reason, at))
        if await self._store.update_session(session_id, changes, at, events=collect, fence=fence) is not None:
            self._recorder.published(collect.events)

    async def transport_event(self, session_id: str, event: TransportEvent) -> None:
        owner, fence = self._ownership.write_fence(session_id)
        if not owner:
            return
        at = self._clock.now_ms()
        if isinstance(event, QRCode):
            await self._recorder.record([make_event("session.qr", session_id, {"qr": event.code}, at=at)], at)
        elif isinstance(event, Connected):
            if event.phone_number:
                record = await self._store.get_session(session_id)
                if record is not None and record.phone_number != event.phone_number:
                    await self._store.update_session(session_id, {"phone_number": event.phone_number}, at,
                                                     fence=fence)
        elif isinstance(event, MessageReceived):
            if not self._recent_inbound.add((session_id, event.message_id), True):
                return  # a repeat is not a new message
            await self._recorder.record([make_event("message.received", session_id, camel(event), at=at)], at)
        elif isinstance(event, Presence | ChatPresence):
            await self._recorder.record([make_event("presence.update", session_id, camel(event), at=at)], at)
        elif isinstance(event, Receipt):
            await self._on_receipt(session_id, event)


def state_events(record: SessionRecord, reason: str | None, at: int) -> list[GatewayEvent]:
    state = record.status
    if state is SessionState.CONNECTED:
        return [make_event("session.connected", record.id, {"status": state.value,
                                                            "phoneNumber": record.phone_number}, at=at)]
    if state in DOWN_STATES:
        return [make_event("session.disconnected", record.id, {"status": state.value, "reason": reason}, at=at)]
    return []


def camel(event: TransportEvent) -> dict[str, Any]:
    data = msgspec.to_builtins(event)
    data.pop("event", None)
    return {_to_camel(k): v for k, v in data.items()}


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
