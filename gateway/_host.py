"""The session actors' host: what an actor reports becomes stored state and gateway events.

`SessionHost` is the `ActorHost` of every actor. A state change is persisted
with its history and its webhook event in one store call, both stamped with
one reading of the clock; transport events become gateway events (received
messages deduplicated, since transports deliver at least once), and receipts
go to the outbound queue. Each time a session is connected (again), it follows
the presence of its stored subscriptions anew: WhatsApp forgets them with the
connection. A node that does not own the session (cluster mode: its lease
lapsed) reports nothing more of it. A received image, video, audio, document
or sticker is downloaded first, in the event pump (`_incoming`): its
`message.received` carries the stored file, or why it is not there.

Received messages and actions name their author by phone JID wherever the
gateway can (`_lids`): one that carries both the phone JID and the LID teaches
the pair; one addressed by LID alone (its sender, and a 1:1 chat) is resolved
from what the session learned, else by asking the transport. What cannot be
resolved stays the LID, and the LID is always reported as well (`fromLid`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import msgspec
import trio

from actors import (
    ChatPresence,
    Connected,
    GroupEvent,
    MessageAction,
    MessageReceived,
    NotConnected,
    PollVoted,
    Presence,
    QRCode,
    Receipt,
    SessionState,
    Transport,
    TransportError,
    TransportEvent,
    is_group_jid,
    phone_from_jid,
    user_jid,
)

from ._clock import Clock
from ._event_schemas import (
    SessionConnectedEvent,
    SessionDisconnectedEvent,
    SessionQrEvent,
    action_payload,
    group_payload,
    message_received_payload,
    presence_payload,
)
from ._events import Collector, EventRecorder, GatewayEvent, make_event
from ._incoming import IncomingMedia
from ._lids import LidBook, bare_lid
from ._lru import LruCache
from ._payload import poll_content
from ._ports import Ownership
from .store import SessionRecord, Store

log = logging.getLogger("gateway.host")

RECENT_INBOUND: Final = 50_000  # inbound ids remembered for deduplication, across all sessions
DOWN_STATES: Final = (SessionState.DISCONNECTED, SessionState.LOGGED_OUT, SessionState.FAILED)
LID_LOOKUP_DEADLINE: Final = 10.0  # seconds the event pump waits for WhatsApp to resolve a LID

OnReceipt = Callable[[str, Receipt], Awaitable[None]]
M = TypeVar("M", MessageReceived, MessageAction)


class SessionHost:
    def __init__(self, store: Store, recorder: EventRecorder, ownership: Ownership, *, on_receipt: OnReceipt,
                 clock: Clock, media: IncomingMedia | None = None, lids: LidBook | None = None) -> None:
        self._media = media
        self._lids = lids if lids is not None else LidBook(store, clock)
        self._store = store
        self._recorder = recorder
        self._ownership = ownership
        self._on_receipt = on_receipt
        self._clock = clock
        self._recent_inbound: LruCache[tuple[str, str], bool] = LruCache(RECENT_INBOUND)
        # Sessions that went CONNECTED and whose `session.connected` waits for the transport's Connected
        # event (the actor reports the state first): only that event knows the number of a first pairing.
        self._unannounced: set[str] = set()

    async def state_changed(self, session_id: str, state: SessionState, reason: str | None) -> None:
        owner, fence = self._ownership.write_fence(session_id)
        if not owner:
            return
        if state is SessionState.CONNECTED:
            self._unannounced.add(session_id)
        else:
            self._unannounced.discard(session_id)
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
            qr = payload(SessionQrEvent(qr=event.code))
            await self._recorder.record([make_event("session.qr", session_id, qr, at=at)], at)
        elif isinstance(event, Connected):
            await self._paired_number(session_id, event, at, fence)
        elif isinstance(event, MessageReceived):
            await self._received(session_id, event, None)
        elif isinstance(event, MessageAction):
            await self._action(session_id, event, None)
        elif isinstance(event, GroupEvent):
            name, data = group_payload(event)
            await self._recorder.record([make_event(name, session_id, payload(data), at=at)], at)
        elif isinstance(event, Presence | ChatPresence):
            presence = payload(presence_payload(event))
            await self._recorder.record([make_event("presence.update", session_id, presence, at=at)], at)
        elif isinstance(event, Receipt):
            await self._on_receipt(session_id, event)

    async def message_received(self, session_id: str, event: MessageReceived, transport: Transport) -> None:
        """The actor's hook for received messages: `transport` downloads their media."""
        owner, _ = self._ownership.write_fence(session_id)
        if owner:
            await self._received(session_id, event, transport)

    async def message_action(self, session_id: str, event: MessageAction, transport: Transport) -> None:
        """The actor's hook for reactions, edits, revokes and votes: `transport` resolves a LID."""
        owner, _ = self._ownership.write_fence(session_id)
        if owner:
            await self._action(session_id, event, transport)

    async def _action(self, session_id: str, event: MessageAction, transport: Transport | None) -> None:
        if not self._recent_inbound.add((session_id, event.event_id), True):
            return  # a repeat of the same reaction, edit, revoke or vote
        event = await self._addressed(session_id, event, transport)
        name, data = action_payload(event, poll_options=await self._poll_options(session_id, event))
        at = self._clock.now_ms()
        await self._recorder.record([make_event(name, session_id, payload(data), at=at)], at)

    async def _received(self, session_id: str, event: MessageReceived, transport: Transport | None) -> None:
        if not self._recent_inbound.add((session_id, event.message_id), True):
            return  # a repeat is not a new message
        event = await self._addressed(session_id, event, transport)
        quoted_sender = await self._quoted_sender(session_id, event)
        media = await self._media.fetch(session_id, transport, event) if self._media is not None else None
        received = payload(message_received_payload(event, quoted_sender=quoted_sender, media=media))
        at = self._clock.now_ms()  # after the download: the event is as new as the file
        await self._recorder.record([make_event("message.received", session_id, received, at=at)], at)

    async def _addressed(self, session_id: str, event: M, transport: Transport | None) -> M:
        """The event with its author (and a 1:1 chat) as phone JIDs where they can be, and its LID."""
        by_lid = bare_lid(event.sender)  # WhatsApp named the author by LID alone
        lid = bare_lid(event.sender_lid) or by_lid
        sender = event.sender
        if by_lid is not None:
            sender = await self._resolve(session_id, by_lid, transport) or by_lid
        elif lid is not None:
            await self._lids.learn(session_id, [(lid, sender)])
        else:
            lid = await self._lids.lid_for(session_id, sender)  # known from before (no WhatsApp call)
        chat = event.chat
        chat_lid = bare_lid(chat)
        if chat_lid is not None:  # a 1:1 chat named by LID: the author's, or (sent from another device) the peer's
            chat = sender if chat_lid == lid else await self._resolve(session_id, chat_lid, transport) or chat_lid
        if (sender, chat, lid) == (event.sender, event.chat, event.sender_lid):
            return event
        phone = event.sender_phone if sender == event.sender else phone_from_jid(sender)
        return msgspec.structs.replace(event, sender=sender, sender_phone=phone, sender_lid=lid, chat=chat)

    async def _resolve(self, session_id: str, lid: str, transport: Transport | None) -> str | None:
        """The phone JID of a LID, or None; a transport that fails or is slow leaves it unresolved."""
        with trio.move_on_after(LID_LOOKUP_DEADLINE):
            try:
                return await self._lids.phone_for(session_id, lid, transport)
            except TransportError as exc:
                log.info("LID not resolved", extra={"fields": {"session": session_id, "lid": lid,
                                                                "error": exc.reason}})
        return None

    async def connected(self, session_id: str, transport: Transport) -> None:
        """The actor's after-connect hook: subscribe again to every contact the session follows."""
        owner, _ = self._ownership.write_fence(session_id)
        if not owner:
            return
        jids = await self._store.list_presence_subscriptions(session_id)
        if jids:
            await follow_presence(transport, jids, session_id=session_id)

    async def _paired_number(self, session_id: str, event: Connected, at: int, fence: Any) -> None:
        """Persist the paired number and announce `session.connected` with it, in one store call."""
        announce = session_id in self._unannounced
        self._unannounced.discard(session_id)
        changes: dict[str, Any] = {"phone_number": event.phone_number} if event.phone_number else {}
        if not announce:
            record = await self._store.get_session(session_id)
            if not changes or record is None or record.phone_number == event.phone_number:
                return
        collect = Collector(lambda record: connected_events(record, at)) if announce else None
        if await self._store.update_session(session_id, changes, at, events=collect, fence=fence) is not None \
                and collect is not None:
            self._recorder.published(collect.events)

    async def _poll_options(self, session_id: str, event: MessageAction) -> list[str] | None:
        """A poll's options, to name a vote a transport reported as hashes (neonize): polls this session sent."""
        if not isinstance(event, PollVoted) or not event.option_hashes:
            return None
        record = await self._store.find_message_by_wa_id(session_id, event.poll_id)
        content = poll_content(record.payload) if record is not None else None
        return None if content is None else list(content.options)

    async def _quoted_sender(self, session_id: str, event: MessageReceived) -> str | None:
        """Who wrote the message a 1:1 reply quotes, when the transport did not say: us or the peer."""
        quoted = event.data.get("quoted")
        if not isinstance(quoted, dict) or quoted.get("sender") or event.is_group or is_group_jid(event.chat):
            return None
        quoted_id = quoted.get("message_id")
        if not isinstance(quoted_id, str) or await self._store.find_message_by_wa_id(session_id, quoted_id) is None:
            return event.chat  # not one the gateway sent: the peer's
        record = await self._store.get_session(session_id)
        return user_jid(record.phone_number) if record is not None and record.phone_number else None


