"""Outbound messages, their status history and idempotency keys, on PostgreSQL.

A status change and its history row are written by one statement (a
data-modifying CTE), so they commit together without an explicit transaction
and cost one round trip. Guards live in the UPDATE's WHERE clause, where
PostgreSQL re-checks them against the newest row version: two nodes racing to
move the same message cannot both win.

`claim_next_message` takes its row `FOR UPDATE SKIP LOCKED`, so several
workers (or cluster nodes) can drain one queue without waiting on each other.
"""

from __future__ import annotations

from typing import Any, Final

from psycopg.types.json import Jsonb

from .._ports import EventsOf
from ._base import Conn, PostgresBase
from ._cluster import fence_clause
from ._outbox import write_events
from .._records import Fence, IdempotencyRecord, MessageRecord, MessageStatus, StatusEntry

_MESSAGE_COLUMNS: Final = (
    "id, session_id, user_id, to_jid, type, modifiers, payload, status, status_reason, wa_id, "
    "send_at, expires_at, attempts, created_at, updated_at")
_IDEM_COLUMNS: Final = "session_id, key, request_hash, status_code, response, created_at"
_INSERT_HISTORY: Final = "INSERT INTO message_status_history (message_id, status, at, reason) "
# Appended to an UPDATE of messages that RETURNs its columns as `moved`:
# records each moved row's new status in the history.
_AND_RECORD_HISTORY: Final = (
    f"), history AS ({_INSERT_HISTORY} SELECT id, status, updated_at, status_reason FROM moved) "
    f"SELECT {_MESSAGE_COLUMNS} FROM moved")

INTERRUPTED: Final = "interrupted before the send was confirmed"
EXPIRED: Final = "expired in the queue"


