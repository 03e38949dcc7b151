from __future__ import annotations

import sqlite3

import pytest

from gateway.store import open_store

from .store_contract import ContactContract, MessageContract, OutboxContract, StoreContract, a_user


@pytest.fixture
async def store(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/contract.db")
    await store.migrate()
    yield store
    await store.aclose()


class TestSqliteStore(StoreContract, MessageContract, ContactContract, OutboxContract):
    pass


async def test_wal_mode_and_version_table(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/wal.db")
    from gateway.store.sqlite import MIGRATIONS

    versions = [m[0] for m in MIGRATIONS]
    assert await store.migrate() == versions
    await store.aclose()
    conn = sqlite3.connect(tmp_path / "wal.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall() == [
        (v,) for v in versions]


async def test_reopen_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path}/keep.db"
    store = await open_store(url)
    await store.migrate()
    user = a_user()
    await store.create_user(user)
    await store.aclose()
    store = await open_store(url)
    assert await store.get_user(user.id) == user
    await store.aclose()


async def test_store_calls_do_not_block_the_trio_loop(tmp_path):
    """While the store thread works, other trio tasks keep running."""
    import trio

    store = await open_store(f"sqlite:///{tmp_path}/nb.db")
    await store.migrate()
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await store._run(lambda c: c.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x < 300000) "
                "SELECT SUM(x) FROM n").fetchone())
            nursery.cancel_scope.cancel()
    assert ticks > 10
    await store.aclose()



async def test_a_receipt_finds_its_message_by_the_whatsapp_id_index(store):
    """Not by walking the session's messages in id order (what the planner picks for `ORDER BY id` by itself)."""
    from gateway.store.sqlite._messages import _BY_WA_ID

    plan = await store._calls.read(lambda c: c.execute("EXPLAIN QUERY PLAN " + _BY_WA_ID, ("s", "WA")).fetchall())
    assert any("USING INDEX messages_wa_id (session_id=? AND wa_id=?)" in row[3] for row in plan), plan
