"""Sending messages: validate, persist, pace, track.

`accept` turns a `SendMessage` into a durable queued row (before the 202),
then nudges the session's actor. The actor's sender calls back into this
class as its `OutboundQueue`: claim, prepare (media download), sent, failed.
Receipts move statuses forward (delivered, read) and every change emits an
event.

In cluster mode (`ownership` set) every write the sender causes carries the
session's fence, and a node whose lease is not valid on its own clock makes
none: it claims nothing, records nothing, and `wait_owned` holds the send.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import httpx
import msgspec
import trio

from actors import (
    Claimed, ContactContent, Content, LocationContent, MediaContent, OutboundMessage, PollContent, PrepareFailed,
    Receipt, ReplyTo, SendResult, TextContent, is_group_jid, user_jid,
)

from ._auth import SessionPrincipal
from ._config import Config
from ._events import Collector, EventSink, GatewayEvent, make_event
from ._media import MediaError, check_size, decode_base64, fetch, resolve_mimetype
from ._netguard import UnsafeURL, check_url_on_save
from ._phone import InvalidPhoneNumber, normalize_phone
from ._security import new_id
from .api._message_schemas import CONTENT_KEYS, MessageAccepted, SendMessage
from .errors import ApiError, ErrorDetail, ResourceNotFound, ValidationError
from ._clock import now_ms
from .store import Fence, MessageRecord, MessageStatus, StatusEntry, Store, iso_ms

if TYPE_CHECKING:
    from .cluster import LeaseKeeper

log = logging.getLogger("gateway.messaging")

MAX_SCHEDULE_AHEAD_MS: Final = 30 * 24 * 3600 * 1000
_S = MessageStatus
_RECEIPT_STATUS: Final = {"delivered": _S.DELIVERED, "read": _S.READ, "played": _S.READ}
_ADVANCE_FROM: Final = {
    _S.DELIVERED: frozenset({_S.SENT}),
    _S.READ: frozenset({_S.SENT, _S.DELIVERED}),
}
_NEEDS_FFMPEG: Final = {"video": ("ffmpeg", "ffprobe"), "audio": ("ffprobe",)}


class MediaToolMissingError(ApiError):
    status, code, default_message = 422, "MEDIA_TOOL_MISSING", "This media type needs ffmpeg on the gateway host"


class IdempotencyKeyReused(ApiError):
    status, code, default_message = 422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key was used with another body"


class MediaRef(msgspec.Struct, frozen=True, kw_only=True):
    """Media still to be downloaded when the message is sent."""

    kind: str
    url: str
    mimetype: str | None = None
    caption: str | None = None
    filename: str | None = None
    ptt: bool = False


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """What is persisted for the sender: everything needed to build the message later."""

    to: str
    content: Content | None = None
    media_url: MediaRef | None = None
    reply_to: ReplyTo | None = None
    view_once: bool = False
    mentions: list[str] = []


_pack = msgspec.msgpack.Encoder()
_unpack = msgspec.msgpack.Decoder(Payload)


class Prepared(msgspec.Struct, frozen=True):
    to_jid: str
    type: str
    modifiers: list[str]
    payload: bytes
    send_at: int | None


class Messaging:
    def __init__(self, config: Config, store: Store, sink: EventSink, http: httpx.AsyncClient) -> None:
        self._config = config
        self._store = store
        self._sink = sink
        self._http = http
        self.ownership: LeaseKeeper | None = None  # cluster mode: whose leases fence the queue's writes
        # session -> the row it claimed last, kept from the claim to `prepare` to save a read (one per
        # session at most: a session claims one message at a time).
        self._claimed: dict[str, MessageRecord] = {}

    def _fence(self, session_id: str) -> tuple[bool, Fence | None]:
        """(may this node write as the session's owner, with which fence); always, unfenced, on a single node."""
        if self.ownership is None:
            return True, None
        fence = self.ownership.fence(session_id)
        return fence is not None, fence

    # -- validation --------------------------------------------------------------

    async def validate(self, req: SendMessage, session_id: str, *, path: str = "$") -> Prepared:
        """Validate beyond the schema and build the durable payload. Raises ValidationError."""
        present = [k for k in CONTENT_KEYS if getattr(req, k) is not None]
        if len(present) != 1:
            what = "none" if not present else " and ".join(present)
            raise ValidationError.at(path, f"exactly one of {', '.join(CONTENT_KEYS)} is required; got {what}")
        kind = present[0]
        to = recipient_jid(req.to, f"{path}.to")
        content, media_url = await self._content(req, kind, f"{path}.{kind}")
        modifiers: list[str] = []
        if req.view_once:
            if kind not in ("image", "video", "audio"):
                raise ValidationError.at(f"{path}.viewOnce", "viewOnce applies to image, video or audio only")
            modifiers.append("viewOnce")
        mentions = [recipient_jid(m, f"{path}.mentions[{i}]") for i, m in enumerate(req.mentions)]
        if any(is_group_jid(m) for m in mentions):
            raise ValidationError.at(f"{path}.mentions", "mentions must be people, not groups")
        if mentions:
            modifiers.append("mentions")
        reply_to = None
        if req.reply_to is not None:
            reply_to = await self._reply_to(session_id, req.reply_to, to, f"{path}.replyTo")
            modifiers.insert(0, "quoted")
        send_at = parse_send_at(req.send_at, f"{path}.sendAt")
        payload = Payload(to=to, content=content, media_url=media_url, reply_to=reply_to,
                          view_once=req.view_once, mentions=list(dict.fromkeys(mentions)))
        return Prepared(to, kind, modifiers, _pack.encode(payload), send_at)

    async def _content(self, req: SendMessage, kind: str, path: str) -> tuple[Content | None, MediaRef | None]:
        if kind == "text":
            return TextContent(body=req.text or ""), None
        if kind == "location":
            loc = req.location
            return LocationContent(latitude=loc.latitude, longitude=loc.longitude, name=loc.name,
                                   address=loc.address), None
        if kind == "contact":
            try:
                phone = normalize_phone(req.contact.phone_number)
            except InvalidPhoneNumber as exc:
                raise ValidationError.at(f"{path}.phoneNumber", str(exc)) from None
            return ContactContent(full_name=req.contact.full_name, phone_number=phone), None
        if kind == "poll":
            poll = req.poll
            if len({o.strip().casefold() for o in poll.options}) != len(poll.options):
                raise ValidationError.at(f"{path}.options", "poll options must be distinct")
            if poll.selectable_count > len(poll.options):
                raise ValidationError.at(f"{path}.selectableCount",
                                         f"must be at most the number of options ({len(poll.options)})")
            return PollContent(question=poll.question, options=list(poll.options),
                               selectable_count=poll.selectable_count), None
        return await self._media(getattr(req, kind), kind, path)

    async def _media(self, media: Any, kind: str, path: str) -> tuple[Content | None, MediaRef | None]:
        if (media.url is None) == (media.data is None):
            raise ValidationError.at(path, "give exactly one of url or data")
        if self._config.transport == "whatsapp":
            missing = [t for t in _NEEDS_FFMPEG.get(kind, ()) if shutil.which(t) is None]
            if missing:
                raise MediaToolMissingError(
                    f"{kind} messages need {' and '.join(missing)} on the gateway host; install ffmpeg "
                    "(e.g. apt-get install ffmpeg) or send the file as a document",
                    details=[ErrorDetail(message="ffmpeg missing", path=path)])
        caption = getattr(media, "caption", None)
        filename = getattr(media, "filename", None)
        ptt = getattr(media, "ptt", False)
        if media.url is not None:
            try:
                await check_url_on_save(media.url, allow_private=self._config.allow_private_urls)
            except UnsafeURL as exc:
                raise ValidationError.at(f"{path}.url", str(exc)) from None
            return None, MediaRef(kind=kind, url=media.url, mimetype=media.mimetype, caption=caption,
                                  filename=filename, ptt=ptt)
        try:
            data = decode_base64(media.data)
            check_size(kind, len(data))
            mimetype = resolve_mimetype(kind, data, media.mimetype)
        except MediaError as exc:
            raise ValidationError.at(f"{path}.data", str(exc)) from None
        return MediaContent(kind=kind, data=data, mimetype=mimetype, caption=caption, filename=filename,
                            ptt=ptt), None

    async def _reply_to(self, session_id: str, ref: str, chat: str, path: str) -> ReplyTo:
        ours = await self._store.get_message(ref)
        if ours is not None and ours.session_id == session_id:
            if ours.wa_id is None:
                raise ValidationError.at(path, "that message has not been sent yet, so it cannot be quoted")
            return ReplyTo(message_id=ours.wa_id, chat=ours.to_jid, sender=None, text=_quoted_text(ours))
        # A WhatsApp id (e.g. of a received message) in this chat.
        return ReplyTo(message_id=ref, chat=chat, sender=None if is_group_jid(chat) else chat)

    # -- accepting ------------------------------------------------------------------

    def records(self, principal: SessionPrincipal, prepared: list[Prepared]) -> list[MessageRecord]:
        at = now_ms()
        ttl = int(self._config.queue_ttl * 1000)
        return [MessageRecord(
            id=new_id(), session_id=principal.session_id, user_id=principal.user_id, to_jid=p.to_jid,
            type=p.type, modifiers=p.modifiers, payload=p.payload, send_at=p.send_at,
            expires_at=(p.send_at or at) + ttl, created_at=at, updated_at=at) for p in prepared]

    @staticmethod
    def accepted(record: MessageRecord) -> MessageAccepted:
        return MessageAccepted(message_id=record.id, status="queued", to=record.to_jid, type=record.type,
                               modifiers=record.modifiers, send_at=iso_ms(record.send_at))

    async def get(self, principal: SessionPrincipal, message_id: str) -> tuple[MessageRecord, list[StatusEntry]]:
        record = await self._store.get_message(message_id)
        if record is None or record.session_id != principal.session_id:
            raise ResourceNotFound("No message with that id in this session")
        return record, await self._store.get_message_history(message_id)

    # -- OutboundQueue (called by the session's sender) --------------------------------

    async def claim_next(self, session_id: str) -> Claimed | None:
        owner, fence = self._fence(session_id)
        if not owner:
            return None
        record = await self._store.claim_next_message(session_id, now_ms(), fence=fence)
        if record is None:
            return None
        self._claimed[session_id] = record
        return Claimed(record.id, record.to_jid)

    async def wait_owned(self, session_id: str) -> None:
        if self.ownership is not None:
            await self.ownership.wait_owned(session_id)

    async def seconds_until_due(self, session_id: str) -> float | None:
        at = await self._store.next_scheduled_at(session_id)
        return None if at is None else max(0.0, (at - now_ms()) / 1000)

    async def prepare(self, session_id: str, claimed: Claimed) -> OutboundMessage:
        record = self._claimed.pop(session_id, None)
        if record is None or record.id != claimed.message_id:
            record = await self._store.get_message(claimed.message_id)
        if record is None:
            raise PrepareFailed("message vanished")
        payload = _unpack.decode(record.payload)
        content = payload.content
        if payload.media_url is not None:
            ref = payload.media_url
            try:
                data, declared = await fetch(self._http, ref.url, ref.kind,
                                             allow_private=self._config.allow_private_urls,
                                             timeout=self._config.media_timeout)
                mimetype = resolve_mimetype(ref.kind, data, ref.mimetype or declared)
            except MediaError as exc:
                raise PrepareFailed(str(exc)) from None
            content = MediaContent(kind=ref.kind, data=data, mimetype=mimetype, caption=ref.caption,
                                   filename=ref.filename, ptt=ref.ptt)
        assert content is not None
        return OutboundMessage(to=payload.to, content=content, reply_to=payload.reply_to,
                               view_once=payload.view_once, mentions=payload.mentions, id_hint=record.id)

    async def sent(self, session_id: str, claimed: Claimed, result: SendResult) -> None:
        owner, fence = self._fence(session_id)
        if not owner:
            self._unrecorded(session_id, claimed, "sent")
            return
        collect = Collector(_event("message.sent"))
        if await self._store.set_message_status(claimed.message_id, _S.SENT, now_ms(), wa_id=result.message_id,
                                                only_from=frozenset({_S.SENDING}), events=collect, fence=fence):
            self._sink.published(collect.events)

    async def failed(self, session_id: str, claimed: Claimed, reason: str) -> None:
        owner, fence = self._fence(session_id)
        if not owner:
            self._unrecorded(session_id, claimed, "failed")
            return
        collect = Collector(_event("message.status"))
        if await self._store.set_message_status(claimed.message_id, _S.FAILED, now_ms(), reason=reason,
                                                only_from=frozenset({_S.SENDING, _S.QUEUED}), events=collect,
                                                fence=fence):
            self._sink.published(collect.events)

    async def requeue(self, session_id: str, claimed: Claimed) -> None:
        owner, fence = self._fence(session_id)
        if not owner:
            return  # the session's next owner requeues it when it takes over
        await self._store.set_message_status(claimed.message_id, _S.QUEUED, now_ms(),
                                             reason="session not connected; waiting to reconnect",
                                             only_from=frozenset({_S.SENDING}), fence=fence)

    @staticmethod
    def _unrecorded(session_id: str, claimed: Claimed, outcome: str) -> None:
        # The lease ran out during the send: the next owner requeues the message and sends it
        # again. This is the cluster's duplicate window (README, "Cluster mode").
        log.warning("send outcome not recorded: the session's lease ran out during the send", extra={"fields": {
            "session": session_id, "message": claimed.message_id, "outcome": outcome}})

    # -- receipts and housekeeping -----------------------------------------------------

    async def on_receipt(self, session_id: str, receipt: Receipt) -> None:
        status = _RECEIPT_STATUS[receipt.type]
        for wa_id in receipt.message_ids:
            owner, fence = self._fence(session_id)
            if not owner:
                return
            record = await self._store.find_message_by_wa_id(session_id, wa_id)
            if record is None:
                continue
            collect = Collector(_event("message.status"))
            if await self._store.set_message_status(record.id, status, receipt.timestamp_ms or now_ms(),
                                                    only_from=_ADVANCE_FROM[status], events=collect, fence=fence):
                self._sink.published(collect.events)

    async def expire_loop(self, interval: float = 60.0) -> None:
        """Fail queued messages past their TTL, and forget idempotency keys older than 24 h."""
        while True:
            try:
                collect = Collector(_event("message.status"))
                await self._store.expire_messages(now_ms(), events=collect)
                self._sink.published(collect.events)
                await self._store.purge_idempotency(now_ms() - 24 * 3600 * 1000)
            except Exception:
                log.exception("queue housekeeping failed")
            await trio.sleep(interval)



def _event(name: str) -> Callable[[MessageRecord], list[GatewayEvent]]:
    def build(record: MessageRecord) -> list[GatewayEvent]:
        return [make_event(name, record.session_id, {
            "messageId": record.id, "whatsappId": record.wa_id, "to": record.to_jid, "type": record.type,
            "status": record.status.value, "reason": record.status_reason})]

    return build


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def recipient_jid(raw: str, path: str) -> str:
    raw = raw.strip()
    if "@" in raw:
        user, _, server = raw.partition("@")
        user = user.split(":", 1)[0]
        if server == "s.whatsapp.net" and user.isdigit() and 7 <= len(user) <= 15:
            return f"{user}@s.whatsapp.net"
        if server == "g.us" and user.replace("-", "").isdigit():
            return f"{user}@g.us"
        raise ValidationError.at(path, "must be a phone number, a user JID (digits@s.whatsapp.net) "
                                       "or a group JID (...@g.us)")
    try:
        return user_jid(normalize_phone(raw))
    except InvalidPhoneNumber as exc:
        raise ValidationError.at(path, str(exc)) from None


def parse_send_at(raw: str | None, path: str) -> int | None:
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError.at(path, "must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z") from None
    if when.tzinfo is None:
        raise ValidationError.at(path, "must include a timezone (Z or +hh:mm)")
    at = int(when.timestamp() * 1000)
    now = now_ms()
    if at < now - 60_000:
        raise ValidationError.at(path, "is in the past")
    if at > now + MAX_SCHEDULE_AHEAD_MS:
        raise ValidationError.at(path, "is more than 30 days ahead")
    return at if at > now else None


def _quoted_text(record: MessageRecord) -> str | None:
    try:
        content = _unpack.decode(record.payload).content
    except msgspec.DecodeError:
        return None
    if isinstance(content, TextContent):
        return content.body
    if isinstance(content, MediaContent):
        return content.caption
    return None
