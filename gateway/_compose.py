"""Turning a `SendMessage` into what is queued, in two steps: checks without I/O, then checks with it.

`draft` does everything that needs only the request and the time: exactly one
content key, the recipient and mentions, poll and contact rules, `viewOnce`,
`sendAt`, and `url` xor `data` for media. It is cheap, so the send use case
runs it before the session and rate checks. `Composer.complete` does the rest,
which costs I/O and is run only for a request that may be sent: ffmpeg on the
host, the media URL's DNS answer (SSRF), decoding up to 32 MB of base64, and
the store read that a `replyTo` needs. Both raise `ValidationError` (or
`MediaToolUnavailable`) naming the field at fault.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import msgspec

from actors import (
    ContactContent, Content, LocationContent, MediaContent, PollContent, ReplyTo, TextContent, is_group_jid,
    missing_media_tools,
)

from ._media import MediaError, check_size, decode_base64, resolve_mimetype
from ._netguard import UnsafeURL, check_url_on_save
from ._payload import MediaRef, Payload, pack, quoted_text
from ._phone import phone_at, recipient_at
from ._requests import CONTENT_KEYS, SendMessage, whole
from .errors import ErrorDetail, MediaToolUnavailable, ValidationError
from .store import Store

MAX_SCHEDULE_AHEAD_MS: Final = 30 * 24 * 3600 * 1000
MEDIA_KINDS: Final = frozenset({"image", "video", "audio", "document", "sticker"})


class Draft(msgspec.Struct, frozen=True, kw_only=True):
    """A request that passed every check without I/O; `complete` finishes it."""

    request: SendMessage
    path: str
    kind: str
    to: str
    content: Content | None  # None for media, built by `complete`
    mentions: list[str]
    modifiers: list[str]
    send_at: int | None


class Prepared(msgspec.Struct, frozen=True):
    """A message ready to be stored: its row's columns and its packed payload."""

    to_jid: str
    type: str
    modifiers: list[str]
    payload: bytes
    send_at: int | None


def draft(req: SendMessage, *, now_ms: int, path: str = "$") -> Draft:
    """Every check that needs no I/O. Raises ValidationError."""
    present = [k for k in CONTENT_KEYS if getattr(req, k) is not None]
    if len(present) != 1:
        what = "none" if not present else " and ".join(present)
        raise ValidationError.at(path, f"exactly one of {', '.join(CONTENT_KEYS)} is required; got {what}")
    kind = present[0]
    to = recipient_at(req.to, f"{path}.to")
    content = _content(req, kind, f"{path}.{kind}")
    modifiers: list[str] = []
    if req.view_once:
        if kind not in ("image", "video", "audio"):
            raise ValidationError.at(f"{path}.viewOnce", "viewOnce applies to image, video or audio only")
        modifiers.append("viewOnce")
    mentions = [recipient_at(m, f"{path}.mentions[{i}]") for i, m in enumerate(req.mentions)]
    if any(is_group_jid(m) for m in mentions):
        raise ValidationError.at(f"{path}.mentions", "mentions must be people, not groups")
    if mentions:
        modifiers.append("mentions")
    if req.reply_to is not None:
        modifiers.insert(0, "quoted")
    return Draft(request=req, path=path, kind=kind, to=to, content=content,
                 mentions=list(dict.fromkeys(mentions)), modifiers=modifiers,
                 send_at=parse_send_at(req.send_at, f"{path}.sendAt", now_ms=now_ms))


def _content(req: SendMessage, kind: str, path: str) -> Content | None:
    if kind == "text":
        return TextContent(body=req.text or "")
    if kind == "location":
        loc = req.location
        return LocationContent(latitude=loc.latitude, longitude=loc.longitude, name=loc.name, address=loc.address)
    if kind == "contact":
        return ContactContent(full_name=req.contact.full_name,
                              phone_number=phone_at(req.contact.phone_number, f"{path}.phoneNumber"))
    if kind == "poll":
        poll = req.poll
        if len({o.strip().casefold() for o in poll.options}) != len(poll.options):
            raise ValidationError.at(f"{path}.options", "poll options must be distinct")
        selectable = whole(poll.selectable_count, f"{path}.selectableCount")
        if selectable > len(poll.options):
            raise ValidationError.at(f"{path}.selectableCount",
                                     f"must be at most the number of options ({len(poll.options)})")
        return PollContent(question=poll.question, options=list(poll.options),
                           selectable_count=selectable)
    media = getattr(req, kind)
    if (media.url is None) == (media.data is None):
        raise ValidationError.at(path, "give exactly one of url or data")
    return None


def parse_send_at(raw: str | None, path: str, *, now_ms: int) -> int | None:
    """`sendAt` as epoch ms (None: send now). At most 30 days ahead; a minute in the past is "now"."""
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError.at(path, "must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z") from None
    if when.tzinfo is None:
        raise ValidationError.at(path, "must include a timezone (Z or +hh:mm)")
    at = int(when.timestamp() * 1000)
    if at < now_ms - 60_000:
        raise ValidationError.at(path, "is in the past")
    if at > now_ms + MAX_SCHEDULE_AHEAD_MS:
        raise ValidationError.at(path, "is more than 30 days ahead")
    return at if at > now_ms else None


class Composer:
    """The checks that cost I/O, and the payload they produce."""

    def __init__(self, store: Store, *, allow_private_urls: bool, needs_ffmpeg: bool) -> None:
        self._store = store
        self._allow_private_urls = allow_private_urls
        self._needs_ffmpeg = needs_ffmpeg  # the real transport converts video and audio with ffmpeg

    async def complete(self, d: Draft, session_id: str) -> Prepared:
        content, media_url = d.content, None
        if d.kind in MEDIA_KINDS:
            content, media_url = await self._media(getattr(d.request, d.kind), d.kind, f"{d.path}.{d.kind}")
        reply_to = None
        if d.request.reply_to is not None:
            reply_to = await self._reply_to(session_id, d.request.reply_to, d.to, f"{d.path}.replyTo")
        payload = Payload(to=d.to, content=content, media_url=media_url, reply_to=reply_to,
                          view_once=d.request.view_once, mentions=d.mentions)
        return Prepared(d.to, d.kind, d.modifiers, pack(payload), d.send_at)

    async def _media(self, media: Any, kind: str, path: str) -> tuple[Content | None, MediaRef | None]:
        if self._needs_ffmpeg:
            missing = missing_media_tools(kind)
            if missing:
                raise MediaToolUnavailable(
                    f"{kind} messages need {' and '.join(missing)} on the gateway host; install ffmpeg "
                    "(e.g. apt-get install ffmpeg) or send the file as a document",
                    details=[ErrorDetail(message="ffmpeg missing", path=path)])
        caption = getattr(media, "caption", None)
        filename = getattr(media, "filename", None)
        ptt = getattr(media, "ptt", False)
        if media.url is not None:
            try:
                await check_url_on_save(media.url, allow_private=self._allow_private_urls)
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
            return ReplyTo(message_id=ours.wa_id, chat=ours.to_jid, sender=None, text=quoted_text(ours.payload))
        # A WhatsApp id (e.g. of a received message) in this chat.
        return ReplyTo(message_id=ref, chat=chat, sender=None if is_group_jid(chat) else chat)
