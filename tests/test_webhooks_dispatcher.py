"""The delivery engine on the MockClock, against a scripted network (no sockets, no real sleeps).

`FakeNet` is a `WebhookClient`: each endpoint URL has a behaviour, every
request's Standard Webhooks signature is checked, and every hit is logged with
the (mock) time it arrived.
"""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import trio
from tenacity.wait import wait_fixed

from gateway._events import make_event
from gateway._netguard import UnsafeURL
from gateway._security import new_webhook_secret
from gateway.webhooks import (
    NOMINAL_WAIT, AttemptRecord, Delivery, DeliveryStatus, Dispatcher, Failure, MemoryDeliveryStore, PostError,
    Response, RetryPolicy, SignatureError, TrioWallClock, new_delivery, verify,
)

SECRET = new_webhook_secret()
HOUR = 3600.0
NO_JITTER = RetryPolicy(wait=NOMINAL_WAIT)


@dataclass
class Hit:
    url: str
    id: str
    timestamp: int
    at: float  # trio time the request arrived
    answer: int | str  # status, or the failure raised


Behaviour = Callable[["FakeNet", str, int], Awaitable[Response]]  # (net, url, hit number for this url)


class FakeNet:
    def __init__(self, wall: TrioWallClock) -> None:
        self.wall = wall
        self.routes: dict[str, Behaviour] = {}
        self.hits: list[Hit] = []
        self.bad_signatures = 0
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0

    async def post(self, url, addresses, body, headers) -> Response:
        h = dict(headers)
        try:
            verify(SECRET, h, body, now=self.wall() / 1000)
        except SignatureError:
            self.bad_signatures += 1
        assert h["content-type"] == "application/json" and addresses == ["203.0.113.7"]
        hit = Hit(url, h["webhook-id"], int(h["webhook-timestamp"]), trio.current_time(), "pending")
        self.hits.append(hit)
        self.in_flight[url] += 1
        self.peak[url] = max(self.peak[url], self.in_flight[url])
        self.peak_total = max(self.peak_total, sum(self.in_flight.values()))
        try:
            response = await self.routes[url](self, url, sum(1 for x in self.hits if x.url == url))
            hit.answer = response.status
            return response
        except PostError as exc:
            hit.answer = exc.failure.value
            raise
        finally:
            self.in_flight[url] -= 1

    async def aclose(self) -> None:
        pass

    def accepted(self, url: str | None = None) -> list[Hit]:
        return [h for h in self.hits if isinstance(h.answer, int) and 200 <= h.answer < 300
                and (url is None or h.url == url)]

    def of(self, delivery_id: str) -> list[Hit]:
        return [h for h in self.hits if h.id == delivery_id]


def answer(status: int, *headers: tuple[str, str], latency: float = 0.05) -> Behaviour:
    async def behaviour(net, url, n):
        await trio.sleep(latency)
        return Response(status, headers, b"")
    return behaviour


def script(*steps: Behaviour) -> Behaviour:
    """The n-th request gets the n-th step; the last step repeats."""
    async def behaviour(net, url, n):
        return await steps[min(n, len(steps)) - 1](net, url, n)
    return behaviour


def down_until(t: float) -> Behaviour:
    async def behaviour(net, url, n):
        if trio.current_time() < t:
            raise PostError(Failure.CONNECT, "connection refused", maybe_delivered=False)
        return await answer(200)(net, url, n)
    return behaviour


async def blackhole(net, url, n):
    await trio.sleep_forever()


