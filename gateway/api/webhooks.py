"""Webhook deliveries, test pings, secret rotation, and the live event stream (WebSocket)."""

from __future__ import annotations

import logging
from typing import Final, Literal

import msgspec
import trio
from quart import Quart, websocket

from .._auth import SessionPrincipal
from .._event_schemas import WebhookTestEvent
from .._events import make_event
from .._security import new_webhook_secret
from ..errors import Conflict, GatewayError, NotFound, SessionNotFound, Unauthorized, ValidationError
from ..store import iso_ms
from ..webhooks import Delivery, DeliveryStatus
from ._pagination import PAGE_PARAMS, next_cursor, read_page
from ._routing import Api, Auth, Ctx, Param
from ._schemas import Answer

log = logging.getLogger("gateway.stream")
TAG = "Webhooks"
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_GOING_AWAY: Final = 1001


class Attempt(Answer):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    outcome: str


class DeliveryOut(Answer):
    id: str  # the `webhook-id` header value; stable across retries and redeliveries
    event: str
    endpoint: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: str
    next_attempt_at: str | None
    finished_at: str | None
    history: list[Attempt] | None = None


class WebhookSecret(Answer):
    webhook_secret: str


class TestQueued(Answer):
    delivery_id: str
    event: Literal["webhook.test"]


class DeliveryList(Answer):
    data: list[DeliveryOut]
    next_cursor: str | None


def delivery_out(d: Delivery, attempts: list | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id, event=d.event, endpoint=d.endpoint, status=d.status.value, attempts=d.attempts,
        last_status=d.last_status, last_error=d.last_error, created_at=iso_ms(d.created_at) or "",
        next_attempt_at=iso_ms(d.next_attempt_at) if d.status is DeliveryStatus.PENDING else None,
        finished_at=iso_ms(d.finished_at),
        history=[Attempt(attempt=a.attempt, at=iso_ms(a.started_at) or "", status_code=a.status_code,
                         error=a.error, outcome=a.outcome.value) for a in attempts] if attempts is not None else None)


