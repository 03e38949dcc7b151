"""The PostgreSQL store: the shared contract, plus what only a server-backed store has
(concurrent migrations, the thread gate around the pool, connection errors)."""

from __future__ import annotations

import psycopg
import pytest
import trio

from gateway.store import IdempotencyRecord, MessageStatus, StoreConflict, StoreError, open_store
from gateway.store.postgres import MIGRATIONS as PG_MIGRATIONS, PostgresStore
from gateway.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

from ._pg import fresh_schema, pg_url_fixture, with_search_path  # noqa: F401  (registers `pg_url`)
from .store_contract import ContactContract, MessageContract, OutboxContract, StoreContract, a_message, a_session, a_user


@pytest.fixture
async def store(pg_url):
    store = await open_store(pg_url)
    await store.migrate()
    yield store
    await store.aclose()


class TestPostgresStore(StoreContract, MessageContract, ContactContract, OutboxContract):
    pass


def _query(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement).fetchall()


async def test_migrations_match_sqlite_versions_and_are_recorded(pg_url):
    assert [(v, n) for v, n, _ in PG_MIGRATIONS] == [(v, n) for v, n, _ in SQLITE_MIGRATIONS]
    store = await PostgresStore.open(pg_url)
    assert await store.schema_version() == 0
    assert await store.migrate() == [v for v, _, _ in PG_MIGRATIONS]
    assert await store.schema_version() == PG_MIGRATIONS[-1][0]
    await store.aclose()
    rows = await trio.to_thread.run_sync(_query, pg_url, "SELECT version, name FROM schema_migrations")
    assert rows == [(v, n) for v, n, _ in PG_MIGRATIONS]


async def test_concurrent_migrate_from_several_processes_is_safe(pg_url):
    """Cluster nodes all migrate at start-up: each version is applied by exactly one of them."""
    stores = [await PostgresStore.open(pg_url, max_size=2) for _ in range(6)]
    results: list[list[int]] = []

    async def migrate(store: PostgresStore) -> None:
        results.append(await store.migrate())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(migrate, store)
    everything = [v for v, _, _ in PG_MIGRATIONS]
    assert sorted(v for applied in results for v in applied) == everything
    for store in stores:
        assert await store.schema_version() == everything[-1]
        await store.aclose()


async def test_unique_violation_is_store_conflict_and_the_connection_stays_usable(pg_url):
    # One connection: the one that saw the error must serve the next calls.
    store = await PostgresStore.open(pg_url, max_size=1)
    await store.migrate()
    user = a_user("Someone@Example.com")
    await store.create_user(user)
    with pytest.raises(StoreConflict) as info:
        await store.create_user(a_user("SOMEONE@example.COM"))
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
    with pytest.raises(StoreConflict):
        await store.create_user(user)  # same primary key
    assert await store.count_users() == 1
    assert await store.get_user_by_email("someone@EXAMPLE.com") == user
    await store.aclose()


async def test_slow_query_does_not_block_the_trio_loop(store: PostgresStore):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            started = trio.current_time()
            await store._run(lambda c: c.execute("SELECT pg_sleep(0.3)").fetchone())
            elapsed = trio.current_time() - started
            nursery.cancel_scope.cancel()
    assert elapsed >= 0.3
    assert ticks >= 10


async def test_more_callers_than_connections_queue_in_trio_not_in_the_pool(pg_url):
    """The limiter matches the pool, so the pool never makes a thread wait for a connection."""
    store = await PostgresStore.open(pg_url, min_size=2, max_size=2)
    await store.migrate()
    peak = 0

    async def slow_call():
        nonlocal peak
        await store._run(lambda c: c.execute("SELECT pg_sleep(0.05)").fetchone())
        peak = max(peak, store.statistics().threads_busy)

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, store.statistics().threads_busy)
            await trio.sleep(0.005)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as callers:
                for _ in range(10):
                    callers.start_soon(slow_call)
            nursery.cancel_scope.cancel()
    stats = store.statistics()
    assert peak == 2 and stats.max_size == 2
    assert stats.requests_queued == 0 and stats.threads_busy == 0
    await store.aclose()


async def test_cancelled_while_waiting_for_a_connection_runs_nothing(pg_url):
    store = await PostgresStore.open(pg_url, max_size=1)
    await store.migrate()
    user = a_user()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store._run, lambda c: c.execute("SELECT pg_sleep(0.2)").fetchone())
        await trio.sleep(0.05)  # the only token is now taken
        with trio.move_on_after(0.01):
            await store.create_user(user)
    assert await store.get_user(user.id) is None
    await store.aclose()


