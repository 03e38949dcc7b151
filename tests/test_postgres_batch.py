"""Group commit on PostgreSQL (gateway/store/postgres/_batch.py): what batching must not change.

Each test first holds a batcher busy with a slow call, so that the calls started
next queue up and go together in the following batch, as they do under load.
"""

from __future__ import annotations

from collections.abc import Generator

import psycopg
import pytest
import trio

from gateway._events import Collector, make_event
from gateway.store import MessageStatus, StoreConflict
from gateway.store.postgres import PostgresStore
from gateway.store.postgres._batch import once

from ._pg import pg_url_fixture  # noqa: F401  (registers `pg_url`)
from .store_contract import a_message, a_session, a_user

SLOW = 0.3  # seconds the first batch takes, while the others queue


@pytest.fixture
async def store(pg_url):
    store = await PostgresStore.open(pg_url, max_size=4)
    await store.migrate()
    yield store
    await store.aclose()


def _sleep(seconds: float):
    def step(conn: psycopg.Connection) -> Generator[None, None, None]:
        conn.execute("SELECT pg_sleep(%s)", (seconds,))
        yield

    return step


async def _behind_a_slow_batch(nursery: trio.Nursery, store: PostgresStore, *, reads: bool = False) -> None:
    """Start a slow call in the batcher and return once it runs: what is started next waits for the next batch."""
    batcher = store._reads if reads else store._writes
    if reads:
        nursery.start_soon(store._read, _sleep(SLOW))
    else:
        nursery.start_soon(lambda: store._write(_sleep(SLOW), pipelined=True))
    while batcher._leaders == 0 or batcher.statistics().queued:  # taken: its batch runs
        await trio.sleep(0.005)


async def _session(store: PostgresStore, **kw):
    user = a_user(f"{a_session('x').id}@example.com")
    await store.create_user(user)
    session = a_session(user.id, **kw)
    await store.create_session(session)
    return session


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


async def test_concurrent_writes_share_one_batch_and_each_is_committed_when_it_returns(store, pg_url):
    session = await _session(store)
    seen_on_return: list[int] = []

    async def send(i: int) -> None:
        m = a_message(session)
        assert await store.create_messages([m]) is None
        # Another connection sees it: the call returned after its COMMIT.
        seen_on_return.append(await trio.to_thread.run_sync(
            _count, pg_url, f"SELECT COUNT(*) FROM messages WHERE id = '{m.id}'"))

    before = store.statistics().writes
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _behind_a_slow_batch(nursery, store)
            for i in range(20):
                nursery.start_soon(send, i)
    after = store.statistics().writes
    assert seen_on_return == [1] * 20
    assert after.calls - before.calls == 21 and after.batches - before.batches == 2  # the slow one, then the 20
    assert after.retried == 0 and after.queued == 0
    assert await store.count_messages(session.id, MessageStatus.QUEUED) == 20
    history = await trio.to_thread.run_sync(_count, pg_url, "SELECT COUNT(*) FROM message_status_history")
    assert history == 20


async def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_commits(store, pg_url):
    session = await _session(store, webhook_url="https://hooks.example.com/x")
    sent = a_message(session)
    await store.create_messages([sent])
    claimed = await store.claim_next_message(session.id, now=2_000)
    assert claimed is not None and claimed.id == sent.id
    taken = a_user("taken@example.com")
    await store.create_user(taken)
    collect = Collector(lambda record: [make_event("message.sent", record.session_id, {"id": record.id}, at=3_000)])
    others = [a_message(session) for _ in range(5)]
    outcome: dict[str, object] = {}

    async def duplicate() -> None:
        with pytest.raises(StoreConflict) as info:
            await store.create_user(a_user("TAKEN@example.com"))
        outcome["conflict"] = info.value

    async def mark_sent() -> None:
        outcome["sent"] = await store.set_message_status(sent.id, MessageStatus.SENT, 3_000, wa_id="wa-1",
                                                         only_from=frozenset({MessageStatus.SENDING}),
                                                         events=collect)

    before = store.statistics().writes
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _behind_a_slow_batch(nursery, store)
            nursery.start_soon(mark_sent)
            nursery.start_soon(duplicate)
            for m in others:
                nursery.start_soon(store.create_messages, [m])
    after = store.statistics().writes
    assert after.retried - before.retried == 1 and after.batches - before.batches == 2
    assert isinstance(outcome["conflict"].__cause__, psycopg.errors.UniqueViolation)
    assert outcome["sent"].status is MessageStatus.SENT and outcome["sent"].wa_id == "wa-1"
    # Run twice (in the failed batch, then alone), the status change built its event once.
    assert len(collect.events) == 1
    assert await trio.to_thread.run_sync(_count, pg_url, "SELECT COUNT(*) FROM webhook_deliveries") == 1
    assert [e.status for e in await store.get_message_history(sent.id)] == [
        MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT]
    assert await store.count_messages(session.id, MessageStatus.QUEUED) == 5
    assert await store.count_users() == 2  # the session's owner and `taken`


async def test_a_write_cancelled_while_queued_runs_nothing(store):
    user = a_user()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _behind_a_slow_batch(nursery, store)
            with trio.move_on_after(0.05) as scope:
                await store.create_user(user)
            assert scope.cancelled_caught
    assert store.statistics().writes.queued == 0
    assert await store.get_user(user.id) is None


