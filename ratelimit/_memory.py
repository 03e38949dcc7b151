"""`MemoryLimiter`: the single-process limiter backend, keys to GCRA state in a dict.

Every decision is made in memory, synchronously: `hit_nowait` never awaits and
never does I/O, so a flood of refused requests costs the server a dict lookup
each. `hit` is the same call wrapped as a trio checkpoint, to satisfy the
`Limiter` Protocol that a shared backend also implements.

Memory stays bounded under a flood of distinct keys (one per client IP, say)
without a background task. A bucket that has refilled completely carries no
information (a missing key reads as full), so it can be dropped. The buckets
live in an `OrderedDict` (O(1) pop from the front, unlike a plain dict, whose
front fills with holes as entries are deleted). A hit moves its key to the
back, and then examines the `sweep_per_hit` (at least 2) oldest entries: a full
one is evicted, a live one is moved to the back. The sweep therefore passes
over the whole table every `len / sweep_per_hit` hits, drops every idle bucket
it meets, and keeps the table below about `sweep_per_hit / (sweep_per_hit - 1)`
times the number of buckets that are not full: twice, by default. That costs
each hit `sweep_per_hit` O(1) steps, with no pause to sweep the whole table.

`max_keys` is a hard cap, the last resort. Past it the oldest bucket is dropped
even if it is not full, which lets that client start over; such drops are
counted as `forced_evictions`. Size the cap so that it is never reached: about
twice the distinct keys a process sees within its longest token interval (a
key that spent its whole burst stays for up to a period). A key costs about
200 bytes with a short key string (`Limits` hashes long subjects), so the
default cap of a million keys bounds the table near 200 MB.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import trio

from ._backend import LimiterStatistics
from ._gcra import CostExceedsLimit, Decision, State, decide_ns, refund_ns
from ._rate import NS_PER_SECOND, Rate

DEFAULT_MAX_KEYS: Final = 1_000_000
DEFAULT_SWEEP_PER_HIT: Final = 2


class MemoryLimiter:
    """Per-key GCRA buckets in this process's memory, read against `trio.current_time()`."""

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS,
                 sweep_per_hit: int = DEFAULT_SWEEP_PER_HIT) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        # One examined entry per hit would only keep pace with one new key per
        # hit, and the table could grow for ever; two or more outpace it.
        if sweep_per_hit < 2:
            raise ValueError(f"sweep_per_hit must be at least 2, got {sweep_per_hit}")
        self._max_keys = max_keys
        self._sweep_per_hit = sweep_per_hit
        self._sweep_range = range(sweep_per_hit)
        self._buckets: OrderedDict[str, State] = OrderedDict()
        self._hits = 0
        self._rejections = 0
        self._evictions = 0
        self._forced_evictions = 0

    async def hit(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """`hit_nowait` as a trio checkpoint (the `Limiter` Protocol).

        A cancellation is honoured before the decision, never after it, so a
        cancelled call charges nothing and a charged token is always reported.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            return self.hit_nowait(key, rate, cost)
        finally:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def hit_nowait(self, key: str, rate: Rate, cost: int = 1) -> Decision:
        """Charge `cost` tokens to `key` now; never blocks, never does I/O.

        Returns the decision (check `allowed`). Raises `CostExceedsLimit` when
        `cost > rate.count`: that request could never pass (answer 422).
        """
        now_ns = round(trio.current_time() * NS_PER_SECOND)
        self._hits += 1
        buckets = self._buckets
        try:
            decision, state = decide_ns(buckets.get(key), now_ns, rate, cost)
        except CostExceedsLimit:
            self._rejections += 1
            raise
        # The incremental sweep (module docstring), inlined: it runs on every hit.
        for _ in self._sweep_range:
            if not buckets:
                break
            swept, tat = buckets.popitem(last=False)
            if tat > now_ns:
                buckets[swept] = tat
            else:
                self._evictions += 1
        if not decision.allowed:
            self._rejections += 1
        elif cost and state is not None:
            if key in buckets:
                buckets[key] = state
                buckets.move_to_end(key)
            else:
                buckets[key] = state
                if len(buckets) > self._max_keys:
                    # Last resort, see the module docstring: the front is the
                    # bucket hit least recently, so the likeliest to be idle.
                    buckets.popitem(last=False)
                    self._forced_evictions += 1
        return decision

    async def refund(self, key: str, rate: Rate, cost: int = 1) -> None:
        """`refund_nowait` as a trio checkpoint (the `Limiter` Protocol)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.refund_nowait(key, rate, cost)
        finally:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def refund_nowait(self, key: str, rate: Rate, cost: int = 1) -> None:
        """Give back `cost` tokens charged to `key` (see `_gcra.refund_ns`); never blocks."""
        state = self._buckets.get(key)
        if state is None:
            return
        new = refund_ns(state, round(trio.current_time() * NS_PER_SECOND), rate, cost)
        if new is None:
            del self._buckets[key]
        else:
            self._buckets[key] = new

    def statistics(self) -> LimiterStatistics:
        """Keys tracked, hits, rejections, evictions (and forced evictions) so far."""
        return LimiterStatistics(
            keys_tracked=len(self._buckets),
            hits=self._hits,
            rejections=self._rejections,
            evictions=self._evictions,
            forced_evictions=self._forced_evictions,
        )
