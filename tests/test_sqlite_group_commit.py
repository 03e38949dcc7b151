"""Group commit in the SQLite store: calls share transactions but keep their own outcome."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import trio
import trio.testing

from gateway.store import StoreConflict, open_store
from gateway.store.sqlite import GroupCommit


@pytest.fixture
def conn(tmp_path):
    conn = sqlite3.connect(tmp_path / "gc.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, "
                 "parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    yield conn
    conn.close()


def committed(path) -> list[tuple]:
    """What another connection sees: only committed rows."""
    other = sqlite3.connect(path)
    try:
        return other.execute("SELECT k, v FROM t ORDER BY k").fetchall()
    finally:
        other.close()


def insert(k: int, v: str):
    return lambda c: c.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, v)).rowcount


async def test_concurrent_writes_share_transactions_and_are_committed_when_they_return(conn, tmp_path):
    calls = GroupCommit(conn)
    seen_after_return: list[bool] = []

    async def one(k: int) -> None:
        assert await calls.write(insert(k, f"v{k}")) == 1
        seen_after_return.append((k, f"v{k}") in committed(tmp_path / "gc.db"))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for k in range(200):
                nursery.start_soon(one, k)
    assert committed(tmp_path / "gc.db") == [(k, f"v{k}") for k in range(200)]
    assert all(seen_after_return)  # durable (visible to others) by the time the caller resumed
    assert calls.calls == 200 and calls.batches < 50  # batched, not one transaction each


async def test_a_failing_call_rolls_back_only_its_own_statements(conn, tmp_path):
    calls = GroupCommit(conn)
    conn.execute("INSERT INTO t VALUES (0, 'before')")

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (100, 'partial')")
        c.execute("INSERT INTO t VALUES (0, 'duplicate key')")  # 0 was there before

    outcomes: dict[str, object] = {}

    async def run(name: str, fn) -> None:
        try:
            outcomes[name] = await calls.write(fn)
        except Exception as exc:  # noqa: BLE001 - the outcome is the point
            outcomes[name] = exc

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:  # queued together: one batch
            nursery.start_soon(run, "first", insert(1, "a"))
            nursery.start_soon(run, "bad", half_then_fail)
            nursery.start_soon(run, "last", insert(2, "b"))
    assert calls.batches <= 2
    assert outcomes["first"] == 1 and outcomes["last"] == 1
    assert isinstance(outcomes["bad"], sqlite3.IntegrityError)
    assert committed(tmp_path / "gc.db") == [(0, "before"), (1, "a"), (2, "b")]  # nothing of the failed call


async def test_a_failed_commit_reruns_the_calls_alone_so_only_the_culprit_fails(conn, tmp_path):
    calls = GroupCommit(conn)
    outcomes: dict[str, object] = {}

    async def run(name: str, fn) -> None:
        try:
            outcomes[name] = await calls.write(fn)
        except Exception as exc:  # noqa: BLE001
            outcomes[name] = exc

    # A deferred foreign key fails at COMMIT, not at the statement: the whole batch's COMMIT fails.
    orphan = lambda c: c.execute("INSERT INTO child VALUES (1, 999)").rowcount  # noqa: E731
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "before", insert(1, "a"))
            nursery.start_soon(run, "orphan", orphan)
            nursery.start_soon(run, "after", insert(2, "b"))
    assert isinstance(outcomes["orphan"], sqlite3.IntegrityError)
    assert outcomes["before"] == 1 and outcomes["after"] == 1
    assert committed(tmp_path / "gc.db") == [(1, "a"), (2, "b")]
    assert conn.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 0


class SlowInsert:
    """A write that signals when its batch has started and holds it until released."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.release = threading.Event()  # not a trio wait: from_thread calls inherit the caller's cancellation

    def __call__(self, c: sqlite3.Connection) -> int:
        trio.from_thread.run_sync(self.started.set)
        self.release.wait(10)
        return c.execute("INSERT INTO t VALUES (1, 'slow')").rowcount


async def test_a_call_cancelled_while_queued_never_runs(conn, tmp_path):
    calls = GroupCommit(conn)
    slow = SlowInsert()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(calls.write, slow)
            await slow.started.wait()  # a batch is running: the next call queues
            with trio.move_on_after(0.05) as scope:
                await calls.write(insert(2, "withdrawn"))
            assert scope.cancelled_caught
            slow.release.set()
        assert await calls.write(insert(3, "later")) == 1
    assert committed(tmp_path / "gc.db") == [(1, "slow"), (3, "later")]


async def test_a_call_cancelled_after_its_batch_started_still_completes(conn, tmp_path):
    calls = GroupCommit(conn)
    slow = SlowInsert()
    caller = trio.CancelScope()
    results: list[int] = []

    async def cancelled_caller() -> None:
        with caller:
            results.append(await calls.write(slow))  # its batch ran: the result comes back
            await trio.sleep(0)  # and the cancellation at the next checkpoint
        assert caller.cancelled_caught

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancelled_caller)
            await slow.started.wait()
            caller.cancel()
            await trio.sleep(0.05)
            slow.release.set()
    assert results == [1]
    assert committed(tmp_path / "gc.db") == [(1, "slow")]  # whole, despite the cancellation


async def test_exclusive_calls_run_alone_outside_any_transaction(conn):
    calls = GroupCommit(conn)
    seen: list[bool] = []

    async def exclusive() -> None:
        await calls.exclusive(lambda c: seen.append(c.in_transaction))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for k in range(20):
                nursery.start_soon(calls.write, insert(k, "x"))
            nursery.start_soon(exclusive)
            for k in range(20, 40):
                nursery.start_soon(calls.write, insert(k, "y"))
    assert seen == [False]
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 40


