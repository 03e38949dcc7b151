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

from .._ports import EventsOf
from .._records import Fence, IdempotencyRecord, MessageRecord, MessageStatus, QueueDepth, StatusEntry
from .._rows import (
    EXPIRED, HISTORY_COLUMNS, IDEMPOTENCY_COLUMNS, INTERRUPTED, MESSAGE_COLUMNS, STATUS_COLUMNS, history_row,
    idempotency_row, qualified, status_entry,
)
from .._rows import idempotency as _idempotency  # the name `idempotency` is create_messages' argument
from ._base import ROWS, Conn, PostgresBase
from ._cluster import fence_clause
from ._outbox import write_events

_INSERT_HISTORY: Final = f"INSERT INTO message_status_history ({HISTORY_COLUMNS}) "
# Appended to an UPDATE of messages that RETURNs its columns as `moved`:
# records each moved row's new status in the history.
_AND_RECORD_HISTORY: Final = (
    f"), history AS ({_INSERT_HISTORY} SELECT id, status, updated_at, status_reason FROM moved) "
    f"SELECT {MESSAGE_COLUMNS} FROM moved")

_CANCEL: Final = "WITH moved AS (UPDATE messages SET status = 'cancelled', status_reason = %s, updated_at = %s "


class PostgresMessages(PostgresBase):
    async def create_messages(self, messages: list[MessageRecord],
                              idempotency: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
        def tx(conn: Conn) -> IdempotencyRecord | None:
            if idempotency is not None:
                i = idempotency
                # ON CONFLICT waits for a concurrent claim of the same key to
                # finish; if that one commits, ours inserts nothing and reads it.
                claimed = conn.execute(
                    ROWS.insert("idempotency_keys", IDEMPOTENCY_COLUMNS)
                    + " ON CONFLICT (session_id, key) DO NOTHING RETURNING 1", idempotency_row(i)).fetchone()
                if claimed is None:
                    row = conn.execute(f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys "
                                       "WHERE session_id = %s AND key = %s", (i.session_id, i.key)).fetchone()
                    return _idempotency(row)
            with conn.cursor() as cur:
                cur.executemany(ROWS.insert("messages", MESSAGE_COLUMNS), [ROWS.message_row(m) for m in messages])
                cur.executemany(ROWS.insert("message_status_history", HISTORY_COLUMNS),
                                [history_row(m) for m in messages])
            return None

        return await self._tx(tx)

    async def get_idempotency(self, session_id: str, key: str) -> IdempotencyRecord | None:
        return await self._one(
            f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE session_id = %s AND key = %s",
            (session_id, key), _idempotency)

    async def purge_idempotency(self, older_than: int) -> int:
        return await self._execute("DELETE FROM idempotency_keys WHERE created_at < %s", (older_than,))

    async def get_message(self, message_id: str) -> MessageRecord | None:
        return await self._one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = %s", (message_id,), ROWS.message)

    async def list_messages(self, session_id: str, *, before: str | None, limit: int,
                            status: MessageStatus | None = None, to_jid: str | None = None,
                            since: int | None = None, until: int | None = None) -> list[MessageRecord]:
        sql, params = ROWS.messages_page(session_id, before, limit, status, to_jid, since, until)
        return await self._all(sql, params, ROWS.message)

    async def cancel_message(self, message_id: str, at: int, *, reason: str,
                             events: EventsOf[MessageRecord] | None = None) -> MessageRecord | None:
        # The status guard is re-checked on the newest row version: a claim committed meanwhile wins.
        def tx(conn: Conn) -> MessageRecord | None:
            row = conn.execute(_CANCEL + "WHERE id = %s AND status = 'queued' "
                               f"RETURNING {MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
                               (reason, at, message_id)).fetchone()
            record = ROWS.message(row) if row else None
            if record is not None and events is not None:
                write_events(conn, events(record), at)
            return record

        return await self._tx(tx)

    async def cancel_queued_messages(self, session_id: str, at: int, *, reason: str,
                                     events: EventsOf[MessageRecord] | None = None) -> int:
        def tx(conn: Conn) -> int:
            rows = conn.execute(_CANCEL + "WHERE session_id = %s AND status = 'queued' "
                                f"RETURNING {MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
                                (reason, at, session_id)).fetchall()
            if events is not None:
                write_events(conn, [e for m in sorted(map(ROWS.message, rows), key=lambda m: m.id)
                                    for e in events(m)], at)
            return len(rows)

        return await self._tx(tx)

    async def reschedule_message(self, message_id: str, send_at: int, expires_at: int,
                                 at: int) -> MessageRecord | None:
        return await self._one(ROWS.reschedule(), (send_at, expires_at, at, message_id), ROWS.message)

    async def session_queue_depths(self, session_ids: list[str], now: int) -> dict[str, QueueDepth]:
        ids = list(dict.fromkeys(session_ids))
        if not ids:
            return {}
        rows = await self._all(ROWS.queue_depths_of(len(ids)), (now, *ids), lambda r: (r[0], QueueDepth(r[1], r[2])))
        return {sid: QueueDepth() for sid in ids} | dict(rows)

    async def get_message_history(self, message_id: str) -> list[StatusEntry]:
        return await self._all(
            f"SELECT {STATUS_COLUMNS} FROM message_status_history WHERE message_id = %s ORDER BY seq",
            (message_id,), status_entry)

    async def find_message_by_wa_id(self, session_id: str, wa_id: str) -> MessageRecord | None:
        return await self._one(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = %s AND wa_id = %s ORDER BY id LIMIT 1",
            (session_id, wa_id), ROWS.message)

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
            f"RETURNING {qualified(MESSAGE_COLUMNS, 'm')}" + _AND_RECORD_HISTORY,
            (session_id, now, *fence_params, session_id, now, now, *fence_params, now), ROWS.message)

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

    async def sessions_with_due_messages(self, session_ids: list[str], now: int) -> list[str]:
        if not session_ids:
            return []
        return await self._all(  # per session, one probe of each queue lane (messages_ready/_scheduled)
            "SELECT sid FROM unnest(%s::text[]) AS sid WHERE "
            "EXISTS (SELECT 1 FROM messages WHERE session_id = sid AND status = 'queued' AND send_at IS NULL "
            "AND expires_at > %s) OR EXISTS (SELECT 1 FROM messages WHERE session_id = sid AND status = 'queued' "
            "AND send_at IS NOT NULL AND send_at <= %s AND expires_at > %s)",
            (list(dict.fromkeys(session_ids)), now, now, now), lambda r: r[0])

    async def set_message_status(self, message_id: str, status: MessageStatus, at: int, *,
                                 reason: str | None = None, wa_id: str | None = None,
                                 only_from: frozenset[MessageStatus] | None = None,
                                 events: EventsOf[MessageRecord] | None = None,
                                 fence: Fence | None = None) -> MessageRecord | None:
        guard = ""
        params: list[Any] = [status.value, reason, wa_id, at, message_id]
        if only_from is not None:
            guard = " AND status = ANY(%s::text[])"
            params.append([s.value for s in only_from])
        fenced, fence_params = fence_clause("messages.session_id", fence)
        guard += fenced
        params += fence_params

        def tx(conn: Conn) -> MessageRecord | None:
            row = conn.execute(
                "WITH moved AS (UPDATE messages SET status = %s, status_reason = %s, wa_id = COALESCE(%s, wa_id), "
                f"updated_at = %s WHERE id = %s{guard} RETURNING {MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
                params).fetchone()
            record = ROWS.message(row) if row else None
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
            f"WHERE status = 'sending'{only_sessions} RETURNING {MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
            params, lambda r: r[0])
        return len(moved)

    async def expire_messages(self, now: int, *,
                              events: EventsOf[MessageRecord] | None = None) -> list[MessageRecord]:
        def tx(conn: Conn) -> list[MessageRecord]:
            rows = conn.execute(
                "WITH moved AS (UPDATE messages SET status = 'failed', status_reason = %s, updated_at = %s "
                f"WHERE status = 'queued' AND expires_at <= %s RETURNING {MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY,
                (EXPIRED, now, now)).fetchall()
            expired = sorted((ROWS.message(r) for r in rows), key=lambda m: m.id)
            if events is not None:
                write_events(conn, [e for m in expired for e in events(m)], now)
            return expired

        return await self._tx(tx)

    async def count_messages(self, session_id: str, status: MessageStatus) -> int:
        return await self._scalar("SELECT COUNT(*) FROM messages WHERE session_id = %s AND status = %s",
                                  (session_id, status.value))

