"""The outbox's shared, pure parts: which events become deliveries, and how rows map to records.

Both drivers call these inside their transactions.

A session's webhook settings are read in the same transaction that writes
the event, so a delivery always goes to the URL, filter and secret in force
when its event happened, on whichever node wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from .._events import GatewayEvent
from ..webhooks._store import AttemptRecord, Delivery, DeliveryStatus, new_delivery

# Sent when asked for, whatever the session's event filter says.
UNFILTERED_EVENTS: Final = frozenset({"webhook.test"})


def deliveries_for(events: list[GatewayEvent], lookup: Callable[[str], tuple[str | None, list[str], bool, str] | None],
                   now_ms: int) -> list[Delivery]:
    out: list[Delivery] = []
    targets: dict[str, tuple[str | None, list[str], bool, str] | None] = {}
    for event in events:
        if event.session_id not in targets:
            targets[event.session_id] = lookup(event.session_id)
        target = targets[event.session_id]
        if target is None:
            continue
        url, wanted, enabled, secret = target
        if not url or not enabled:
            continue
        if wanted and event.event not in wanted and event.event not in UNFILTERED_EVENTS:
            continue
        out.append(new_delivery(event, endpoint=url, secret=secret, now_ms=now_ms))
    return out


DELIVERY_COLUMNS: Final = (
    "id, session_id, event, endpoint, secret, payload, created_at, next_attempt_at, attempts, status, "
    "claimed_until, last_status, last_error, finished_at")
ATTEMPT_COLUMNS: Final = "attempt, started_at, finished_at, outcome, status_code, error"


def delivery_row(d: Delivery) -> tuple[Any, ...]:
    return (d.id, d.session_id, d.event, d.endpoint, d.secret, d.payload, d.created_at, d.next_attempt_at,
            d.attempts, d.status.value, d.claimed_until, d.last_status, d.last_error, d.finished_at)


def delivery(r: Any) -> Delivery:
    return Delivery(id=r[0], session_id=r[1], event=r[2], endpoint=r[3], secret=r[4], payload=bytes(r[5]),
                    created_at=r[6], next_attempt_at=r[7], attempts=r[8], status=DeliveryStatus(r[9]),
                    claimed_until=r[10], last_status=r[11], last_error=r[12], finished_at=r[13])


def attempt(delivery_id: str, r: Any) -> AttemptRecord:
    """A stored attempt (ATTEMPT_COLUMNS) as the history the API shows."""
    return AttemptRecord(delivery_id=delivery_id, attempt=r[0], claimed_until=0, started_at=r[1], finished_at=r[2],
                         outcome=DeliveryStatus(r[3]), next_attempt_at=None, status_code=r[4], error=r[5])


def apply_attempt(conn: Any, record: AttemptRecord, mark: str) -> bool:
    """Store an attempt's result under the fence (see DeliveryStore.record_attempt).

    `conn` is a DB-API connection and `mark` its placeholder (`?` for SQLite, `%s` for psycopg):
    the statements are the same on both drivers.
    """
    pending = record.outcome is DeliveryStatus.PENDING
    cur = conn.execute(
        "UPDATE webhook_deliveries SET attempts = {0}, status = {0}, last_status = {0}, last_error = {0}, "
        "claimed_until = 0, next_attempt_at = COALESCE({0}, next_attempt_at), finished_at = {0} "
        "WHERE id = {0} AND status = 'pending' AND claimed_until = {0}".format(mark),
        (record.attempt, record.outcome.value, record.status_code, record.error,
         record.next_attempt_at if pending else None, None if pending else record.finished_at,
         record.delivery_id, record.claimed_until))
    if cur.rowcount == 0:
        return False
    conn.execute(
        f"INSERT INTO webhook_attempts (delivery_id, {ATTEMPT_COLUMNS}) VALUES ({', '.join([mark] * 7)})",
        (record.delivery_id, record.attempt, record.started_at, record.finished_at, record.outcome.value,
         record.status_code, record.error))
    return True


def pick_with_room(rows: Any, room: Mapping[str, int], default_room: int, limit: int) -> list[Delivery]:
    """From due rows in order, take at most `room` per endpoint and `limit` in all."""
    taken: dict[str, int] = {}
    picked: list[Delivery] = []
    for row in rows:
        d = delivery(row)
        if taken.get(d.endpoint, 0) >= room.get(d.endpoint, default_room):
            continue
        taken[d.endpoint] = taken.get(d.endpoint, 0) + 1
        picked.append(d)
        if len(picked) >= limit:
            break
    return picked
