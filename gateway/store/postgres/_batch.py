"""Group commit for the PostgreSQL store: concurrent calls share one thread hop, one connection, one transaction.

A call on its own cost a hop to a worker thread and back, a pool checkout,
and, for a write, a `BEGIN ... COMMIT` of its own, each a round trip: about
three times the CPU of the same call on SQLite. Here the calls that queue up
while a batch runs go together in the next one: one hop, one pooled
connection, one transaction. A caller returns only after the COMMIT that made
its write durable. Each store has two batchers, one of writes and one of reads
(whose batches are read-only transactions), so that a read never waits for a
batch of writes, nor a write for a read.

Statements go out in psycopg's pipeline mode. A call's function may be a
generator: it sends its statements, `yield`s, and reads their results after
the `yield`. The batch runs every call to its first `yield`, syncs once, runs
every call to its next, and so on: a batch costs as many round trips as its
longest call has steps (a claim, or a status change and its outbox rows:
one), not one per statement, and a statement whose result nobody reads (a new
message and its history row, an outbox row) rides along with the next sync or
with the COMMIT. A function that reads `rowcount` before a `yield` (the shared
`_outbox_rules.apply_attempt`) is not `pipelined`: it runs after the others,
in the same transaction, a round trip per statement. A call alone in its
batch (a quiet store) runs as if there were no batching: a read, or a write
of one statement (`single`), in autocommit and outside pipeline mode (one
round trip, where a pipeline's sync costs more CPU); any other write in a
transaction of its own, whose BEGIN and COMMIT ride in its pipeline.

There are no savepoints: on PostgreSQL each is a subtransaction with round
trips of its own, and more than 64 in a transaction slow every backend's
snapshots. A batch in which any statement fails (in pipeline mode the error
cannot be pinned on one call) is rolled back whole, and its calls run again
one by one, each in its own transaction, so that only the call that caused it
fails, with its own exception, exactly as if it had run alone. So a write
must be safe to run again when it did not commit: the writes are functions of
the connection, and the `events` callbacks they take are wrapped by `once`, so
that a write run again does not build its events twice. A connection that
breaks during a batch is different: whether its COMMIT happened is unknown, so
nothing runs again and each call of the batch gets the error, as a lone call
would.

A batch holds each of its writes' row locks until it commits, a few round
trips later. Two nodes' batches that lock the same rows in opposite orders
deadlock; PostgreSQL ends one of them after `deadlock_timeout` (1 s by
default) and its writes run again one by one. That needs two nodes writing
the same two rows at once, which ownership makes rare: a session's messages
are moved by the node that holds its lease. The shared rate limiter's hot
buckets (`query_one`) are therefore not batched.

One batch of each kind runs at a time (`max_batches`), holding a token of the
store's thread gate; the rest of the pool serves the calls that run alone
(sweeps, lease bookkeeping, migrations). One is enough: a batch costs a few
round trips whatever its size, so a busier store makes bigger batches rather
than more of them (a second one in flight made twice as many, half as big,
and cost a third more CPU per message). There is no background task: a caller that finds
no batch of its kind running leads one, taking whatever is queued (its own
call included, up to `max_batch`) once it holds its token; the others wait
for theirs. A call cancelled while still queued is withdrawn, and nothing of
it runs; once taken it runs to the end, like any call on a worker thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, Final, Generic, TypeVar

import msgspec
import psycopg
import trio

from .._ports import EventsOf

T = TypeVar("T")
R = TypeVar("R")
Conn = psycopg.Connection[Any]
# What a call runs on the worker thread: a function of the connection, or a generator of its steps.
Step = Callable[[Conn], T] | Callable[[Conn], Generator[None, None, T]]

# Calls in one batch at most: bounds how long a batch holds its locks and its callers wait.
MAX_BATCH: Final = 256
MAX_BATCHES: Final = 1  # batches of one kind in flight at once (see above)


class _Call(Generic[T]):
    __slots__ = ("fn", "pipelined", "single", "taken", "done", "result", "error", "wake")

    def __init__(self, fn: Callable[[Conn], Any], pipelined: bool, single: bool) -> None:
        self.fn, self.pipelined, self.single = fn, pipelined, single
        self.taken = self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: trio.Event | None = None  # set when its batch ended, or when it may lead one


class _TokenHeld:
    """The limiter `to_thread.run_sync` gets from a leader that already holds a token of the store's gate."""

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        pass

    def release_on_behalf_of(self, borrower: object) -> None:
        pass


