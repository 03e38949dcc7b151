"""Routes for sending messages and reading their status (the use case is `gateway._send`)."""

from __future__ import annotations

from typing import Final

import msgspec
from quart import Response

from .._requests import SendMessage, SendMessages, SendMessagesRaw
from .._send import Idempotency, Outcome, Reply
from ..errors import IdempotencyKeyReused, MediaToolUnavailable, NotFound, RateLimitExceeded, SessionNotConnected, Unauthorized, ValidationError
from ..store import MessageRecord, iso_ms
from ._errors import PayloadTooLarge, describe
from ._message_schemas import BatchAccepted, BatchItem, BatchItemError, MessageAccepted, MessageOut, StatusChange
from ._routing import JSON, Api, Auth, Ctx, Param

TAG = "Messages"
MAX_IDEMPOTENCY_KEY: Final = 255
_ENC = msgspec.json.Encoder()
IDEMPOTENCY_KEY = Param("Idempotency-Key", f"Makes retries safe for 24 h: the same key and body return the "
                        f"original answer; another body is 422. 1 to {MAX_IDEMPOTENCY_KEY} printable characters.",
                        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY})
_SEND_ERRORS = [Unauthorized, ValidationError, SessionNotConnected, RateLimitExceeded, PayloadTooLarge,
                IdempotencyKeyReused, MediaToolUnavailable]


def register(api: Api) -> None:
    @api.route("POST", "/send-message", summary="Send a message", tag=TAG, auth=Auth.SESSION, body=SendMessage,
               status=202, answer=MessageAccepted, errors=_SEND_ERRORS, media_body=True, headers=[IDEMPOTENCY_KEY])
    async def send_message(ctx: Ctx) -> Response:
        """Queue one message. It is stored durably before this answer; the session sends it paced, and
        its status moves queued → sending → sent → delivered → read (or failed). The type is detected
        from the content key. Send `Idempotency-Key` to make retries safe for 24 h."""
        reply = await ctx.gateway.messages.send_one(ctx.session, ctx.body, _idempotency(ctx), _one_answer)
        return _respond(ctx, reply)

    @api.route("POST", "/send-messages", summary="Send a batch of messages", tag=TAG, auth=Auth.SESSION,
               body=SendMessagesRaw, doc_body=SendMessages, status=202, answer=BatchAccepted,
               errors=_SEND_ERRORS, media_body=True, headers=[IDEMPOTENCY_KEY])
    async def send_messages(ctx: Ctx) -> Response:
        """Queue up to 100 messages at once, with a result per item. Valid items are stored in one
        transaction; invalid ones are reported and not sent. Each accepted message counts against the
        session's send limit; if the whole batch does not fit, nothing is queued (429)."""
        reply = await ctx.gateway.messages.send_batch(ctx.session, ctx.body.messages, _idempotency(ctx),
                                                      _batch_answer)
        return _respond(ctx, reply)

    @api.route("GET", "/messages/<message_id>", summary="Get a message and its status history", tag=TAG,
               auth=Auth.SESSION, answer=MessageOut, errors=[Unauthorized, NotFound])
    async def get_message(ctx: Ctx, message_id: str) -> MessageOut:
        """The message's current status and every status it has had, with times and reasons."""
        record, history = await ctx.gateway.messages.get(ctx.session, message_id)
        return message_out(record, history)


def accepted(record: MessageRecord) -> MessageAccepted:
    return MessageAccepted(message_id=record.id, status="queued", to=record.to_jid, type=record.type,
                           modifiers=record.modifiers, send_at=iso_ms(record.send_at))


def message_out(r: MessageRecord, history: list) -> MessageOut:
    return MessageOut(
        message_id=r.id, session_id=r.session_id, to=r.to_jid, type=r.type, status=r.status.value,
        status_reason=r.status_reason, whatsapp_id=r.wa_id, send_at=iso_ms(r.send_at),
        created_at=iso_ms(r.created_at) or "", updated_at=iso_ms(r.updated_at) or "",
        history=[StatusChange(status=h.status.value, at=iso_ms(h.at) or "", reason=h.reason) for h in history])


def _one_answer(outcome: Outcome) -> bytes:
    return _ENC.encode(accepted(outcome.records[0]))


def _batch_answer(outcome: Outcome) -> bytes:
    results = [BatchItem(index=i, ok=False, error=_item_error(exc)) for i, exc in outcome.refused]
    ok_indexes = sorted(set(range(len(outcome.records) + len(outcome.refused))) - {i for i, _ in outcome.refused})
    for i, record in zip(ok_indexes, outcome.records, strict=True):
        a = accepted(record)
        results.append(BatchItem(index=i, ok=True, message_id=a.message_id, status=a.status, to=a.to, type=a.type))
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


def _respond(ctx: Ctx, reply: Reply) -> Response:
    ctx.limit(reply.rate)
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else None
    return Response(reply.body, status=reply.status, content_type=JSON, headers=headers)
