"""Routes for sending messages and reading their status (the use case is `gateway._send`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from .._actions import SENT_STATES
from .._patterns import RECIPIENT_PATTERN
from .._phone import recipient_at
from .._queue import MessageQuery
from .._requests import Request, SendMessage, SendMessages, SendMessagesRaw
from .._send import Idempotency, Outcome, Reply
from ..errors import (
    Conflict,
    IdempotencyKeyReused,
    MediaToolUnavailable,
    NotFound,
    RateLimitExceeded,
    SessionNotConnected,
    Unauthorized,
    ValidationError,
    WhatsAppError,
)
from ..store import MessageRecord, MessageStatus, iso_ms
from ._errors import PayloadTooLarge, describe
from ._message_schemas import (
    BatchAccepted,
    BatchItem,
    BatchItemError,
    MessageAccepted,
    MessageList,
    MessageOut,
    MessageRemoved,
    MessageSummary,
    QueueCancelled,
    StatusChange,
)
from ._pagination import PAGE_PARAMS, next_cursor, read_page
from ._routing import Answered, Api, Auth, Ctx, Live, Param
from ._schemas import fields_of

TAG = "Messages"
MAX_IDEMPOTENCY_KEY: Final = 255
_ENC = msgspec.json.Encoder()
IDEMPOTENCY_KEY = Param("Idempotency-Key", f"Makes retries safe for 24 h: the same key and body return the "
                        f"original answer; another body is 422. 1 to {MAX_IDEMPOTENCY_KEY} printable characters.",
                        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY})
_STATUSES: Final = [s.value for s in MessageStatus]
MAX_TO: Final = 64
_TIME: Final = {"type": "string", "format": "date-time"}
SEARCH_PARAMS: Final = [
    Param("status", f"Only messages in this status: {', '.join(_STATUSES)}.", {"type": "string", "enum": _STATUSES}),
    Param("to", "Only messages to this recipient: a phone number or a JID, read as `to` on a send is.",
          {"type": "string", "pattern": RECIPIENT_PATTERN, "maxLength": MAX_TO}),
    Param("since", "Only messages created at or after this RFC 3339 time.", _TIME),
    Param("until", "Only messages created before this RFC 3339 time.", _TIME),
    *PAGE_PARAMS,
]
CANCEL_STATUS: Final = Param("status", "`queued`: the messages to cancel.", {"type": "string", "enum": ["queued"]},
                            required=True)
_SEND_ERRORS = [Unauthorized, ValidationError, SessionNotConnected, RateLimitExceeded, PayloadTooLarge,
                IdempotencyKeyReused, MediaToolUnavailable]


def register(api: Api) -> None:
    @api.route("POST", "/send-message", summary="Send a message", tag=TAG, auth=Auth.SESSION, body=SendMessage,
               status=202, answer=MessageAccepted, errors=_SEND_ERRORS, media_body=True, headers=[IDEMPOTENCY_KEY])
    async def send_message(ctx: Ctx) -> Answered:
        """Queue one message. It is stored durably before this answer; the session sends it paced, and
        its status moves queued → sending → sent → delivered → read (or failed). The type is detected
        from the content key. Send `Idempotency-Key` to make retries safe for 24 h."""
        reply = await ctx.gateway.messages.send_one(ctx.session, ctx.body, _idempotency(ctx), _one_answer)
        return _respond(ctx, reply)

    @api.route("POST", "/send-messages", summary="Send a batch of messages", tag=TAG, auth=Auth.SESSION,
               body=SendMessagesRaw, doc_body=SendMessages, status=202, answer=BatchAccepted,
               errors=_SEND_ERRORS, media_body=True, headers=[IDEMPOTENCY_KEY])
    async def send_messages(ctx: Ctx) -> Answered:
        """Queue up to 100 messages at once, with a result per item. Valid items are stored in one
        transaction; invalid ones are reported and not sent. Each accepted message counts against the
        session's send limit; if the whole batch does not fit, nothing is queued (429)."""
        reply = await ctx.gateway.messages.send_batch(ctx.session, ctx.body.messages, _idempotency(ctx),
                                                      _batch_answer)
        return _respond(ctx, reply)

    _register_queue(api)

    @api.route("GET", "/messages/<message_id>", summary="Get a message and its status history", tag=TAG,
               auth=Auth.SESSION, answer=MessageOut, errors=[Unauthorized, NotFound])
    async def get_message(ctx: Ctx, message_id: str) -> MessageOut:
        """The message's current status and every status it has had, with times and reasons."""
        record, history = await ctx.gateway.messages.get(ctx.session, message_id)
        return message_out(record, history)


