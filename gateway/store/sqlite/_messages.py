"""The outbound message queue on SQLite: messages, their status history, and idempotency keys.

Every change of status writes its history row in the same transaction. The
queue has two lanes per session, each one index lookup however long the
queue is (migration 6): ready messages in id order (`messages_ready`), and
scheduled ones by `send_at` (`messages_scheduled`); the older of the two
heads goes first.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from ..._clock import now_ms
from .._ports import EventsOf
from .._records import Fence, IdempotencyRecord, MessageRecord, MessageStatus, QueueDepth, StatusEntry
from .._rows import (
    EXPIRED, HISTORY_COLUMNS, IDEMPOTENCY_COLUMNS, INTERRUPTED, MESSAGE_COLUMNS, STATUS_COLUMNS, history_row,
    idempotency_row, status_entry,
)
from .._rows import idempotency as _idempotency  # the name `idempotency` is create_messages' argument
from ._base import ROWS, SqliteBase
from ._cluster import fence_holds
from ._outbox import write_events

_INSERT_HISTORY = ROWS.insert("message_status_history", HISTORY_COLUMNS)
# A receipt's message: WhatsApp's ids are unique per chat, not per session, so the first of any that match.
# INDEXED BY: left to itself, the planner walks the session's messages in id order to spare the sort.
_BY_WA_ID = (f"SELECT {MESSAGE_COLUMNS} FROM messages INDEXED BY messages_wa_id WHERE session_id = ? AND wa_id = ? "
             "ORDER BY id LIMIT 1")
_READY = ("SELECT {} FROM messages INDEXED BY messages_ready WHERE session_id = ? AND status = 'queued' "
          "AND send_at IS NULL AND expires_at > ?")
_DUE = ("SELECT {} FROM messages INDEXED BY messages_scheduled WHERE session_id = ? AND status = 'queued' "
        "AND send_at IS NOT NULL AND send_at <= ? AND expires_at > ?")


_CANCEL = "UPDATE messages SET status = 'cancelled', status_reason = ?, updated_at = ?"


class SqliteMessages(SqliteBase):
    async def create_messages(self, messages: list[MessageRecord],
                              idempotency: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
        def tx(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            if idempotency is not None:
                row = conn.execute(f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys "
                                   "WHERE session_id = ? AND key = ?",
                                   (idempotency.session_id, idempotency.key)).fetchone()
                if row is not None:
                    return _idempotency(row)
                conn.execute(ROWS.insert("idempotency_keys", IDEMPOTENCY_COLUMNS), idempotency_row(idempotency))
            conn.executemany(ROWS.insert("messages", MESSAGE_COLUMNS), [ROWS.message_row(m) for m in messages])
            conn.executemany(_INSERT_HISTORY, [history_row(m) for m in messages])
            return None

        return await self._write(tx)

    async def get_idempotency(self, session_id: str, key: str) -> IdempotencyRecord | None:
        return await self._one(f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE session_id = ? AND key = ?",
                               (session_id, key), _idempotency)

    async def purge_idempotency(self, older_than: int) -> int:
        return await self._execute("DELETE FROM idempotency_keys WHERE created_at < ?", (older_than,))

    async def get_message(self, message_id: str) -> MessageRecord | None:
        return await self._one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,), ROWS.message)

    async def list_messages(self, session_id: str, *, before: str | None, limit: int,
                            status: MessageStatus | None = None, to_jid: str | None = None,
                            since: int | None = None, until: int | None = None) -> list[MessageRecord]:
        sql, params = ROWS.messages_page(session_id, before, limit, status, to_jid, since, until)
        return await self._all(sql, params, ROWS.message)

    async def cancel_message(self, message_id: str, at: int, *, reason: str,
                             events: EventsOf[MessageRecord] | None = None) -> MessageRecord | None:
        def tx(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(_CANCEL + " WHERE id = ? AND status = 'queued' RETURNING " + MESSAGE_COLUMNS,
                               (reason, at, message_id)).fetchone()
            if row is None:
                return None
            moved = ROWS.message(row)
            conn.execute(_INSERT_HISTORY, (moved.id, moved.status.value, at, reason))
            if events is not None:
                write_events(conn, events(moved), at)
            return moved

        return await self._write(tx)

    async def cancel_queued_messages(self, session_id: str, at: int, *, reason: str,
                                     events: EventsOf[MessageRecord] | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            moved = [ROWS.message(r) for r in conn.execute(
                _CANCEL + " WHERE session_id = ? AND status = 'queued' RETURNING " + MESSAGE_COLUMNS,
                (reason, at, session_id)).fetchall()]
            conn.executemany(_INSERT_HISTORY, [(m.id, m.status.value, at, reason) for m in moved])
            if events is not None:
                write_events(conn, [e for m in sorted(moved, key=lambda m: m.id) for e in events(m)], at)
            return len(moved)

        return await self._write(tx)

    async def reschedule_message(self, message_id: str, send_at: int, expires_at: int,
                                 at: int) -> MessageRecord | None:
        return await self._write(lambda conn: _one_message(
            conn.execute(ROWS.reschedule(), (send_at, expires_at, at, message_id)).fetchone()))

    async def session_queue_depths(self, session_ids: list[str], now: int) -> dict[str, QueueDepth]:
        ids = list(dict.fromkeys(session_ids))
        if not ids:
            return {}
        rows = await self._all(ROWS.queue_depths_of(len(ids)), (now, *ids), lambda r: (r[0], QueueDepth(r[1], r[2])))
        return {sid: QueueDepth() for sid in ids} | dict(rows)

    async def get_message_history(self, message_id: str) -> list[StatusEntry]:
        return await self._all(f"SELECT {STATUS_COLUMNS} FROM message_status_history WHERE message_id = ? "
                               "ORDER BY rowid", (message_id,), status_entry)

    async def find_message_by_wa_id(self, session_id: str, wa_id: str) -> MessageRecord | None:
        return await self._one(_BY_WA_ID, (session_id, wa_id), ROWS.message)

    async def claim_next_message(self, session_id: str, now: int, *,
                                 fence: Fence | None = None) -> MessageRecord | None:
        def tx(conn: sqlite3.Connection) -> MessageRecord | None:
            if not fence_holds(conn, session_id, fence):
                return None
            ready = conn.execute(_READY.format(MESSAGE_COLUMNS) + " ORDER BY id LIMIT 1",
                                 (session_id, now)).fetchone()
            due = conn.execute(_DUE.format(MESSAGE_COLUMNS) + " ORDER BY send_at, id LIMIT 1",
                               (session_id, now, now)).fetchone()
            row = min((r for r in (ready, due) if r is not None), key=lambda r: r[0], default=None)
            if row is None:
                return None
            message = ROWS.message(row)
            _move(conn, message.id, MessageStatus.SENDING, now, None, None, attempts=True)
            return msgspec.structs.replace(message, status=MessageStatus.SENDING, attempts=message.attempts + 1,
                                           updated_at=now)

        return await self._write(tx)

    async def next_scheduled_at(self, session_id: str) -> int | None:
        return await self._scalar(
            "SELECT MIN(send_at) FROM messages INDEXED BY messages_scheduled WHERE session_id = ? "
            "AND status = 'queued' AND send_at IS NOT NULL", (session_id,))

    async def sessions_with_due_messages(self, session_ids: list[str], now: int) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [sid for sid in dict.fromkeys(session_ids) if conn.execute(
                f"SELECT EXISTS ({_READY.format(1)}) OR EXISTS ({_DUE.format(1)})",
                (sid, now, sid, now, now)).fetchone()[0]]

        return await self._run(read)

    async def set_message_status(self, message_id: str, status: MessageStatus, at: int, *,
                                 reason: str | None = None, wa_id: str | None = None,
                                 only_from: frozenset[MessageStatus] | None = None,
                                 events: EventsOf[MessageRecord] | None = None,
                                 fence: Fence | None = None) -> MessageRecord | None:
        def tx(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)).fetchone()
            return _set_status(conn, row, status, at, reason, wa_id, only_from, events, fence)

        return await self._write(tx)

    async def set_status_by_wa_id(self, session_id: str, wa_id: str, status: MessageStatus, at: int, *,
                                  only_from: frozenset[MessageStatus] | None = None,
                                  events: EventsOf[MessageRecord] | None = None,
                                  fence: Fence | None = None) -> MessageRecord | None:
        def tx(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(_BY_WA_ID, (session_id, wa_id)).fetchone()
            return _set_status(conn, row, status, at, None, None, only_from, events, fence)

        return await self._write(tx)

    async def requeue_interrupted(self, session_ids: list[str] | None, at: int, *,
                                  node_id: str | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            owned = ""
            params: tuple[Any, ...] = ()
            if node_id is not None:
                owned = (" AND EXISTS (SELECT 1 FROM session_leases f WHERE f.session_id = messages.session_id "
                         "AND f.node_id = ? AND f.expires_at > ?)")
                params = (node_id, now_ms())
            if session_ids is None:
                ids = [r[0] for r in conn.execute("SELECT id FROM messages WHERE status = 'sending'" + owned, params)]
            else:
                ids = []
                for sid in session_ids:
                    ids += [r[0] for r in conn.execute(
                        "SELECT id FROM messages WHERE session_id = ? AND status = 'sending'" + owned, (sid, *params))]
            for mid in ids:
                _move(conn, mid, MessageStatus.QUEUED, at, INTERRUPTED, None)
            return len(ids)

        return await self._write(tx)

    async def expire_messages(self, now: int, *,
                              events: EventsOf[MessageRecord] | None = None) -> list[MessageRecord]:
        def tx(conn: sqlite3.Connection) -> list[MessageRecord]:
            rows = conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = 'queued' "
                                "AND expires_at <= ?", (now,)).fetchall()
            expired = [ROWS.message(r) for r in rows]
            for m in expired:
                _move(conn, m.id, MessageStatus.FAILED, now, EXPIRED, None)
            failed = [msgspec.structs.replace(m, status=MessageStatus.FAILED, status_reason=EXPIRED, updated_at=now)
                      for m in expired]
            if events is not None:
                write_events(conn, [e for m in failed for e in events(m)], now)
            return failed

        return await self._write(tx)

    async def count_messages(self, session_id: str, status: MessageStatus) -> int:
        return int(await self._scalar("SELECT COUNT(*) FROM messages WHERE session_id = ? AND status = ?",
                                      (session_id, status.value)))

    async def queue_depths(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = dict(conn.execute("SELECT status, COUNT(*) FROM messages INDEXED BY messages_expiry "
                                     "WHERE status IN ('queued', 'sending') GROUP BY status").fetchall())
            pending = conn.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0]
            return {"messages_queued": rows.get("queued", 0), "messages_sending": rows.get("sending", 0),
                    "webhooks_pending": pending}

        return await self._run(read)


def _one_message(row: Any) -> MessageRecord | None:
    return None if row is None else ROWS.message(row)


def _set_status(conn: sqlite3.Connection, row: Any, status: MessageStatus, at: int, reason: str | None,
                wa_id: str | None, only_from: frozenset[MessageStatus] | None,
                events: EventsOf[MessageRecord] | None, fence: Fence | None) -> MessageRecord | None:
    """Move the message of `row` (None: there is none) to `status`, as `set_message_status` describes."""
    if row is None:
        return None
    message = ROWS.message(row)
    if only_from is not None and message.status not in only_from:
        return None
    if not fence_holds(conn, message.session_id, fence):
        return None
    _move(conn, message.id, status, at, reason, wa_id)
    moved = msgspec.structs.replace(message, status=status, status_reason=reason, wa_id=wa_id or message.wa_id,
                                    updated_at=at)
    if events is not None:
        write_events(conn, events(moved), at)
    return moved


def _move(conn: sqlite3.Connection, message_id: str, status: MessageStatus, at: int, reason: str | None,
          wa_id: str | None, *, attempts: bool = False) -> None:
    conn.execute(
        "UPDATE messages SET status = ?, status_reason = ?, wa_id = COALESCE(?, wa_id), updated_at = ?"
        + (", attempts = attempts + 1" if attempts else "") + " WHERE id = ?",
        (status.value, reason, wa_id, at, message_id))
    conn.execute(_INSERT_HISTORY, (message_id, status.value, at, reason))