class StaticResolver:
    def __init__(self, blocked: frozenset[str] = frozenset(), unresolvable: frozenset[str] = frozenset()) -> None:
        self.blocked, self.unresolvable = blocked, unresolvable

    async def resolve(self, url: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        if url in self.blocked:
            raise UnsafeURL("host 'x' resolves to a non-public address (10.0.0.1)")
        if url in self.unresolvable:
            raise UnsafeURL("host 'x' does not resolve: [Errno -2] Name or service not known")
        return ["203.0.113.7"]


class World:
    """A store, a network and a shared wall clock: what survives a dispatcher restart."""

    def __init__(self) -> None:
        self.wall = TrioWallClock(start_ms=1_800_000_000_000)
        self.store = MemoryDeliveryStore()
        self.net = FakeNet(self.wall)
        self.written: dict[str, float] = {}  # delivery id -> trio time it was written

    async def start(self, nursery: trio.Nursery, policy: RetryPolicy = NO_JITTER, **kw) -> Dispatcher:
        kw.setdefault("resolver", StaticResolver())
        dispatcher = Dispatcher(self.store, self.net, policy, clock=self.wall, **kw)
        return await nursery.start(dispatcher.run)

    def write(self, url: str, dispatcher: Dispatcher | None = None, n: int = 1) -> list[str]:
        ids = []
        for i in range(n):
            d = new_delivery(make_event("message.received", "sess-1", {"n": i}), endpoint=url, secret=SECRET,
                             now_ms=self.wall())
            self.store.add(d)
            self.written[d.id] = trio.current_time()
            ids.append(d.id)
        if dispatcher is not None:
            dispatcher.wake()
        return ids

    async def wait_finished(self, ids: list[str], step: float = 0.5) -> None:
        while any(self.store.get(i).status is DeliveryStatus.PENDING for i in ids):
            await trio.sleep(step)


async def test_receiver_down_for_hours_gets_every_event_once_it_is_back(autojump_clock):
    world = World()
    url = "https://down.example/hook"
    back_at = trio.current_time() + 6 * HOUR
    world.net.routes[url] = down_until(back_at)
    with trio.fail_after(20 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery)
            ids = []
            for _ in range(20):  # an event every 3 minutes during the first hour of the outage
                ids += world.write(url, dispatcher)
                await trio.sleep(180)
            await world.wait_finished(ids, step=10)
            nursery.cancel_scope.cancel()
    accepted = world.net.accepted(url)
    assert sorted(h.id for h in accepted) == sorted(ids)  # every event, each accepted exactly once
    assert all(world.store.get(i).status is DeliveryStatus.DELIVERED for i in ids)
    for i in ids:  # every attempt of a delivery carried the same webhook-id and a fresh timestamp
        hits = world.net.of(i)
        assert len(hits) == world.store.get(i).attempts > 1
        assert len({h.timestamp for h in hits}) == len(hits)
    first_ok = min(h.at for h in accepted)
    assert first_ok >= back_at
    # the first 2xx makes the whole backlog due: it drains in seconds, not at each one's next retry
    assert max(h.at for h in accepted) - first_ok < 5
    assert dispatcher.statistics().expedited >= 1
    assert world.net.bad_signatures == 0


async def test_500_then_200_is_accepted_exactly_once(autojump_clock):
    world = World()
    url = "https://flaky.example/hook"
    world.net.routes[url] = script(answer(500), answer(500), answer(200))
    with trio.fail_after(4 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery)
            [delivery_id] = world.write(url, dispatcher)
            await world.wait_finished([delivery_id])
            await trio.sleep(2 * HOUR)  # nothing more is sent
            nursery.cancel_scope.cancel()
    hits = world.net.of(delivery_id)
    assert [h.answer for h in hits] == [500, 500, 200]
    assert len(world.net.accepted()) == 1
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:])]
    assert gaps == pytest.approx([5 + 0.05, 15 + 0.05], abs=0.1)  # the schedule, after each answer
    d = world.store.get(delivery_id)
    assert (d.status, d.attempts, d.last_status, d.last_error) == (DeliveryStatus.DELIVERED, 3, 200, None)
    stats = dispatcher.statistics()
    assert (stats.attempts, stats.delivered, stats.retried, stats.dead) == (3, 1, 2, 0)
    assert stats.outcomes == {"5xx": 2, "2xx": 1}
    assert stats.in_flight == 0


async def test_a_400_is_final(autojump_clock):
    world = World()
    url = "https://strict.example/hook"
    world.net.routes[url] = answer(400)
    with trio.fail_after(3 * 24 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, poll_interval=60)
            [delivery_id] = world.write(url, dispatcher)
            await trio.sleep(2 * 24 * HOUR)
            nursery.cancel_scope.cancel()
    assert len(world.net.of(delivery_id)) == 1
    d = world.store.get(delivery_id)
    assert d.status is DeliveryStatus.DEAD and d.last_status == 400
    assert "HTTP 400" in (d.last_error or "") and "not retried" in (d.last_error or "")
    assert dispatcher.statistics().dead == 1


@pytest.mark.parametrize("status", [408, 429, 502, 503])
async def test_retryable_statuses(autojump_clock, status):
    world = World()
    url = "https://busy.example/hook"
    world.net.routes[url] = script(answer(status), answer(204))
    with trio.fail_after(HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery)
            ids = world.write(url, dispatcher)
            await world.wait_finished(ids)
            nursery.cancel_scope.cancel()
    assert [h.answer for h in world.net.of(ids[0])] == [status, 204]


