"""Group commit for the SQLite store: many store calls per transaction, one thread hop per batch.

The store has one connection and SQLite one writer, so calls run one after
another anyway. What made that slow was the cost around each call: a hop to a
worker thread and back, and a `BEGIN IMMEDIATE ... COMMIT` of its own. Here the
calls that queue up while a batch runs go together in the next one: one hop,
one transaction. A caller returns only after the COMMIT that made its write
durable.

A batch first runs its calls one after another with nothing between them:
calls almost never fail, and a savepoint around each costs two more statements
(and two more waits for the GIL on this thread, which the event loop's thread
then waits for) per call. If one call raises, the whole transaction is rolled
back and the batch runs again with each write inside its own savepoint, so a
call that fails rolls back only its own statements and gets its own exception,
exactly as if it had run alone, and no read sees a failed write's half. If the
batch fails as a whole (its COMMIT fails, or SQLite ends the transaction on an
I/O error), its calls run again one transaction each. So a call's function may
run more than once; only the run that is committed counts (its statements are
rolled back with the others, and `Collector` keeps one build per record).

There is no background task: the first caller that finds no batch running
leads one (taking whatever is queued, up to `max_batch`, its own call included)
and the others wait for it. A call that is cancelled while still queued is
withdrawn; once its batch has started it runs to the end, like any call on a
worker thread, and the cancellation is delivered afterwards.

`exclusive` calls (migrations, close) run alone, outside any transaction of
ours, because they manage their own.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

import trio

T = TypeVar("T")

MAX_BATCH: Final = 512

_READ, _WRITE, _EXCLUSIVE = 0, 1, 2


class _Call(Generic[T]):
    __slots__ = ("fn", "kind", "taken", "done", "result", "error")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], kind: int) -> None:
        self.fn, self.kind = fn, kind
        self.taken = self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    def __init__(self, conn: sqlite3.Connection, *, max_batch: int = MAX_BATCH) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._queue: deque[_Call[Any]] = deque()
        self._busy = False
        self._batch_ended = trio.Event()
        self.batches = 0
        self.calls = 0

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(_Call(fn, _READ))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(_Call(fn, _WRITE))

    async def exclusive(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(_Call(fn, _EXCLUSIVE))

    async def _submit(self, call: _Call[T]) -> T:
        # A checkpoint, like the thread hop it replaces: a loop of store calls stays cancellable
        # even when every call leads its own (shielded) batch.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._queue.append(call)
        try:
            while not call.done:
                if self._busy:
                    await self._batch_ended.wait()
                else:
                    await self._lead()
        except trio.Cancelled:
            if not call.taken:
                self._queue.remove(call)
                raise
            with trio.CancelScope(shield=True):  # its batch is running: the outcome is decided there
                while not call.done:
                    await self._batch_ended.wait()
            raise
        if call.error is not None:
            raise call.error
        return call.result

    async def _lead(self) -> None:
        batch = self._take()
        self._busy = True
        try:
            # Shielded: taken calls must run even if the leader was cancelled before the thread
            # started (the thread itself could not be cancelled anyway).
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_execute, self._conn, batch)
        finally:
            self._busy = False
            self.batches += 1
            self.calls += len(batch)
            ended, self._batch_ended = self._batch_ended, trio.Event()
            ended.set()

    def _take(self) -> list[_Call[Any]]:
        queue = self._queue
        if queue[0].kind == _EXCLUSIVE:
            batch = [queue.popleft()]
        else:
            batch = []
            while queue and len(batch) < self._max_batch and queue[0].kind != _EXCLUSIVE:
                batch.append(queue.popleft())
        for call in batch:
            call.taken = True
        return batch


def _execute(conn: sqlite3.Connection, batch: list[_Call[Any]]) -> None:
    """On a worker thread: run one batch, recording each call's result or exception."""
    try:
        if batch[0].kind == _EXCLUSIVE:
            _run_alone(conn, batch[0])
        elif any(call.kind == _WRITE for call in batch):
            _run_in_transaction(conn, batch)
        else:
            for call in batch:
                _run_alone(conn, call)
    finally:
        for call in batch:
            call.done = True


def _run_alone(conn: sqlite3.Connection, call: _Call[Any]) -> None:
    try:
        call.result = call.fn(conn)
    except BaseException as exc:
        call.error = exc


def _run_in_transaction(conn: sqlite3.Connection, batch: list[_Call[Any]]) -> None:
    if _try_at_once(conn, batch):
        return
    for call in batch:  # a call raised, and the transaction was rolled back: each write in a savepoint now
        call.result, call.error = None, None
    if _try_together(conn, batch) or len(batch) == 1:
        return
    # The batch failed as a whole (its COMMIT, or SQLite ended the transaction): nothing of it
    # was written. Run each call again in a transaction of its own, so that only the call
    # that caused it fails, exactly as without batching.
    for call in batch:
        call.result, call.error = None, None
        if call.kind == _WRITE:
            _try_together(conn, [call])
        else:
            _run_alone(conn, call)


def _try_at_once(conn: sqlite3.Connection, batch: list[_Call[Any]]) -> bool:
    """Run `batch` in one transaction with no savepoints. False: a call raised (or COMMIT failed), and the
    transaction was rolled back; nothing of the batch was written, and its results are to be dropped."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:  # busy past busy_timeout: trying again, or call by call, would not help
        _fail(batch, exc)
        return True
    try:
        for call in batch:
            call.result = call.fn(conn)
        conn.execute("COMMIT")
        return True
    except BaseException:  # noqa: BLE001 - any call's failure: the careful pass gives it to that call alone
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        return False


def _try_together(conn: sqlite3.Connection, batch: list[_Call[Any]]) -> bool:
    """Run `batch` in one transaction. False: it failed as a whole, and running its calls alone might not."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:  # busy past busy_timeout: trying the calls one by one would not help
        _fail(batch, exc)
        return True
    for call in batch:
        if call.kind != _WRITE:
            _run_alone(conn, call)
            continue
        try:
            conn.execute("SAVEPOINT call")
            call.result = call.fn(conn)
            conn.execute("RELEASE call")
        except BaseException as exc:
            call.error = exc
            if not _roll_back_call(conn):
                _fail(batch, exc)
                return False
    try:
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        _fail(batch, exc)
        return False
    return True


def _roll_back_call(conn: sqlite3.Connection) -> bool:
    """Undo one failed call's statements; False when the transaction itself is gone."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO call")
        conn.execute("RELEASE call")
    except sqlite3.Error:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        return False
    return True


def _fail(batch: list[_Call[Any]], exc: BaseException) -> None:
    for call in batch:
        call.result, call.error = None, call.error or exc
