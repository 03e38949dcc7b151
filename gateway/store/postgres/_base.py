"""The PostgreSQL store's plumbing: the connection pool, the thread gate, and
the few helpers every domain's methods are written with.

psycopg 3 is synchronous here: a `psycopg_pool.ConnectionPool` is used from
trio worker threads (`trio.to_thread.run_sync`), so the trio loop never waits
on the network. The threads are gated by a `trio.CapacityLimiter` exactly as
large as the pool's `max_size`: at most that many threads ever ask the pool for
a connection, so no thread sits blocked inside the pool (where trio cannot see
or cancel it) while holding a limiter token; callers queue in trio instead,
where waiting is cheap and cancellable.

Connections are in autocommit mode. A single-statement call (most of them, as
data-modifying CTEs fold "change + history row" into one statement) is its own
transaction and costs one round trip; `_tx` wraps several statements in one
transaction when they must commit together. As in the SQLite store, a call is
cancellable while it waits for a token, and not once its thread has started:
a write happens whole or not at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final, Self, TypeVar

import msgspec
import psycopg
import trio
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from .._ports import StoreConflict, StoreError
from .._rows import Rows

T = TypeVar("T")
Conn = psycopg.Connection[Any]

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


class _Connection(psycopg.Connection[Any]):
    """A pooled connection that remembers when it was last used (see `_check_if_idle`)."""

    gateway_used: float | None = None


class PostgresBase:
    def __init__(self, pool: ConnectionPool[_Connection]) -> None:
        if pool.max_size < 1:
            raise ValueError("the pool needs at least one connection")
        self._pool = pool
        self._limiter = trio.CapacityLimiter(pool.max_size)
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
            requests_queued=stats.get("requests_queued", 0))

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn` with a pooled connection in a worker thread.

        Integrity errors (unique, and also foreign-key, as SQLite reports them)
        become `StoreConflict`. The failed statement has already been rolled
        back, so the connection goes back to the pool clean.
        """
        if self._closed:
            raise RuntimeError("store is closed")
        try:
            return await trio.to_thread.run_sync(self._with_connection, fn, limiter=self._limiter)
        except psycopg.IntegrityError as exc:
            raise StoreConflict(str(exc).strip()) from exc

    def _with_connection(self, fn: Callable[[Conn], T]) -> T:
        with self._pool.connection() as conn:
            try:
                return fn(conn)
            finally:
                conn.gateway_used = time.monotonic()

    async def _tx(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn`'s statements in one transaction: all commit, or none do."""
        def tx(conn: Conn) -> T:
            with conn.transaction():
                return fn(conn)

        return await self._run(tx)

    async def _execute(self, query: Any, params: Sequence[Any] = ()) -> int:
        """One statement on its own; returns the number of rows it touched."""
        return await self._run(lambda c: c.execute(query, params).rowcount)

    async def _scalar(self, query: Any, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None without rows)."""
        row = await self._run(lambda c: c.execute(query, params).fetchone())
        return row[0] if row else None

    async def _one(self, query: Any, params: Sequence[Any], convert: Callable[[Any], T]) -> T | None:
        row = await self._run(lambda c: c.execute(query, params).fetchone())
        return convert(row) if row else None

    async def _all(self, query: Any, params: Sequence[Any], convert: Callable[[Any], T]) -> list[T]:
        rows = await self._run(lambda c: c.execute(query, params).fetchall())
        return [convert(r) for r in rows]


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
