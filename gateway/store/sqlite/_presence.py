"""The contacts whose presence a session follows, on SQLite."""

from __future__ import annotations

from ._base import SqliteBase


class SqlitePresence(SqliteBase):
    async def add_presence_subscription(self, session_id: str, jid: str, at: int) -> bool:
        return await self._execute(
            "INSERT INTO presence_subscriptions (session_id, jid, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (session_id, jid) DO NOTHING", (session_id, jid, at)) > 0

    async def list_presence_subscriptions(self, session_id: str) -> list[str]:
        return await self._all("SELECT jid FROM presence_subscriptions WHERE session_id = ? ORDER BY jid",
                               (session_id,), lambda row: row[0])
