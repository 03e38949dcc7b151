"""The outbox's shared parts: which events become deliveries, how an attempt is stored, which
claims fit the room each endpoint has. Rows map to records in `_rows`.

Both drivers call these inside their transactions.

A session's webhook settings are read in the same transaction that writes
the event, so a delivery always goes to the URL, filter and secret in force
when its event happened, on whichever node wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from .._events import GatewayEvent
from ..webhooks import AttemptRecord, Delivery, DeliveryStatus, new_delivery
from ._rows import ATTEMPT_COLUMNS, Rows, delivery

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


def apply_attempt(conn: Any, record: AttemptRecord, rows: Rows) -> bool:
    """Store an attempt's result under the fence (see DeliveryStore.record_attempt).

    `conn` is a DB-API connection and `rows` its driver's: the statements are the same on both.
    """
    pending = record.outcome is DeliveryStatus.PENDING
    mark = rows.mark
    cur = conn.execute(
        f"UPDATE webhook_deliveries SET attempts = {mark}, status = {mark}, last_status = {mark}, "
        f"last_error = {mark}, claimed_until = 0, next_attempt_at = COALESCE({mark}, next_attempt_at), "
        f"finished_at = {mark} WHERE id = {mark} AND status = 'pending' AND claimed_until = {mark}",
        (record.attempt, record.outcome.value, record.status_code, record.error,
         record.next_attempt_at if pending else None, None if pending else record.finished_at,
         record.delivery_id, record.claimed_until))
    if cur.rowcount == 0:
        return False
    conn.execute(
        rows.insert("webhook_attempts", f"delivery_id, {ATTEMPT_COLUMNS}"),
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
