"""The simulator's identity features: LIDs, profiles, blocking and LID addressing, on the network model
driven directly, then once over the real link and control channel."""

from __future__ import annotations

import re

import pytest
import trio

from actors import (
    GroupNotFound,
    MessageReceived,
    ProfilePicture,
    ReactionReceived,
    Receipt,
    RecipientError,
    TextContent,
    UserInfo,
)
from actors.sim import BlockOp, LidForPhoneOp, PhoneForLidOp, PictureOp, ReactOp, UserInfoOp
from bench.simulator import Network, SimControlError
from bench.simulator._control_ops import ControlOps
from bench.simulator._identity import MAX_ABOUT
from bench.simulator._model import OpError

from ._sim_fixtures import sim_world, spec, start_connected
from .test_simulator import FakeLink, FakeScheduler, paired, text

A, B, C = "+15550000001", "+15550000002", "+15550000003"
JA, JB, JC = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net", "15550000003@s.whatsapp.net"
LID = re.compile(r"[1-9][0-9]{14}@lid")


def world(**options):
    """A network with sessions `a` (as A) and `b` (as B) on one link, and its control ops."""
    sched = FakeScheduler()
    net = Network(sched, receipt_delay=0.1, **options)
    link = FakeLink()
    net.link_opened(link, window=100)
    paired(net, link, "a", A)
    paired(net, link, "b", B)
    link.take()
    sched.timers.clear()
    return net, sched, link, ControlOps(net)


def call(net, link, session, op):
    return net.call(link, session, op)


def pushed(link, session, kind):
    return [f.event for f in link.take() if getattr(f, "session", None) == session and isinstance(f.event, kind)]


async def test_every_number_has_one_stable_lid_both_ways():
    net, _, link, ctl = world()
    lid_a = call(net, link, "b", LidForPhoneOp(jid=JA))
    assert LID.fullmatch(lid_a) and net.accounts[A].lid == lid_a
    assert call(net, link, "b", PhoneForLidOp(lid=lid_a)) == JA
    assert call(net, link, "a", LidForPhoneOp(jid=A)) == lid_a  # a number asks as its JID
    # an open-world number nobody made yet has one; asking does not make its account
    lid_c = call(net, link, "a", LidForPhoneOp(jid=JC))
    assert LID.fullmatch(lid_c) and lid_c != lid_a and C not in net.accounts
    assert ctl.register(C)["jid"] == JC and ctl.identity(C)["lid"] == lid_c
    # unknown LIDs, malformed numbers and numbers off WhatsApp have none
    assert call(net, link, "a", PhoneForLidOp(lid="999999999999999@lid")) is None
    assert call(net, link, "a", LidForPhoneOp(jid="not a number")) is None
    assert call(net, link, "a", LidForPhoneOp(jid=lid_a)) is None
    ctl.unregister(C)
    assert call(net, link, "a", LidForPhoneOp(jid=JC)) is None
    assert call(net, link, "a", PhoneForLidOp(lid=lid_c)) is None
    ctl.register(C)  # back on WhatsApp: the same LID for the rest of the run
    assert call(net, link, "a", PhoneForLidOp(lid=lid_c)) == JC and ctl.identity(C)["lid"] == lid_c


async def test_profiles_pictures_about_and_their_limits():
    net, _, link, ctl = world()
    assert call(net, link, "a", PictureOp(jid=JB)) == ProfilePicture(jid=JB)  # none yet
    first = ctl.set_profile(B, about="At work", picture=True)
    url = f"https://pps.whatsapp.sim/v/t61/{first['picture_id']}.jpg"
    assert (first["about"], first["picture_url"]) == ("At work", url)
    assert call(net, link, "a", PictureOp(jid=B)) == ProfilePicture(jid=JB, url=url, id=first["picture_id"])
    second = ctl.set_profile(B, picture=True)  # a new picture: a new id; the about text stays
    assert second["picture_id"] != first["picture_id"] and second["about"] == "At work"
    [info] = call(net, link, "a", UserInfoOp(jids=[JB, JB, "not a number", "999999999999999@lid"]))
    assert info == UserInfo(jid=JB, about="At work", lid=ctl.identity(B)["lid"], picture_id=second["picture_id"])
    # asked by LID, answered for the phone JID
    assert call(net, link, "a", UserInfoOp(jids=[info.lid]))[0].jid == JB
    assert call(net, link, "a", PictureOp(jid=info.lid)).id == second["picture_id"]
    removed = ctl.set_profile(B, about="", picture=False)
    assert (removed["about"], removed["picture_id"], removed["picture_url"]) == (None, None, None)
    assert call(net, link, "a", PictureOp(jid=JB)).url is None
    assert ctl.set_profile(B, about="x" * MAX_ABOUT)["about"] == "x" * MAX_ABOUT
    for bad in (dict(about="x" * (MAX_ABOUT + 1)), dict(about=5), dict(picture="yes")):
        with pytest.raises(OpError):
            ctl.set_profile(B, **bad)
    with pytest.raises(OpError):
        ctl.set_profile("not a number", about="hi")
    ctl.unregister(C)
    with pytest.raises(OpError) as off:
        call(net, link, "a", PictureOp(jid=JC))
    assert off.value.kind == "recipient" and "not on WhatsApp" in off.value.message
    assert call(net, link, "a", UserInfoOp(jids=[JC])) == []
    with pytest.raises(OpError) as invalid:
        call(net, link, "a", PictureOp(jid="bogus"))
    assert invalid.value.kind == "recipient"


