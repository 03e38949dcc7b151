"""`MemoryLimiter` on trio's MockClock: limits, checkpoints, no I/O, bounded memory."""

from __future__ import annotations

import gc
import inspect
import sys
import tracemalloc

import pytest
import trio
from trio.testing import MockClock

from ratelimit import (
    MINUTE, CostExceedsLimit, Decision, Limiter, LimiterStatistics, Limits, MemoryLimiter, Rate,
    rate_limit_headers,
)

TEN_PER_MINUTE = Rate(10, MINUTE)

# Audit events seen while `_AUDITING` is set. Audit hooks cannot be removed, so
# one inert hook is installed for the whole test process.
_AUDITING: list[list[str]] = []


def _audit(event: str, args: object) -> None:
    if _AUDITING:
        _AUDITING[-1].append(event)


sys.addaudithook(_audit)


async def test_exact_boundary_and_retry_after_on_the_mock_clock(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    with trio.fail_after(3600):
        for _ in range(10):
            assert (await limiter.hit("s1", TEN_PER_MINUTE)).allowed
        refused = await limiter.hit("s1", TEN_PER_MINUTE)
        assert not refused.allowed
        assert refused.retry_after == 6.0
        assert rate_limit_headers(refused)["Retry-After"] == "6"

        await trio.sleep(refused.retry_after - 0.001)
        assert not limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        await trio.sleep(0.001)
        assert limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        assert not limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed


async def test_sleeping_the_advertised_whole_seconds_always_works(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    rate = Rate(7, MINUTE)  # an interval of 8.57 s: the header rounds up to 9
    with trio.fail_after(3600):
        for _ in range(7):
            assert limiter.hit_nowait("k", rate).allowed
        for _ in range(20):
            refused = limiter.hit_nowait("k", rate)
            assert not refused.allowed
            await trio.sleep(int(rate_limit_headers(refused)["Retry-After"]))
            assert limiter.hit_nowait("k", rate).allowed


async def test_refill_one_token_every_six_seconds(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    with trio.fail_after(3600):
        for _ in range(10):
            limiter.hit_nowait("s1", TEN_PER_MINUTE)
        for _ in range(10):
            await trio.sleep(6)
            assert limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
            assert not limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        await trio.sleep(60)  # full again: the burst is ten, however long the idle
        assert [limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed for _ in range(11)] == [True] * 10 + [False]


async def test_keys_are_isolated(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    for _ in range(10):
        limiter.hit_nowait("a", TEN_PER_MINUTE)
    assert not limiter.hit_nowait("a", TEN_PER_MINUTE).allowed
    decision = limiter.hit_nowait("b", TEN_PER_MINUTE)
    assert decision.allowed and decision.remaining == 9


async def test_batches_and_oversized_batches(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    assert limiter.hit_nowait("s1", TEN_PER_MINUTE, cost=8).remaining == 2
    refused = limiter.hit_nowait("s1", TEN_PER_MINUTE, cost=3)
    assert not refused.allowed and refused.remaining == 2 and refused.retry_after == 6.0
    with pytest.raises(CostExceedsLimit):
        await limiter.hit("s2", TEN_PER_MINUTE, cost=11)
    assert limiter.hit_nowait("s2", TEN_PER_MINUTE, cost=10).allowed  # nothing was charged
    assert limiter.statistics() == LimiterStatistics(keys_tracked=2, hits=4, rejections=2, evictions=0)


async def test_statistics_is_an_immutable_snapshot(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    before = limiter.statistics()
    limiter.hit_nowait("a", TEN_PER_MINUTE)
    assert before == LimiterStatistics(0, 0, 0, 0, 0)
    assert limiter.statistics().hits == 1
    with pytest.raises(AttributeError):
        before.hits = 5  # type: ignore[misc]


async def test_it_implements_the_protocol_and_limits_can_drive_it(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    assert isinstance(limiter, Limiter)
    def override(scope: str, subject: str) -> Rate | None:
        return Rate(1, MINUTE) if (scope, subject) == ("send", "slow") else None

    limits = Limits(override=override)
    assert (await limits.hit(limiter, "send", "slow")).allowed
    assert not (await limits.hit(limiter, "send", "slow")).allowed
    assert (await limits.hit(limiter, "api", "slow")).remaining == 99  # another scope, another bucket
    assert (await limits.hit(limiter, "send", "fast")).remaining == 9


async def test_hit_is_a_checkpoint_that_charges_nothing_when_cancelled(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    with trio.CancelScope() as scope:
        scope.cancel()
        await limiter.hit("a", TEN_PER_MINUTE)
    assert scope.cancelled_caught
    assert limiter.statistics().hits == 0
    assert limiter.hit_nowait("a", TEN_PER_MINUTE).remaining == 9


async def test_hit_nowait_never_awaits_and_does_no_io(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    assert not inspect.iscoroutinefunction(MemoryLimiter.hit_nowait)
    sibling_ran = False

    async def sibling() -> None:
        nonlocal sibling_ran
        sibling_ran = True

    events: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sibling)
        with trio.CancelScope() as scope:
            scope.cancel()  # a checkpoint in here would raise Cancelled
            _AUDITING.append(events)
            try:
                decisions = [limiter.hit_nowait(f"k{i % 50}", TEN_PER_MINUTE, cost=i % 3)
                             for i in range(2000)]
            finally:
                _AUDITING.pop()
        assert not sibling_ran  # never yielded to the scheduler
    assert all(isinstance(d, Decision) for d in decisions)
    assert limiter.statistics().hits == 2000
    assert events == []  # no open(), socket, subprocess... audit events at all


async def test_full_buckets_are_evicted_and_live_ones_never(mock_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    for _ in range(10):
        limiter.hit_nowait("victim", TEN_PER_MINUTE)
    # Many other keys while the victim's bucket is still empty: the sweep
    # passes over it again and again but must keep it.
    for i in range(10_000):
        limiter.hit_nowait(f"other{i}", TEN_PER_MINUTE)
        mock_clock.jump(0.0005)  # 5 s in all: less than one token interval
    assert not limiter.hit_nowait("victim", TEN_PER_MINUTE).allowed
    assert limiter.statistics().evictions == 0

    mock_clock.jump(60)  # everything refills completely
    for i in range(10_000):
        limiter.hit_nowait("fresh", Rate(1000, 1.0), cost=0)  # peeks store nothing but sweep
    stats = limiter.statistics()
    assert stats.keys_tracked == 0
    assert stats.evictions == 10_001 and stats.forced_evictions == 0


async def test_a_million_distinct_keys_stay_bounded(mock_clock: MockClock) -> None:
    """A flood of one-off client IPs: each bucket is full again 12 s later and then dropped."""
    limiter = MemoryLimiter()
    rate = Rate(5, MINUTE)  # the auth limit: one token back every 12 s
    step = 0.001  # 1000 new keys per second
    live = int(rate.interval / step) + 1  # buckets that cannot be full yet: 12 001
    hit, jump = limiter.hit_nowait, mock_clock.jump
    peak = 0
    for i in range(1_000_000):
        hit(str(i), rate)
        jump(step)
        if i % 1000 == 0:
            peak = max(peak, limiter.statistics().keys_tracked)
    stats = limiter.statistics()
    assert stats.hits == 1_000_000 and stats.rejections == 0
    assert live <= peak <= 2 * live
    assert stats.evictions + stats.keys_tracked == 1_000_000
    assert stats.forced_evictions == 0


async def test_memory_is_flat_under_a_flood(mock_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    rate = Rate(5, MINUTE)
    keys = [f"198.51.{i // 256 % 256}.{i % 256}#{i}" for i in range(60_000)]

    def flood(part: list[str]) -> None:
        for key in part:
            limiter.hit_nowait(key, rate)
            mock_clock.jump(0.001)

    gc.collect()
    tracemalloc.start()
    try:
        flood(keys[:20_000])  # warm up: the table reaches its steady size
        warm = tracemalloc.get_traced_memory()[0]
        flood(keys[20_000:])  # 40 000 more distinct keys
        grown = tracemalloc.get_traced_memory()[0] - warm
    finally:
        tracemalloc.stop()
    # 40 000 retained keys would be ~8 MB; a bounded table stays where it was.
    assert grown < 1_000_000
    assert limiter.statistics().keys_tracked < 2 * 12_001


async def test_the_hard_cap_is_a_counted_last_resort(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter(max_keys=100)
    for i in range(1000):  # no time passes: every bucket stays live
        limiter.hit_nowait(f"k{i}", TEN_PER_MINUTE)
    stats = limiter.statistics()
    assert stats.keys_tracked == 100
    assert stats.forced_evictions == 900 and stats.evictions == 0
    assert limiter.hit_nowait("k999", TEN_PER_MINUTE).remaining == 8  # the newest survive
    assert limiter.hit_nowait("k0", TEN_PER_MINUTE).remaining == 9  # the oldest started over


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        MemoryLimiter(max_keys=0)
    with pytest.raises(ValueError):
        MemoryLimiter(sweep_per_hit=1)


async def test_a_refund_gives_tokens_back_but_never_more_than_full(autojump_clock: MockClock) -> None:
    limiter = MemoryLimiter()
    with trio.fail_after(3600):
        for _ in range(10):
            assert limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        assert not limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        await limiter.refund("s1", TEN_PER_MINUTE, 2)
        assert limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        assert limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        assert not limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed
        # refunding more than was spent leaves the bucket full, not fuller
        limiter.refund_nowait("s1", TEN_PER_MINUTE, 10)
        limiter.refund_nowait("s1", TEN_PER_MINUTE, 10)
        assert limiter.statistics().keys_tracked == 0
        assert [limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed for _ in range(11)] == [True] * 10 + [False]
        # a refund into a bucket that refilled meanwhile does nothing
        await trio.sleep(60)
        limiter.refund_nowait("s1", TEN_PER_MINUTE, 5)
        assert [limiter.hit_nowait("s1", TEN_PER_MINUTE).allowed for _ in range(11)] == [True] * 10 + [False]
