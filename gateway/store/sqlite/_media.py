"""What the gateway knows of each incoming media file, on SQLite (the bytes are in the media store)."""

from __future__ import annotations

import sqlite3

from .._records import MediaRecord
from .._rows import MEDIA_COLUMNS, media_row
from ._base import SqliteBase


class SqliteMedia(SqliteBase):
    async def add_media(self, record: MediaRecord) -> None:
        await self._execute(f"INSERT INTO media ({MEDIA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", (
            record.id, record.session_id, record.mimetype, record.size, record.sha256, record.filename,
            record.created_at))

    async def get_media(self, media_id: str) -> MediaRecord | None:
        return await self._one(f"SELECT {MEDIA_COLUMNS} FROM media WHERE id = ?", (media_id,), media_row)

    async def delete_media(self, media_id: str) -> bool:
        return await self._execute("DELETE FROM media WHERE id = ?", (media_id,)) > 0

    async def delete_media_before(self, before: int, limit: int) -> list[MediaRecord]:
        def delete(conn: sqlite3.Connection) -> list[MediaRecord]:
            rows = conn.execute(f"SELECT {MEDIA_COLUMNS} FROM media WHERE created_at < ? ORDER BY created_at, id "
                                "LIMIT ?", (before, limit)).fetchall()
            conn.executemany("DELETE FROM media WHERE id = ?", [(row[0],) for row in rows])
            return [media_row(row) for row in rows]

        return await self._write(delete)
