"""`PostgresLimiter`: GCRA buckets shared by every node of a cluster, in PostgreSQL.

It keeps the `Limiter` contract of `_backend.py` with one round trip per hit:

- the maths is `_gcra.decide_ns`. The database applies its comparison (TAT
  plus the cost's share of the period, within one period plus
  `TOLERANCE_NS`) and the answer is rebuilt here by `decide_ns` from the TAT
  and the clock reading the database used, so headers and Retry-After are
  the memory backend's to the nanosecond;
- one atomic statement: the `gateway_rate_hit` function (migration 5) upserts
  the bucket `ON CONFLICT DO UPDATE ... WHERE allowed`. PostgreSQL locks the
  row and re-checks that WHERE against its newest version, so two nodes can
  never both take a key's last token, and a refused hit writes nothing;
- one clock: `clock_timestamp()` of the database server, in integer
  nanoseconds (microsecond resolution), whatever the nodes' clocks say;
- `CostExceedsLimit` (and bad costs) are raised before any I/O;
- a full bucket carries nothing: `sweep()` deletes those (`tat <= now`), and a
  missing key reads as full. Nothing is ever dropped before it is full;
- `hit` is cancellable only until its statement starts (the store's worker
  thread is not abandoned), so a charged token is always reported;
- `statistics()` reads this process's counters without I/O.

The table and the function live in the gateway's schema (migration 5); this
module only needs something that runs one statement and returns its first row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

from ._backend import LimiterStatistics
from ._gcra import TOLERANCE_NS, CostExceedsLimit, Decision, decide_ns
from ._rate import Rate

QueryOne = Callable[[str, Sequence[Any]], Awaitable[Any]]
"""Run one statement; return its first row (a tuple) or None."""

_HIT: Final = "SELECT now_ns, tat, allowed FROM gateway_rate_hit(%s, %s, %s)"
_PEEK: Final = ("SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT, "
                "(SELECT tat FROM rate_buckets WHERE key = %s)")
# A refund shrinks the debt, never below zero (a full bucket's row is left for `sweep`).
_REFUND: Final = ("UPDATE rate_buckets SET tat = GREATEST("
                  "(extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT, tat - %s) "
                  "WHERE key = %s RETURNING tat")
_SWEEP: Final = ("WITH gone AS (DELETE FROM rate_buckets "
                 "WHERE tat <= (extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT RETURNING 1) "
                 # the count reads the table as it was before this statement's delete
                 "SELECT (SELECT COUNT(*) FROM gone), "
                 "(SELECT COUNT(*) FROM rate_buckets) - (SELECT COUNT(*) FROM gone)")


class PostgresLimiter:
    """The shared limiter backend. `query_one` runs a statement on the gateway's database."""

    def __init__(self, query_one: QueryOne) -> None:
        self._query_one = query_one
        self._hits = 0
        self._rejections = 0
        self._evictions = 0
        self._keys_seen = 0

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        if type(cost) is not int:
            raise TypeError(f"cost must be an int, got {cost!r}")
        self._hits += 1
        if cost > rate.count:
            self._rejections += 1
            raise CostExceedsLimit(cost, rate)
        if cost < 0:
            raise ValueError(f"cost must not be negative, got {cost}")
        if cost == 0:  # a peek: report the bucket, charge nothing, write nothing
            now_ns, tat = await self._query_one(_PEEK, (key,))
            return decide_ns(tat, now_ns, rate, 0)[0]
        inc = cost * rate.period_ns // rate.count
        now_ns, tat, allowed = await self._query_one(_HIT, (key, inc, rate.period_ns + TOLERANCE_NS))
        if allowed:
            # `tat` is the new TAT; the bucket stood at `tat - inc` (never before now) when charged.
            decision = decide_ns(tat - inc, now_ns, rate, cost)[0]
            assert decision.allowed, "the database and decide_ns disagree"
            return decision
        self._rejections += 1
        decision = decide_ns(tat, now_ns, rate, cost)[0]
        if decision.allowed:
            # The refusing bucket was swept between the upsert and the read (it filled up in
            # those microseconds): still refused, and the client may retry at once.
            return Decision(False, rate.count, 0, TOLERANCE_NS / 1e9, 0.0)
        return decision

    async def refund(self, key: str, rate: Rate, cost: int = 1) -> None:
        """Give back `cost` tokens charged to `key` (see `_gcra.refund_ns`): one statement."""
        if type(cost) is not int or cost < 0:
            raise ValueError(f"cost must be a non-negative int, got {cost!r}")
        if cost:
            await self._query_one(_REFUND, (cost * rate.period_ns // rate.count, key))

    async def sweep(self) -> int:
        """Delete full buckets (they carry nothing); returns how many. Safe from any node, any time."""
        await trio.lowlevel.checkpoint_if_cancelled()
        gone, left = await self._query_one(_SWEEP, ())
        self._evictions += gone
        self._keys_seen = left
        return gone

    def statistics(self) -> LimiterStatistics:
        """This process's counters; `keys_tracked` is the table's size at the last sweep."""
        return LimiterStatistics(keys_tracked=self._keys_seen, hits=self._hits, rejections=self._rejections,
                                 evictions=self._evictions)
