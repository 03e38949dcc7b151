"""The gateway's one clock: wall time for what people see, trio's time for waiting.

Wall time (integer milliseconds since the Unix epoch, UTC) stamps records,
history rows and events, so both stores compare and sort them alike. Pacing,
timeouts and backoff read trio's clock instead, which `trio.testing.MockClock`
replaces in tests. A change reads the wall clock once and hands the value to
everything it writes (its row, its history entry, its event).
"""

from __future__ import annotations

import time
from typing import Protocol

import trio


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall time in milliseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on trio's clock (mockable); only differences mean anything."""
        ...


class SystemClock:
    """The real clock: `time.time()` for the wall, `trio.current_time()` for intervals."""

    def now_ms(self) -> int:
        return now_ms()

    def monotonic(self) -> float:
        return trio.current_time()


def now_ms() -> int:
    """Wall time in ms, for code that runs before any component exists (the CLI, migrations)."""
    return int(time.time() * 1000)


SYSTEM_CLOCK = SystemClock()
