"""The simulator's groups, driven on the network model directly: roles, settings, pictures, invite links,
the announce-only rule on sends, and the notification each change pushes to each member's devices."""

from __future__ import annotations

import pytest

from actors import (
    GroupEvent,
    GroupJoined,
    GroupLeft,
    GroupParticipantsChanged,
    GroupSettings,
    GroupUpdated,
    OutboundMessage,
    TextContent,
)
from actors.sim import (
    CreateGroupOp,
    GroupInfoOp,
    GroupPictureOp,
    GroupSettingsOp,
    InviteInfoOp,
    InviteLinkOp,
    JoinInviteOp,
    LeaveGroupOp,
    Push,
    SendOp,
    UpdateParticipantsOp,
)
from bench.simulator import Network
from bench.simulator._groups import INVITE_LINK, MAX_GROUP_TOPIC, MAX_PICTURE_BYTES
from bench.simulator._model import OpError

from .test_simulator import FakeLink, FakeScheduler, paired

A, B, C, D = "+15550000001", "+15550000002", "+15550000003", "+15550000004"
JA, JB, JC, JD = (f"{p[1:]}@s.whatsapp.net" for p in (A, B, C, D))
JPEG = b"\xff\xd8\xff\xe0" + bytes(60)
NOW = 1_700_000_000_000


class World:
    """A network with sessions "a", "b", "c" paired as A, B, C on one link (D has no session)."""

    def __init__(self) -> None:
        self.net = Network(FakeScheduler(), receipt_delay=0, now_ms=lambda: NOW)
        self.link = FakeLink()
        self.net.link_opened(self.link, window=10_000)
        for session, phone in (("a", A), ("b", B), ("c", C)):
            paired(self.net, self.link, session, phone)
        self.link.take()

    def call(self, session: str, op):
        return self.net.call(self.link, session, op)

    def refused(self, session: str, op) -> OpError:
        with pytest.raises(OpError) as info:
            self.call(session, op)
        return info.value

    def group_events(self) -> dict[str, list[GroupEvent]]:
        """The group notifications pushed since the last call, by session."""
        out: dict[str, list[GroupEvent]] = {}
        for f in self.link.take():
            if isinstance(f, Push) and isinstance(f.event, GroupEvent):
                out.setdefault(f.session, []).append(f.event)
        return out

    def group(self, *members: str) -> str:
        """A group A created with `members`; its creation's notifications are taken."""
        info = self.call("a", CreateGroupOp(name="team", participants=list(members)))
        self.group_events()
        return info.jid

    def roles(self, jid: str) -> dict[str, tuple[bool, bool]]:
        info = self.call("a", GroupInfoOp(jid=jid))
        return {p.jid: (p.is_admin, p.is_super_admin) for p in info.participants}


def participants(jid: str, people: list[str], action: str) -> UpdateParticipantsOp:
    return UpdateParticipantsOp(jid=jid, participants=people, action=action)


def settings(jid: str, **values) -> GroupSettingsOp:
    return GroupSettingsOp(jid=jid, settings=GroupSettings(**values))


def text(to: str) -> SendOp:
    return SendOp(message=OutboundMessage(to=to, content=TextContent(body="hi")))


async def test_create_add_remove_and_leave_tell_each_member_what_it_is_told():
    w = World()
    info = w.call("a", CreateGroupOp(name="team", participants=[B]))
    g = info.jid
    joined = w.group_events()
    assert joined == {s: [GroupJoined(group=g, by=JA, timestamp_ms=NOW, name="team")] for s in ("a", "b")}

    [added] = w.call("a", participants(g, [C], "add"))
    assert added.ok
    got = w.group_events()
    assert got["c"] == [GroupJoined(group=g, by=JA, timestamp_ms=NOW, name="team")]
    change = GroupParticipantsChanged(group=g, by=JA, timestamp_ms=NOW, action="add", participants=[JC])
    assert got["a"] == got["b"] == [change]

    [removed] = w.call("a", participants(g, [C], "remove"))
    assert removed.ok
    got = w.group_events()
    assert got["c"] == [GroupLeft(group=g, by=JA, timestamp_ms=NOW, reason="removed")]
    assert got["a"] == got["b"] == [
        GroupParticipantsChanged(group=g, by=JA, timestamp_ms=NOW, action="remove", participants=[JC])]
    assert w.refused("c", GroupInfoOp(jid=g)).kind == "group_not_found"

    # the last admin leaves: WhatsApp makes the longest-standing member an admin, and says so
    w.call("a", LeaveGroupOp(jid=g))
    got = w.group_events()
    assert got["a"] == [GroupLeft(group=g, by=JA, timestamp_ms=NOW, reason="left")]
    assert got["b"] == [
        GroupParticipantsChanged(group=g, by=JA, timestamp_ms=NOW, action="remove", participants=[JA]),
        GroupParticipantsChanged(group=g, by=None, timestamp_ms=NOW, action="promote", participants=[JB])]
    assert w.call("b", GroupInfoOp(jid=g)).participants[0].is_admin