_TOKEN_HELD: Final = _TokenHeld()


class BatchStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One batcher's counters since the store opened, and its queue now."""

    batches: int
    calls: int  # calls / batches: the mean batch size
    retried: int  # batches that failed as a whole and ran their calls again one by one
    queued: int  # calls waiting for a batch now


class GroupCommit:
    """Batches calls of one kind; `with_connection(fn)` runs `fn` with a pooled connection, on the calling thread.

    `transactional`: the calls are writes, and a write alone gets a transaction of its own unless
    it is `single`; or they are reads, which alone run in autocommit.
    """

    def __init__(self, with_connection: Callable[[Callable[[Conn], bool]], bool], limiter: trio.CapacityLimiter, *,
                 transactional: bool, max_batch: int = MAX_BATCH, max_batches: int = MAX_BATCHES) -> None:
        self._with_connection = with_connection
        self._limiter = limiter
        self._transactional = transactional
        self._max_batch = max_batch
        self._max_batches = max_batches
        self._queue: deque[_Call[Any]] = deque()
        self._leaders = 0
        self._batches = self._calls = self._retried = 0

    def statistics(self) -> BatchStatistics:
        return BatchStatistics(batches=self._batches, calls=self._calls, retried=self._retried,
                               queued=len(self._queue))

    async def submit(self, fn: Step[T], *, pipelined: bool, single: bool = False) -> T:
        """Run `fn` in the next batch; its result, or its exception, once the batch ended (committed).

        `single`: `fn` writes with one statement (and may read after it), so run alone it needs
        no transaction of its own: one round trip in autocommit.
        """
        # A checkpoint, like the thread hop it replaces: a loop of calls stays cancellable
        # even when each of them leads its own (shielded) batch.
        await trio.lowlevel.checkpoint_if_cancelled()
        call = _Call(fn, pipelined, single)
        self._queue.append(call)
        try:
            while not call.done:
                if not call.taken and self._leaders < self._max_batches:
                    await self._lead()
                else:
                    call.wake = trio.Event()
                    await call.wake.wait()
        except trio.Cancelled:
            if not call.taken:
                self._queue.remove(call)
                self._wake_next()
                raise
            with trio.CancelScope(shield=True):  # its batch is running: the outcome is decided there
                while not call.done:
                    call.wake = trio.Event()
                    await call.wake.wait()
            raise
        if call.error is not None:
            raise call.error
        return call.result

    async def _lead(self) -> None:
        self._leaders += 1
        try:
            await self._limiter.acquire()  # cancellable: nothing is taken yet
        except BaseException:
            self._leaders -= 1
            raise
        batch: list[_Call[Any]] = []
        try:
            batch = self._take()
            if batch:
                # Shielded: the taken calls must run even if the leader is cancelled now.
                with trio.CancelScope(shield=True):
                    retried = await trio.to_thread.run_sync(
                        self._with_connection, partial(_execute, batch, self._transactional), limiter=_TOKEN_HELD)
                self._retried += retried
        except BaseException as exc:  # no connection (the pool closed, the server is gone): each call fails so
            for call in batch:
                call.result, call.error = None, exc
        finally:
            self._limiter.release()
            self._leaders -= 1
            self._batches += bool(batch)
            self._calls += len(batch)
            for call in batch:
                call.done = True
                if call.wake is not None:
                    call.wake.set()
            self._wake_next()

    def _take(self) -> list[_Call[Any]]:
        queue = self._queue
        batch = []
        while queue and len(batch) < self._max_batch:
            call = queue.popleft()
            call.taken = True
            batch.append(call)
        return batch

    def _wake_next(self) -> None:
        """If a batch may start, the first queued call leads it."""
        if self._queue and self._leaders < self._max_batches:
            head = self._queue[0]
            if head.wake is not None:
                head.wake.set()