class PostgresMessages(PostgresBase):
    async def create_messages(self, messages: list[MessageRecord],
                              idempotency: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
        def tx(conn: Conn) -> IdempotencyRecord | None:
            if idempotency is not None:
                i = idempotency
                # ON CONFLICT waits for a concurrent claim of the same key to
                # finish; if that one commits, ours inserts nothing and reads it.
                claimed = conn.execute(
                    f"INSERT INTO idempotency_keys ({_IDEM_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (session_id, key) DO NOTHING RETURNING 1",
                    (i.session_id, i.key, i.request_hash, i.status_code, i.response, i.created_at)).fetchone()
                if claimed is None:
                    row = conn.execute(f"SELECT {_IDEM_COLUMNS} FROM idempotency_keys "
                                       "WHERE session_id = %s AND key = %s", (i.session_id, i.key)).fetchone()
                    return _idem(row)
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})",
                                [_message_row(m) for m in messages])
                cur.executemany(f"{_INSERT_HISTORY} VALUES (%s, %s, %s, %s)",
                                [(m.id, m.status.value, m.created_at, m.status_reason) for m in messages])
            return None

        return await self._tx(tx)

    async def get_idempotency(self, session_id: str, key: str) -> IdempotencyRecord | None:
        return await self._one(f"SELECT {_IDEM_COLUMNS} FROM idempotency_keys WHERE session_id = %s AND key = %s",
                               (session_id, key), _idem)

    async def purge_idempotency(self, older_than: int) -> int:
        return await self._execute("DELETE FROM idempotency_keys WHERE created_at < %s", (older_than,))

    async def get_message(self, message_id: str) -> MessageRecord | None:
        return await self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = %s", (message_id,), _message)

    async def get_message_history(self, message_id: str) -> list[StatusEntry]:
        return await self._all(
            "SELECT status, at, reason FROM message_status_history WHERE message_id = %s ORDER BY seq",
            (message_id,), lambda r: StatusEntry(MessageStatus(r[0]), r[1], r[2]))

    async def find_message_by_wa_id(self, session_id: str, wa_id: str) -> MessageRecord | None:
        return await self._one(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = %s AND wa_id = %s ORDER BY id LIMIT 1",
            (session_id, wa_id), _message)

    async def claim_next_message(self, session_id: str, now: int, *,
                                 fence: Fence | None = None) -> MessageRecord | None:
        fenced, fence_params = fence_clause("messages.session_id", fence)
        # Two lanes, one index lookup each (messages_ready, messages_scheduled); the older of the two goes.
        return await self._one(
            "WITH ready AS (SELECT id FROM messages WHERE session_id = %s AND status = 'queued' "
            f"AND send_at IS NULL AND expires_at > %s{fenced} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED), "
            "due AS (SELECT id FROM messages WHERE session_id = %s AND status = 'queued' "
            f"AND send_at IS NOT NULL AND send_at <= %s AND expires_at > %s{fenced} "
            "ORDER BY send_at, id LIMIT 1 FOR UPDATE SKIP LOCKED), "
            "next AS (SELECT id FROM ready UNION ALL SELECT id FROM due ORDER BY id LIMIT 1), "
            "moved AS (UPDATE messages m SET status = 'sending', status_reason = NULL, "
            "attempts = m.attempts + 1, updated_at = %s FROM next WHERE m.id = next.id "
            f"RETURNING {_qualified('m')}" + _AND_RECORD_HISTORY,
            (session_id, now, *fence_params, session_id, now, now, *fence_params, now), _message)

    async def queue_depths(self) -> dict[str, int]:
        rows = dict(await self._all("SELECT status, COUNT(*) FROM messages WHERE status IN ('queued', 'sending') "
                                    "GROUP BY status", (), lambda r: (r[0], r[1])))
        pending = await self._scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'", ())
        return {"messages_queued": rows.get("queued", 0), "messages_sending": rows.get("sending", 0),
                "webhooks_pending": pending or 0}

    async def next_scheduled_at(self, session_id: str) -> int | None:
        return await self._scalar(
            "SELECT MIN(send_at) FROM messages WHERE session_id = %s AND status = 'queued' "
            "AND send_at IS NOT NULL", (session_id,))

    async def set_message_status(self, message_id: str, status: MessageStatus, at: int, *,
                                 reason: str | None = None, wa_id: str | None = None,
                                 only_from: frozenset[MessageStatus] | None = None,
                                 events: EventsOf[MessageRecord] | None = None,
                                 fence: Fence | None = None) -> MessageRecord | None:
        guard, params = "", [status.value, reason, wa_id, at, message_id]
        if only_from is not None:
            guard = " AND status = ANY(%s::text[])"
            params.append([s.value for s in only_from])
        fenced, fence_params = fence_clause("messages.session_id", fence)
        guard += fenced
        params += fence_params

        def tx(conn: Conn) -> MessageRecord | None:
            row = conn.execute(
                "WITH moved AS (UPDATE messages SET status = %s, status_reason = %s, wa_id = COALESCE(%s, wa_id), "
                f"updated_at = %s WHERE id = %s{guard} RETURNING {_MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
                params).fetchone()
            record = _message(row) if row else None
            if record is not None and events is not None:
                write_events(conn, events(record), at)
            return record

        return await self._tx(tx)

    async def requeue_interrupted(self, session_ids: list[str] | None, at: int, *,
                                  node_id: str | None = None) -> int:
        only_sessions, params = "", [INTERRUPTED, at]
        if session_ids is not None:
            only_sessions = " AND session_id = ANY(%s::text[])"
            params.append(list(session_ids))
        if node_id is not None:
            only_sessions += (" AND EXISTS (SELECT 1 FROM session_leases f WHERE f.session_id = messages.session_id "
                              "AND f.node_id = %s AND f.expires_at > now())")
            params.append(node_id)
        moved = await self._all(
            "WITH moved AS (UPDATE messages SET status = 'queued', status_reason = %s, updated_at = %s "
            f"WHERE status = 'sending'{only_sessions} RETURNING {_MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
            params, lambda r: r[0])
        return len(moved)

    async def expire_messages(self, now: int, *,
                              events: EventsOf[MessageRecord] | None = None) -> list[MessageRecord]:
        def tx(conn: Conn) -> list[MessageRecord]:
            rows = conn.execute(
                "WITH moved AS (UPDATE messages SET status = 'failed', status_reason = %s, updated_at = %s "
                f"WHERE status = 'queued' AND expires_at <= %s RETURNING {_MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
                (EXPIRED, now, now)).fetchall()
            expired = sorted((_message(r) for r in rows), key=lambda m: m.id)
            if events is not None:
                write_events(conn, [e for m in expired for e in events(m)], now)
            return expired

        return await self._tx(tx)

    async def count_messages(self, session_id: str, status: MessageStatus) -> int:
        return await self._scalar("SELECT COUNT(*) FROM messages WHERE session_id = %s AND status = %s",
                                  (session_id, status.value))


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))


def _message_row(m: MessageRecord) -> tuple[Any, ...]:
    return (m.id, m.session_id, m.user_id, m.to_jid, m.type, Jsonb(list(m.modifiers)), m.payload,
            m.status.value, m.status_reason, m.wa_id, m.send_at, m.expires_at, m.attempts, m.created_at,
            m.updated_at)


def _message(r: Any) -> MessageRecord:
    return MessageRecord(id=r[0], session_id=r[1], user_id=r[2], to_jid=r[3], type=r[4], modifiers=list(r[5]),
                         payload=bytes(r[6]), status=MessageStatus(r[7]), status_reason=r[8], wa_id=r[9],
                         send_at=r[10], expires_at=r[11], attempts=r[12], created_at=r[13], updated_at=r[14])


def _idem(r: Any) -> IdempotencyRecord:
    return IdempotencyRecord(session_id=r[0], key=r[1], request_hash=bytes(r[2]), status_code=r[3],
                             response=bytes(r[4]), created_at=r[5])