def register(api: Api) -> None:
    @api.route("GET", "/webhooks/deliveries", summary="List webhook deliveries", tag=TAG, auth=Auth.SESSION,
               answer=DeliveryList, errors=[Unauthorized, ValidationError],
               query=[Param("status", "`pending`, `delivered` or `dead` (the dead letter).",
                            {"type": "string", "enum": ["pending", "delivered", "dead"]}), *PAGE_PARAMS])
    async def list_deliveries(ctx: Ctx) -> DeliveryList:
        """This session's deliveries, newest first, with attempt counts and the last error."""
        status = ctx.query.get("status")
        try:
            wanted = DeliveryStatus(status) if status is not None else None
        except ValueError:
            raise ValidationError.at("query.status", "must be pending, delivered or dead") from None
        before, limit = read_page(ctx.query)
        rows = await ctx.gateway.store.list_deliveries(ctx.session.session_id, status=wanted, before=before,
                                                       limit=limit)
        return DeliveryList(data=[delivery_out(d) for d in rows], next_cursor=next_cursor([d.id for d in rows], limit))

    @api.route("GET", "/webhooks/deliveries/<delivery_id>", summary="Get a webhook delivery", tag=TAG,
               auth=Auth.SESSION, answer=DeliveryOut, errors=[Unauthorized, NotFound])
    async def get_delivery(ctx: Ctx, delivery_id: str) -> DeliveryOut:
        """One delivery with every attempt (time, HTTP status, error)."""
        d = await _own_delivery(ctx, delivery_id)
        return delivery_out(d, await ctx.gateway.store.list_attempts(d.id))

    @api.route("POST", "/webhooks/deliveries/<delivery_id>/redeliver", summary="Redeliver a webhook", tag=TAG,
               auth=Auth.SESSION, status=202, answer=DeliveryOut, errors=[Unauthorized, NotFound, Conflict])
    async def redeliver(ctx: Ctx, delivery_id: str) -> DeliveryOut:
        """Send a delivered or dead-lettered delivery again, now, with the same `webhook-id` and body
        and a fresh retry budget."""
        d = await _own_delivery(ctx, delivery_id)
        if d.status is DeliveryStatus.PENDING:
            raise Conflict("This delivery is still pending; it will be attempted on its schedule")
        again = await ctx.gateway.store.redeliver(d.id, ctx.gateway.clock.now_ms())
        if again is None:  # removed meanwhile (its session was deleted)
            raise NotFound("No webhook delivery with that id in this session")
        ctx.gateway.dispatcher.wake()
        return delivery_out(again)

    @api.route("POST", "/whatsapp-sessions/<session_id>/webhook/test", summary="Send a test webhook", tag=TAG,
               auth=Auth.EITHER, status=202, answer=TestQueued, errors=[Unauthorized, SessionNotFound, Conflict])
    async def test_webhook(ctx: Ctx, session_id: str) -> TestQueued:
        """Queue a signed `webhook.test` event to the session's webhook URL, whatever its event filter."""
        record = await ctx.gateway.sessions.get(ctx.principal, session_id)
        if not record.webhook_url or not record.webhook_enabled:
            raise Conflict("The session has no enabled webhookUrl; set one with PUT /whatsapp-sessions/:id")
        written = await ctx.gateway.recorder.record([make_event("webhook.test", record.id,
                                                                        msgspec.to_builtins(WebhookTestEvent(test=True)))])
        if not written:
            raise Conflict("The webhook settings changed meanwhile; nothing was queued")
        return TestQueued(delivery_id=written[0].id, event="webhook.test")

    @api.route("POST", "/whatsapp-sessions/<session_id>/webhook/rotate-secret", summary="Rotate the webhook secret",
               tag=TAG, auth=Auth.PAT, answer=WebhookSecret, errors=[Unauthorized, SessionNotFound])
    async def rotate_secret(ctx: Ctx, session_id: str) -> WebhookSecret:
        """A new signing secret takes effect for events from now on; deliveries already queued keep the
        secret they were signed with."""
        await ctx.gateway.sessions.get(ctx.principal, session_id)
        record = await ctx.gateway.store.update_session(session_id, {"webhook_secret": new_webhook_secret()},
                                                        ctx.gateway.clock.now_ms())
        if record is None:
            raise SessionNotFound()
        return WebhookSecret(webhook_secret=record.webhook_secret)


async def _own_delivery(ctx: Ctx, delivery_id: str) -> Delivery:
    d = await ctx.gateway.store.get_delivery(delivery_id)
    if d is None or d.session_id != ctx.session.session_id:
        raise NotFound("No webhook delivery with that id in this session")
    return d


def install_stream(app: Quart, get_gateway) -> None:
    """`GET /api/v1/events`: a WebSocket streaming this session's events as they happen.

    Authenticate with `Authorization: Bearer <session key>` (or `?apiKey=` where a client cannot set
    headers). Each client has a bounded buffer (GATEWAY_STREAM_BUFFER events); a client that falls
    further behind is closed with code 4008, so it never holds unbounded memory.
    """

    @app.websocket("/api/v1/events")
    async def events() -> None:
        gateway = get_gateway()
        header = websocket.headers.get("Authorization", "")
        credential = header[7:].strip() if header.lower().startswith("bearer ") else websocket.args.get("apiKey", "")
        try:
            principal = await gateway.auth.authenticate(credential)
        except GatewayError:
            principal = None
        await websocket.accept()
        if not isinstance(principal, SessionPrincipal):
            await websocket.close(CLOSE_UNAUTHORIZED, "a session API key is required")
            return
        with gateway.bus.subscribe(principal.session_id, buffer=gateway.config.stream_buffer) as sub:
            async for event in sub.receive:
                await websocket.send(_encode(event).decode())
            reason = "slow consumer: fell too far behind" if sub.overflowed else "gateway stopping"
        with trio.move_on_after(2):
            await websocket.close(CLOSE_SLOW_CONSUMER if sub.overflowed else CLOSE_GOING_AWAY, reason)


_encode = msgspec.json.Encoder().encode
