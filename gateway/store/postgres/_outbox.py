"""The webhook outbox on PostgreSQL (the `DeliveryStore` contract of `gateway.webhooks`).

Claims take rows `FOR UPDATE SKIP LOCKED`, so the dispatchers of several
nodes drain one outbox without waiting on each other or taking the same row.
Endpoints that have no room left are excluded in SQL, so a backlog behind one
dead endpoint cannot crowd healthy ones out of a claim.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Final

import msgspec

from ..._events import GatewayEvent
from ...webhooks import AttemptRecord, Delivery, DeliveryStatus
from .._outbox_rules import apply_attempt, deliveries_for, pick_with_room
from .._rows import ATTEMPT_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_TARGET_COLUMNS, attempt, delivery, delivery_row
from ._base import ROWS, Conn, PostgresBase

_SCAN_FACTOR: Final = 4


_INSERT_DELIVERY: Final = ROWS.insert("webhook_deliveries", DELIVERY_COLUMNS)

WebhookTarget = tuple[str | None, list[str], bool, str]


def insert_deliveries(conn: Conn, deliveries: list[Delivery]) -> None:
    """Pipeline-safe: nothing is read back, so in a batch the rows go out with the next round trip."""
    if len(deliveries) == 1:  # the usual case: one event, one endpoint (executemany costs more for one row)
        conn.execute(_INSERT_DELIVERY, delivery_row(deliveries[0]))
    elif deliveries:
        with conn.cursor() as cur:
            cur.executemany(_INSERT_DELIVERY, [delivery_row(d) for d in deliveries])


def write_events(conn: Conn, events: list[GatewayEvent], now_ms: int,
                 targets: Mapping[str, WebhookTarget | None] | None = None) -> list[Delivery]:
    """Turn events into deliveries inside the caller's transaction (see `_outbox_rules`).

    `targets`: sessions' webhook settings the caller already read in this transaction
    (`webhook_target` of a row of `WEBHOOK_TARGET_COLUMNS`), so they are not read twice.
    """
    def lookup(session_id: str) -> WebhookTarget | None:
        if targets is not None and session_id in targets:
            return targets[session_id]
        row = conn.execute(f"SELECT {WEBHOOK_TARGET_COLUMNS} FROM sessions WHERE id = %s", (session_id,)).fetchone()
        return ROWS.webhook_target(row) if row else None

    deliveries = deliveries_for(events, lookup, now_ms)
    insert_deliveries(conn, deliveries)
    return deliveries


class PostgresOutbox(PostgresBase):
    async def record_events(self, events: list[GatewayEvent], now_ms: int) -> list[Delivery]:
        return await self._write(lambda c: write_events(c, events, now_ms), pipelined=True)

    async def insert_deliveries(self, deliveries: list[Delivery]) -> None:
        await self._write(lambda c: insert_deliveries(c, deliveries), pipelined=True, single=len(deliveries) <= 1)

    async def claim_due(self, now_ms: int, *, limit: int, room: Mapping[str, int], default_room: int,
                        lease_until_ms: int) -> list[Delivery]:
        full = [e for e, n in room.items() if n <= 0]
        open_ = [e for e, n in room.items() if n > 0]

        def write(conn: Conn) -> Generator[None, None, list[Delivery]]:
            scope = "AND NOT (endpoint = ANY(%s))" if default_room > 0 else "AND endpoint = ANY(%s)"
            cursor = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = 'pending' "
                f"AND next_attempt_at <= %s AND claimed_until <= %s {scope} "
                "ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
                (now_ms, now_ms, full if default_room > 0 else open_, limit * _SCAN_FACTOR))
            yield
            rows = cursor.fetchall()
            claimed = [msgspec.structs.replace(d, claimed_until=lease_until_ms)
                       for d in pick_with_room(rows, room, default_room, limit)]
            if claimed:
                conn.execute("UPDATE webhook_deliveries SET claimed_until = %s WHERE id = ANY(%s)",
                             (lease_until_ms, [d.id for d in claimed]))
            return claimed

        return await self._write(write, pipelined=True)

    async def record_attempt(self, record: AttemptRecord) -> bool:
        return await self._write(lambda c: apply_attempt(c, record, ROWS))  # it reads a rowcount

    async def next_due_at(self, *, room: Mapping[str, int], default_room: int) -> int | None:
        rows = await self._all(
            "SELECT endpoint, MIN(GREATEST(next_attempt_at, claimed_until)) FROM webhook_deliveries "
            "WHERE status = 'pending' GROUP BY endpoint", (), tuple)
        return min((t for endpoint, t in rows if room.get(endpoint, default_room) > 0), default=None)

    async def expedite(self, endpoint: str, now_ms: int) -> int:
        return await self._execute(
            "UPDATE webhook_deliveries SET next_attempt_at = %s WHERE status = 'pending' AND endpoint = %s "
            "AND attempts > 0 AND next_attempt_at > %s", (now_ms, endpoint, now_ms))

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._one(f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = %s",
                               (delivery_id,), delivery)

    async def list_deliveries(self, session_id: str, *, status: DeliveryStatus | None, before: str | None,
                              limit: int) -> list[Delivery]:
        where, params = "session_id = %s AND id < %s", [session_id, before or "\uffff"]
        if status is not None:
            where += " AND status = %s"
            params.append(status.value)
        return await self._all(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where} ORDER BY id DESC LIMIT %s",
            (*params, limit), delivery)

    async def list_attempts(self, delivery_id: str) -> list[AttemptRecord]:
        return await self._all(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts "
            "WHERE delivery_id = %s ORDER BY seq", (delivery_id,), lambda r: attempt(delivery_id, r))

    async def redeliver(self, delivery_id: str, now_ms: int) -> Delivery | None:
        await self._execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = %s, attempts = 0, "
            "claimed_until = 0, finished_at = NULL WHERE id = %s AND status != 'pending'", (now_ms, delivery_id))
        return await self.get_delivery(delivery_id)

    async def count_deliveries(self, status: DeliveryStatus) -> int:
        return int(await self._scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = %s", (status.value,)))
