"""One serving process per SQLite store.

Two `gateway serve` processes on one SQLite file would both run its sessions:
each replaces the other's WhatsApp stream ("stream replaced"), and the stored
state ends up describing neither. So a serving process holds an exclusive
`flock` on `<database>.serve.lock` for its whole life. A second one (an
ordinary restart that starts before the old process has exited) waits for the
lock, up to `wait` seconds, and then refuses with a clear message and exit
status 3. The kernel drops the lock when the holder exits, however it exits
(kill -9 included), so a crash never leaves a stale lock. The admin commands
(`gateway users ...`) do not take it: they may run beside a server.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO, Final

log = logging.getLogger("gateway")

POLL: Final = 0.1  # seconds between attempts while another process holds the store


class StoreBusy(Exception):
    """Another gateway process serves this SQLite store and did not let go in time."""


def hold_sqlite_store(database_url: str, *, wait: float) -> IO[str]:
    """Take the store's serve lock (blocking up to `wait` seconds); keep the returned file open to hold it."""
    path = Path(database_url.removeprefix("sqlite:///") + ".serve.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    deadline = time.monotonic() + wait
    logged = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _holder(handle)
                handle.close()
                raise StoreBusy(f"another gateway process{holder} is serving {database_url}; it did not stop "
                                f"within {wait:g} s. Stop it first (one process per SQLite store; use "
                                "PostgreSQL for several)") from None
            if not logged:
                log.warning("waiting for the gateway that is serving this database to stop",
                            extra={"fields": {"database": database_url, "lock": str(path)}})
                logged = True
            time.sleep(POLL)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    pid = handle.read().strip()
    return f" (pid {pid})" if pid.isdigit() else ""
