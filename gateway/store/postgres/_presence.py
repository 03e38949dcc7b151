"""The contacts whose presence a session follows, and the LIDs it learned, on PostgreSQL."""

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

    async def put_lids(self, session_id: str, pairs: list[tuple[str, str]], at: int) -> None:
        if pairs:
            rows = [(session_id, lid, phone, at) for lid, phone in pairs]
            await self._write(lambda c: c.cursor().executemany(
                "INSERT INTO lids (session_id, lid, phone_jid, updated_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (session_id, lid) DO UPDATE SET phone_jid = excluded.phone_jid, "
                "updated_at = excluded.updated_at", rows), pipelined=True, single=len(rows) == 1)

    async def phone_for_lid(self, session_id: str, lid: str) -> str | None:
        return await self._one("SELECT phone_jid FROM lids WHERE session_id = %s AND lid = %s",
                               (session_id, lid), lambda row: row[0])

    async def lid_for_phone(self, session_id: str, phone_jid: str) -> str | None:
        return await self._one("SELECT lid FROM lids WHERE session_id = %s AND phone_jid = %s "
                               "ORDER BY updated_at DESC, lid LIMIT 1", (session_id, phone_jid), lambda row: row[0])
