"""LIDs: the LidBook over both stores (its cache on trio's mock clock), asking a real sim transport on a miss,
and the session host naming authors by phone JID wherever it can."""

from __future__ import annotations

import msgspec
import pytest
import trio

from actors import MessageReceived, ReactionReceived, TransportError
from gateway._clock import SYSTEM_CLOCK
from gateway._host import SessionHost
from gateway._lids import CACHE_TTL, LidBook, bare_lid, is_lid, phone_jid
from gateway._ports import SINGLE_NODE
from gateway.store import open_store

from ._pg import fresh_schema
from ._sim_fixtures import sim_world, spec, start_connected
from .store_contract import a_session, a_user
from .test_api_sessions import create
from .test_event_schemas import validate_event

LID_B, LID_C = "111111111111111@lid", "222222222222222@lid"
JB, JC, JD = "15550000002@s.whatsapp.net", "15550000003@s.whatsapp.net", "15550000004@s.whatsapp.net"


@pytest.fixture(params=["sqlite", "postgres"])
async def store_and_sessions(request, tmp_path):
    """A migrated store of each driver, with two sessions in it."""
    if request.param == "sqlite":
        store = await open_store(f"sqlite:///{tmp_path}/lids.db")
        async with _with_sessions(store) as sessions:
            yield sessions
        return
    async with fresh_schema() as url:
        store = await open_store(url)
        async with _with_sessions(store) as sessions:
            yield sessions


class _with_sessions:
    def __init__(self, store) -> None:
        self.store = store

    async def __aenter__(self):
        await self.store.migrate()
        user = a_user()
        await self.store.create_user(user)
        sessions = [a_session(user.id), a_session(user.id)]
        for s in sessions:
            await self.store.create_session(s)
        return self.store, sessions[0].id, sessions[1].id

    async def __aexit__(self, *exc):
        with trio.CancelScope(shield=True):
            await self.store.aclose()


def test_lid_shapes():
    assert is_lid(LID_B) and is_lid("1@lid") and is_lid("9" * 20 + "@lid")
    for bad in ("9" * 21 + "@lid", "12:3@lid", "abc@lid", "123@s.whatsapp.net", "@lid", "", None, LID_B + "\n"):
        assert not is_lid(bad), bad
    assert bare_lid("111111111111111:12@lid") == bare_lid(LID_B) == LID_B
    assert bare_lid(JB) is None and bare_lid("1:1234@lid") is None and bare_lid("1" * 21 + "@lid") is None
    assert phone_jid("15550000002:7@s.whatsapp.net") == JB
    assert phone_jid(LID_B) is None and phone_jid("120363000000000001@g.us") is None


async def test_learn_and_resolve_per_session_both_ways(store_and_sessions):
    store, mine, other = store_and_sessions
    book = LidBook(store, SYSTEM_CLOCK)
    assert await book.phone_for(mine, LID_B) is None and await book.lid_for(mine, JB) is None
    await book.learn(mine, [(LID_B, "15550000002:3@s.whatsapp.net"), ("not a lid", JC), (LID_C, "not a jid"),
                            (LID_C, "120363000000000001@g.us")])
    assert await book.phone_for(mine, LID_B) == JB  # the device suffix dropped
    assert await book.lid_for(mine, JB) == LID_B
    assert await book.lid_for(mine, "15550000002:9@s.whatsapp.net") == LID_B
    assert await store.phone_for_lid(mine, LID_C) is None  # the malformed pairs were left out
    assert await book.phone_for(other, LID_B) is None  # another session learned nothing
    assert await LidBook(store, SYSTEM_CLOCK).phone_for(mine, LID_B) == JB  # it is in the store, not just cached
    assert await book.phone_for(mine, "bogus") is None and await book.lid_for(mine, "bogus") is None
    # a LID seen again with another phone: the newest phone wins, and the old phone has no LID any more
    await book.learn(mine, [(LID_B, JC)])
    assert await book.phone_for(mine, LID_B) == JC
    assert await book.lid_for(mine, JC) == LID_B and await book.lid_for(mine, JB) is None


async def test_the_cache_skips_known_pairs_and_misses_expire_on_the_mock_clock(store_and_sessions, mock_clock):
    store, mine, _ = store_and_sessions
    book = LidBook(store, SYSTEM_CLOCK)
    await book.learn(mine, [(LID_B, JB)])
    await store.put_lids(mine, [(LID_B, JC)], 2)  # another node learned a newer phone for it
    await book.learn(mine, [(LID_B, JB)])  # known here: not written again...
    assert await store.phone_for_lid(mine, LID_B) == JC
    assert await book.phone_for(mine, LID_B) == JB  # ...and answered from the cache, until its time is up
    assert await book.lid_for(mine, JD) is None  # a miss is cached too
    await store.put_lids(mine, [(LID_C, JD)], 3)
    assert await book.lid_for(mine, JD) is None
    mock_clock.jump(CACHE_TTL - 1)
    assert await book.phone_for(mine, LID_B) == JB
    mock_clock.jump(2)
    assert await book.phone_for(mine, LID_B) == JC
    assert await book.lid_for(mine, JD) == LID_C
    small = LidBook(store, SYSTEM_CLOCK, max_entries=1)  # the bound: the oldest entry goes first
    await small.learn(mine, [(LID_B, JB), (LID_C, JC)])
    await store.put_lids(mine, [(LID_B, JC)], 4)
    assert await small.phone_for(mine, LID_B) == JC  # forgotten here, read again from the store


