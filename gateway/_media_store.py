"""Where incoming media lives: the `MediaStore` Protocol, and `FileMediaStore`, its implementation on disk.

A store keeps the bytes of each file a session downloaded, and its metadata
(`MediaRecord`: mimetype, size, sha256, filename, session, time) in the
gateway's store table `media`. The Protocol is small on purpose, so that an
S3-compatible store can be written behind it later: `put`, `get` (the record
and a stream of the bytes, only for the session that owns it), `delete` and
`purge_older_than`.

`FileMediaStore` names each file by its id, under `<root>/<id[4:6]>/<id>`
(`root` is `GATEWAY_DATA_DIR/media`). Ids are made here and checked against
`MEDIA_ID` before any path is built, so no id can reach outside `root`. A file
is written to a temporary name beside its final one, flushed, then renamed:
a reader sees the whole file or none. The row is written after the file, and
deleted before it, so a row never names a file that was not complete; a crash
between the two leaves at most an orphaned file, never a broken link.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import trio

from .store import MediaRecord, MediaRecordStore

MEDIA_ID: Final = re.compile(r"med_[0-9a-f]{32}")
CHUNK: Final = 256 * 1024  # bytes read per step when serving a file
PURGE_BATCH: Final = 500  # records forgotten per store call while purging


def new_media_id() -> str:
    return "med_" + secrets.token_hex(16)


def is_media_id(text: str) -> bool:
    return MEDIA_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class StoredMedia:
    """One file as `get` found it: its record, and its bytes as a stream (read once)."""

    record: MediaRecord
    chunks: AsyncIterator[bytes]


class MediaStore(Protocol):
    async def put(self, *, session_id: str, data: bytes, mimetype: str, filename: str | None,
                  at: int) -> MediaRecord:
        """Keep `data` for `session_id`; the record names its new id."""

    async def get(self, session_id: str, media_id: str) -> StoredMedia | None:
        """The file, if it exists and belongs to `session_id` (another session's is None, like a missing one)."""

    async def delete(self, media_id: str) -> bool: ...

    async def purge_older_than(self, before: int) -> int:
        """Delete every file created before `before` (ms) with its record; returns how many."""


class FileMediaStore:
    """A `MediaStore` on the local disk (see the module docstring). In cluster mode every node must see
    the same `root` (the workers of one host do: they share GATEWAY_DATA_DIR)."""

    def __init__(self, root: Path, records: MediaRecordStore) -> None:
        self.root = root
        self._records = records

    def path(self, media_id: str) -> Path:
        """Where the file `media_id` lives; ValueError for anything that is not a media id."""
        if not is_media_id(media_id):
            raise ValueError(f"not a media id: {media_id!r}")
        return self.root / media_id[4:6] / media_id

    async def put(self, *, session_id: str, data: bytes, mimetype: str, filename: str | None,
                  at: int) -> MediaRecord:
        media_id = new_media_id()
        path = self.path(media_id)
        await trio.to_thread.run_sync(_write_atomically, path, data)
        record = MediaRecord(id=media_id, session_id=session_id, mimetype=mimetype, size=len(data),
                             sha256=hashlib.sha256(data).hexdigest(), filename=filename, created_at=at)
        try:
            await self._records.add_media(record)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_unlink, path)
            raise
        return record

    async def get(self, session_id: str, media_id: str) -> StoredMedia | None:
        if not is_media_id(media_id):
            return None
        record = await self._records.get_media(media_id)
        if record is None or record.session_id != session_id:
            return None
        try:
            file = await trio.open_file(self.path(media_id), "rb")
        except FileNotFoundError:  # purged between the row and the file
            return None
        return StoredMedia(record=record, chunks=_read(file))

    async def delete(self, media_id: str) -> bool:
        if not is_media_id(media_id):
            return False
        found = await self._records.delete_media(media_id)
        await trio.to_thread.run_sync(_unlink, self.path(media_id))
        return found

    async def purge_older_than(self, before: int) -> int:
        purged = 0
        while True:
            records = await self._records.delete_media_before(before, PURGE_BATCH)
            for record in records:
                await trio.to_thread.run_sync(_unlink, self.path(record.id))
            purged += len(records)
            if len(records) < PURGE_BATCH:
                return purged


async def _read(file: trio.abc.AsyncResource) -> AsyncIterator[bytes]:
    async with file:
        while chunk := await file.read(CHUNK):  # type: ignore[attr-defined]
            yield chunk


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        _unlink(temp)
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
