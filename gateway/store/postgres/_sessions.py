"""WhatsApp sessions on PostgreSQL: their settings, keys and last known state."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from psycopg import sql

from .._ports import EventsOf
from .._records import Fence, SessionRecord
from .._rows import SESSION_COLUMNS
from ._base import ROWS, Conn, PostgresBase
from ._batch import once
from ._cluster import fence_clause
from ._outbox import write_events


class PostgresSessions(PostgresBase):
    async def create_session(self, session: SessionRecord) -> None:
        await self._execute(ROWS.insert("sessions", SESSION_COLUMNS), ROWS.session_row(session))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = %s", (session_id,), ROWS.session)

    async def get_session_by_key_id(self, key_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE key_id = %s", (key_id,), ROWS.session)

    async def list_sessions(self, user_id: str, *, after: str | None, limit: int) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = %s AND id > %s ORDER BY id LIMIT %s",
            (user_id, after or "", limit), ROWS.session)

    async def list_sessions_to_connect(self) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE connect_on_start ORDER BY id", (), ROWS.session)

    async def update_session(self, session_id: str, changes: dict[str, Any], at: int, *,
                             events: EventsOf[SessionRecord] | None = None,
                             fence: Fence | None = None) -> SessionRecord | None:
        values = ROWS.session_changes(changes, at)
        fenced, fence_params = fence_clause("sessions.id", fence)
        # One statement: the change and the record it produced are read atomically.
        query = sql.SQL("UPDATE sessions SET {} WHERE id = %s{} RETURNING {}").format(
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values),
            sql.SQL(fenced), sql.SQL(SESSION_COLUMNS))

        params = (*values.values(), session_id, *fence_params)
        events = once(events)

        def write(conn: Conn) -> Generator[None, None, SessionRecord | None]:
            cursor = conn.execute(query, params)
            yield
            row = cursor.fetchone()
            record = ROWS.session(row) if row else None
            if record is not None and events is not None:
                # The row just written carries the webhook settings its events go to.
                target = (record.webhook_url, record.webhook_events, record.webhook_enabled, record.webhook_secret)
                write_events(conn, events(record), at, {record.id: target})
            return record

        return await self._write(write, pipelined=True, single=events is None)

    async def delete_session(self, session_id: str) -> bool:
        # Alone: the delete cascades to every message, delivery and contact of the session.
        return await self._execute_alone("DELETE FROM sessions WHERE id = %s", (session_id,)) > 0