class RescheduleMessage(Request):
    send_at: Annotated[str, Meta(description=(
        "The new send time: an ISO 8601 time with a timezone (e.g. 2026-12-01T09:00:00Z), in the future and "
        "at most 30 days ahead."))]


def _register_queue(api: Api) -> None:
    @api.route("GET", "/messages", summary="Search the session's messages", tag=TAG, auth=Auth.SESSION,
               answer=MessageList, query=SEARCH_PARAMS, errors=[Unauthorized, ValidationError])
    async def list_messages(ctx: Ctx) -> MessageList:
        """The session's messages, newest first, one page at a time, by status, recipient and creation
        time (`since` inclusive, `until` exclusive). Each item is the message without its history."""
        query = _search_query(ctx.query)
        before, limit = read_page(ctx.query)
        records = await ctx.gateway.queue.search(ctx.session, query, before=before, limit=limit)
        return MessageList(data=[message_summary(r) for r in records],
                           next_cursor=next_cursor([r.id for r in records], limit))

    @api.route("DELETE", "/messages", summary="Cancel every queued message", tag=TAG, auth=Auth.SESSION,
               answer=QueueCancelled, query=[CANCEL_STATUS], errors=[Unauthorized, ValidationError])
    async def cancel_all(ctx: Ctx) -> QueueCancelled:
        """Cancel all of the session's messages that are still `queued`, scheduled ones included, in one
        step: `DELETE /messages?status=queued` (the status is required, so that a bare DELETE cannot
        empty a queue by accident). A message the session has already started sending is not touched.
        Each cancelled message gets the status `cancelled` and a `message.status` event."""
        if ctx.query.get("status") != "queued":
            raise ValidationError.at("query.status", "must be queued: only queued messages can be cancelled")
        return QueueCancelled(cancelled=await ctx.gateway.queue.cancel_all(ctx.session))

    @api.route("DELETE", "/messages/<message_id>", summary="Cancel a queued message, or revoke a sent one",
               tag=TAG, auth=Auth.SESSION, answer=MessageRemoved,
               errors=[Unauthorized, NotFound, Conflict, SessionNotConnected, WhatsAppError], live=Live.OWNER)
    async def remove_message(ctx: Ctx, message_id: str) -> MessageRemoved:
        """A message still `queued` (ready or scheduled) becomes `cancelled` and is never sent (`action`
        `cancelled`). If the session claimed it first (it is `sending`), the answer is 409: exactly one of
        the cancel and the send wins. A message already sent (`sent`, `delivered` or `read`) is deleted
        for everyone on WhatsApp instead (`action` `revoked`; the session must be connected): its status
        stays, its history gets a `revoked for everyone` entry, and the recipient gets `message.revoked`.
        The id is the gateway's `messageId` or the message's WhatsApp id."""
        actions = ctx.gateway.actions
        own = await actions.find_own(ctx.session, message_id)
        if own is not None and own.status in SENT_STATES:
            revoked = await actions.revoke(ctx.session, own)
            return MessageRemoved(**fields_of(message_summary(revoked)), action="revoked")
        cancelled = await ctx.gateway.queue.cancel(ctx.session, own.id if own is not None else message_id)
        return MessageRemoved(**fields_of(message_summary(cancelled)), action="cancelled")

    @api.route("PATCH", "/messages/<message_id>", summary="Reschedule a scheduled message", tag=TAG,
               auth=Auth.SESSION, body=RescheduleMessage, answer=MessageSummary,
               errors=[Unauthorized, NotFound, Conflict, ValidationError, PayloadTooLarge])
    async def reschedule_message(ctx: Ctx, message_id: str) -> MessageSummary:
        """Move the `sendAt` of a message still queued and scheduled (earlier or later). A message not
        scheduled, or already claimed by the session, is 409."""
        return message_summary(await ctx.gateway.queue.reschedule(ctx.session, message_id, ctx.body.send_at))


