"""WhatsApp sessions on SQLite: their settings, keys and last known state."""

from __future__ import annotations

import sqlite3
from typing import Any

from .._ports import EventsOf
from .._records import Fence, SessionRecord
from .._rows import SESSION_COLUMNS
from ._base import ROWS, SqliteBase
from ._cluster import fence_holds
from ._outbox import write_events


class SqliteSessions(SqliteBase):
    async def create_session(self, session: SessionRecord) -> None:
        row = ROWS.session_row(session)
        await self._write(lambda c: c.execute(ROWS.insert("sessions", SESSION_COLUMNS), row))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,), ROWS.session)

    async def get_session_by_key_id(self, key_id: str) -> SessionRecord | None:
        return await self._one(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE key_id = ?", (key_id,), ROWS.session)

    async def list_sessions(self, user_id: str, *, after: str | None, limit: int) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
            (user_id, after or "", limit), ROWS.session)

    async def list_sessions_to_connect(self) -> list[SessionRecord]:
        return await self._all(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE connect_on_start = 1 ORDER BY id", (), ROWS.session)

    async def update_session(self, session_id: str, changes: dict[str, Any], at: int, *,
                             events: EventsOf[SessionRecord] | None = None,
                             fence: Fence | None = None) -> SessionRecord | None:
        values = ROWS.session_changes(changes, at)
        assignments = ", ".join(f"{k} = ?" for k in values)

        def tx(conn: sqlite3.Connection) -> SessionRecord | None:
            if not fence_holds(conn, session_id, fence):
                return None
            conn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*values.values(), session_id))
            row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
            record = ROWS.session(row) if row else None
            if record is not None and events is not None:
                write_events(conn, events(record), at)
            return record

        return await self._write(tx)

    async def delete_session(self, session_id: str) -> bool:
        return await self._execute("DELETE FROM sessions WHERE id = ?", (session_id,)) > 0
