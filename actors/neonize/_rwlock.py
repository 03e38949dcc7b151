"""A small thread-level reader/writer lock.

neonize's Go core keeps process-wide maps without a lock: a `connect()` that
starts or a `stop()` that runs while any other call reads those maps aborts the
whole process ("concurrent map writes"). The neonize transport therefore holds
this lock exclusively while a connect starts and during stop, and shared for
every other Go call. Callers are plain threads (trio worker threads and the
connect threads), so this is a `threading` lock, not a trio one.

Two properties matter here and are unusual:

- Writers are preferred: once a writer waits, new readers queue behind it, so a
  steady stream of sends cannot starve a connect or a stop.
- Ownership is not tracked. The exclusive hold taken by a connect thread is
  released by whichever thread first sees that the start is over (the Go
  callback thread, or trio after a cap), so a release may come from any thread.
  Holds are not reentrant: a thread holding the lock must not take it again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple


class RWLockStatistics(NamedTuple):
    readers: int  # shared holds right now
    writer: bool  # an exclusive hold is active
    writers_waiting: int


class RWLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self, timeout: float | None = None) -> bool:
        """Take a shared hold; False if `timeout` (seconds) passed first."""
        with self._cond:
            ok = self._cond.wait_for(lambda: not self._writer and not self._writers_waiting, timeout)
            if ok:
                self._readers += 1
            return ok

    def release_read(self) -> None:
        with self._cond:
            if self._readers <= 0:
                raise RuntimeError("release_read without a shared hold")
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self, timeout: float | None = None) -> bool:
        """Take the exclusive hold; False if `timeout` (seconds) passed first."""
        with self._cond:
            self._writers_waiting += 1
            try:
                ok = self._cond.wait_for(lambda: not self._writer and not self._readers, timeout)
            finally:
                self._writers_waiting -= 1
            if ok:
                self._writer = True
            else:
                self._cond.notify_all()  # readers may have queued behind us
            return ok

    def release_write(self) -> None:
        with self._cond:
            if not self._writer:
                raise RuntimeError("release_write without the exclusive hold")
            self._writer = False
            self._cond.notify_all()

    @contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    def statistics(self) -> RWLockStatistics:
        with self._cond:
            return RWLockStatistics(self._readers, self._writer, self._writers_waiting)


#: The lock every neonize client in this process shares: Go's maps are per process.
GO_LOCK = RWLock()
