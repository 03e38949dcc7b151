"""The thread-level reader/writer lock that guards neonize's Go maps.

Each scenario runs on real threads inside `trio.to_thread.run_sync(...,
abandon_on_cancel=True)` under `trio.fail_after`, so a deadlock fails the test
instead of hanging it; every blocking wait in a scenario also has a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import trio

from actors.neonize import RWLock, RWLockStatistics

WAIT = 5.0  # seconds any single wait in a scenario may take


async def on_threads(scenario: Callable[[], None]) -> None:
    with trio.fail_after(20):
        await trio.to_thread.run_sync(scenario, abandon_on_cancel=True)


def start(target: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


async def test_readers_share():
    lock = RWLock()

    def scenario() -> None:
        both_in = threading.Barrier(3, timeout=WAIT)

        def reader() -> None:
            with lock.read():
                both_in.wait()  # only passes if both readers hold the lock at once

        threads = [start(reader), start(reader)]
        both_in.wait()
        assert lock.statistics() == RWLockStatistics(readers=2, writer=False, writers_waiting=0)
        for t in threads:
            t.join(WAIT)
        assert lock.statistics() == RWLockStatistics(0, False, 0)

    await on_threads(scenario)


async def test_writer_excludes_readers_and_writers():
    lock = RWLock()

    def scenario() -> None:
        assert lock.acquire_write(timeout=WAIT)
        assert not lock.acquire_read(timeout=0.05)
        assert not lock.acquire_write(timeout=0.05)
        got_read = threading.Event()
        t = start(lambda: (lock.acquire_read(timeout=WAIT) and got_read.set()))
        assert not got_read.wait(0.1)
        lock.release_write()
        assert got_read.wait(WAIT)
        t.join(WAIT)
        assert not lock.acquire_write(timeout=0.05)  # the reader still holds it
        lock.release_read()
        assert lock.acquire_write(timeout=WAIT)
        lock.release_write()

    await on_threads(scenario)


async def test_waiting_writer_goes_before_new_readers():
    lock = RWLock()

    def scenario() -> None:
        order: list[str] = []
        lock.acquire_read()
        writer = start(lambda: (lock.acquire_write(timeout=WAIT), order.append("writer"), lock.release_write()))
        while lock.statistics().writers_waiting == 0:
            threading.Event().wait(0.001)
        # a new reader queues behind the waiting writer instead of starving it
        assert not lock.acquire_read(timeout=0.05)
        reader = start(lambda: (lock.acquire_read(timeout=WAIT), order.append("reader"), lock.release_read()))
        lock.release_read()
        writer.join(WAIT)
        reader.join(WAIT)
        assert order == ["writer", "reader"]

    await on_threads(scenario)


async def test_a_writer_that_times_out_lets_queued_readers_in():
    lock = RWLock()

    def scenario() -> None:
        lock.acquire_read()
        reader_in = threading.Event()
        writer = start(lambda: lock.acquire_write(timeout=0.2))
        while lock.statistics().writers_waiting == 0:
            threading.Event().wait(0.001)
        reader = start(lambda: (lock.acquire_read(timeout=WAIT), reader_in.set()))
        writer.join(WAIT)  # gave up while the first reader held on
        assert reader_in.wait(WAIT)
        reader.join(WAIT)
        assert lock.statistics() == RWLockStatistics(readers=2, writer=False, writers_waiting=0)

    await on_threads(scenario)


async def test_exclusive_hold_can_be_released_by_another_thread():
    # The connect thread takes the hold; the Go callback thread (or trio) ends it.
    lock = RWLock()

    def scenario() -> None:
        taken = threading.Event()
        start(lambda: (lock.acquire_write(timeout=WAIT), taken.set())).join(WAIT)
        assert taken.is_set() and lock.statistics().writer
        lock.release_write()
        assert lock.acquire_read(timeout=WAIT)
        lock.release_read()

    await on_threads(scenario)


async def test_writers_are_mutually_exclusive_under_contention():
    lock = RWLock()

    def scenario() -> None:
        inside = 0
        worst = 0
        readers_saw_writer = 0
        guard = threading.Lock()

        def writer() -> None:
            nonlocal inside, worst
            for _ in range(200):
                with lock.write():
                    with guard:
                        inside += 1
                        worst = max(worst, inside)
                    with guard:
                        inside -= 1

        def reader() -> None:
            nonlocal readers_saw_writer
            for _ in range(200):
                with lock.read():
                    with guard:
                        readers_saw_writer += inside

        threads = [start(writer) for _ in range(4)] + [start(reader) for _ in range(4)]
        for t in threads:
            t.join(WAIT * 4)
        assert worst == 1 and readers_saw_writer == 0
        assert lock.statistics() == RWLockStatistics(0, False, 0)

    await on_threads(scenario)


async def test_release_without_a_hold_is_an_error():
    with trio.fail_after(5):
        lock = RWLock()
        with pytest.raises(RuntimeError):
            lock.release_read()
        with pytest.raises(RuntimeError):
            lock.release_write()
