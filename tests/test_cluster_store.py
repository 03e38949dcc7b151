"""The cluster contract of the store (nodes, leases, fenced writes), run against both drivers.

PostgreSQL is the engine of cluster mode; SQLite implements the same contract
so that the fenced write methods mean the same thing on either store.
"""

from __future__ import annotations

import pytest
import trio

from actors import SessionState
from gateway.store import Fence, MessageStatus, open_store

from ._pg import fresh_schema
from .store_contract import a_message, a_session, a_user

SHORT_TTL = 0.3  # seconds: long enough for a statement, short enough to wait out


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        store = await open_store(f"sqlite:///{tmp_path}/cluster.db")
        await store.migrate()
        yield store
        await store.aclose()
        return
    async with fresh_schema() as url:
        store = await open_store(url)
        await store.migrate()
        yield store
        await store.aclose()


async def sessions(store, n: int, *, wanted: bool = True) -> list[str]:
    user = a_user(f"u{n}-{wanted}@example.com")
    await store.create_user(user)
    ids = []
    for i in range(n):
        s = a_session(user.id, name=f"s{i}", connect_on_start=wanted)
        await store.create_session(s)
        ids.append(s.id)
    return ids


async def node(store, node_id: str, ttl: float = 10.0) -> None:
    await store.register_node(node_id, address=f"http://{node_id}.internal:1", token=f"tok-{node_id}", host="h",
                              pid=1, ttl=ttl)


async def test_acquire_takes_free_wanted_sessions_up_to_the_limit(store):
    wanted = await sessions(store, 5)
    idle = await sessions(store, 2, wanted=False)
    await node(store, "a")
    with trio.fail_after(10):
        got = await store.acquire_leases("a", 10, limit=3)
        assert len(got) == 3 and set(got) <= set(wanted) and set(got.values()) == {1}
        rest = await store.acquire_leases("a", 10, limit=10)
        assert set(got) | set(rest) == set(wanted)  # never a session nobody wants online
        assert await store.acquire_leases("a", 10, limit=10) == {}
        # named sessions are taken whether wanted or not (a connect request)
        assert await store.acquire_leases("a", 10, session_ids=idle) == {idle[0]: 1, idle[1]: 1}


async def test_a_held_lease_cannot_be_taken_until_released_and_the_epoch_grows(store):
    [sid] = await sessions(store, 1)
    await node(store, "a")
    await node(store, "b")
    with trio.fail_after(10):
        assert await store.acquire_leases("a", 10, session_ids=[sid]) == {sid: 1}
        assert await store.acquire_leases("b", 10, session_ids=[sid]) == {}
        assert await store.acquire_leases("b", 10, limit=5) == {}
        owner = await store.lease_owner(sid)
        assert (owner.node_id, owner.epoch, owner.address, owner.token) == ("a", 1, "http://a.internal:1", "tok-a")
        assert await store.release_leases("b", [sid]) == 0  # not b's to release
        assert await store.release_leases("a", [sid]) == 1
        assert await store.lease_owner(sid) is None
        assert await store.acquire_leases("b", 10, limit=5) == {sid: 2}
        assert (await store.lease_owner(sid)).node_id == "b"


async def test_renewal_extends_what_is_held_and_counts_the_cluster(store):
    ids = await sessions(store, 3)
    await sessions(store, 1, wanted=False)
    await node(store, "a")
    await node(store, "b")
    with trio.fail_after(10):
        got = await store.acquire_leases("a", 10, limit=2)
        renewal = await store.renew_node("a", 10)
        assert {(h.session_id, h.epoch, h.wanted) for h in renewal.leases} == {(s, 1, True) for s in got}
        assert renewal.live_nodes == 2 and renewal.wanted == 3
        await store.update_session(ids[0], {"connect_on_start": False}, 1)
        renewal = await store.renew_node("b", 10)
        assert renewal.leases == [] and renewal.wanted == 2


async def test_an_expired_lease_is_lost_for_good(store):
    [sid] = await sessions(store, 1)
    await node(store, "a", ttl=SHORT_TTL)
    await node(store, "b")
    with trio.fail_after(10):
        assert await store.acquire_leases("a", SHORT_TTL, limit=1) == {sid: 1}
        await trio.sleep(SHORT_TTL + 0.1)  # "a" paused past its lease
        assert await store.lease_owner(sid) is None
        # nobody took it yet, and still the late heartbeat does not bring it back
        assert (await store.renew_node("a", 10)).leases == []
        assert await store.acquire_leases("b", 10, limit=1) == {sid: 2}
        assert (await store.renew_node("a", 10)).leases == []