async def test_retry_after_is_honoured_in_seconds_and_as_a_date(autojump_clock):
    world = World()
    url = "https://polite.example/hook"

    async def date_in_ten_minutes(net, u, n):
        when = email.utils.formatdate(net.wall() / 1000 + 600, usegmt=True)
        return await answer(503, ("retry-after", when))(net, u, n)

    world.net.routes[url] = script(answer(429, ("Retry-After", "120")), date_in_ten_minutes,
                                   answer(429, ("retry-after", "99999999")), answer(200))
    policy = RetryPolicy(wait=NOMINAL_WAIT, retry_after_cap=HOUR)
    with trio.fail_after(5 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, policy)
            ids = world.write(url, dispatcher)
            await world.wait_finished(ids)
            nursery.cancel_scope.cancel()
    hits = world.net.of(ids[0])
    gaps = [b.at - a.at for a, b in zip(hits, hits[1:])]
    assert gaps[0] == pytest.approx(120, abs=0.5)  # not the schedule's 5 s
    assert gaps[1] == pytest.approx(600, abs=1.5)  # an HTTP date has whole seconds
    assert gaps[2] == pytest.approx(HOUR, abs=0.5)  # capped
    assert [h.answer for h in hits] == [429, 503, 429, 200]


async def test_a_small_retry_after_never_shortens_the_schedule(autojump_clock):
    world = World()
    url = "https://pushy.example/hook"
    world.net.routes[url] = script(answer(429, ("retry-after", "1")), answer(429, ("retry-after", "1")),
                                   answer(200))
    with trio.fail_after(HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery)
            ids = world.write(url, dispatcher)
            await world.wait_finished(ids)
            nursery.cancel_scope.cancel()
    hits = world.net.of(ids[0])
    assert [round(b.at - a.at) for a, b in zip(hits, hits[1:])] == [5, 15]


async def test_spent_budget_goes_to_dead_letter_after_about_a_day(autojump_clock):
    world = World()
    url = "https://broken.example/hook"
    world.net.routes[url] = answer(500)
    with trio.fail_after(3 * 24 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, RetryPolicy(), poll_interval=60)  # default schedule, jitter
            ids = world.write(url, dispatcher)
            await world.wait_finished(ids, step=60)
            nursery.cancel_scope.cancel()
    hits = world.net.of(ids[0])
    assert len(hits) == 14
    span = hits[-1].at - hits[0].at
    assert 22 * HOUR < span < 27 * HOUR
    d = world.store.get(ids[0])
    assert d.status is DeliveryStatus.DEAD and d.attempts == 14
    assert "gave up after 14 attempts" in (d.last_error or "")
    stats = dispatcher.statistics()
    assert (stats.retried, stats.dead, stats.delivered) == (13, 1, 0)


async def test_blackholed_endpoint_leaves_healthy_ones_on_time(autojump_clock):
    world = World()
    dead = [f"https://blackhole{i}.example/hook" for i in range(6)]
    healthy = [f"https://ok{i}.example/hook" for i in range(3)]
    for url in dead:
        world.net.routes[url] = blackhole
    for url in healthy:
        world.net.routes[url] = answer(200, latency=0.2)
    ids: dict[str, list[str]] = {url: [] for url in healthy}
    with trio.fail_after(2 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, max_in_flight=16, per_endpoint=4, attempt_timeout=30)
            for url in dead:
                world.write(url, dispatcher, n=100)
            for _ in range(60):  # healthy traffic for ten minutes, beside a growing dead backlog
                for url in healthy:
                    ids[url] += world.write(url, dispatcher, n=3)
                for url in dead:
                    world.write(url, dispatcher, n=5)
                await trio.sleep(10)
            await world.wait_finished([i for url in healthy for i in ids[url]])
            stats = dispatcher.statistics()
            nursery.cancel_scope.cancel()
    for url in healthy:
        accepted = world.net.accepted(url)
        assert sorted(h.id for h in accepted) == sorted(ids[url])
        worst = max(h.at - world.written[h.id] for h in accepted)
        assert worst < 1.0, f"{url} waited {worst:.1f} s"
    for url in dead:  # each dead endpoint used at most its own slots
        assert world.net.peak[url] <= 4
    assert world.net.peak_total <= 16
    assert stats.outcomes["timeout"] > 0 and stats.failing_endpoints == len(dead)


