"""The limiter backend interface, narrow enough for memory and PostgreSQL alike.

A backend keeps one `State` (a TAT, see `_gcra.py`) per key and answers
`hit(key, rate, cost)`. The HTTP layer depends on this Protocol only, so a
single-process gateway uses `MemoryLimiter` and cluster mode swaps in a shared
PostgreSQL backend without touching a route.

What every backend must keep (the memory backend's tests state these):

1. The maths is `_gcra.decide`, exactly: burst = `rate.count`, refill one token
   per `period / count`, a batch is charged whole or refused whole, and a
   refused request changes nothing.
2. Read-modify-write is atomic per key. Two nodes hitting the same key at once
   must never both take its last token (PostgreSQL: one
   `INSERT ... ON CONFLICT DO UPDATE ... WHERE <allowed> RETURNING` statement,
   or `SELECT ... FOR UPDATE` in a transaction).
3. One clock for every caller of a key. The memory backend uses
   `trio.current_time()`, which is per process with an arbitrary origin, so a
   shared backend must not store it: it uses the database server's clock
   (`clock_timestamp()`) in integer nanoseconds or microseconds.
4. `CostExceedsLimit` is raised before any I/O and charges nothing.
5. A full bucket carries no information: it may be dropped at any time
   (`DELETE ... WHERE tat <= now`) and a missing key reads as full. Dropping a
   bucket that is not full would let its client start over, so a backend only
   does that as a documented last resort, and counts it.
6. `hit` is a trio checkpoint. A cancellation that arrives before the decision
   charges nothing; once a token is charged, the caller gets the decision.
7. `statistics()` never blocks: it reports this process's counters.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from ._gcra import Decision
from ._rate import Rate


class LimiterStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a limiter's counters, as returned by `statistics()`.

    `keys_tracked`: buckets currently held (for a shared backend: as last seen).
    `hits`: decisions asked for, including refused and oversized ones.
    `rejections`: refused requests (429s) plus oversized ones (422s).
    `evictions`: full buckets dropped, which changes no answer.
    `forced_evictions`: buckets dropped before they were full because a hard
    memory cap was reached; each one let a client start over. Should stay 0.
    """

    keys_tracked: int
    hits: int
    rejections: int
    evictions: int
    forced_evictions: int = 0


@runtime_checkable
class Limiter(Protocol):
    """A rate limiter backend (see the module docstring for the semantics it keeps)."""

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Charge `cost` tokens to `key`'s bucket under `rate` and say whether that was allowed.

        Raises `CostExceedsLimit` when `cost > rate.count` (answer 422, not 429).
        """
        ...

    async def refund(self, key: str, rate: Rate, cost: int = 1) -> None:
        """Give back `cost` tokens charged to `key` for a request that was then not served.

        The bucket never becomes fuller than full."""
        ...

    def statistics(self) -> LimiterStatistics:
        """A snapshot of this limiter's counters."""
        ...
