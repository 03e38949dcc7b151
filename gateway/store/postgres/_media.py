"""What the gateway knows of each incoming media file, on PostgreSQL (the bytes are in the media store)."""

from __future__ import annotations

from .._records import MediaRecord
from .._rows import MEDIA_COLUMNS, media_row
from ._base import PostgresBase


class PostgresMedia(PostgresBase):
    async def add_media(self, record: MediaRecord) -> None:
        await self._execute(f"INSERT INTO media ({MEDIA_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", (
            record.id, record.session_id, record.mimetype, record.size, record.sha256, record.filename,
            record.created_at))

    async def get_media(self, media_id: str) -> MediaRecord | None:
        return await self._one(f"SELECT {MEDIA_COLUMNS} FROM media WHERE id = %s", (media_id,), media_row)

    async def delete_media(self, media_id: str) -> bool:
        return await self._execute("DELETE FROM media WHERE id = %s", (media_id,)) > 0

    async def delete_media_before(self, before: int, limit: int) -> list[MediaRecord]:
        # One statement, alone (a sweep): concurrent purges on several nodes each take (and return) different rows.
        rows = await self._run(lambda c: c.execute(
            f"DELETE FROM media WHERE id IN (SELECT id FROM media WHERE created_at < %s ORDER BY created_at, id "
            f"LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {MEDIA_COLUMNS}", (before, limit)).fetchall())
        return [media_row(r) for r in rows]