async def test_fenced_writes_apply_only_under_the_current_lease(store):
    [sid] = await sessions(store, 1)
    record = await store.get_session(sid)
    await node(store, "a")
    await node(store, "b")
    first, second = a_message(record), a_message(record)
    await store.create_messages([first, second])
    with trio.fail_after(10):
        assert await store.acquire_leases("a", 10, session_ids=[sid]) == {sid: 1}
        mine, stale, theirs = Fence("a", 1), Fence("a", 0), Fence("b", 1)
        assert await store.claim_next_message(sid, now=2_000, fence=stale) is None
        assert await store.claim_next_message(sid, now=2_000, fence=theirs) is None
        claimed = await store.claim_next_message(sid, now=2_000, fence=mine)
        assert claimed.id == first.id
        assert await store.update_session(sid, {"status": SessionState.CONNECTED}, 3, fence=theirs) is None
        assert (await store.update_session(sid, {"status": SessionState.CONNECTED}, 3, fence=mine)).status \
            is SessionState.CONNECTED
        # the lease moves to b: a's writes stop applying, even the one it was about to make
        await store.release_leases("a")
        assert await store.acquire_leases("b", 10, session_ids=[sid]) == {sid: 2}
        assert await store.set_message_status(claimed.id, MessageStatus.SENT, 4, wa_id="w1", fence=mine) is None
        assert await store.update_session(sid, {"status": SessionState.DISCONNECTED}, 5, fence=mine) is None
        assert (await store.get_session(sid)).status is SessionState.CONNECTED
        assert await store.requeue_interrupted(None, 6, node_id="a") == 0  # a owns nothing now
        assert await store.requeue_interrupted(None, 6, node_id="b") == 1
        assert (await store.get_message(first.id)).status is MessageStatus.QUEUED
        again = await store.claim_next_message(sid, now=7_000, fence=Fence("b", 2))
        assert again.id == first.id and again.attempts == 2
        assert (await store.set_message_status(again.id, MessageStatus.SENT, 8, wa_id="w1",
                                               fence=Fence("b", 2))).status is MessageStatus.SENT
        # without a fence (a single node, an API request) writes apply as they always did
        assert (await store.claim_next_message(sid, now=9_000)).id == second.id


async def test_leaving_hands_everything_back_and_the_node_reads_dead(store):
    ids = await sessions(store, 3)
    await node(store, "a")
    await node(store, "b")
    with trio.fail_after(10):
        assert len(await store.acquire_leases("a", 10, limit=3)) == 3
        nodes = {n.id: n for n in await store.list_nodes()}
        assert nodes["a"].alive and nodes["a"].leases == 3 and nodes["b"].leases == 0
        await store.leave_cluster("a")
        nodes = {n.id: n for n in await store.list_nodes()}
        assert not nodes["a"].alive and nodes["a"].leases == 0
        assert (await store.renew_node("b", 10)).live_nodes == 1
        assert set(await store.acquire_leases("b", 10, limit=3)) == set(ids)
        assert await store.forget_nodes(3600) == 0
        await trio.sleep(0.05)
        assert await store.forget_nodes(0.01) == 1
        assert [n.id for n in await store.list_nodes()] == ["b"]


async def test_due_messages_are_found_for_the_polling_fallback(store):
    a, b, c = await sessions(store, 3)
    ra, rb = await store.get_session(a), await store.get_session(b)
    await store.create_messages([a_message(ra, expires_at=100_000),
                                 a_message(rb, send_at=10_000, expires_at=100_000)])
    with trio.fail_after(10):
        assert await store.sessions_with_due_messages([a, b, c], now=2_000) == [a]
        assert sorted(await store.sessions_with_due_messages([a, b, c], now=20_000)) == sorted([a, b])
        assert await store.sessions_with_due_messages([], now=2_000) == []


async def test_racing_nodes_never_share_a_session(store):
    ids = await sessions(store, 40)
    names = [f"n{i}" for i in range(5)]
    for n in names:
        await node(store, n)
    won: dict[str, list[str]] = {n: [] for n in names}

    async def grab(n: str) -> None:
        for _ in range(3):
            won[n] += list(await store.acquire_leases(n, 10, limit=15))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in names:
                nursery.start_soon(grab, n)
    taken = [sid for got in won.values() for sid in got]
    assert sorted(taken) == sorted(ids)  # each exactly once
    for n in names:
        assert {h.session_id for h in (await store.renew_node(n, 10)).leases} == set(won[n])


async def test_query_one_runs_one_statement_and_returns_its_first_row(store):
    """The cluster's components (the shared limiter, the notifier) run their own statements this way."""
    await sessions(store, 2)
    with trio.fail_after(10):
        assert tuple(await store.query_one("SELECT COUNT(*) FROM sessions")) == (2,)
        assert await store.query_one("SELECT id FROM sessions WHERE name = 'none'") is None
        # it may write (the limiter takes tokens), and returns what RETURNING returns
        assert tuple(await store.query_one("DELETE FROM sessions WHERE name = 's0' RETURNING name")) == ("s0",)
        assert tuple(await store.query_one("SELECT COUNT(*) FROM sessions")) == (1,)
