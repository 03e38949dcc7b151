"""A session's address book on PostgreSQL."""

from __future__ import annotations

from .._records import ContactRecord
from .._rows import CONTACT_COLUMNS, contact_row
from .._rows import contact as _contact  # the name `contact` is upsert_contact's argument
from ._base import ROWS, PostgresBase


class PostgresContacts(PostgresBase):
    async def upsert_contact(self, contact: ContactRecord) -> ContactRecord:
        row = await self._write_one(
            ROWS.insert("contacts", CONTACT_COLUMNS) + " ON CONFLICT (session_id, phone_number) DO UPDATE SET "
            f"name = EXCLUDED.name, updated_at = EXCLUDED.updated_at RETURNING {CONTACT_COLUMNS}",
            contact_row(contact), _contact)
        assert row is not None
        return row

    async def get_contact(self, session_id: str, phone_number: str) -> ContactRecord | None:
        return await self._one(f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE session_id = %s AND phone_number = %s",
                               (session_id, phone_number), _contact)

    async def list_contacts(self, session_id: str, *, after: str | None, limit: int) -> list[ContactRecord]:
        return await self._all(f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE session_id = %s AND phone_number > %s "
                               "ORDER BY phone_number LIMIT %s", (session_id, after or "", limit), _contact)

