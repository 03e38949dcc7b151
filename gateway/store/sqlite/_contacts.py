"""A session's address book on SQLite."""

from __future__ import annotations

import sqlite3

from .._records import ContactRecord
from .._rows import CONTACT_COLUMNS, contact_row
from .._rows import contact as _contact  # the name `contact` is upsert_contact's argument
from ._base import ROWS, SqliteBase

_UPSERT = (ROWS.insert("contacts", CONTACT_COLUMNS) + " ON CONFLICT (session_id, phone_number) "
           "DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at")
_GET = f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE session_id = ? AND phone_number = ?"


class SqliteContacts(SqliteBase):
    async def upsert_contact(self, contact: ContactRecord) -> ContactRecord:
        row = contact_row(contact)

        def tx(conn: sqlite3.Connection) -> ContactRecord:
            conn.execute(_UPSERT, row)
            return _contact(conn.execute(_GET, (contact.session_id, contact.phone_number)).fetchone())

        return await self._write(tx)

    async def get_contact(self, session_id: str, phone_number: str) -> ContactRecord | None:
        return await self._one(_GET, (session_id, phone_number), _contact)

    async def list_contacts(self, session_id: str, *, after: str | None, limit: int) -> list[ContactRecord]:
        return await self._all(f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE session_id = ? AND phone_number > ? "
                               "ORDER BY phone_number LIMIT ?", (session_id, after or "", limit), _contact)
