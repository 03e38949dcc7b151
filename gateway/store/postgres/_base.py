"""The PostgreSQL store's plumbing: the connection pool, the thread gate, group commit, and the
few helpers every domain's methods are written with.

psycopg 3 is synchronous here: a `psycopg_pool.ConnectionPool` is used from
trio worker threads (`trio.to_thread.run_sync`), so the trio loop never waits
on the network. The threads are gated by a `trio.CapacityLimiter` exactly as
large as the pool's `max_size`: at most that many threads ever ask the pool for
a connection, so no thread sits blocked inside the pool (where trio cannot see
or cancel it) while holding a limiter token; callers queue in trio instead,
where waiting is cheap and cancellable.

Most calls go through group commit (`_batch`): `_write` (and `_execute`,
`_write_one`) batches writes, each batch one transaction, and a write returns
only after the COMMIT that made it durable; `_read` (and `_scalar`, `_one`,
`_all`) batches reads. A few calls run alone instead, on a connection of their
own (`_run`, `_tx`, `_execute_alone`): sweeps over many rows (housekeeping,
deleting a session), so that a slow one holds up no one else's write; the
cluster's lease bookkeeping, whose times are `now()` of its own transaction
(a batch's transaction begins before its writes run); the statements other
components send through `query_one` (the shared rate limiter's hot rows, see
`_batch`); and migrations, which manage their own transactions.

Connections are in autocommit mode. As in the SQLite store, a call is
cancellable while it waits for a token (or for its batch), and not once its
thread has started: a write happens whole or not at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any, Final, Self, TypeVar

import msgspec
import psycopg
import trio
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from .._ports import StoreConflict, StoreError
from .._rows import Rows
from ._batch import BatchStatistics, Conn, GroupCommit, Step

T = TypeVar("T")

# JSON columns (the webhook event filter, message modifiers) are JSONB, which psycopg reads back as lists.
ROWS: Final = Rows(mark="%s", json_param=Jsonb, json_list=list)

DEFAULT_MIN_SIZE: Final = 1
# Each gateway process holds at most this many server connections; a cluster of
# N nodes needs N × max_size below PostgreSQL's max_connections.
DEFAULT_MAX_SIZE: Final = 10
# How long `open` waits for the first connection before giving up.
DEFAULT_OPEN_TIMEOUT: Final = 10.0
# A connection idle longer than this is pinged before use; a busier one proves itself with every
# statement. Pinging at every checkout cost a round trip per call (a quarter of a call's CPU).
CHECK_IDLE_AFTER: Final = 5.0


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the store's connection pool and its thread gate."""

    max_size: int
    connections: int  # open server connections now
    idle: int  # of which not in use
    threads_busy: int  # limiter tokens held: calls running in worker threads
    threads_waiting: int  # trio tasks queued for a token
    requests_queued: int  # pool requests (since open) that had to wait for a connection
    writes: BatchStatistics  # group commit of writes: batches, the calls they carried, retries
    reads: BatchStatistics  # and of reads


class _Connection(psycopg.Connection[Any]):
    """A pooled connection that remembers when it was last used (see `_check_if_idle`)."""

    gateway_used: float | None = None


class PostgresBase:
    def __init__(self, pool: ConnectionPool[_Connection]) -> None:
        if pool.max_size < 1:
            raise ValueError("the pool needs at least one connection")
        self._pool = pool
        self._limiter = trio.CapacityLimiter(pool.max_size)
        self._writes = GroupCommit(self._with_connection, self._limiter, transactional=True)
        self._reads = GroupCommit(self._with_connection, self._limiter, transactional=False)
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, min_size: int = DEFAULT_MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE,
                   open_timeout: float = DEFAULT_OPEN_TIMEOUT) -> Self:
        """Open a pool on `url` (any libpq URL: `postgresql://` or `postgres://`).

        Waits until `min_size` connections are up, so a wrong URL or a missing
        server is a `StoreError` now rather than on the first request.
        """
        pool = ConnectionPool(
            url, min_size=max(1, min(min_size, max_size)), max_size=max_size, open=False,
            name="gateway-store", connection_class=_Connection, kwargs={"autocommit": True},
            configure=_configure,
            # A connection that died while idle (server restart, failover) is
            # replaced at checkout instead of failing a request.
            check=_check_if_idle)
        try:
            await trio.to_thread.run_sync(partial(pool.open, wait=True, timeout=open_timeout))
        except PoolTimeout:
            await trio.to_thread.run_sync(pool.close)
            # The pool only logs why its connections failed; one direct attempt
            # puts the reason (refused, bad password, no such database) in the error.
            reason = await trio.to_thread.run_sync(_connect_error, url, open_timeout)
            raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {reason}") from None
        return cls(pool)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await trio.to_thread.run_sync(self._pool.close)

    def statistics(self) -> PoolStatistics:
        stats = self._pool.get_stats()
        return PoolStatistics(
            max_size=self._pool.max_size, connections=stats.get("pool_size", 0),
            idle=stats.get("pool_available", 0), threads_busy=self._limiter.borrowed_tokens,
            threads_waiting=self._limiter.statistics().tasks_waiting,
            requests_queued=stats.get("requests_queued", 0), writes=self._writes.statistics(),
            reads=self._reads.statistics())

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` alone, with a pooled connection of its own in a worker thread, in autocommit.

        Integrity errors (unique, and also foreign-key, as SQLite reports them)
        become `StoreConflict`. The failed statement has already been rolled
        back, so the connection goes back to the pool clean.
        """
        self._check_open()
        try:
            return await trio.to_thread.run_sync(self._with_connection, fn, limiter=self._limiter)
        except psycopg.IntegrityError as exc:
            raise StoreConflict(str(exc).strip()) from exc

    def _with_connection(self, fn: Callable[[Conn], T]) -> T:
        """On a worker thread: `fn` with a pooled connection."""
        with self._pool.connection() as conn:
            try:
                return fn(conn)
            finally:
                conn.gateway_used = time.monotonic()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")

    async def _tx(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn`'s statements alone, in one transaction of their own: all commit, or none do."""
        def tx(conn: Conn) -> T:
            with conn.transaction():
                return fn(conn)

        return await self._run(tx)

    async def _write(self, fn: Step[T], *, pipelined: bool = False, single: bool = False) -> T:
        """Run `fn`'s statements in a batch of writes (`_batch`): atomic, and durable when this returns.

        `pipelined`: `fn` reads each result after a `yield` (it is a generator of steps) or
        with `fetch*()`, never `rowcount` before a `yield`, so it can run in pipeline mode.
        `single`: `fn` writes with one statement, so when it runs alone it needs no transaction.
        """
        self._check_open()
        try:
            return await self._writes.submit(fn, pipelined=pipelined, single=single)
        except psycopg.IntegrityError as exc:
            raise StoreConflict(str(exc).strip()) from exc

    async def _read(self, fn: Step[T]) -> T:
        """Run `fn` (pipelined, see `_write`) in a batch of reads."""
        self._check_open()
        return await self._reads.submit(fn, pipelined=True)

    async def _execute(self, query: Any, params: Sequence[Any] = ()) -> int:
        """One write statement, batched; the number of rows it touched."""
        return await self._write(partial(row_count, query=query, params=params), pipelined=True, single=True)

    async def _write_one(self, query: Any, params: Sequence[Any], convert: Callable[[Any], T]) -> T | None:
        """One write statement, batched; its first row (`RETURNING`), converted (None without rows)."""
        row = await self._write(partial(fetch_one, query=query, params=params), pipelined=True, single=True)
        return None if row is None else convert(row)

    async def _execute_alone(self, query: Any, params: Sequence[Any] = ()) -> int:
        """One statement alone (a sweep, or lease bookkeeping); the number of rows it touched."""
        return await self._run(lambda c: c.execute(query, params).rowcount)

    async def _scalar(self, query: Any, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None without rows)."""
        row = await self._read(partial(fetch_one, query=query, params=params))
        return row[0] if row else None

    async def _one(self, query: Any, params: Sequence[Any], convert: Callable[[Any], T]) -> T | None:
        row = await self._read(partial(fetch_one, query=query, params=params))
        return convert(row) if row else None

    async def _all(self, query: Any, params: Sequence[Any], convert: Callable[[Any], T]) -> list[T]:
        rows = await self._read(partial(fetch_all, query=query, params=params))
        return [convert(r) for r in rows]


# Batched calls' steps (see `_batch`): send the statement, and read its answer once it is back.

def row_count(conn: Conn, *, query: Any, params: Sequence[Any]) -> Generator[None, None, int]:
    cursor = conn.execute(query, params)
    yield
    return cursor.rowcount


def fetch_one(conn: Conn, *, query: Any, params: Sequence[Any]) -> Generator[None, None, Any]:
    cursor = conn.execute(query, params)
    yield
    return cursor.fetchone()


def fetch_all(conn: Conn, *, query: Any, params: Sequence[Any]) -> Generator[None, None, list[Any]]:
    cursor = conn.execute(query, params)
    yield
    return cursor.fetchall()


def _configure(conn: Conn) -> None:
    """A new connection's adapters: JSONB (a message's modifiers, a session's event filter) through msgspec,
    about three times cheaper than the json module psycopg uses by default."""
    set_json_dumps(msgspec.json.encode, conn)
    set_json_loads(msgspec.json.decode, conn)


def _check_if_idle(conn: _Connection) -> None:
    """The pool's checkout check: ping only a connection that sat idle for `CHECK_IDLE_AFTER`."""
    used = conn.gateway_used
    if used is None or time.monotonic() - used > CHECK_IDLE_AFTER:
        ConnectionPool.check_connection(conn)


def _connect_error(url: str, timeout: float) -> str:
    try:
        psycopg.connect(url, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return "the pool timed out, though a direct connection works (too few server connections free?)"


def redact(url: str) -> str:
    """Hide the password of `scheme://user:password@host` in messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
