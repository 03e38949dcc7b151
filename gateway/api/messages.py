"""Routes for sending messages and reading their status."""

from __future__ import annotations

from typing import Final

import msgspec
from quart import Response

from .._messaging import IdempotencyKeyReused, MediaToolMissingError, request_hash
from ..errors import (
    ApiError, ErrorDetail, PayloadTooLarge, RateLimited, ResourceNotFound, SessionDisconnected, Unauthorized,
    ValidationError, validation_error_from_msgspec,
)
from .._clock import now_ms
from ..store import IdempotencyRecord, MessageRecord, iso_ms
from ._message_schemas import (
    BatchAccepted, BatchItem, BatchItemError, MessageAccepted, MessageOut, SendMessage, SendMessages,
    SendMessagesRaw, StatusChange,
)
from ._routing import JSON, Api, Auth, Ctx

TAG = "Messages"
MAX_IDEMPOTENCY_KEY: Final = 255
_ENC = msgspec.json.Encoder()
_ITEM = msgspec.json.Decoder(SendMessage)
_SEND_ERRORS = [Unauthorized, ValidationError, SessionDisconnected, RateLimited, PayloadTooLarge,
                IdempotencyKeyReused, MediaToolMissingError]


def register(api: Api) -> None:
    @api.route("POST", "/send-message", summary="Send a message", tag=TAG, auth=Auth.SESSION, body=SendMessage,
               status=202, answer=MessageAccepted, errors=_SEND_ERRORS, media_body=True)
    async def send_message(ctx: Ctx) -> Response:
        """Queue one message. It is stored durably before this answer; the session sends it paced, and
        its status moves queued → sending → sent → delivered → read (or failed). The type is detected
        from the content key. Send `Idempotency-Key` to make retries safe for 24 h."""
        replay = await _replay(ctx)
        if replay is not None:
            return replay
        prepared = await ctx.gateway.messaging.validate(ctx.body, ctx.session.session_id)
        await ctx.gateway.live.require_sendable(ctx.session.session_id)
        ctx.rate = await ctx.gateway.rates.send(ctx.session.session_id, 1)
        records = ctx.gateway.messaging.records(ctx.session, [prepared])
        return await _persist(ctx, records, _ENC.encode(ctx.gateway.messaging.accepted(records[0])))

    @api.route("POST", "/send-messages", summary="Send a batch of messages", tag=TAG, auth=Auth.SESSION,
               body=SendMessagesRaw, doc_body=SendMessages, status=202, answer=BatchAccepted,
               errors=_SEND_ERRORS, media_body=True)
    async def send_messages(ctx: Ctx) -> Response:
        """Queue up to 100 messages at once, with a result per item. Valid items are stored in one
        transaction; invalid ones are reported and not sent. Each accepted message counts against the
        session's send limit; if the whole batch does not fit, nothing is queued (429)."""
        replay = await _replay(ctx)
        if replay is not None:
            return replay
        sid = ctx.session.session_id
        await ctx.gateway.live.require_sendable(sid)
        results: list[BatchItem] = []
        valid = []
        for i, raw_item in enumerate(ctx.body.messages):
            path = f"$.messages[{i}]"
            try:
                try:
                    item = _ITEM.decode(raw_item)
                except msgspec.ValidationError as exc:
                    raise validation_error_from_msgspec(exc, prefix=path) from None
                valid.append((i, await ctx.gateway.messaging.validate(item, sid, path=path)))
            except ApiError as exc:
                results.append(BatchItem(index=i, ok=False, error=BatchItemError(
                    code=exc.code, message=exc.message,
                    details=[{"path": d.path or "", "message": d.message} for d in exc.details])))
        if not valid:
            raise ValidationError("No message in the batch is valid",
                                  details=[ErrorDetail(message=r.error.message, path=(r.error.details or [{}])[0]
                                                       .get("path")) for r in results if r.error])
        ctx.rate = await ctx.gateway.rates.send(sid, len(valid))
        records = ctx.gateway.messaging.records(ctx.session, [p for _, p in valid])
        for (i, _), record in zip(valid, records, strict=True):
            a = ctx.gateway.messaging.accepted(record)
            results.append(BatchItem(index=i, ok=True, message_id=a.message_id, status=a.status, to=a.to,
                                     type=a.type))
        results.sort(key=lambda r: r.index)
        body = _ENC.encode(BatchAccepted(accepted=len(records), rejected=len(results) - len(records),
                                         results=results))
        return await _persist(ctx, records, body)

    @api.route("GET", "/messages/<message_id>", summary="Get a message and its status history", tag=TAG,
               auth=Auth.SESSION, answer=MessageOut, errors=[Unauthorized, ResourceNotFound])
    async def get_message(ctx: Ctx, message_id: str) -> MessageOut:
        """The message's current status and every status it has had, with times and reasons."""
        record, history = await ctx.gateway.messaging.get(ctx.session, message_id)
        return message_out(record, history)


def message_out(r: MessageRecord, history: list) -> MessageOut:
    return MessageOut(
        message_id=r.id, session_id=r.session_id, to=r.to_jid, type=r.type, status=r.status.value,
        status_reason=r.status_reason, whatsapp_id=r.wa_id, send_at=iso_ms(r.send_at),
        created_at=iso_ms(r.created_at) or "", updated_at=iso_ms(r.updated_at) or "",
        history=[StatusChange(status=h.status.value, at=iso_ms(h.at) or "", reason=h.reason) for h in history])


def _idempotency_key(ctx: Ctx) -> str | None:
    key = ctx.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationError.at("header.Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters")
    return key


async def _replay(ctx: Ctx) -> Response | None:
    key = _idempotency_key(ctx)
    if key is None:
        return None
    existing = await ctx.gateway.store.get_idempotency(ctx.session.session_id, key)
    return _replayed(existing, ctx.raw) if existing is not None else None


def _replayed(existing: IdempotencyRecord, raw: bytes) -> Response:
    if existing.request_hash != request_hash(raw):
        raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body in the last 24 h")
    return Response(existing.response, status=existing.status_code, content_type=JSON,
                    headers={"Idempotent-Replayed": "true"})


async def _persist(ctx: Ctx, records: list[MessageRecord], body: bytes) -> Response:
    key = _idempotency_key(ctx)
    idem = None
    if key is not None:
        idem = IdempotencyRecord(session_id=ctx.session.session_id, key=key, request_hash=request_hash(ctx.raw),
                                 status_code=202, response=body, created_at=now_ms())
    existing = await ctx.gateway.store.create_messages(records, idem)
    if existing is not None:  # a concurrent retry with the same key won the race
        return _replayed(existing, ctx.raw)
    ctx.gateway.live.nudge(ctx.session.session_id)
    return Response(body, status=202, content_type=JSON)
