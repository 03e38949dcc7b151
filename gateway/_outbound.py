"""The queue the session actors' senders work from, and what moves a message on after it is sent.

`Outbound` is the actors' `OutboundQueue`: claim the next due message, prepare
it (download media given by URL), record that it was sent or failed, or put it
back. Receipts move a sent message forward (delivered, read), and
`expire_loop` fails messages past their TTL. Every change writes its history
row and its event in one store call, stamped with one reading of the clock.

Every write carries the session's fence from `Ownership`: a cluster node whose
lease is not valid on its own clock makes none (it claims nothing, records
nothing, and `wait_owned` holds the send).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import httpx
import msgspec
import trio

from actors import Claimed, MediaContent, OutboundMessage, PrepareFailed, Receipt, SendResult

from ._clock import Clock
from ._event_schemas import EVENT_PAYLOADS
from ._events import Collector, EventRecorder, GatewayEvent, make_event
from ._media import MediaError, fetch, resolve_mimetype
from ._payload import unpack
from ._ports import Ownership
from .store import MessageRecord, MessageStatus, Store

log = logging.getLogger("gateway.messaging")

IDEMPOTENCY_TTL_MS: Final = 24 * 3600 * 1000
_S = MessageStatus
_RECEIPT_STATUS: Final = {"delivered": _S.DELIVERED, "read": _S.READ, "played": _S.READ}
_ADVANCE_FROM: Final = {
    _S.DELIVERED: frozenset({_S.SENT}),
    _S.READ: frozenset({_S.SENT, _S.DELIVERED}),
}


class Outbound:
    def __init__(self, store: Store, recorder: EventRecorder, http: httpx.AsyncClient, ownership: Ownership, *,
                 allow_private_urls: bool, media_timeout: float, clock: Clock) -> None:
        self._store = store
        self._recorder = recorder
        self._http = http
        self._ownership = ownership
        self._allow_private_urls = allow_private_urls
        self._media_timeout = media_timeout
        self._clock = clock
        # session -> the row it claimed last, kept from the claim to `prepare` to save a read (one per
        # session at most: a session claims one message at a time).
        self._claimed: dict[str, MessageRecord] = {}

    # -- OutboundQueue (called by the session's sender) --------------------------------

    async def claim_next(self, session_id: str) -> Claimed | None:
        owner, fence = self._ownership.write_fence(session_id)
        if not owner:
            return None
        record = await self._store.claim_next_message(session_id, self._clock.now_ms(), fence=fence)
        if record is None:
            return None
        self._claimed[session_id] = record
        return Claimed(record.id, record.to_jid)

    async def wait_owned(self, session_id: str) -> None:
        await self._ownership.wait_owned(session_id)

    async def seconds_until_due(self, session_id: str) -> float | None:
        at = await self._store.next_scheduled_at(session_id)
        return None if at is None else max(0.0, (at - self._clock.now_ms()) / 1000)

    async def prepare(self, session_id: str, claimed: Claimed) -> OutboundMessage:
        record = self._claimed.pop(session_id, None)
        if record is None or record.id != claimed.message_id:
            record = await self._store.get_message(claimed.message_id)
        if record is None:
            raise PrepareFailed("message vanished")
        payload = unpack(record.payload)
        content = payload.content
        if payload.media_url is not None:
            ref = payload.media_url
            try:
                data, declared = await fetch(self._http, ref.url, ref.kind, allow_private=self._allow_private_urls,
                                             timeout=self._media_timeout)
                mimetype = resolve_mimetype(ref.kind, data, ref.mimetype or declared)
            except MediaError as exc:
                raise PrepareFailed(str(exc)) from None
            content = MediaContent(kind=ref.kind, data=data, mimetype=mimetype, caption=ref.caption,
                                   filename=ref.filename, ptt=ref.ptt)
        assert content is not None
        return OutboundMessage(to=payload.to, content=content, reply_to=payload.reply_to,
                               view_once=payload.view_once, mentions=payload.mentions, id_hint=record.id)

    async def sent(self, session_id: str, claimed: Claimed, result: SendResult) -> None:
        await self._set_status(session_id, claimed, _S.SENT, "message.sent", wa_id=result.message_id,
                               only_from=frozenset({_S.SENDING}))

    async def failed(self, session_id: str, claimed: Claimed, reason: str) -> None:
        await self._set_status(session_id, claimed, _S.FAILED, "message.status", reason=reason,
                               only_from=frozenset({_S.SENDING, _S.QUEUED}))

    async def requeue(self, session_id: str, claimed: Claimed) -> None:
        owner, fence = self._ownership.write_fence(session_id)
        if not owner:
            return  # the session's next owner requeues it when it takes over
        await self._store.set_message_status(claimed.message_id, _S.QUEUED, self._clock.now_ms(),
                                             reason="session not connected; waiting to reconnect",
                                             only_from=frozenset({_S.SENDING}), fence=fence)

    async def _set_status(self, session_id: str, claimed: Claimed, status: MessageStatus, event: str, *,
                          only_from: frozenset[MessageStatus], wa_id: str | None = None,
                          reason: str | None = None) -> None:
        owner, fence = self._ownership.write_fence(session_id)
        if not owner:
            # The lease ran out during the send: the next owner requeues the message and sends it
            # again. This is the cluster's duplicate window (README, "Cluster mode").
            log.warning("send outcome not recorded: the session's lease ran out during the send", extra={
                "fields": {"session": session_id, "message": claimed.message_id, "outcome": status.value}})
            return
        at = self._clock.now_ms()
        collect = Collector(message_event(event, at))
        if await self._store.set_message_status(claimed.message_id, status, at, wa_id=wa_id, reason=reason,
                                                only_from=only_from, events=collect, fence=fence):
            self._recorder.published(collect.events)

    # -- receipts and housekeeping -----------------------------------------------------

    async def on_receipt(self, session_id: str, receipt: Receipt) -> None:
        status = _RECEIPT_STATUS[receipt.type]
        for wa_id in receipt.message_ids:
            owner, fence = self._ownership.write_fence(session_id)
            if not owner:
                return
            at = receipt.timestamp_ms or self._clock.now_ms()
            collect = Collector(message_event("message.status", at))
            if await self._store.set_status_by_wa_id(session_id, wa_id, status, at, only_from=_ADVANCE_FROM[status],
                                                     events=collect, fence=fence):
                self._recorder.published(collect.events)

    async def expire_loop(self, interval: float = 60.0) -> None:
        """Fail queued messages past their TTL, and forget idempotency keys older than 24 h."""
        while True:
            try:
                at = self._clock.now_ms()
                collect = Collector(message_event("message.status", at))
                await self._store.expire_messages(at, events=collect)
                self._recorder.published(collect.events)
                await self._store.purge_idempotency(at - IDEMPOTENCY_TTL_MS)
            except Exception:
                log.exception("queue housekeeping failed")
            await trio.sleep(interval)


def message_event(name: str, at: int) -> Callable[[MessageRecord], list[GatewayEvent]]:
    """The event a message's change causes, stamped with the change's own time."""

    schema = EVENT_PAYLOADS[name]

    def build(record: MessageRecord) -> list[GatewayEvent]:
        data = schema(message_id=record.id, whatsapp_id=record.wa_id, to=record.to_jid,  # type: ignore[call-arg]
                      type=record.type, status=record.status.value, reason=record.status_reason)
        return [make_event(name, record.session_id, msgspec.to_builtins(data), at=at)]

    return build