async def test_restart_with_retries_pending_delivers_them_with_the_same_ids(autojump_clock):
    world = World()
    url = "https://later.example/hook"
    world.net.routes[url] = answer(503)
    slow = "https://slow.example/hook"  # in flight when the first dispatcher dies
    world.net.routes[slow] = blackhole
    with trio.fail_after(10 * HOUR):
        async with trio.open_nursery() as nursery:
            first = await world.start(nursery, attempt_timeout=30)
            ids = world.write(url, first, n=10)
            stuck = world.write(slow, first, n=2)
            while first.statistics().retried < 10:
                await trio.sleep(0.5)
            assert first.statistics().in_flight == 1  # an unknown endpoint gets one attempt at a time
            nursery.cancel_scope.cancel()  # the crash: nothing is recorded for the stuck one
        assert len(world.net.of(stuck[0])) == 1
        before = {i: world.net.of(i)[0].id for i in ids + stuck[:1]}
        assert all(world.store.get(i).status is DeliveryStatus.PENDING for i in ids + stuck)
        world.net.routes[url] = answer(200)
        world.net.routes[slow] = answer(200)
        async with trio.open_nursery() as nursery:
            second = await world.start(nursery, attempt_timeout=30)
            await world.wait_finished(ids + stuck)
            nursery.cancel_scope.cancel()
    for i in ids + stuck:
        assert {h.id for h in world.net.of(i)} == {before.get(i, i)} == {i}
        assert len([h for h in world.net.accepted() if h.id == i]) == 1
    assert second.statistics().delivered == 12


async def test_wake_delivers_at_once_without_waiting_for_a_poll(autojump_clock):
    world = World()
    url = "https://fast.example/hook"
    world.net.routes[url] = answer(200, latency=0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, poll_interval=30)
            await trio.sleep(1)
            start = trio.current_time()
            ids = world.write(url, dispatcher)
            await world.wait_finished(ids, step=0.001)
            assert trio.current_time() - start < 0.01
            nursery.cancel_scope.cancel()