async def test_group_pictures_and_unknown_groups():
    net, _, link, _ = world()
    group = net.create_group(net.accounts[A], "team", [B])
    assert call(net, link, "b", PictureOp(jid=group.jid)) == ProfilePicture(jid=group.jid)
    net.groups[group.jid].picture_id = "42"
    assert call(net, link, "b", PictureOp(jid=group.jid)).url == "https://pps.whatsapp.sim/v/t61/42.jpg"
    for jid in ("120363999999999999@g.us", group.jid):
        with pytest.raises(OpError) as missing:
            net.picture(net.account(C), jid)  # unknown, or not a member: the same answer
        assert missing.value.kind == "group_not_found"


async def test_a_blocked_sender_sends_but_is_never_delivered_or_receipted():
    net, sched, link, ctl = world()
    assert call(net, link, "a", BlockOp(jid=B, block=True)) == [JB]
    assert call(net, link, "a", BlockOp(jid=JC, block=True)) == [JB, JC]  # sorted, any spelling
    ctl.set_profile(B, about="hi", picture=True)
    net.send(net.accounts[B], text(JA, "before"), session_id="b")  # B's send succeeds...
    mid, _ = net.send(net.accounts[B], text(JA, "blocked"), session_id="b")
    assert mid and pushed(link, "a", MessageReceived) == []  # ...and never reaches A
    sched.fire()
    assert pushed(link, "b", Receipt) == []  # nor is it ever delivered or read
    call(net, link, "b", ReactOp(chat=JA, message_id=mid, emoji="👍"))
    assert pushed(link, "a", ReactionReceived) == []  # actions are dropped too
    # A's messages still reach B; A hides its profile from B, while B's stays visible to A
    net.send(net.accounts[A], text(JB, "from a"), session_id="a")
    assert [e.text for e in pushed(link, "b", MessageReceived)] == ["from a"]
    ctl.set_profile(A, about="busy", picture=True)
    assert call(net, link, "b", PictureOp(jid=JA)) == ProfilePicture(jid=JA)
    assert call(net, link, "b", UserInfoOp(jids=[JA]))[0].about is None
    assert call(net, link, "a", PictureOp(jid=JB)).url is not None
    assert call(net, link, "a", UserInfoOp(jids=[JB]))[0].about == "hi"
    # unblocked: delivery and receipts again
    assert call(net, link, "a", BlockOp(jid=JB, block=False)) == [JC]
    net.send(net.accounts[B], text(JA, "after"), session_id="b")
    assert [e.text for e in pushed(link, "a", MessageReceived)] == ["after"]
    sched.fire()
    assert {e.type for e in pushed(link, "b", Receipt)} == {"delivered", "read"}
    assert ctl.identity(A)["blocked"] == [JC]


async def test_block_refusals_and_unblocking_a_number_that_left():
    net, _, link, ctl = world()
    for jid in ("bogus", "999999999999999@lid", A):
        with pytest.raises(OpError) as refused:
            call(net, link, "a", BlockOp(jid=jid, block=True))
        assert refused.value.kind == "recipient"
    ctl.unregister("+15550000009")
    with pytest.raises(OpError) as off:
        call(net, link, "a", BlockOp(jid="+15550000009", block=True))
    assert "not on WhatsApp" in off.value.message
    call(net, link, "a", BlockOp(jid=JC, block=True))
    ctl.unregister(C)
    assert call(net, link, "a", BlockOp(jid=C, block=False)) == []  # it left WhatsApp; unblocking still works
    assert call(net, link, "a", BlockOp(jid=JB, block=False)) == []  # not blocked: nothing changes
    lid_b = ctl.identity(B)["lid"]
    assert call(net, link, "a", BlockOp(jid=lid_b, block=True)) == [JB]  # by LID: stored as the phone JID