def once(events: EventsOf[R] | None) -> EventsOf[R] | None:
    """`events`, called once per record even when a failed batch runs the write again (see the module docstring).

    Run again, a write almost always produces the same record, and gets the events built the
    first time; only a record that changed in between (another node's write) is built anew.
    """
    if events is None:
        return None
    build = events
    built: dict[Any, tuple[R, Any]] = {}

    def events_once(record: R) -> Any:
        key = getattr(record, "id", None)
        seen = built.get(key)
        if seen is None or seen[0] != record:
            seen = built[key] = (record, build(record))
        return seen[1]

    return events_once


# -- on the worker thread ------------------------------------------------------------------


def _execute(batch: list[_Call[Any]], transactional: bool, conn: Conn) -> bool:
    """Run one batch, recording each call's result or exception; True if its calls ran again one by one."""
    if len(batch) == 1:
        _alone(conn, batch[0], transactional)
        return False
    failure = _in_transaction(conn, batch, "BEGIN" if transactional else "BEGIN READ ONLY")
    if failure is None:
        return False
    if conn.broken:  # its COMMIT may or may not have happened: run nothing again
        for call in batch:
            call.result, call.error = None, failure
        return False
    for call in batch:  # nothing of it was written: again, one by one
        _alone(conn, call, transactional)
    return True


def _in_transaction(conn: Conn, calls: list[_Call[Any]], begin: str) -> Exception | None:
    """Run `calls` in one transaction; the exception that failed it (and it wrote nothing), or None.

    Reads too run in a transaction (a read-only one, whose BEGIN and COMMIT cost no round trip
    in a pipeline): then a failed batch ends in a ROLLBACK, which is when psycopg forgets the
    statements it prepared in the pipeline, some of which the server never got.
    """
    piped = [call for call in calls if call.pipelined]
    plain = [call for call in calls if not call.pipelined]
    commit = None
    try:
        if piped:
            with conn.pipeline() as pipeline:
                conn.execute(begin)
                _run(conn, piped, pipeline)
                if not plain:
                    commit = conn.execute("COMMIT")
        else:
            conn.execute(begin)
        if plain:
            _run(conn, plain, None)
            commit = conn.execute("COMMIT")
        # PostgreSQL answers the COMMIT of a failed transaction with ROLLBACK, not with an error.
        if commit is None or commit.statusmessage != "COMMIT":
            answer = commit and commit.statusmessage
            raise psycopg.errors.InFailedSqlTransaction(f"the batch's COMMIT was answered {answer}")
    except Exception as exc:
        for call in calls:
            call.result = None
        _roll_back(conn)
        return exc
    return None


def _alone(conn: Conn, call: _Call[Any], transactional: bool) -> None:
    """Run one call as if there were no batching: in autocommit when that is atomic (a read, or a
    single write statement: one round trip), else in a transaction of its own."""
    call.result, call.error = None, None
    if transactional and not call.single:
        call.error = _in_transaction(conn, [call], "BEGIN")
        return
    try:
        _run(conn, [call], None)
    except Exception as exc:
        call.result, call.error = None, exc
        _roll_back(conn)


def _run(conn: Conn, calls: list[_Call[Any]], pipeline: psycopg.Pipeline | None) -> None:
    """Run the calls' functions; the generators among them step together (one sync per step, see above)."""
    steps = [(call, gen) for call in calls if (gen := _first_step(conn, call)) is not None]
    while steps:
        if pipeline is not None:
            pipeline.sync()
        steps = [(call, gen) for call, gen in steps if _next_step(call, gen)]


def _first_step(conn: Conn, call: _Call[Any]) -> Generator[None, None, Any] | None:
    out = call.fn(conn)
    if not isinstance(out, Generator):
        call.result = out
        return None
    return out if _next_step(call, out) else None


def _next_step(call: _Call[Any], gen: Generator[None, None, Any]) -> bool:
    """Run `gen` to its next `yield` (True), or to its end, which gives the call's result (False)."""
    try:
        next(gen)
    except StopIteration as stop:
        call.result = stop.value
        return False
    return True


def _roll_back(conn: Conn) -> None:
    """End a failed transaction. `rollback()`, not a ROLLBACK statement: psycopg then also forgets its
    prepared statements (and the server's), which a pipeline that failed may have left half made."""
    if conn.broken:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        pass  # a connection left in a transaction is rolled back (or discarded) by the pool when it comes back