def _search_query(query: dict[str, str]) -> MessageQuery:
    status = query.get("status")
    if status is not None and status not in _STATUSES:
        raise ValidationError.at("query.status", f"must be one of {', '.join(_STATUSES)}")
    to = query.get("to")
    if to is not None and len(to) > MAX_TO:
        raise ValidationError.at("query.to", f"must be at most {MAX_TO} characters")
    return MessageQuery(status=None if status is None else MessageStatus(status),
                        to_jid=None if to is None else recipient_at(to, "query.to"),
                        since=_time_at(query.get("since"), "query.since"),
                        until=_time_at(query.get("until"), "query.until"))


def _time_at(raw: str | None, path: str) -> int | None:
    """An RFC 3339 time as epoch ms (a leap second reads as :59), or the ValidationError naming `path`."""
    if raw is None:
        return None
    text = raw.upper()
    if len(text) > 19 and text[17:19] == "60":
        text = text[:17] + "59" + text[19:]
    try:
        when = dt.datetime.fromisoformat(text) if len(raw) <= 64 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValidationError.at(path, "must be an RFC 3339 time with a timezone, e.g. 2026-01-02T03:04:05Z")
    return int(when.timestamp() * 1000)


def accepted(record: MessageRecord) -> MessageAccepted:
    return MessageAccepted(message_id=record.id, status="queued", to=record.to_jid, type=record.type,
                           modifiers=record.modifiers, send_at=iso_ms(record.send_at))


def message_summary(r: MessageRecord) -> MessageSummary:
    return MessageSummary(
        message_id=r.id, session_id=r.session_id, to=r.to_jid, type=r.type, status=r.status.value,
        status_reason=r.status_reason, whatsapp_id=r.wa_id, send_at=iso_ms(r.send_at),
        created_at=iso_ms(r.created_at) or "", updated_at=iso_ms(r.updated_at) or "")


def message_out(r: MessageRecord, history: list) -> MessageOut:
    return MessageOut(
        **fields_of(message_summary(r)),
        history=[StatusChange(status=h.status.value, at=iso_ms(h.at) or "", reason=h.reason) for h in history])


def _one_answer(outcome: Outcome) -> bytes:
    return _ENC.encode(accepted(outcome.records[0]))


def _batch_answer(outcome: Outcome) -> bytes:
    results = [BatchItem(index=i, ok=False, error=_item_error(exc)) for i, exc in outcome.refused]
    ok_indexes = sorted(set(range(len(outcome.records) + len(outcome.refused))) - {i for i, _ in outcome.refused})
    for i, record in zip(ok_indexes, outcome.records, strict=True):
        results.append(BatchItem(index=i, ok=True, message_id=record.id, status="queued", to=record.to_jid,
                                 type=record.type))
    results.sort(key=lambda r: r.index)
    return _ENC.encode(BatchAccepted(accepted=len(outcome.records), rejected=len(outcome.refused), results=results))


def _item_error(exc: Exception) -> BatchItemError:
    d = describe(exc)
    return BatchItemError(code=d.code, message=d.message,
                          details=[{"path": e.path or "", "message": e.message} for e in d.details])


def _idempotency(ctx: Ctx) -> Idempotency | None:
    key = ctx.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationError.at("header.Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters")
    return Idempotency.of(key, ctx.raw)


def _respond(ctx: Ctx, reply: Reply) -> Answered:
    ctx.limit(reply.rate)
    return Answered(reply.body, reply.status, {"Idempotent-Replayed": "true"} if reply.replayed else {})