async def test_lid_addressing_modes_for_messages_and_actions():
    net, _, link, ctl = world()
    lid_b = ctl.set_addressing(B, "lid")["lid"]
    net.send(net.accounts[B], text(JA, "lid"), session_id="b")
    [got] = pushed(link, "a", MessageReceived)
    assert (got.sender, got.sender_phone, got.sender_lid, got.chat) == (JB, B, lid_b, JB)
    assert ctl.set_addressing(B, "lid-only")["addressing"] == "lid-only"
    mid, _ = net.send(net.accounts[B], text(JA, "lid only"), session_id="b")
    [got] = pushed(link, "a", MessageReceived)
    assert (got.sender, got.sender_phone, got.sender_lid, got.chat) == (lid_b, None, lid_b, lid_b)
    call(net, link, "b", ReactOp(chat=JA, message_id=mid, emoji="🔥"))
    [reaction] = pushed(link, "a", ReactionReceived)
    assert (reaction.sender, reaction.sender_phone, reaction.sender_lid, reaction.chat) == (
        lid_b, None, lid_b, lid_b)
    group = net.create_group(net.accounts[A], "team", [B])
    net.send(net.accounts[B], text(group.jid, "in the group"), session_id="b")
    [got] = pushed(link, "a", MessageReceived)
    assert (got.sender, got.chat, got.is_group) == (lid_b, group.jid, True)  # a group stays the group
    # how A addresses its own messages is A's setting: B still gets A's by phone JID
    net.send(net.accounts[A], text(JB, "plain"), session_id="a")
    [got] = pushed(link, "b", MessageReceived)
    assert (got.sender, got.sender_lid) == (JA, None)
    ctl.set_addressing(B, "off")
    net.send(net.accounts[B], text(JA, "off"), session_id="b")
    [got] = pushed(link, "a", MessageReceived)
    assert (got.sender, got.sender_lid, got.chat) == (JB, None, JB)
    for bad in ("LID", "", 3):
        with pytest.raises(OpError):
            ctl.set_addressing(B, bad)
    with pytest.raises(OpError):
        ctl.set_addressing("not a number", "lid")


async def test_identity_over_the_link_and_the_control_channel(tmp_path):
    """The same calls through the sim transport (results and errors decoded) and the control client."""
    with trio.fail_after(10):
        async with sim_world(str(tmp_path), autopair=0, receipt_delay=0.02) as (_, factory, control, nursery):
            a, _ = await start_connected(nursery, factory.create(spec("a", A)))
            b, _ = await start_connected(nursery, factory.create(spec("b", B)))
            profile = await control.set_profile(B, about="Hello", picture=True)
            lid_b = await control.set_addressing(B, "lid")
            assert lid_b == profile["lid"] == await control.lid(B)
            assert await a.transport.get_picture(JB) == ProfilePicture(jid=JB, url=profile["picture_url"],
                                                                        id=profile["picture_id"])
            assert [(i.jid, i.about, i.lid) for i in await a.transport.get_user_info([JB])] == [(JB, "Hello", lid_b)]
            assert await a.transport.lid_for_phone(JB) == lid_b
            assert await a.transport.phone_for_lid(lid_b) == JB
            assert await a.transport.phone_for_lid("100000000000000@lid") is None
            assert await a.transport.update_blocklist(JB, True) == [JB]
            assert await a.transport.get_blocklist() == [JB]
            with pytest.raises(RecipientError):
                await a.transport.update_blocklist(JA, True)
            with pytest.raises(GroupNotFound):
                await a.transport.get_picture("120363999999999999@g.us")
            assert await a.transport.update_blocklist(JB, False) == []
            await b.transport.send(_message(JA, "hi"))
            got = await a.expect(MessageReceived)
            assert (got.sender, got.sender_lid) == (JB, lid_b)
            for bad in (control.set_addressing(B, "sideways"), control.set_profile(B, about="x" * 140),
                        control.identity("not a number")):
                with pytest.raises(SimControlError):
                    await bad


def _message(to: str, body: str):
    from actors import OutboundMessage

    return OutboundMessage(to=to, content=TextContent(body=body))
