"""Presence and chat actions (session key): own availability, following a contact's presence,
typing or recording in a chat, and marking received messages read.

All of them use the live connection (`Live.OWNER`). Presence subscriptions are stored per
session: the session follows them again after every reconnect (`SessionHost.connected`), since
WhatsApp forgets them with the connection, and only sends presence to an account that is itself
available, so subscribing also makes the account available.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import Meta

from actors import GroupNotFound, is_group_jid

from .._host import follow_presence
from .._phone import recipient_at
from .._requests import Person, Request
from ..errors import Conflict, SessionNotConnected, Unauthorized, ValidationError, WhatsAppError
from ._live import whatsapp
from ._routing import Api, Auth, Ctx, Live
from ._schemas import Answer

MAX_PRESENCE_SUBSCRIPTIONS: Final = 1000  # per session; each is subscribed again on every reconnect
MAX_CHAT_PARAM: Final = 64

MessageRef = Annotated[str, Meta(min_length=1, max_length=128, description=(
    "The WhatsApp id of a received message (`data.messageId` of its `message.received` event)."))]


class SetPresence(Request):
    available: bool


class SubscribePresence(Request):
    to: Person


class SetChatPresence(Request):
    state: Annotated[Literal["composing", "recording", "paused"], Meta(description=(
        "`composing` shows typing, `recording` shows a voice note being recorded, `paused` clears either."))]


class MarkRead(Request):
    """`sender` (who wrote the message) is required in a group chat; a one-to-one chat's author is the
    chat itself, and `sender` is ignored there."""

    message_id: MessageRef
    sender: Person | None = None


class PresenceAnswer(Answer):
    available: bool


class Subscribed(Answer):
    jid: str
    subscribed: bool


class Subscriptions(Answer):
    data: list[str]


class ChatPresenceAnswer(Answer):
    chat: str
    state: str


class MarkedRead(Answer):
    chat: str
    message_ids: list[str]
    sender: str


def _chat_param(raw: str) -> str:
    if len(raw) > MAX_CHAT_PARAM:
        raise ValidationError.at("path.chat", f"must be at most {MAX_CHAT_PARAM} characters")
    return recipient_at(raw, "path.chat")


_LIVE_ERRORS = [Unauthorized, SessionNotConnected, WhatsAppError, ValidationError]


def register(api: Api) -> None:
    _register_presence(api)
    _register_chats(api)


def _register_presence(api: Api) -> None:
    @api.route("POST", "/presence", summary="Set own availability", tag="Presence", auth=Auth.SESSION,
               body=SetPresence, answer=PresenceAnswer, errors=_LIVE_ERRORS, live=Live.OWNER)
    async def set_presence(ctx: Ctx) -> PresenceAnswer:
        """Show the account as available (online) or unavailable to the contacts that follow it.
        WhatsApp sends others' presence only while the account is available."""
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        await whatsapp(transport.send_presence(ctx.body.available))
        return PresenceAnswer(available=ctx.body.available)

    @api.route("POST", "/presence/subscribe", summary="Follow a contact's presence", tag="Presence",
               auth=Auth.SESSION, body=SubscribePresence, answer=Subscribed, errors=_LIVE_ERRORS, live=Live.OWNER)
    async def subscribe_presence(ctx: Ctx) -> Subscribed:
        """Subscribe to a contact's presence: `presence.update` events follow whenever it goes online or
        offline, again after every reconnect. Makes the account available first (WhatsApp sends presence
        only to an available account). At most 1000 contacts per session."""
        sid = ctx.session.session_id
        jid = recipient_at(ctx.body.to, "$.to")
        store = ctx.gateway.store
        followed = await store.list_presence_subscriptions(sid)
        if jid not in followed and len(followed) >= MAX_PRESENCE_SUBSCRIPTIONS:
            raise ValidationError.at("$.to", f"this session already follows {MAX_PRESENCE_SUBSCRIPTIONS} contacts")
        transport = ctx.gateway.control.require_connected(sid)
        await whatsapp(follow_presence(transport, [jid], session_id=sid, strict=True))
        await store.add_presence_subscription(sid, jid, ctx.gateway.clock.now_ms())
        return Subscribed(jid=jid, subscribed=True)

    @api.route("GET", "/presence/subscriptions", summary="List followed contacts", tag="Presence",
               auth=Auth.SESSION, answer=Subscriptions, errors=[Unauthorized])
    async def list_subscriptions(ctx: Ctx) -> Subscriptions:
        """The JIDs whose presence this session follows (subscribed again after every reconnect)."""
        return Subscriptions(data=await ctx.gateway.store.list_presence_subscriptions(ctx.session.session_id))


def _register_chats(api: Api) -> None:
    in_chat = [*_LIVE_ERRORS, GroupNotFound]

    @api.route("POST", "/chats/<chat>/presence", summary="Typing or recording in a chat", tag="Presence",
               auth=Auth.SESSION, body=SetChatPresence, answer=ChatPresenceAnswer, errors=in_chat, live=Live.OWNER)
    async def chat_presence(ctx: Ctx, chat: str) -> ChatPresenceAnswer:
        """Show typing (`composing`), recording a voice note (`recording`), or neither (`paused`) in a chat:
        a phone number, user JID or group JID. WhatsApp clears the indicator by itself after a while."""
        jid = _chat_param(chat)
        transport = ctx.gateway.control.require_connected(ctx.session.session_id)
        await whatsapp(transport.send_chat_presence(jid, ctx.body.state))
        return ChatPresenceAnswer(chat=jid, state=ctx.body.state)

    @api.route("POST", "/chats/<chat>/read", summary="Mark messages read", tag="Presence", auth=Auth.SESSION,
               body=MarkRead, answer=MarkedRead, errors=[*in_chat, Conflict], live=Live.OWNER)
    async def mark_read(ctx: Ctx, chat: str) -> MarkedRead:
        """Send a read receipt for a received message (blue ticks for its sender). `messageId` is the
        WhatsApp id from `message.received`; in a group chat, `sender` names who wrote it."""
        jid = _chat_param(chat)
        sid = ctx.session.session_id
        ref = ctx.body.message_id
        store = ctx.gateway.store
        ours = await store.get_message(ref)
        if (ours is not None and ours.session_id == sid) or await store.find_message_by_wa_id(sid, ref) is not None:
            # 409, not 422: the id is well formed and names a real message, just one going the other way
            raise Conflict("That is a message this session sent; only received messages can be marked read "
                           "(use the WhatsApp id from message.received)")
        if is_group_jid(jid):
            if ctx.body.sender is None:
                raise ValidationError.at("$.sender", "is required in a group chat: who wrote the message")
            sender = recipient_at(ctx.body.sender, "$.sender")
        else:
            sender = jid  # in a one-to-one chat the author is the chat: `sender` is not needed
        transport = ctx.gateway.control.require_connected(sid)
        await whatsapp(transport.mark_read(jid, [ref], sender))
        return MarkedRead(chat=jid, message_ids=[ref], sender=sender)
