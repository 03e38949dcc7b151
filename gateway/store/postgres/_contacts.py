"""A session's address book on PostgreSQL."""

from __future__ import annotations

from typing import Any, Final

from ._base import PostgresBase
from .._records import ContactRecord

_COLUMNS: Final = "session_id, phone_number, name, created_at, updated_at"


class PostgresContacts(PostgresBase):
    async def upsert_contact(self, contact: ContactRecord) -> ContactRecord:
        c = contact
        row = await self._one(
            f"INSERT INTO contacts ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (session_id, phone_number) DO UPDATE SET name = EXCLUDED.name, "
            f"updated_at = EXCLUDED.updated_at RETURNING {_COLUMNS}",
            (c.session_id, c.phone_number, c.name, c.created_at, c.updated_at), _contact)
        assert row is not None
        return row

    async def get_contact(self, session_id: str, phone_number: str) -> ContactRecord | None:
        return await self._one(f"SELECT {_COLUMNS} FROM contacts WHERE session_id = %s AND phone_number = %s",
                               (session_id, phone_number), _contact)

    async def list_contacts(self, session_id: str, *, after: str | None, limit: int) -> list[ContactRecord]:
        return await self._all(f"SELECT {_COLUMNS} FROM contacts WHERE session_id = %s AND phone_number > %s "
                               "ORDER BY phone_number LIMIT %s", (session_id, after or "", limit), _contact)


def _contact(r: Any) -> ContactRecord:
    return ContactRecord(session_id=r[0], phone_number=r[1], name=r[2], created_at=r[3], updated_at=r[4])
