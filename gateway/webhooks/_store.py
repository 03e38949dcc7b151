"""The webhook outbox: delivery records and the narrow store interface the dispatcher needs.

The outbox row is written in the same transaction as the state change that
caused the event (that part belongs to the main store). From then on the
dispatcher owns its life through four calls: `claim_due`, `record_attempt`,
`next_due_at` and `expedite`. `MemoryDeliveryStore` is the reference
implementation; the SQLite and PostgreSQL stores implement the same contract.

Times are integer milliseconds since the Unix epoch, as everywhere in the store.

A claim is a lease: `claim_due` sets `claimed_until`, and a delivery whose
lease has run out is claimable again. A dispatcher that dies mid-attempt
therefore loses nothing: its claims come back after at most one lease. The
`claimed_until` value a claim returned also fences `record_attempt`, so a
late result from a lease that expired cannot overwrite a newer one.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

import msgspec
import trio

from .._events import GatewayEvent
from .._security import new_id

_encode_event = msgspec.json.Encoder().encode


class DeliveryStatus(enum.Enum):
    """Where a delivery is in its life. Only PENDING ones are ever claimed."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # dead letter: a final failure, or the retry budget is spent


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event on its way to one endpoint."""

    id: str  # the `webhook-id`: stable across retries, so receivers can deduplicate
    session_id: str
    event: str  # the event name, for listing and filtering
    endpoint: str  # the URL posted to; concurrency limits are per endpoint
    secret: str  # the `whsec_` secret the session had when the event was written
    payload: bytes  # the JSON body, `{event, sessionId, timestamp, data}`, sent byte for byte
    created_at: int
    next_attempt_at: int
    attempts: int = 0
    status: DeliveryStatus = DeliveryStatus.PENDING
    claimed_until: int = 0  # the lease of the dispatcher attempting it; 0 when unclaimed
    last_status: int | None = None  # the HTTP status of the last attempt, if it had one
    last_error: str | None = None
    finished_at: int | None = None  # when it was delivered or dead-lettered


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one attempt, and what it decided."""

    delivery_id: str
    attempt: int  # 1-based; becomes the delivery's `attempts`
    claimed_until: int  # the claim it ran under (the fence)
    started_at: int
    finished_at: int
    outcome: DeliveryStatus  # DELIVERED, PENDING (a retry is due) or DEAD
    next_attempt_at: int | None  # when outcome is PENDING
    status_code: int | None = None
    error: str | None = None  # why it failed, or None when delivered


class DeliveryStore(Protocol):
    """What the dispatcher needs from storage. Implemented on SQLite, PostgreSQL and in memory."""

    async def claim_due(self, now_ms: int, *, limit: int, room: Mapping[str, int], default_room: int,
                        lease_until_ms: int) -> list[Delivery]:
        """Claim up to `limit` PENDING deliveries that are due and unclaimed.

        Due and unclaimed: `next_attempt_at <= now_ms` and `claimed_until <= now_ms`.
        The oldest `next_attempt_at` comes first (ties by id). At most
        `room.get(endpoint, default_room)` are taken per endpoint, so an
        endpoint with no room is skipped and, when `default_room` is 0, only
        the endpoints listed in `room` are considered. Each one taken gets
        `claimed_until = lease_until_ms`, atomically with the selection (in
        PostgreSQL, `FOR UPDATE SKIP LOCKED`), and is returned with that value.
        """

    async def record_attempt(self, record: AttemptRecord) -> bool:
        """Store an attempt's result. Return False, changing nothing, when the fence fails.

        The fence holds when the delivery is PENDING and its `claimed_until`
        equals `record.claimed_until`. Then, atomically: `attempts = attempt`,
        `status = outcome`, `last_status`, `last_error`, `claimed_until = 0`,
        `next_attempt_at` (when PENDING) and `finished_at` (when DELIVERED or
        DEAD). Stores may also keep the record itself as the delivery's history.
        """

    async def next_due_at(self, *, room: Mapping[str, int], default_room: int) -> int | None:
        """When the next PENDING delivery that `claim_due` could take becomes claimable.

        That is the least `max(next_attempt_at, claimed_until)` over endpoints
        whose `room.get(endpoint, default_room)` is above 0; None if there is none.
        """

    async def expedite(self, endpoint: str, now_ms: int) -> int:
        """The endpoint answered again: make its waiting retries due now.

        Sets `next_attempt_at = now_ms` on PENDING deliveries of `endpoint`
        with `attempts > 0` and `next_attempt_at > now_ms`; returns how many.
        """