async def test_a_write_cancelled_once_its_batch_runs_commits_whole(store):
    user = a_user()

    def slow_create(conn: psycopg.Connection) -> Generator[None, None, None]:
        conn.execute("SELECT pg_sleep(%s)", (SLOW,))
        conn.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (%s, %s, %s, %s)",
                     (user.id, user.email, user.password_hash, user.created_at))
        yield

    with trio.fail_after(20):
        with trio.move_on_after(0.05) as scope:
            await store._write(slow_create, pipelined=True)
            await trio.sleep(1)  # the cancellation lands at the next checkpoint, the write done
        assert scope.cancel_called and scope.cancelled_caught
    assert await store.get_user(user.id) == user


async def test_concurrent_reads_share_a_batch_and_a_failing_read_fails_alone(store):
    users = [a_user(f"r{i}@example.com") for i in range(10)]
    for u in users:
        await store.create_user(u)
    got: dict[str, object] = {}

    async def get(user_id: str) -> None:
        got[user_id] = await store.get_user(user_id)

    async def bad() -> None:
        with pytest.raises(psycopg.errors.UndefinedTable):
            await store._one("SELECT 1 FROM no_such_table", (), tuple)
        got["bad"] = True

    before = store.statistics().reads
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _behind_a_slow_batch(nursery, store, reads=True)
            nursery.start_soon(bad)
            for u in users:
                nursery.start_soon(get, u.id)
    after = store.statistics().reads
    assert got.pop("bad") is True
    assert got == {u.id: u for u in users}
    assert after.batches - before.batches == 2 and after.calls - before.calls == 12
    assert after.retried - before.retried == 1


async def test_a_connection_lost_during_a_batch_fails_its_writes_and_runs_none_again(store, pg_url):
    first, second = a_user("first@example.com"), a_user("second@example.com")

    def create_then_sleep(conn: psycopg.Connection) -> Generator[None, None, None]:
        conn.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (%s, %s, %s, %s)",
                     (first.id, first.email, first.password_hash, first.created_at))
        conn.execute("SELECT pg_sleep(5)")
        yield

    errors: list[BaseException] = []

    async def expect_lost(call) -> None:
        try:
            await call()
        except psycopg.OperationalError as exc:
            errors.append(exc)

    def kill_sleeper(url: str) -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE query = 'SELECT pg_sleep(5)' AND pid <> pg_backend_pid()").fetchone()[0]

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await _behind_a_slow_batch(nursery, store)
            nursery.start_soon(expect_lost, lambda: store._write(create_then_sleep, pipelined=True))
            nursery.start_soon(expect_lost, lambda: store.create_user(second))
            while store._writes._queue or store.statistics().writes.batches < 1:
                await trio.sleep(0.01)
            killed = 0
            while not killed:
                await trio.sleep(0.05)
                killed = await trio.to_thread.run_sync(kill_sleeper, pg_url)
    assert len(errors) == 2
    assert store.statistics().writes.retried == 0
    assert await store.get_user(first.id) is None and await store.get_user(second.id) is None
    await store.create_user(second)  # the pool replaced the lost connection
    assert await store.get_user(second.id) == second


def test_once_builds_a_records_events_once_unless_the_record_changed():
    built: list[str] = []

    def events(record):
        built.append(record.status.value)
        return [record.status.value]

    session = a_session("u")
    m = a_message(session)
    wrapped = once(events)
    assert wrapped(m) == ["queued"] and wrapped(m) == ["queued"]
    changed = a_message(session, id=m.id, status=MessageStatus.SENT)
    assert wrapped(changed) == ["sent"]
    assert built == ["queued", "sent"]
    assert once(None) is None


async def test_statements_prepared_in_a_failed_batch_still_work_afterwards(pg_url):
    """psycopg prepares a statement on its fifth use; if that happens in a pipeline that fails, the server never
    got it, and psycopg must forget it (it does so on rollback) or each later use fails."""
    store = await PostgresStore.open(pg_url, max_size=1)  # one connection: every call below uses it
    await store.migrate()
    user = a_user()
    await store.create_user(user)
    failed: list[BaseException] = []

    async def bad() -> None:
        try:
            await store._one("SELECT 1 FROM no_such_table", (), tuple)
        except psycopg.errors.UndefinedTable as exc:
            failed.append(exc)

    async def get(query: str) -> None:
        assert await store._one(query, (user.id,), tuple) == (user.email,)

    # Twice: psycopg also forgets them at the first ROLLBACK *statement* it sees on a connection, not later.
    for n in range(2):
        query = f"SELECT email FROM users WHERE id = %s AND {n} = {n}"  # new on the connection
        for _ in range(3):
            await get(query)
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await _behind_a_slow_batch(nursery, store, reads=True)
                nursery.start_soon(bad)
                while not store.statistics().reads.queued:  # first in the batch: the fifth use comes after
                    await trio.sleep(0.005)
                for _ in range(6):
                    nursery.start_soon(get, query)
            for _ in range(6):
                await get(query)
    assert len(failed) == 2 and store.statistics().reads.retried == 2
    await store.aclose()