async def test_postgres_scheme_aliases_and_session_fields_round_trip(pg_url):
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = await open_store(url)
        assert isinstance(store, PostgresStore)
        await store.migrate()
        await store.aclose()
    store = await open_store(pg_url)
    user = a_user()
    await store.create_user(user)
    s = a_session(user.id, webhook_events=[], connect_on_start=True)
    await store.create_session(s)
    assert await store.get_session(s.id) == s
    assert (await store.update_session(s.id, {}, at=s.updated_at + 1)).updated_at == s.updated_at + 1
    assert [x.id for x in await store.list_sessions_to_connect()] == [s.id]
    await store.aclose()
    rows = await trio.to_thread.run_sync(
        _query, pg_url, "SELECT connect_on_start, webhook_events, key_hash FROM sessions")
    assert rows == [(True, [], s.key_hash)]


async def test_unreachable_server_is_a_store_error_naming_the_reason():
    url = "postgresql://gw:secret@127.0.0.1:1/nothing"
    with trio.fail_after(20):
        with pytest.raises(StoreError) as info:
            await PostgresStore.open(url, open_timeout=1)
    message = str(info.value)
    assert "secret" not in message and "gw:***@127.0.0.1:1" in message
    assert "refused" in message.lower() or "connect" in message.lower()


async def test_schemas_isolate_tests():
    async with fresh_schema() as a, fresh_schema() as b:
        assert a != b
        first = await open_store(a)
        await first.migrate()
        await first.create_user(a_user())
        second = await open_store(b)
        await second.migrate()
        assert await second.count_users() == 0
        assert await first.count_users() == 1
        await first.aclose()
        await second.aclose()
    assert "search_path%3Dx" in with_search_path("postgresql://h/db?sslmode=disable", "x")


async def _one_session(store: PostgresStore):
    user = a_user()
    await store.create_user(user)
    session = a_session(user.id)
    await store.create_session(session)
    return session


async def test_concurrent_claims_never_hand_out_a_message_twice(pg_url):
    """Several stores (as on several nodes) drain one queue: SKIP LOCKED splits it, no duplicates."""
    stores = [await PostgresStore.open(pg_url, max_size=3) for _ in range(3)]
    await stores[0].migrate()
    session = await _one_session(stores[0])
    messages = [a_message(session) for _ in range(60)]
    await stores[0].create_messages(messages)
    claimed: list[str] = []

    async def drain(store: PostgresStore) -> None:
        while (m := await store.claim_next_message(session.id, now=2_000)) is not None:
            claimed.append(m.id)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for store in stores:
                for _ in range(3):
                    nursery.start_soon(drain, store)
    assert sorted(claimed) == sorted(m.id for m in messages)
    assert await stores[0].count_messages(session.id, MessageStatus.SENDING) == 60
    for store in stores:
        await store.aclose()


async def test_concurrent_replays_of_one_idempotency_key_insert_once(pg_url):
    store = await PostgresStore.open(pg_url, max_size=8)
    await store.migrate()
    session = await _one_session(store)
    idem = IdempotencyRecord(session_id=session.id, key="same", request_hash=b"h" * 32, status_code=202,
                             response=b"{}", created_at=1_000)
    replays: list[IdempotencyRecord | None] = []

    async def send() -> None:
        replays.append(await store.create_messages([a_message(session)], idem))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(send)
    assert replays.count(None) == 1 and replays.count(idem) == 7
    assert await store.count_messages(session.id, MessageStatus.QUEUED) == 1
    await store.aclose()


async def test_status_guard_lets_exactly_one_racer_win(pg_url):
    store = await PostgresStore.open(pg_url, max_size=6)
    await store.migrate()
    session = await _one_session(store)
    m = a_message(session)
    await store.create_messages([m])
    await store.claim_next_message(session.id, now=2_000)
    wins: list[MessageStatus] = []

    async def move(status: MessageStatus) -> None:
        if await store.set_message_status(m.id, status, 3_000, only_from=frozenset({MessageStatus.SENDING})):
            wins.append(status)

    async with trio.open_nursery() as nursery:
        for status in [MessageStatus.SENT, MessageStatus.FAILED] * 3:
            nursery.start_soon(move, status)
    assert len(wins) == 1
    assert [e.status for e in await store.get_message_history(m.id)][-1] is wins[0]
    assert len(await store.get_message_history(m.id)) == 3  # queued, sending, the winner
    await store.aclose()
