"""The SQLite driver's plumbing: the connection, group commit, and the helpers every domain's methods use.

One connection in WAL mode, used from worker threads one batch of calls at a
time (group commit, `_batch`), so the trio loop never blocks on disk and
SQLite never sees two writers. Calls are not cancellable once started: a
write either happens whole or not at all.

Durability: a write returns only after its COMMIT (`_batch`). With WAL and
`synchronous=NORMAL` (the default) that COMMIT survives the process being
killed, but not a power cut or OS crash, which can take the last commits
back (the file stays consistent); `synchronous=FULL`
(`GATEWAY_SQLITE_SYNCHRONOUS=full`) fsyncs the WAL at every COMMIT, so it
survives those too, at a cost in write latency.

Each domain (`_accounts`, `_sessions`, `_messages`, ...) is a subclass of
`SqliteBase`, and `SqliteStore` mixes them, as the PostgreSQL driver does
with `PostgresBase`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any, Final, Self, TypeVar

import msgspec
import trio

from .._ports import StoreConflict
from .._rows import Rows
from ._batch import GroupCommit

T = TypeVar("T")

# JSON columns (the webhook event filter, message modifiers) are TEXT on SQLite.
ROWS: Final = Rows(mark="?", json_param=lambda value: msgspec.json.encode(value).decode(),
                   json_list=msgspec.json.decode)


# `PRAGMA synchronous` levels the store accepts, by name (what the pragma reads back: 1, 2).
SYNCHRONOUS_LEVELS: Final = {"normal": "NORMAL", "full": "FULL"}
DEFAULT_SYNCHRONOUS: Final = "normal"


def path_from_url(url: str) -> str:
    """`sqlite:///./data/x.db` → `./data/x.db`; `sqlite:////abs/x.db` → `/abs/x.db`."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return url[len("sqlite:///"):] or ":memory:"


class SqliteBase:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._calls = GroupCommit(conn)
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, synchronous: str = DEFAULT_SYNCHRONOUS) -> Self:
        """Open the store's connection; `synchronous` is `normal` or `full` (see the module docstring)."""
        path = path_from_url(url)
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"SQLite synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}, "
                             f"got {synchronous!r}")
        return cls(await trio.to_thread.run_sync(_connect, path, SYNCHRONOUS_LEVELS[synchronous]))

    async def aclose(self) -> None:
        if not self._closed:
            await self._exclusive(lambda c: c.close())
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read (or anything that needs no transaction of its own), batched with other calls."""
        self._check_open()
        return await self._calls.read(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A write: atomic on its own, durable when this returns (group commit, see `_batch`)."""
        self._check_open()
        try:
            return await self._calls.write(fn)
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(str(exc)) from None

    async def _exclusive(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A call that runs alone, outside any transaction of ours (migrations, close)."""
        self._check_open()
        return await self._calls.exclusive(fn)

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One write statement on its own; returns the number of rows it touched."""
        cursor = await self._write(lambda c: c.execute(sql, params))
        return cursor.rowcount

    async def _scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row, read."""
        return await self._run(lambda c: c.execute(sql, params).fetchone()[0])

    async def _one(self, sql: str, params: tuple[Any, ...], convert: Callable[[Any], T]) -> T | None:
        row = await self._run(lambda c: c.execute(sql, params).fetchone())
        return convert(row) if row else None

    async def _all(self, sql: str, params: tuple[Any, ...], convert: Callable[[Any], T]) -> list[T]:
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [convert(r) for r in rows]


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    """On a worker thread: the store's connection, with the pragmas every connection of it needs."""
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")  # one of SYNCHRONOUS_LEVELS' values, never user text
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn
