"""The webhook outbox on SQLite: the `DeliveryStore` contract of `gateway.webhooks`, and the delivery API.

Deliveries are inserted by the other domains' writes in the same transaction
as the change that caused their event (`events=`, through `write_events`);
this class adds the dispatcher's four calls plus listing and redelivery for
the API.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

import msgspec

from ..._events import GatewayEvent
from ...webhooks import AttemptRecord, Delivery, DeliveryStatus
from .._outbox_rules import apply_attempt, deliveries_for, pick_with_room
from .._rows import ATTEMPT_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_TARGET_COLUMNS, attempt, delivery, delivery_row
from ._base import ROWS, SqliteBase

_INSERT = ROWS.insert("webhook_deliveries", DELIVERY_COLUMNS)
_GET = f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?"


def insert_deliveries(conn: sqlite3.Connection, deliveries: list[Delivery]) -> None:
    if deliveries:
        conn.executemany(_INSERT, [delivery_row(d) for d in deliveries])


def write_events(conn: sqlite3.Connection, events: list[GatewayEvent], now_ms: int) -> list[Delivery]:
    """Turn events into deliveries inside the caller's transaction (see `_outbox_rules`)."""
    def lookup(session_id: str) -> tuple[str | None, list[str], bool, str] | None:
        row = conn.execute(f"SELECT {WEBHOOK_TARGET_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return ROWS.webhook_target(row) if row else None

    deliveries = deliveries_for(events, lookup, now_ms)
    insert_deliveries(conn, deliveries)
    return deliveries


class SqliteOutbox(SqliteBase):
    async def record_events(self, events: list[GatewayEvent], now_ms: int) -> list[Delivery]:
        return await self._write(lambda c: write_events(c, events, now_ms))

    async def insert_deliveries(self, deliveries: list[Delivery]) -> None:
        await self._write(lambda c: insert_deliveries(c, deliveries))

    async def claim_due(self, now_ms: int, *, limit: int, room: Mapping[str, int], default_room: int,
                        lease_until_ms: int) -> list[Delivery]:
        def tx(conn: sqlite3.Connection) -> list[Delivery]:
            # Endpoints without room are left out in SQL, so a backlog behind one dead endpoint
            # cannot crowd the healthy ones out of a claim.
            listed = [e for e, n in room.items() if (n <= 0) == (default_room > 0)]
            marks = ROWS.marks(len(listed))
            scope = (f"AND endpoint NOT IN ({marks})" if default_room > 0 else f"AND endpoint IN ({marks})") \
                if listed or default_room <= 0 else ""
            cursor = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = 'pending' "
                f"AND next_attempt_at <= ? AND claimed_until <= ? {scope} ORDER BY next_attempt_at, id",
                (now_ms, now_ms, *listed))
            claimed = pick_with_room(cursor, room, default_room, limit)
            conn.executemany("UPDATE webhook_deliveries SET claimed_until = ? WHERE id = ?",
                             [(lease_until_ms, d.id) for d in claimed])
            return [_claimed(d, lease_until_ms) for d in claimed]

        return await self._write(tx)

    async def record_attempt(self, record: AttemptRecord) -> bool:
        return await self._write(lambda c: apply_attempt(c, record, ROWS))

    async def next_due_at(self, *, room: Mapping[str, int], default_room: int) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            rows = conn.execute(
                "SELECT endpoint, MIN(MAX(next_attempt_at, claimed_until)) FROM webhook_deliveries "
                "WHERE status = 'pending' GROUP BY endpoint").fetchall()
            times = [t for endpoint, t in rows if room.get(endpoint, default_room) > 0]
            return min(times, default=None)

        return await self._run(read)

    async def expedite(self, endpoint: str, now_ms: int) -> int:
        return await self._execute(
            "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE status = 'pending' AND endpoint = ? "
            "AND attempts > 0 AND next_attempt_at > ?", (now_ms, endpoint, now_ms))

    # -- the delivery API -------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._one(_GET, (delivery_id,), delivery)

    async def list_deliveries(self, session_id: str, *, status: DeliveryStatus | None, before: str | None,
                              limit: int) -> list[Delivery]:
        """Newest first."""
        where, params = "session_id = ? AND id < ?", [session_id, before or "\uffff"]
        if status is not None:
            where += " AND status = ?"
            params.append(status.value)
        return await self._all(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where} ORDER BY id DESC LIMIT ?",
            (*params, limit), delivery)

    async def list_attempts(self, delivery_id: str) -> list[AttemptRecord]:
        return await self._all(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts "
            "WHERE delivery_id = ? ORDER BY rowid", (delivery_id,), lambda r: attempt(delivery_id, r))

    async def redeliver(self, delivery_id: str, now_ms: int) -> Delivery | None:
        """Make a delivered or dead delivery pending again, due now, with a fresh retry budget."""
        def tx(conn: sqlite3.Connection) -> Delivery | None:
            conn.execute(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, attempts = 0, "
                "claimed_until = 0, finished_at = NULL WHERE id = ? AND status != 'pending'", (now_ms, delivery_id))
            row = conn.execute(_GET, (delivery_id,)).fetchone()
            return delivery(row) if row else None

        return await self._write(tx)

    async def count_deliveries(self, status: DeliveryStatus) -> int:
        return int(await self._scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = ?", (status.value,)))


def _claimed(d: Delivery, until: int) -> Delivery:
    return msgspec.structs.replace(d, claimed_until=until)
