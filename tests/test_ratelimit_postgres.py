"""`PostgresLimiter` against the real server: the `Limiter` contract, shared by several "nodes".

Each node here is its own store (its own connection pool), as separate
processes would be. Time is the database server's, so these tests use real
time with rates short enough to wait out.
"""

from __future__ import annotations

import pytest
import trio

from ratelimit import MINUTE, SECOND, CostExceedsLimit, Limiter, PostgresLimiter, Rate, decide_ns
from gateway.store import open_store

from ._pg import pg_url_fixture  # noqa: F401  (registers `pg_url`)

TEN_PER_MINUTE = Rate(10, MINUTE)


@pytest.fixture
async def stores(pg_url):
    opened = [await open_store(pg_url) for _ in range(3)]
    await opened[0].migrate()
    yield opened
    for store in opened:
        await store.aclose()


async def test_it_is_a_limiter_with_the_memory_backends_answers(stores):
    limiter = PostgresLimiter(stores[0].query_one)
    assert isinstance(limiter, Limiter)
    with trio.fail_after(10):
        answers = [await limiter.hit("s1", TEN_PER_MINUTE) for _ in range(11)]
    assert [a.allowed for a in answers] == [True] * 10 + [False]
    assert [a.remaining for a in answers[:10]] == list(range(9, -1, -1))
    refused = answers[-1]
    # six seconds per token, minus the few milliseconds the eleven round trips took
    assert 5.5 < refused.retry_after <= 6.0 and refused.remaining == 0
    assert 59 < refused.reset_after <= 60.0
    stats = limiter.statistics()
    assert (stats.hits, stats.rejections) == (11, 1)


async def test_decisions_are_decide_ns_on_the_database_clock(stores):
    """Replaying the stored TATs through the pure maths gives the same decision, field for field."""
    limiter = PostgresLimiter(stores[0].query_one)
    rate = Rate(3, SECOND)
    with trio.fail_after(10):
        for cost in (1, 2, 1, 3, 0, 1):
            before_now, before_tat = await stores[0].query_one(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000000000)::BIGINT, "
                "(SELECT tat FROM rate_buckets WHERE key = 'k')")
            decision = await limiter.hit("k", rate, cost)
            expected, _ = decide_ns(before_tat, before_now, rate, cost)
            # the database read its clock a little later than we did: the same answer, or a fuller bucket
            assert decision.allowed == expected.allowed or (decision.allowed and not expected.allowed)
            assert decision.limit == 3


async def test_three_nodes_never_take_more_than_the_limit_together(stores):
    limiters = [PostgresLimiter(s.query_one) for s in stores]
    rate = Rate(25, 3600)
    allowed: list[bool] = []

    async def hammer(limiter: PostgresLimiter) -> None:
        for _ in range(20):
            allowed.append((await limiter.hit("shared", rate)).allowed)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for limiter in limiters:
                for _ in range(3):  # three concurrent callers per node
                    nursery.start_soon(hammer, limiter)
    assert len(allowed) == 180 and allowed.count(True) == 25


async def test_a_batch_is_charged_whole_or_refused_whole(stores):
    limiter = PostgresLimiter(stores[0].query_one)
    with trio.fail_after(10):
        assert (await limiter.hit("b", TEN_PER_MINUTE, cost=8)).remaining == 2
        refused = await limiter.hit("b", TEN_PER_MINUTE, cost=3)
        assert not refused.allowed and refused.remaining == 2
        assert (await limiter.hit("b", TEN_PER_MINUTE, cost=2)).allowed  # the refusal charged nothing
        assert not (await limiter.hit("b", TEN_PER_MINUTE)).allowed


async def test_oversized_costs_fail_before_any_io(stores):
    calls = []

    async def query_one(sql, params):
        calls.append(sql)
        return await stores[0].query_one(sql, params)

    limiter = PostgresLimiter(query_one)
    with pytest.raises(CostExceedsLimit):
        await limiter.hit("x", TEN_PER_MINUTE, cost=11)
    with pytest.raises(ValueError):
        await limiter.hit("x", TEN_PER_MINUTE, cost=-1)
    with pytest.raises(TypeError):
        await limiter.hit("x", TEN_PER_MINUTE, cost=1.0)  # type: ignore[arg-type]
    assert calls == []


async def test_retry_after_is_honoured_and_peeks_charge_nothing(stores):
    limiter = PostgresLimiter(stores[0].query_one)
    rate = Rate(2, SECOND)
    with trio.fail_after(10):
        assert (await limiter.hit("r", rate)).allowed
        assert (await limiter.hit("r", rate, cost=0)).remaining == 1
        assert (await limiter.hit("r", rate, cost=0)).remaining == 1
        assert (await limiter.hit("r", rate)).allowed
        refused = await limiter.hit("r", rate)
        assert not refused.allowed
        await trio.sleep(refused.retry_after + 0.01)
        assert (await limiter.hit("r", rate)).allowed


async def test_sweep_drops_only_full_buckets(stores):
    limiter = PostgresLimiter(stores[0].query_one)
    with trio.fail_after(10):
        await limiter.hit("short", Rate(1000, SECOND))  # full again after a millisecond
        await limiter.hit("long", TEN_PER_MINUTE)
        await trio.sleep(0.01)
        assert await limiter.sweep() == 1
        assert limiter.statistics().keys_tracked == 1
        assert (await limiter.hit("long", TEN_PER_MINUTE)).remaining == 8  # kept: not full


async def test_a_refund_gives_tokens_back_but_never_more_than_full(stores):
    limiter = PostgresLimiter(stores[0].query_one)
    rate = Rate(3, MINUTE)
    with trio.fail_after(10):
        assert [(await limiter.hit("f", rate)).allowed for _ in range(4)] == [True, True, True, False]
        await limiter.refund("f", rate, 1)
        assert (await limiter.hit("f", rate)).allowed
        assert not (await limiter.hit("f", rate)).allowed
        await limiter.refund("f", rate, 3)
        await limiter.refund("f", rate, 3)
        await limiter.refund("missing", rate, 3)  # nothing charged: nothing to give back
        assert [(await limiter.hit("f", rate)).allowed for _ in range(4)] == [True, True, True, False]
