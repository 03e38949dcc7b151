"""The contacts whose presence a session follows, on PostgreSQL."""

from __future__ import annotations

from ._base import PostgresBase


class PostgresPresence(PostgresBase):
    async def add_presence_subscription(self, session_id: str, jid: str, at: int) -> bool:
        return await self._execute(
            "INSERT INTO presence_subscriptions (session_id, jid, created_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (session_id, jid) DO NOTHING", (session_id, jid, at)) > 0

    async def list_presence_subscriptions(self, session_id: str) -> list[str]:
        return await self._all("SELECT jid FROM presence_subscriptions WHERE session_id = %s ORDER BY jid",
                               (session_id,), lambda row: row[0])
