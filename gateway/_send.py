"""The send use case: one order of checks for `send-message` and `send-messages` alike.

1. an `Idempotency-Key` seen before answers with the stored answer (a store
   read, made only for a request that carries a key);
2. the session must be able to send (409): one node asks its actor, no I/O;
3. the checks without I/O (`_compose.draft`, 422);
4. the send limit (429): one token per message, no I/O on one node;
5. the checks with I/O (`Composer.complete`: media, DNS, `replyTo`), giving
   back the tokens of the messages they refuse;
6. the messages and the idempotency record in one transaction, then a nudge
   to the session's sender.

So a request refused at 2 or 4 costs no store call, no DNS lookup and no media
decoding. The route encodes the answer (`answer`): it is stored with the key,
so a replay returns it byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

import msgspec

from ratelimit import Decision

from ._auth import SessionPrincipal
from ._clock import Clock
from ._compose import Composer, Draft, Prepared, draft
from ._limits import RateGuard
from ._ports import SessionGate
from ._requests import SendMessage
from ._security import new_id
from .errors import ErrorDetail, GatewayError, IdempotencyKeyReused, NotFound, ValidationError, validation_error_from_msgspec
from .store import IdempotencyRecord, MessageRecord, StatusEntry, Store

ACCEPTED: Final = 202
_ITEM: Final = msgspec.json.Decoder(SendMessage)


class Idempotency(NamedTuple):
    """The caller's `Idempotency-Key` and the hash of the body it came with."""

    key: str
    request_hash: bytes

    @classmethod
    def of(cls, key: str, body: bytes) -> Idempotency:
        return cls(key, hashlib.sha256(body).digest())


class Outcome(NamedTuple):
    """What a send stored, and which batch items it refused (index, error), for the answer."""

    records: list[MessageRecord]
    refused: list[tuple[int, GatewayError]]


class Reply(NamedTuple):
    status: int
    body: bytes
    replayed: bool
    rate: Decision | None  # the send limit's decision, when one applied


Answer = Callable[[Outcome], bytes]


class Messages:
    def __init__(self, store: Store, gate: SessionGate, rates: RateGuard, composer: Composer, *,
                 queue_ttl: float, clock: Clock) -> None:
        self._store = store
        self._gate = gate
        self._rates = rates
        self._composer = composer
        self._ttl_ms = int(queue_ttl * 1000)
        self._clock = clock

    async def send_one(self, who: SessionPrincipal, req: SendMessage, idem: Idempotency | None,
                       answer: Answer) -> Reply:
        sid = who.session_id
        if (replay := await self._replay(sid, idem)) is not None:
            return replay
        await self._gate.require_sendable(sid)
        checked = draft(req, now_ms=self._clock.now_ms())
        decision = await self._rates.send(sid, 1)
        try:
            prepared = await self._composer.complete(checked, sid)
        except GatewayError:
            await self._rates.refund_send(sid, 1)
            raise
        return await self._persist(who, [prepared], [], idem, answer, decision)

    async def send_batch(self, who: SessionPrincipal, items: Sequence[msgspec.Raw], idem: Idempotency | None,
                         answer: Answer) -> Reply:
        """Every valid item is stored (in one transaction); each invalid one is reported, not sent."""
        sid = who.session_id
        if (replay := await self._replay(sid, idem)) is not None:
            return replay
        await self._gate.require_sendable(sid)
        now = self._clock.now_ms()
        drafts: list[tuple[int, Draft]] = []
        refused: list[tuple[int, GatewayError]] = []
        for i, raw in enumerate(items):
            try:
                drafts.append((i, draft(_decode_item(raw, f"$.messages[{i}]"), now_ms=now,
                                        path=f"$.messages[{i}]")))
            except GatewayError as exc:
                refused.append((i, exc))
        _require_some(drafts, refused)
        decision = await self._rates.send(sid, len(drafts))
        prepared: list[Prepared] = []
        for i, d in drafts:
            try:
                prepared.append(await self._composer.complete(d, sid))
            except GatewayError as exc:
                refused.append((i, exc))
        if len(prepared) < len(drafts):
            await self._rates.refund_send(sid, len(drafts) - len(prepared))
        refused.sort(key=lambda r: r[0])
        _require_some(prepared, refused)
        return await self._persist(who, prepared, refused, idem, answer, decision)

    async def get(self, who: SessionPrincipal, message_id: str) -> tuple[MessageRecord, list[StatusEntry]]:
        record = await self._store.get_message(message_id)
        if record is None or record.session_id != who.session_id:
            raise NotFound("No message with that id in this session")
        return record, await self._store.get_message_history(message_id)

    async def _replay(self, session_id: str, idem: Idempotency | None) -> Reply | None:
        if idem is None:
            return None
        existing = await self._store.get_idempotency(session_id, idem.key)
        return None if existing is None else _replayed(existing, idem)

    async def _persist(self, who: SessionPrincipal, prepared: list[Prepared], refused: list[tuple[int, GatewayError]],
                       idem: Idempotency | None, answer: Answer, decision: Decision | None) -> Reply:
        at = self._clock.now_ms()
        records = [MessageRecord(
            id=new_id(), session_id=who.session_id, user_id=who.user_id, to_jid=p.to_jid, type=p.type,
            modifiers=p.modifiers, payload=p.payload, send_at=p.send_at, expires_at=(p.send_at or at) + self._ttl_ms,
            created_at=at, updated_at=at) for p in prepared]
        body = answer(Outcome(records, refused))
        stored = None if idem is None else IdempotencyRecord(
            session_id=who.session_id, key=idem.key, request_hash=idem.request_hash, status_code=ACCEPTED,
            response=body, created_at=at)
        existing = await self._store.create_messages(records, stored)
        if existing is not None:  # a concurrent retry with the same key won the race: it was charged, not us
            await self._rates.refund_send(who.session_id, len(records))
            assert idem is not None
            return _replayed(existing, idem)
        self._gate.nudge(who.session_id, _due_in(records, at))
        return Reply(ACCEPTED, body, False, decision)


def _due_in(records: list[MessageRecord], now_ms: int) -> float:
    """Seconds until the first of `records` is due: 0 when one is to be sent now."""
    if any(r.send_at is None for r in records):
        return 0.0
    return max(0, min(r.send_at for r in records if r.send_at is not None) - now_ms) / 1000


def _decode_item(raw: msgspec.Raw, path: str) -> SendMessage:
    try:
        return _ITEM.decode(raw)
    except msgspec.ValidationError as exc:
        raise validation_error_from_msgspec(exc, prefix=path, body=SendMessage) from None


def _require_some(valid: Sequence[object], refused: list[tuple[int, GatewayError]]) -> None:
    if not valid:
        raise ValidationError("No message in the batch is valid", details=[
            ErrorDetail(message=exc.message, path=exc.details[0].path if exc.details else None)
            for _, exc in refused])


def _replayed(existing: IdempotencyRecord, idem: Idempotency) -> Reply:
    if existing.request_hash != idem.request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body in the last 24 h")
    return Reply(existing.status_code, existing.response, True, None)
