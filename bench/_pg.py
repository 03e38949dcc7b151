"""PostgreSQL for bench: a fresh schema per run, and the CPU of the server processes one gateway uses.

`fresh_schema` creates an empty schema, yields a URL whose libpq `options`
put it alone on the `search_path` (as tests/_pg.py does), so the gateway
creates its tables there without knowing it is isolated, and drops it
afterwards. The URL also carries an `application_name` of its own, which is
how `Backends` finds the server processes (one per connection) that serve
that gateway in `pg_stat_activity`.

A gateway on SQLite does its storage work in its own process; on PostgreSQL
part of it happens in those backends. Their CPU (from /proc, so only when
the server runs on this host) is reported beside the gateway's, never mixed
into it: the issue's target is the gateway's own CPU per message.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import trio

from ._procs import cpu_seconds
from ._stats import value_at


def with_params(url: str, *, schema: str | None = None, application_name: str | None = None) -> str:
    """`url` with `-c search_path=<schema>` added to its `options`, and an `application_name`."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if schema:
        query["options"] = f"{query.get('options', '')} -c search_path={schema}".strip()
    if application_name:
        query["application_name"] = application_name
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _execute(url: str, statement: Any) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


@contextlib.asynccontextmanager
async def fresh_schema(base_url: str, prefix: str = "bench") -> AsyncIterator[tuple[str, str]]:
    """Create an empty schema; yield (URL that uses it, schema name); drop it on the way out.

    The URL's `application_name` is the schema's name."""
    from psycopg import sql

    schema = f"{prefix}_{secrets.token_hex(6)}"
    await trio.to_thread.run_sync(_execute, base_url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_params(base_url, schema=schema, application_name=schema), schema
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_execute, base_url, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


@dataclass
class Backends:
    """CPU of the PostgreSQL backends whose `application_name` is `name`, sampled every `interval` seconds.

    The sum is over the backends alive at each sample; one that appears counts from its start (within a
    sample of when it connected), one that exits before the window ends is lost (the gateway's pool keeps
    its connections). With `cores`, every backend seen is pinned there (off the gateway's cores)."""

    base_url: str
    name: str
    interval: float = 0.5
    cores: Sequence[int] | None = None
    t: list[float] = field(default_factory=list)  # wall times
    cpu: list[float] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)
    unavailable: str | None = None  # why no figure (the server is not on this host, ...)
    pin_error: str | None = None
    _pinned: set[int] = field(default_factory=set)
    _conn: Any = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        import psycopg

        self._conn = await trio.to_thread.run_sync(
            lambda: psycopg.connect(self.base_url, autocommit=True, connect_timeout=10))
        try:
            await self.sample()
            task_status.started()
            while True:
                await trio.sleep(self.interval)
                await self.sample()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._conn.close)

    def _backend_pids(self) -> list[int]:
        rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                  (self.name,)).fetchall()
        return [r[0] for r in rows]

    async def sample(self) -> None:
        """One sample now (call it after a phase, so that its window's end is covered)."""
        pids = await trio.to_thread.run_sync(self._backend_pids)
        total, read = 0.0, 0
        for pid in pids:
            try:
                total += cpu_seconds(pid)
            except (OSError, ValueError):
                continue  # gone since the query, or not a process of this host
            read += 1
            self._pin(pid)
        if pids and not read:
            self.unavailable = (f"none of the PostgreSQL backends {sorted(pids)} is a process of this host: "
                                "the server's CPU is not measured")
        self.pids.update(pids)
        self.t.append(time.time())
        self.cpu.append(total)

    def _pin(self, pid: int) -> None:
        if not self.cores or pid in self._pinned:
            return
        try:
            os.sched_setaffinity(pid, self.cores)  # what `taskset -p` does
            self._pinned.add(pid)
        except OSError as exc:
            self.pin_error = f"could not pin PostgreSQL backend {pid}: {exc}"

    def cpu_during(self, wall_start: float, wall_end: float) -> float | None:
        if self.unavailable:
            return None
        a, b = value_at(self.t, self.cpu, wall_start), value_at(self.t, self.cpu, wall_end)
        return None if a is None or b is None else max(0.0, b - a)