async def test_promote_and_demote_give_a_result_per_participant_and_keep_the_creator_an_admin():
    w = World()
    g = w.group(B, C)
    results = w.call("a", participants(g, [B, D], "promote"))
    assert [(r.jid, r.ok, r.error) for r in results] == [(JB, True, None), (JD, False, "404")]
    assert w.roles(g)[JB] == (True, False)
    got = w.group_events()
    promoted = GroupParticipantsChanged(group=g, by=JA, timestamp_ms=NOW, action="promote", participants=[JB])
    assert got == {"a": [promoted], "b": [promoted], "c": [promoted]}

    # a member who is not an admin changes nobody; an admin cannot demote or remove the creator
    assert [r.error for r in w.call("c", participants(g, [B], "demote"))] == ["not-authorized"]
    assert [r.error for r in w.call("b", participants(g, [A], "demote"))] == ["not-authorized"]
    assert [r.error for r in w.call("b", participants(g, [A], "remove"))] == ["not-authorized"]
    assert w.roles(g)[JA] == (True, True) and w.group_events() == {}

    # promoting an admin again changes nothing and tells nobody
    assert w.call("a", participants(g, [B], "promote"))[0].ok and w.group_events() == {}
    [demoted] = w.call("a", participants(g, [B], "demote"))
    assert demoted.ok and w.roles(g)[JB] == (False, False)
    assert w.group_events()["c"] == [
        GroupParticipantsChanged(group=g, by=JA, timestamp_ms=NOW, action="demote", participants=[JB])]
    assert [r.error for r in w.call("b", participants(g, [C], "promote"))] == ["not-authorized"]


async def test_settings_follow_who_may_change_them_and_tell_members_only_what_changed():
    w = World()
    g = w.group(B)
    w.call("a", settings(g, name="launch", topic="Q3 plans"))
    assert w.group_events()["b"] == [GroupUpdated(group=g, by=JA, timestamp_ms=NOW, name="launch", topic="Q3 plans")]
    w.call("b", settings(g, name="launch", topic=""))  # any member while unlocked; the same name is no change
    got = w.group_events()
    assert got["a"] == [GroupUpdated(group=g, by=JB, timestamp_ms=NOW, topic="")]
    info = w.call("b", GroupInfoOp(jid=g))
    assert (info.name, info.topic, info.announce, info.locked) == ("launch", None, False, False)

    refused = w.refused("b", settings(g, announce=True))
    assert refused.kind == "not_authorized" and refused.message.startswith("not-authorized")
    assert w.refused("b", settings(g, locked=False)).message.startswith("not-authorized")  # asked is enough
    w.call("a", settings(g, announce=True, locked=True))
    assert w.group_events()["b"] == [GroupUpdated(group=g, by=JA, timestamp_ms=NOW, announce=True, locked=True)]
    assert w.refused("b", settings(g, name="mine")).message.startswith("not-authorized")
    info = w.call("b", GroupInfoOp(jid=g))
    assert (info.name, info.announce, info.locked) == ("launch", True, True)

    # WhatsApp's limits: a name of 1 to 100 characters, not blank; a description of at most 2048
    for bad in (settings(g, name="x" * 101), settings(g, name="   "), settings(g, topic="x" * (MAX_GROUP_TOPIC + 1))):
        assert w.refused("a", bad).message.startswith("bad-request")
    w.call("a", settings(g, name="n" * 100, topic="d" * MAX_GROUP_TOPIC))
    assert w.call("b", GroupInfoOp(jid=g)).topic == "d" * MAX_GROUP_TOPIC
    assert w.refused("c", settings(g, name="x")).kind == "group_not_found"  # not a member: not visible