def new_delivery_id() -> str:
    """`msg_` + a UUIDv7 in hex: unique, and sortable by creation time."""
    return "msg_" + uuid.UUID(new_id()).hex


def new_delivery(event: GatewayEvent, *, endpoint: str, secret: str, now_ms: int) -> Delivery:
    return Delivery(id=new_delivery_id(), session_id=event.session_id, event=event.event, endpoint=endpoint,
                    secret=secret, payload=_encode_event(event), created_at=now_ms, next_attempt_at=now_ms)


class MemoryDeliveryStore:
    """The in-memory DeliveryStore: the reference for the contract, and the tests' store."""

    def __init__(self) -> None:
        self._rows: dict[str, Delivery] = {}
        self._pending: dict[str, None] = {}  # ids of PENDING rows, so finished ones cost nothing
        self.history: list[AttemptRecord] = []

    def add(self, delivery: Delivery) -> None:
        if delivery.id in self._rows:
            raise ValueError(f"delivery {delivery.id} exists")
        self._rows[delivery.id] = delivery
        if delivery.status is DeliveryStatus.PENDING:
            self._pending[delivery.id] = None

    def get(self, delivery_id: str) -> Delivery:
        return self._rows[delivery_id]

    def all(self) -> list[Delivery]:
        return list(self._rows.values())

    def count(self, status: DeliveryStatus) -> int:
        if status is DeliveryStatus.PENDING:
            return len(self._pending)
        return sum(1 for d in self._rows.values() if d.status is status)

    async def claim_due(self, now_ms: int, *, limit: int, room: Mapping[str, int], default_room: int,
                        lease_until_ms: int) -> list[Delivery]:
        await trio.lowlevel.checkpoint()
        rows = (self._rows[i] for i in self._pending)
        due = sorted((d for d in rows if d.next_attempt_at <= now_ms and d.claimed_until <= now_ms),
                     key=lambda d: (d.next_attempt_at, d.id))
        taken: Counter[str] = Counter()
        claimed: list[Delivery] = []
        for d in due:
            if len(claimed) >= limit:
                break
            if taken[d.endpoint] >= room.get(d.endpoint, default_room):
                continue
            taken[d.endpoint] += 1
            d = msgspec.structs.replace(d, claimed_until=lease_until_ms)
            self._rows[d.id] = d
            claimed.append(d)
        return claimed

    async def record_attempt(self, record: AttemptRecord) -> bool:
        await trio.lowlevel.checkpoint()
        d = self._rows.get(record.delivery_id)
        if d is None or d.status is not DeliveryStatus.PENDING or d.claimed_until != record.claimed_until:
            return False
        pending = record.outcome is DeliveryStatus.PENDING
        self._rows[d.id] = msgspec.structs.replace(
            d, attempts=record.attempt, status=record.outcome, last_status=record.status_code,
            last_error=record.error, claimed_until=0,
            next_attempt_at=record.next_attempt_at if pending and record.next_attempt_at is not None
            else d.next_attempt_at,
            finished_at=None if pending else record.finished_at)
        if not pending:
            del self._pending[d.id]
        self.history.append(record)
        return True

    async def next_due_at(self, *, room: Mapping[str, int], default_room: int) -> int | None:
        await trio.lowlevel.checkpoint()
        rows = (self._rows[i] for i in self._pending)
        times = [max(d.next_attempt_at, d.claimed_until) for d in rows if room.get(d.endpoint, default_room) > 0]
        return min(times, default=None)

    async def expedite(self, endpoint: str, now_ms: int) -> int:
        await trio.lowlevel.checkpoint()
        count = 0
        for d in [self._rows[i] for i in self._pending]:
            if d.endpoint == endpoint and d.attempts > 0 and d.next_attempt_at > now_ms:
                self._rows[d.id] = msgspec.structs.replace(d, next_attempt_at=now_ms)
                count += 1
        return count
