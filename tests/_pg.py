"""A fresh, empty PostgreSQL schema for each test that needs the real server.

Every test gets its own schema (`gw_test_<pid>_<random>`) and a URL whose
`options` put that schema alone on the `search_path`, so the code under test
creates and finds its tables there without knowing it is being isolated, and
tests never see each other's rows. The schema is dropped afterwards.

The URL comes from `GATEWAY_TEST_POSTGRES_URL` (default: the local server CI
also has). An unreachable server FAILS the test instead of skipping it: a CI
without its database must go red, not quietly green.

Use the `pg_url` fixture by importing it into a test module
(`from ._pg import pg_url_fixture  # noqa: F401`),
or `fresh_schema()` directly where a test needs several schemas or hands the
URL to a subprocess (the URL works anywhere libpq does).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
import trio
from psycopg import sql

PG_URL: Final = os.environ.get("GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT: Final = 5


def with_search_path(url: str, schema: str) -> str:
    """`url` with `-c search_path=<schema>` added to its libpq `options`."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query["options"] = f"{query.get('options', '')} -c search_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _admin(base_url: str, statement: sql.Composable) -> None:
    with psycopg.connect(base_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        conn.execute(statement)


async def _admin_or_fail(base_url: str, statement: sql.Composable) -> None:
    try:
        await trio.to_thread.run_sync(_admin, base_url, statement)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {base_url} ({str(exc).strip()}); start it, "
                    "or point GATEWAY_TEST_POSTGRES_URL at one", pytrace=False)


@asynccontextmanager
async def fresh_schema(base_url: str = PG_URL) -> AsyncIterator[str]:
    """Create an empty schema, yield a URL that uses it, drop it on the way out."""
    schema = f"gw_test_{os.getpid()}_{secrets.token_hex(4)}"
    await _admin_or_fail(base_url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_search_path(base_url, schema)
    finally:
        with trio.CancelScope(shield=True):
            await _admin_or_fail(base_url, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


@pytest.fixture(name="pg_url")
async def pg_url_fixture() -> AsyncIterator[str]:
    """A URL whose search_path is a fresh, empty schema of its own."""
    async with fresh_schema() as url:
        yield url