async def test_announce_only_lets_admins_alone_send():
    w = World()
    g = w.group(B)
    w.call("b", text(g))
    w.call("a", settings(g, announce=True))
    refused = w.refused("b", text(g))
    assert refused.kind == "not_authorized" and "only admins may send" in refused.message
    w.call("a", text(g))
    w.call("a", participants(g, [B], "promote"))
    w.call("b", text(g))
    assert [m.sender for m in w.net.record] == [JB, JA, JB]


async def test_group_picture_is_a_capped_jpeg_with_an_id_that_changes():
    w = World()
    g = w.group(B)
    first = w.call("b", GroupPictureOp(jid=g, jpeg=JPEG))  # any member while unlocked
    assert first and w.net.groups[g].picture_id == first
    assert w.group_events()["a"] == [GroupUpdated(group=g, by=JB, timestamp_ms=NOW, picture_changed=True)]
    biggest = JPEG + bytes(MAX_PICTURE_BYTES - len(JPEG))
    second = w.call("a", GroupPictureOp(jid=g, jpeg=biggest))
    assert second != first
    too_big = w.refused("a", GroupPictureOp(jid=g, jpeg=biggest + b"\x00"))
    assert too_big.kind == "recipient" and f"at most {MAX_PICTURE_BYTES} bytes" in too_big.message
    assert "JPEG" in w.refused("a", GroupPictureOp(jid=g, jpeg=b"\x89PNG\r\n\x1a\n" + bytes(8))).message
    assert w.net.groups[g].picture_id == second
    w.group_events()

    w.call("a", settings(g, locked=True))
    assert w.refused("b", GroupPictureOp(jid=g, jpeg=JPEG)).message.startswith("not-authorized")
    w.group_events()
    assert w.call("a", GroupPictureOp(jid=g, jpeg=None)) is None
    assert w.net.groups[g].picture_id is None
    assert w.group_events()["b"] == [GroupUpdated(group=g, by=JA, timestamp_ms=NOW, picture_changed=True)]
    assert w.call("a", GroupPictureOp(jid=g, jpeg=None)) is None and w.group_events() == {}  # nothing to take down


async def test_invite_links_join_and_reset():
    w = World()
    g = w.group(B)
    assert w.refused("b", InviteLinkOp(jid=g)).message.startswith("not-authorized")
    link = w.call("a", InviteLinkOp(jid=g))
    code = link.removeprefix(INVITE_LINK)
    assert link.startswith(INVITE_LINK) and len(code) == 22 and code.isalnum()
    assert w.call("a", InviteLinkOp(jid=g)) == link  # the same until reset
    seen = w.call("c", InviteInfoOp(code=code))  # someone not in the group sees where it leads
    assert (seen.jid, seen.name, len(seen.participants)) == (g, "team", 2)

    assert w.call("c", JoinInviteOp(code=code)) == g
    got = w.group_events()
    assert got["c"] == [GroupJoined(group=g, by=None, timestamp_ms=NOW, name="team")]
    joined = GroupParticipantsChanged(group=g, by=JC, timestamp_ms=NOW, action="add", participants=[JC])
    assert got["a"] == got["b"] == [joined]
    assert w.call("c", JoinInviteOp(code=code)) == g and w.group_events() == {}  # a member already

    new = w.call("a", InviteLinkOp(jid=g, reset=True))
    assert new != link
    for op in (InviteInfoOp(code=code), JoinInviteOp(code=code), InviteInfoOp(code="A" * 22)):
        assert w.refused("c", op).kind == "group_not_found"
    assert w.call("c", InviteInfoOp(code=new)).jid == g  # the full link works too

    # the group goes with its last member, and its code with it
    for session in ("b", "c", "a"):
        w.call(session, LeaveGroupOp(jid=g))
    assert g not in w.net.groups
    assert w.refused("a", InviteInfoOp(code=new.removeprefix(INVITE_LINK))).kind == "group_not_found"


async def test_a_group_you_are_not_in_cannot_be_administered():
    w = World()
    g = w.group(B)
    for op in (settings(g, name="x"), GroupPictureOp(jid=g, jpeg=JPEG), InviteLinkOp(jid=g),
               participants(g, [C], "promote"), settings("120363999999999999@g.us", name="x")):
        assert w.refused("c", op).kind == "group_not_found"