async def test_rows_written_without_wake_are_found_by_the_poll(autojump_clock):
    world = World()
    url = "https://other-process.example/hook"
    world.net.routes[url] = answer(200, latency=0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await world.start(nursery, poll_interval=5)
            await trio.sleep(1)
            ids = world.write(url)  # as another gateway process would: no wake()
            await world.wait_finished(ids, step=0.1)
            assert world.net.of(ids[0])[0].at - world.written[ids[0]] <= 5.01
            nursery.cancel_scope.cancel()


async def test_ssrf_refusal_is_final_and_dns_failure_is_retried(autojump_clock):
    world = World()
    blocked, missing = "https://internal.example/hook", "https://not-yet.example/hook"
    resolver = StaticResolver(blocked=frozenset({blocked}), unresolvable=frozenset({missing}))
    with trio.fail_after(HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, resolver=resolver)
            [b] = world.write(blocked, dispatcher)
            [m] = world.write(missing, dispatcher)
            await world.wait_finished([b])
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
    assert world.store.get(b).status is DeliveryStatus.DEAD and "non-public" in (world.store.get(b).last_error or "")
    assert world.store.get(m).status is DeliveryStatus.PENDING and world.store.get(m).attempts >= 2
    assert world.net.hits == []  # nothing was ever sent
    assert dispatcher.statistics().outcomes == {"blocked": 1, "dns": world.store.get(m).attempts}


async def test_a_broken_store_does_not_kill_the_dispatcher(autojump_clock):
    world = World()
    url = "https://ok.example/hook"
    world.net.routes[url] = answer(200)
    real_claim = world.store.claim_due
    failures = 3

    async def flaky_claim(*args, **kw):
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError("database is locked")
        return await real_claim(*args, **kw)

    world.store.claim_due = flaky_claim  # type: ignore[method-assign]
    with trio.fail_after(HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery)
            ids = world.write(url, dispatcher, n=3)
            await world.wait_finished(ids)
            nursery.cancel_scope.cancel()
    assert dispatcher.statistics().store_errors == 3 and dispatcher.statistics().delivered == 3


async def test_memory_store_claims_respect_room_leases_and_fences():
    store = MemoryDeliveryStore()
    for i in range(5):
        for ep in ("a", "b"):
            store.add(Delivery(id=f"{ep}{i}", session_id="s", event="e", endpoint=ep, secret=SECRET, payload=b"{}",
                               created_at=0, next_attempt_at=i))
    got = await store.claim_due(10, limit=10, room={"a": 1}, default_room=2, lease_until_ms=100)
    assert sorted(d.id for d in got) == ["a0", "b0", "b1"]
    assert all(d.claimed_until == 100 for d in got)
    only = await store.claim_due(10, limit=10, room={"a": 1}, default_room=0, lease_until_ms=100)
    assert [d.id for d in only] == ["a1"]
    assert await store.next_due_at(room={"a": 0}, default_room=1) == 2  # b2
    assert await store.next_due_at(room={}, default_room=0) is None
    # the lease ends: the claim is visible again
    again = await store.claim_due(100, limit=10, room={}, default_room=10, lease_until_ms=200)
    assert {"a0", "b0", "b1", "a1"} <= {d.id for d in again}
    # a result under the old lease is fenced off
    stale = AttemptRecord(delivery_id="a0", attempt=1, claimed_until=100, started_at=0, finished_at=1,
                          outcome=DeliveryStatus.DELIVERED, next_attempt_at=None, status_code=200)
    assert not await store.record_attempt(stale)
    fresh = AttemptRecord(delivery_id="a0", attempt=1, claimed_until=200, started_at=0, finished_at=1,
                          outcome=DeliveryStatus.PENDING, next_attempt_at=5000, status_code=503, error="HTTP 503")
    assert await store.record_attempt(fresh)
    a0 = store.get("a0")
    assert (a0.attempts, a0.claimed_until, a0.next_attempt_at, a0.last_error) == (1, 0, 5000, "HTTP 503")
    assert await store.expedite("a", 300) == 1 and store.get("a0").next_attempt_at == 300


async def test_slow_start_then_full_concurrency_and_statistics(autojump_clock):
    world = World()
    url = "https://ok.example/hook"
    world.net.routes[url] = answer(200, latency=10)
    with trio.fail_after(3 * HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, per_endpoint=4, policy=RetryPolicy(wait=wait_fixed(1)))
            world.write(url, dispatcher, n=9)
            await trio.sleep(1)
            probing = dispatcher.statistics()  # an endpoint not heard from yet gets one attempt
            await trio.sleep(10)
            confirmed = dispatcher.statistics()  # it answered 2xx: now up to per_endpoint at once
            await trio.sleep(30)
            after = dispatcher.statistics()
            await trio.sleep(2 * HOUR)  # no news for a long time: the endpoint is unknown again
            world.write(url, dispatcher, n=3)
            await trio.sleep(1)
            forgotten = dispatcher.statistics()
            nursery.cancel_scope.cancel()
    assert forgotten.in_flight == 1
    assert (probing.in_flight, probing.busy_endpoints, probing.delivered) == (1, 1, 0)
    assert (confirmed.in_flight, confirmed.delivered) == (4, 1)
    assert (after.in_flight, after.delivered, after.attempts, after.outcomes) == (0, 9, 9, {"2xx": 9})
    assert world.net.peak[url] == 4


async def test_a_malformed_secret_is_final_and_a_client_bug_costs_an_attempt(autojump_clock):
    world = World()
    url = "https://ok.example/hook"
    world.net.routes[url] = answer(200)
    d = new_delivery(make_event("message.sent", "s", {}), endpoint=url, secret="whsec_***", now_ms=world.wall())
    world.store.add(d)
    buggy = "https://bug.example/hook"

    async def bug(net, u, n):
        raise KeyError("oops")
    world.net.routes[buggy] = bug
    with trio.fail_after(HOUR):
        async with trio.open_nursery() as nursery:
            dispatcher = await world.start(nursery, policy=RetryPolicy(wait=wait_fixed(1), max_attempts=3))
            [b] = world.write(buggy, dispatcher)
            await world.wait_finished([d.id, b])
            nursery.cancel_scope.cancel()
    assert world.store.get(d.id).status is DeliveryStatus.DEAD and world.store.get(d.id).attempts == 1
    assert world.store.get(b).status is DeliveryStatus.DEAD and world.store.get(b).attempts == 3
    assert "KeyError" in (world.store.get(b).last_error or "")
    assert dispatcher.statistics().outcomes == {"invalid": 1, "internal": 3}