async def test_a_miss_asks_the_transport_and_learns_its_answer(tmp_path):
    with trio.fail_after(10):
        async with sim_world(str(tmp_path / "sim"), autopair=0) as (_, factory, control, nursery), \
                _with_sessions(await open_store(f"sqlite:///{tmp_path}/lids.db")) as (store, mine, _):
            a, _ = await start_connected(nursery, factory.create(spec("a", "+15550000001")))
            lid = await control.lid("+15550000002")
            book = LidBook(store, SYSTEM_CLOCK)
            assert await book.phone_for(mine, lid) is None  # no transport: the store alone
            assert await book.phone_for(mine, lid, a.transport) == JB
            assert await store.phone_for_lid(mine, lid) == JB  # learned
            assert await book.lid_for(mine, JC, a.transport) == await control.lid("+15550000003")
            assert await store.lid_for_phone(mine, JC) is not None
            assert await book.phone_for(mine, "999999999999999@lid", a.transport) is None
            await control.unregister("+15550000004")
            assert await book.lid_for(mine, JD, a.transport) is None
            await a.transport.disconnect()
            with pytest.raises(TransportError):  # its errors are the caller's to handle
                await book.phone_for(mine, "333333333333333@lid", a.transport)


async def test_the_host_names_authors_by_phone_wherever_it_can(client, account, gateway):
    s = await create(client, account)
    sid = s["id"]
    host = SessionHost(gateway.store, gateway.recorder, SINGLE_NODE, on_receipt=_ignore, clock=gateway.clock,
                       lids=gateway.lids)

    def message(n: int, **fields) -> MessageReceived:
        base = dict(message_id=f"3EB0LID{n}", chat=JB, sender=JB, timestamp_ms=1, type="text", text=f"m{n}")
        return MessageReceived(**(base | fields))

    with gateway.bus.subscribe(sid) as inbox:
        async def received(event, name="message.received") -> dict:
            await host.transport_event(sid, event)
            with trio.fail_after(5):
                got = await inbox.receive.receive()
            validate_event(got.event, got.data, envelope=msgspec.to_builtins(got))
            assert got.event == name
            return got.data

        # a LID alone that nobody taught (one device of it): it stays the LID, and fromLid says so
        unknown = await received(message(0, chat=LID_B, sender="111111111111111:3@lid", sender_lid=None))
        assert (unknown["sender"], unknown["from"], unknown["fromLid"], unknown["chat"], unknown["senderPhone"]) == (
            LID_B, LID_B, LID_B, LID_B, None)
        # both names: the pair is learned, the event is as WhatsApp sent it
        both = await received(message(1, sender_phone="+15550000002", sender_lid=LID_B))
        assert (both["from"], both["fromLid"], both["chat"]) == (JB, LID_B, JB)
        assert await gateway.store.phone_for_lid(sid, LID_B) == JB
        # now a LID alone is resolved: sender, from, senderPhone and the 1:1 chat are the phone's
        resolved = await received(message(2, chat=LID_B, sender=LID_B, sender_lid=LID_B,
                                          data={"quoted": {"message_id": "3EB0NOTOURS"}}))
        assert (resolved["sender"], resolved["from"], resolved["fromLid"], resolved["senderPhone"],
                resolved["chat"]) == (JB, JB, LID_B, "+15550000002", JB)
        assert resolved["data"]["quoted"]["sender"] == JB  # the quoted peer is the resolved chat
        # a phone JID alone: the LID the session knows is reported with it
        plain = await received(message(3))
        assert (plain["from"], plain["fromLid"]) == (JB, LID_B)
        # in a group the chat stays the group's; sent from another device, a LID chat is the peer's
        group = await received(message(4, chat="120363000000000001@g.us", sender=LID_B, sender_lid=LID_B,
                                       is_group=True))
        assert (group["from"], group["chat"]) == (JB, "120363000000000001@g.us")
        await gateway.lids.learn(sid, [(LID_C, JC)])
        mine = await received(message(5, chat=LID_C, sender="15550000001@s.whatsapp.net", from_me=True))
        assert (mine["chat"], mine["from"]) == (JC, "15550000001@s.whatsapp.net")
        # a repeat is still dropped: the next event is the reaction
        await host.transport_event(sid, message(2, chat=LID_B, sender=LID_B))
        # an action by LID alone is resolved the same way
        reaction = await received(ReactionReceived(event_id="3EB0ACT1", message_id="3EB0LID1", chat=LID_B,
                                                   sender=LID_B, timestamp_ms=2, emoji="👍"), "message.reaction")
        assert (reaction["sender"], reaction["from"], reaction["fromLid"], reaction["chat"],
                reaction["senderPhone"], reaction["emoji"]) == (JB, JB, LID_B, JB, "+15550000002", "👍")


async def _ignore(session_id, receipt) -> None:
    pass
