"""The lease keeper against PostgreSQL, in one process: spreading, failover, handover, the watchdog.

Each keeper is one node; a fake host records which sessions it runs. TTLs are
about a second, so every scenario plays out in real time within seconds.
"""

from __future__ import annotations

import pytest
import trio

from gateway.cluster import LeaseKeeper
from gateway.store import open_store

from ._pg import pg_url_fixture  # noqa: F401  (registers `pg_url`)
from .store_contract import a_session, a_user

TTL = 1.2


class Host:
    """A node's sessions, as the keeper sees them."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.stops = 0
        self.nudged: list[str] = []

    async def resume(self, session_id: str) -> bool:
        self.running.add(session_id)
        return True

    async def stop(self, session_id: str) -> None:
        self.stops += 1
        self.running.discard(session_id)

    def idle(self, session_id: str) -> bool:
        return session_id not in self.running

    def movable(self, session_id: str) -> bool:
        return True

    def nudge(self, session_id: str) -> None:
        self.nudged.append(session_id)


@pytest.fixture
async def store(pg_url):
    store = await open_store(pg_url)
    await store.migrate()
    yield store
    await store.aclose()


async def wanted_sessions(store, n: int) -> list[str]:
    user = a_user()
    await store.create_user(user)
    ids = []
    for i in range(n):
        s = a_session(user.id, name=f"s{i}", connect_on_start=True)
        await store.create_session(s)
        ids.append(s.id)
    return ids


class Node:
    def __init__(self, store, name: str) -> None:
        self.host = Host()
        self.keeper = LeaseKeeper(store, node_id=name, ttl=TTL)
        self.scope = trio.CancelScope()

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            await self.keeper.run(self.host, address="", token="t", host="h", pid=1, task_status=task_status)


async def start(nursery, store, name: str) -> Node:
    node = Node(store, name)
    await nursery.start(node.run)
    return node


async def wait_for(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_sessions_spread_over_the_nodes_and_fences_match_the_database(store):
    ids = await wanted_sessions(store, 9)
    async with trio.open_nursery() as nursery:
        nodes = [await start(nursery, store, f"n{i}") for i in range(3)]
        await wait_for(lambda: sum(len(n.host.running) for n in nodes) == 9)
        await wait_for(lambda: all(len(n.host.running) == 3 for n in nodes))
        for n in nodes:
            for sid in n.host.running:
                fence = n.keeper.fence(sid)
                owner = await store.lease_owner(sid)
                assert fence is not None and (owner.node_id, owner.epoch) == (fence.node_id, fence.epoch)
        assert set().union(*(n.host.running for n in nodes)) == set(ids)
        nursery.cancel_scope.cancel()


async def test_a_dead_node_loses_its_sessions_to_the_others_within_a_ttl(store):
    await wanted_sessions(store, 6)
    async with trio.open_nursery() as nursery:
        a, b = await start(nursery, store, "a"), await start(nursery, store, "b")
        await wait_for(lambda: len(a.host.running) == 3 and len(b.host.running) == 3)
        orphans = set(a.host.running)
        a.scope.cancel()  # dies: no goodbye, its leases just stop being renewed
        died = trio.current_time()
        await wait_for(lambda: b.host.running >= orphans)
        assert trio.current_time() - died < TTL + b.keeper.interval + 1.0
        for sid in orphans:
            assert (await store.lease_owner(sid)).epoch == 2
        nursery.cancel_scope.cancel()


async def test_a_graceful_leave_hands_everything_over_at_once(store):
    await wanted_sessions(store, 6)
    async with trio.open_nursery() as nursery:
        a, b = await start(nursery, store, "a"), await start(nursery, store, "b")
        await wait_for(lambda: len(a.host.running) == 3 and len(b.host.running) == 3)
        await a.keeper.leave()
        a.scope.cancel()
        b.keeper.poke()  # what the leaving node's notification does
        left = trio.current_time()
        await wait_for(lambda: len(b.host.running) == 6)
        assert trio.current_time() - left < TTL / 2  # not a lease expiry: an immediate takeover
        nursery.cancel_scope.cancel()


async def test_a_node_that_joins_gets_its_share_handed_over(store):
    await wanted_sessions(store, 8)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, store, "a")
        await wait_for(lambda: len(a.host.running) == 8)
        b = await start(nursery, store, "b")
        await wait_for(lambda: len(a.host.running) == 4 and len(b.host.running) == 4)
        assert a.keeper.statistics().handed_over == 4
        nursery.cancel_scope.cancel()


async def test_without_heartbeats_the_watchdog_stops_every_session(store):
    """The database stops answering: the node must stop acting before its leases can expire there."""
    await wanted_sessions(store, 3)

    class Stalling:
        def __init__(self, inner) -> None:
            self._inner = inner
            self.stalled = False

        def __getattr__(self, name):
            return getattr(self._inner, name)

        async def renew_node(self, node_id, ttl):
            if self.stalled:
                await trio.sleep_forever()
            return await self._inner.renew_node(node_id, ttl)

    stalling = Stalling(store)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, stalling, "a")
        await wait_for(lambda: len(a.host.running) == 3)
        held = list(a.host.running)
        stalling.stalled = True
        stalled_at = trio.current_time()
        await wait_for(lambda: not a.host.running)
        stopped_after = trio.current_time() - stalled_at
        assert stopped_after < TTL - a.keeper.margin + 0.1
        assert all(a.keeper.fence(sid) is None for sid in held)
        # ...while the database still gave them to "a": nobody else could have run them yet
        owners = [await store.lease_owner(sid) for sid in held]
        assert all(o is not None and o.node_id == "a" for o in owners)
        assert a.keeper.statistics().expired_locally == 3
        nursery.cancel_scope.cancel()


async def test_wait_owned_returns_at_once_only_under_a_valid_lease(store):
    [sid] = await wanted_sessions(store, 1)
    async with trio.open_nursery() as nursery:
        a = await start(nursery, store, "a")
        await wait_for(lambda: sid in a.host.running)
        with trio.fail_after(1):
            await a.keeper.wait_owned(sid)
        with trio.move_on_after(0.3) as scope:
            await a.keeper.wait_owned("someone-else")
        assert scope.cancelled_caught
        nursery.cancel_scope.cancel()


async def test_due_messages_are_polled_and_nudged(store):
    from .store_contract import a_message

    [sid] = await wanted_sessions(store, 1)
    record = await store.get_session(sid)
    await store.create_messages([a_message(record, expires_at=2**62)])
    async with trio.open_nursery() as nursery:
        a = await start(nursery, store, "a")
        await wait_for(lambda: sid in a.host.nudged)
        nursery.cancel_scope.cancel()


def test_the_lease_survives_two_missed_heartbeats():
    with pytest.raises(ValueError):
        LeaseKeeper(None, node_id="x", ttl=10, interval=4.5)  # type: ignore[arg-type]
    keeper = LeaseKeeper(None, node_id="x", ttl=10)  # type: ignore[arg-type]
    assert keeper.interval == 2.5 and keeper.margin == 2.0