def payload(data: msgspec.Struct) -> dict[str, Any]:
    """An event payload Struct as the JSON-ready mapping a `GatewayEvent` carries."""
    built: dict[str, Any] = msgspec.to_builtins(data)
    return built


def connected_events(record: SessionRecord, at: int) -> list[GatewayEvent]:
    return [make_event("session.connected", record.id, payload(SessionConnectedEvent(
        status=SessionState.CONNECTED.value, phone_number=record.phone_number)), at=at)]


def state_events(record: SessionRecord, reason: str | None, at: int) -> list[GatewayEvent]:
    """The event a state change causes; CONNECTED's waits for the transport's Connected (`_paired_number`)."""
    state = record.status
    if state in DOWN_STATES:
        return [make_event("session.disconnected", record.id, payload(SessionDisconnectedEvent(
            status=state.value, reason=reason)), at=at)]
    return []


async def follow_presence(transport: Transport, jids: list[str], *, session_id: str, strict: bool = False) -> None:
    """Become available, then subscribe to each JID's presence: WhatsApp sends presence only to an
    account that is itself available. One refused JID does not stop the others (unless `strict`);
    a lost connection does."""
    await transport.send_presence(True)
    for jid in jids:
        try:
            await transport.subscribe_presence(jid)
        except NotConnected:
            raise
        except TransportError as exc:
            if strict:
                raise
            log.warning("presence subscription refused", extra={"fields": {
                "session": session_id, "jid": jid, "error": exc.reason}})