async def test_the_store_maps_conflicts_per_call_inside_a_batch(tmp_path):
    from .store_contract import a_user

    store = await open_store(f"sqlite:///{tmp_path}/store.db")
    await store.migrate()
    users = [a_user(f"u{i}@example.com") for i in range(10)]
    clash = a_user("u3@example.com")  # same email as users[3]
    outcomes: list[object] = []

    async def create(user) -> None:
        try:
            await store.create_user(user)
            outcomes.append("ok")
        except StoreConflict:
            outcomes.append("conflict")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for user in users:
                nursery.start_soon(create, user)
            nursery.start_soon(create, clash)
    assert sorted(outcomes) == ["conflict"] + ["ok"] * 10
    assert await store.count_users() == 10
    await store.aclose()


async def test_a_caller_cancelled_before_it_calls_runs_nothing_and_blocks_nobody(conn, tmp_path):
    calls = GroupCommit(conn)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for k in range(1, 4):
                nursery.start_soon(calls.write, insert(k, "other"))
            with trio.CancelScope() as scope:
                scope.cancel()  # cancelled already: the call is a checkpoint and raises at once
                await calls.write(insert(0, "cancelled"))
            assert scope.cancelled_caught
    assert [k for k, _ in committed(tmp_path / "gc.db")] == [1, 2, 3]


async def test_a_loop_of_calls_stays_cancellable(conn):
    calls = GroupCommit(conn)
    with trio.move_on_after(0.2) as scope:  # each call leads its own batch; the loop must still end
        while True:
            await calls.read(lambda c: c.execute("SELECT 1").fetchone())
    assert scope.cancelled_caught


async def test_a_batch_that_does_not_fail_runs_without_savepoints(conn, tmp_path):
    calls = GroupCommit(conn)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for k in range(20):
                nursery.start_soon(calls.write, insert(k, "v"))
    conn.set_trace_callback(None)
    assert committed(tmp_path / "gc.db") == [(k, "v") for k in range(20)]
    assert calls.batches < 20  # shared transactions
    assert not [s for s in statements if "SAVEPOINT" in s or "RELEASE" in s]
    assert sum(s == "BEGIN IMMEDIATE" for s in statements) == sum(s == "COMMIT" for s in statements) == calls.batches


async def test_no_read_sees_the_half_of_a_write_that_failed(conn, tmp_path):
    """The first pass runs a batch without savepoints: after a failure everything runs again, reads too."""
    calls = GroupCommit(conn)
    conn.execute("INSERT INTO t VALUES (0, 'before')")

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (100, 'partial')")
        c.execute("INSERT INTO t VALUES (0, 'duplicate key')")

    outcomes: dict[str, object] = {}

    async def run(name: str, call) -> None:
        try:
            outcomes[name] = await call
        except Exception as exc:  # noqa: BLE001 - the outcome is the point
            outcomes[name] = exc

    count_partial = lambda c: c.execute("SELECT COUNT(*) FROM t WHERE k = 100").fetchone()[0]  # noqa: E731
    slow = SlowInsert()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(calls.write, slow)
            await slow.started.wait()  # a batch is running: the next calls queue, in this order, for the next
            for name, call in (("first", calls.write(insert(2, "a"))), ("bad", calls.write(half_then_fail)),
                               ("read", calls.read(count_partial)), ("last", calls.write(insert(3, "b")))):
                nursery.start_soon(run, name, call)
                await trio.testing.wait_all_tasks_blocked()
            slow.release.set()
    assert calls.batches == 2
    assert isinstance(outcomes["bad"], sqlite3.IntegrityError)
    assert outcomes["read"] == 0 and outcomes["first"] == 1 and outcomes["last"] == 1
    assert committed(tmp_path / "gc.db") == [(0, "before"), (1, "slow"), (2, "a"), (3, "b")]


async def test_a_write_run_again_after_a_failure_in_its_batch_publishes_its_events_once(tmp_path):
    """The batch runs twice (without, then with savepoints): the status change's events are built twice,
    committed and published once."""
    from gateway._events import Collector, make_event
    from gateway.store import MessageStatus

    from .store_contract import a_message, a_session, a_user

    store = await open_store(f"sqlite:///{tmp_path}/store.db")
    await store.migrate()
    owner = a_user("owner@example.com")
    await store.create_user(owner)
    session = a_session(owner.id)
    await store.create_session(session)
    message = a_message(session)
    await store.create_messages([message])
    built: list[str] = []

    def build(record):
        built.append(record.id)
        return [make_event("message.status", record.session_id, {"id": record.id}, at=3_000)]

    collect = Collector(build)
    outcomes: dict[str, object] = {}

    async def clash() -> None:
        with pytest.raises(StoreConflict):
            await store.create_user(a_user("OWNER@example.com"))
        outcomes["clash"] = True

    async def fail_it() -> None:
        outcomes["failed"] = await store.set_message_status(message.id, MessageStatus.FAILED, 3_000, reason="r",
                                                            events=collect)

    started, release = trio.Event(), threading.Event()

    def hold(c: sqlite3.Connection) -> None:  # the first batch, running while the others queue
        trio.from_thread.run_sync(started.set)
        release.wait(10)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store._calls.write, hold)
            await started.wait()
            for task in (fail_it, clash):
                nursery.start_soon(task)
                await trio.testing.wait_all_tasks_blocked()
            release.set()
    assert outcomes["clash"] is True and outcomes["failed"].status is MessageStatus.FAILED
    assert built == [message.id, message.id]  # run in the first pass, then again in the careful one
    assert len(collect.events) == 1
    assert await store.count_messages(session.id, MessageStatus.FAILED) == 1
    await store.aclose()
