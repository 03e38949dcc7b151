"""Outbound messages, their status history and idempotency keys, on PostgreSQL.

A status change and its history row are written by one statement (a
data-modifying CTE), and so is a new message with its first history row (and,
for a single message, the claim of its idempotency key): they commit together,
in one round trip, and in a batch of writes (`_batch`) the statements nobody
reads back cost no round trip of their own. Guards live in the UPDATE's WHERE
clause, where PostgreSQL re-checks them against the newest row version: two
nodes racing to move the same message cannot both win. A change that causes
events reads its session's webhook settings in the same statement, for the
outbox rows written right after it.

`claim_next_message` takes its row `FOR UPDATE SKIP LOCKED`, so several
workers (or cluster nodes) can drain one queue without waiting on each other.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from functools import lru_cache
from typing import Any, Final

from .._ports import EventsOf
from .._records import Fence, IdempotencyRecord, MessageRecord, MessageStatus, QueueDepth, StatusEntry
from .._rows import (
    EXPIRED, HISTORY_COLUMNS, IDEMPOTENCY_COLUMNS, INTERRUPTED, MESSAGE_COLUMNS, STATUS_COLUMNS,
    WEBHOOK_TARGET_COLUMNS, count, idempotency_row, qualified, status_entry,
)
from .._rows import idempotency as _idempotency  # the name `idempotency` is create_messages' argument
from ._base import ROWS, Conn, PostgresBase
from ._batch import once
from ._cluster import fence_clause
from ._outbox import write_events

_INSERT_HISTORY: Final = f"INSERT INTO message_status_history ({HISTORY_COLUMNS}) "
# Appended to an UPDATE of messages that RETURNs its columns as `moved`:
# records each moved row's new status in the history.
_RECORD_HISTORY: Final = f"), history AS ({_INSERT_HISTORY} SELECT id, status, updated_at, status_reason FROM moved) "
_AND_RECORD_HISTORY: Final = _RECORD_HISTORY + f"SELECT {MESSAGE_COLUMNS} FROM moved"
# The same, returning after the message's columns its session's id and webhook settings (see `_move_one`).
_AND_RECORD_HISTORY_WITH_TARGET: Final = (
    _RECORD_HISTORY + f"SELECT {qualified(MESSAGE_COLUMNS, 'moved')}, s.id, {qualified(WEBHOOK_TARGET_COLUMNS, 's')} "
    "FROM moved LEFT JOIN sessions s ON s.id = moved.session_id")
_N_MESSAGE_COLUMNS: Final = count(MESSAGE_COLUMNS)

_CANCEL: Final = "WITH moved AS (UPDATE messages SET status = 'cancelled', status_reason = %s, updated_at = %s "

# New messages: the rows and their first history entries (status, time and reason as created).
_NEW_HISTORY_ROWS: Final = f"{_INSERT_HISTORY} SELECT id, status, created_at, status_reason FROM m"
_NEW_HISTORY: Final = f"h AS ({_NEW_HISTORY_ROWS})"
_NEW_RETURNING: Final = "RETURNING id, status, created_at, status_reason"
_CLAIM_KEY: Final = (ROWS.insert("idempotency_keys", IDEMPOTENCY_COLUMNS)
                     + " ON CONFLICT (session_id, key) DO NOTHING RETURNING 1")
_GET_KEY: Final = f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE session_id = %s AND key = %s"
# One message with its idempotency key: the key is claimed, and only then the message inserted. ON
# CONFLICT waits for a concurrent claim of the same key to finish; the answer is (claimed, the key's
# row as this statement sees it). The claim's own row is invisible to the statement that wrote it.
_CLAIM_AND_INSERT_ONE: Final = (
    f"WITH claim AS ({_CLAIM_KEY}), "
    f"m AS (INSERT INTO messages ({MESSAGE_COLUMNS}) SELECT {ROWS.marks(_N_MESSAGE_COLUMNS)} "
    f"WHERE EXISTS (SELECT FROM claim) {_NEW_RETURNING}), {_NEW_HISTORY} "
    f"SELECT EXISTS (SELECT FROM claim), {qualified(IDEMPOTENCY_COLUMNS, 'k')} FROM (SELECT) AS one "
    "LEFT JOIN idempotency_keys k ON k.session_id = %s AND k.key = %s")
# Rows per INSERT of a long list of messages: 15 parameters each, far below the protocol's 65535.
_ROWS_PER_INSERT: Final = 500


@lru_cache(maxsize=64)
def _insert_messages(n: int) -> str:
    """`n` new messages and their first history rows, one statement."""
    values = ", ".join([f"({ROWS.marks(_N_MESSAGE_COLUMNS)})"] * n)
    return f"WITH m AS (INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {values} {_NEW_RETURNING}) {_NEW_HISTORY_ROWS}"


def _insert_new(conn: Conn, messages: list[MessageRecord]) -> None:
    """Pipeline-safe: nothing is read back."""
    for start in range(0, len(messages), _ROWS_PER_INSERT):
        chunk = messages[start:start + _ROWS_PER_INSERT]
        conn.execute(_insert_messages(len(chunk)), [v for m in chunk for v in ROWS.message_row(m)])


def _status_in(statuses: frozenset[MessageStatus]) -> str:
    """` AND status IN (...)`, the statuses written out: they are the enum's own words, and an array
    parameter costs more to send than the statement it guards (a few sets, each a prepared statement)."""
    if not statuses:
        return " AND FALSE"
    return " AND status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(statuses, key=lambda s: s.value)))


def _move_one(conn: Conn, update: str, params: Sequence[Any], events: EventsOf[MessageRecord] | None,
              at: int) -> Generator[None, None, MessageRecord | None]:
    """`update` (an UPDATE of one message, as far as its RETURNING), its history row, and its events' outbox rows.

    A batched write's steps (see `_batch`). With events, the same statement reads the session's webhook settings.
    """
    tail = _AND_RECORD_HISTORY if events is None else _AND_RECORD_HISTORY_WITH_TARGET
    cursor = conn.execute(f"{update} RETURNING {MESSAGE_COLUMNS}{tail}", params)
    yield
    row = cursor.fetchone()
    if row is None:
        return None
    record = ROWS.message(row)
    if events is not None:
        n = _N_MESSAGE_COLUMNS
        target = None if row[n] is None else ROWS.webhook_target(row[n + 1:])
        write_events(conn, events(record), at, {record.session_id: target})
    return record


class PostgresMessages(PostgresBase):
    async def create_messages(self, messages: list[MessageRecord],
                              idempotency: IdempotencyRecord | None = None) -> IdempotencyRecord | None:
        def write(conn: Conn) -> Generator[None, None, IdempotencyRecord | None]:
            i = idempotency
            if i is None:
                _insert_new(conn, messages)  # nothing to read back: no step to wait for
                return None
            if len(messages) == 1:
                cursor = conn.execute(_CLAIM_AND_INSERT_ONE, (*idempotency_row(i), *ROWS.message_row(messages[0]),
                                                              i.session_id, i.key))
                yield
                row = cursor.fetchone()
                assert row is not None  # one row, always
                if row[0]:
                    return None
                if row[1] is not None:
                    return _idempotency(row[1:])
            else:
                cursor = conn.execute(_CLAIM_KEY, idempotency_row(i))
                yield
                if cursor.fetchone() is not None:
                    _insert_new(conn, messages)
                    return None
            # Taken: by a claim this statement saw, or by one that committed while it waited (which
            # only a new statement sees).
            cursor = conn.execute(_GET_KEY, (i.session_id, i.key))
            yield
            return _idempotency(cursor.fetchone())

        # One statement writes it all (the claim and one message, or up to _ROWS_PER_INSERT messages).
        single = len(messages) <= (1 if idempotency is not None else _ROWS_PER_INSERT)
        return await self._write(write, pipelined=True, single=single)

    async def get_idempotency(self, session_id: str, key: str) -> IdempotencyRecord | None:
        return await self._one(_GET_KEY, (session_id, key), _idempotency)

    async def purge_idempotency(self, older_than: int) -> int:
        return await self._execute_alone("DELETE FROM idempotency_keys WHERE created_at < %s", (older_than,))

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
        events = once(events)
        return await self._write(lambda conn: _move_one(
            conn, _CANCEL + "WHERE id = %s AND status = 'queued'", (reason, at, message_id), events, at),
            pipelined=True, single=events is None)

    async def cancel_queued_messages(self, session_id: str, at: int, *, reason: str,
                                     events: EventsOf[MessageRecord] | None = None) -> int:
        # A sweep of the session's queue: alone, so that a long one holds up no other write.
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
        return await self._write_one(ROWS.reschedule(), (send_at, expires_at, at, message_id), ROWS.message)

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
        query = (
            "WITH ready AS (SELECT id FROM messages WHERE session_id = %s AND status = 'queued' "
            f"AND send_at IS NULL AND expires_at > %s{fenced} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED), "
            "due AS (SELECT id FROM messages WHERE session_id = %s AND status = 'queued' "
            f"AND send_at IS NOT NULL AND send_at <= %s AND expires_at > %s{fenced} "
            "ORDER BY send_at, id LIMIT 1 FOR UPDATE SKIP LOCKED), "
            "next AS (SELECT id FROM ready UNION ALL SELECT id FROM due ORDER BY id LIMIT 1), "
            "moved AS (UPDATE messages m SET status = 'sending', status_reason = NULL, "
            "attempts = m.attempts + 1, updated_at = %s FROM next WHERE m.id = next.id "
            f"RETURNING {qualified(MESSAGE_COLUMNS, 'm')}" + _AND_RECORD_HISTORY)
        return await self._write_one(
            query, (session_id, now, *fence_params, session_id, now, now, *fence_params, now), ROWS.message)

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
        return await self._set_status("id = %s", (message_id,), status, at, reason, wa_id, only_from, events, fence)

    async def set_status_by_wa_id(self, session_id: str, wa_id: str, status: MessageStatus, at: int, *,
                                  only_from: frozenset[MessageStatus] | None = None,
                                  events: EventsOf[MessageRecord] | None = None,
                                  fence: Fence | None = None) -> MessageRecord | None:
        # WhatsApp's ids are unique per chat, not per session: the first of any that match, as SQLite picks.
        return await self._set_status(
            "id = (SELECT id FROM messages WHERE session_id = %s AND wa_id = %s ORDER BY id LIMIT 1)",
            (session_id, wa_id), status, at, None, None, only_from, events, fence)

    async def _set_status(self, which: str, which_params: tuple[Any, ...], status: MessageStatus, at: int,
                          reason: str | None, wa_id: str | None, only_from: frozenset[MessageStatus] | None,
                          events: EventsOf[MessageRecord] | None, fence: Fence | None) -> MessageRecord | None:
        """One statement moves the message `which` names (and records its history), if `only_from` and the
        fence allow."""
        guard = "" if only_from is None else _status_in(only_from)
        fenced, fence_params = fence_clause("messages.session_id", fence)
        guard += fenced
        params = (status.value, reason, wa_id, at, *which_params, *fence_params)
        update = ("WITH moved AS (UPDATE messages SET status = %s, status_reason = %s, wa_id = COALESCE(%s, wa_id), "
                  f"updated_at = %s WHERE {which}{guard}")
        events = once(events)
        return await self._write(lambda conn: _move_one(conn, update, params, events, at), pipelined=True,
                                 single=events is None)

    async def requeue_interrupted(self, session_ids: list[str] | None, at: int, *,
                                  node_id: str | None = None) -> int:
        # Alone: a sweep, and its lease check is `now()` of its own statement.
        only_sessions, params = "", [INTERRUPTED, at]
        if session_ids is not None:
            only_sessions = " AND session_id = ANY(%s::text[])"
            params.append(list(session_ids))
        if node_id is not None:
            only_sessions += (" AND EXISTS (SELECT 1 FROM session_leases f WHERE f.session_id = messages.session_id "
                              "AND f.node_id = %s AND f.expires_at > now())")
            params.append(node_id)
        query = ("WITH moved AS (UPDATE messages SET status = 'queued', status_reason = %s, updated_at = %s "
                 f"WHERE status = 'sending'{only_sessions} RETURNING {MESSAGE_COLUMNS}" + _AND_RECORD_HISTORY)
        return await self._run(lambda c: len(c.execute(query, params).fetchall()))

    async def expire_messages(self, now: int, *,
                              events: EventsOf[MessageRecord] | None = None) -> list[MessageRecord]:
        # A sweep: alone (see `_base`).
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

