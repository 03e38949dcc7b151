"""Group events from neonize: the pure conversions of `GroupInfoEv`, `JoinedGroupEv` and `PictureEv`, then the
callbacks over the fake client (registered, delivered in order), and the poll-vote callback that decrypts
through Go (a real `PollVoteMessage`; a decrypt error is logged and dropped, never raised into Go)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
import trio

pb = pytest.importorskip("neonize.proto.Neonize_pb2")

from neonize.events import GroupInfoEv, JoinedGroupEv, PictureEv  # noqa: E402
from neonize.exc import DecryptPollVoteError  # noqa: E402
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as e2e  # noqa: E402

from actors import (  # noqa: E402
    GroupJoined, GroupLeft, GroupParticipantsChanged, GroupUpdated, MessageReceived, PollVoted,
)
from actors.neonize import _group_events as groups  # noqa: E402

from .test_neonize_events import EMPTY, jid, message_event, roundtrip  # noqa: E402
from .test_neonize_transport import FakeClient, connected_transport, text_event  # noqa: E402

GROUP = jid("120363001", "g.us")
ADMIN, ADMIN_LID = jid("15550000001"), jid("111000111", "lid")
ME, ME_LID = jid("15550001111", device=7), jid("999000999", "lid", device=7)
MY_JIDS = frozenset({"15550001111@s.whatsapp.net", "999000999@lid"})
NOW = 1_700_000_999_000


def group_info_event(**fields: Any) -> Any:
    fields.setdefault("Sender", ADMIN)
    return roundtrip(pb.GroupInfoEvent(JID=GROUP, Timestamp=1_700_000_100, **fields))


def joined_event(**fields: Any) -> Any:
    return roundtrip(pb.JoinedGroup(Reason="", Type="", CreateKey="", **fields,
                                    GroupInfo=pb.GroupInfo(JID=GROUP, GroupName=pb.GroupName(Name="Team"))))


# -- conversions ------------------------------------------------------------------------

def test_own_jids_are_the_phone_and_the_lid_without_device():
    assert groups.own_jids(pb.Device(JID=ME, LID=ME_LID)) == MY_JIDS
    assert groups.own_jids(roundtrip(pb.Device(JID=ME))) == {"15550001111@s.whatsapp.net"}


def test_joined_group_names_who_added_us_by_phone_and_the_group():
    ev = joined_event(Sender=ADMIN_LID, SenderPN=ADMIN)
    assert groups.joined_group(ev, NOW) == GroupJoined(group="120363001@g.us", by="15550000001@s.whatsapp.net",
                                                       name="Team", timestamp_ms=NOW)
    assert groups.joined_group(joined_event(Sender=ADMIN_LID), NOW).by == "111000111@lid"
    by_invite = groups.joined_group(joined_event(), NOW)  # no sender: an invite link, or the server
    assert by_invite is not None and by_invite.by is None


def test_each_member_action_is_one_event_with_the_sender_and_ms():
    ev = group_info_event(Join=[jid("15550000002"), jid("222000222", "lid")], Promote=[jid("15550000003", device=3)],
                          Demote=[jid("15550000004")])
    common = {"group": "120363001@g.us", "by": "15550000001@s.whatsapp.net", "timestamp_ms": 1_700_000_100_000}
    assert groups.group_changes(ev, MY_JIDS, NOW) == [
        GroupParticipantsChanged(**common, action="add", participants=["15550000002@s.whatsapp.net", "222000222@lid"]),
        GroupParticipantsChanged(**common, action="promote", participants=["15550000003@s.whatsapp.net"]),
        GroupParticipantsChanged(**common, action="demote", participants=["15550000004@s.whatsapp.net"]),
    ]


def test_settings_changes_are_one_update_with_only_what_changed():
    ev = group_info_event(Name=pb.GroupName(Name="Team B"),
                          Topic=pb.GroupTopic(Topic="", TopicID="T2", TopicDeleted=True),
                          Announce=pb.GroupAnnounce(IsAnnounce=False), Locked=pb.GroupLocked(isLocked=True))
    [update] = groups.group_changes(ev, MY_JIDS, NOW)
    assert update == GroupUpdated(group="120363001@g.us", by="15550000001@s.whatsapp.net",
                                  timestamp_ms=1_700_000_100_000, name="Team B", topic="", announce=False, locked=True)
    [topic] = groups.group_changes(group_info_event(Topic=pb.GroupTopic(Topic="plans", TopicID="T3")), MY_JIDS, NOW)
    assert (topic.topic, topic.name, topic.announce, topic.locked, topic.picture_changed) == (
        "plans", None, None, None, False)
    [announce] = groups.group_changes(group_info_event(Announce=pb.GroupAnnounce(IsAnnounce=True)), MY_JIDS, NOW)
    assert (announce.announce, announce.name, announce.topic) == (True, None, None)
    # an ephemeral-timer or invite-link change is nothing of ours; a server change has no `by`
    assert groups.group_changes(group_info_event(NewInviteLink="https://chat.whatsapp.com/x"), MY_JIDS, NOW) == []
    [server] = groups.group_changes(roundtrip(pb.GroupInfoEvent(JID=GROUP, Timestamp=1, Locked=pb.GroupLocked(
        isLocked=False))), MY_JIDS, NOW)
    assert server.by is None and server.locked is False


def test_leaving_is_a_participant_change_and_group_left():
    left = groups.group_changes(group_info_event(Sender=ME, Leave=[ME]), MY_JIDS, NOW)
    assert [type(e) for e in left] == [GroupParticipantsChanged, GroupLeft]
    assert (left[0].action, left[0].participants) == ("remove", ["15550001111@s.whatsapp.net"])
    assert left[1] == GroupLeft(group="120363001@g.us", by="15550001111@s.whatsapp.net",
                                timestamp_ms=1_700_000_100_000, reason="left")
    # removed by an admin, this account named by its LID (a LID-addressed group)
    removed = groups.group_changes(group_info_event(Sender=ADMIN_LID, Leave=[jid("15550000005"), ME_LID]),
                                   MY_JIDS, NOW)
    assert removed[-1] == GroupLeft(group="120363001@g.us", by="111000111@lid", timestamp_ms=1_700_000_100_000,
                                    reason="removed")
    others = groups.group_changes(group_info_event(Leave=[jid("15550000005")]), MY_JIDS, NOW)
    assert [type(e) for e in others] == [GroupParticipantsChanged]
    assert [type(e) for e in groups.group_changes(group_info_event(Leave=[ME]), frozenset(), NOW)] == [
        GroupParticipantsChanged]  # before Connected the transport does not know its own JIDs


def test_a_group_picture_change_is_an_update_and_a_user_picture_is_nothing():
    for remove in (False, True):
        ev = roundtrip(pb.Picture(JID=GROUP, Author=ADMIN, Timestamp=1_700_000_200, Remove=remove))
        assert groups.picture_changed(ev, NOW) == GroupUpdated(
            group="120363001@g.us", by="15550000001@s.whatsapp.net", timestamp_ms=1_700_000_200_000,
            picture_changed=True)
    by_server = groups.picture_changed(roundtrip(pb.Picture(JID=GROUP, Author=EMPTY, Timestamp=0, Remove=True)), NOW)
    assert by_server is not None and (by_server.by, by_server.timestamp_ms) == (None, NOW)
    assert groups.picture_changed(roundtrip(pb.Picture(JID=ADMIN, Author=ADMIN, Timestamp=1, Remove=False)), NOW) \
        is None


# -- the callbacks --------------------------------------------------------------------------

async def test_group_callbacks_are_registered_and_deliver_in_order():
    with trio.fail_after(10):
        fake = FakeClient()
        fake.me = pb.Device(JID=ME, LID=ME_LID, PushName="Gateway")
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            assert {JoinedGroupEv, GroupInfoEv, PictureEv} <= set(fake.event.handlers)
            fake.emit(joined_event(Sender=ADMIN))
            fake.emit(group_info_event(Name=pb.GroupName(Name="Renamed"), Join=[jid("15550000006")]))
            fake.emit(pb.Picture(JID=GROUP, Author=ADMIN, Timestamp=1_700_000_300, Remove=False))
            fake.emit(pb.Picture(JID=ADMIN, Author=ADMIN, Timestamp=1_700_000_300, Remove=False))  # a user's: nothing
            fake.emit(group_info_event(Sender=ADMIN_LID, Leave=[ME_LID]))
            fake.emit(text_event("after"))
            got = [await recv.receive() for _ in range(7)]
            await t.disconnect()
        joined, renamed, added, picture, removed, left, after = got
        assert isinstance(joined, GroupJoined) and (joined.name, joined.by) == ("Team", "15550000001@s.whatsapp.net")
        assert isinstance(renamed, GroupUpdated) and renamed.name == "Renamed"
        assert isinstance(added, GroupParticipantsChanged) and added.participants == ["15550000006@s.whatsapp.net"]
        assert isinstance(picture, GroupUpdated) and picture.picture_changed
        assert isinstance(removed, GroupParticipantsChanged) and removed.action == "remove"
        assert left == GroupLeft(group="120363001@g.us", by="111000111@lid", timestamp_ms=1_700_000_100_000,
                                 reason="removed")
        assert isinstance(after, MessageReceived) and after.text == "after"


# -- poll votes: decrypted through Go in the callback --------------------------------------------

def vote_event(sender: Any = None, sender_alt: Any = EMPTY) -> Any:
    sender = sender or jid("15552223333")
    msg = e2e.Message(pollUpdateMessage=e2e.PollUpdateMessage(pollCreationMessageKey={"ID": "3EB0POLL"}))
    return roundtrip(message_event(msg, chat=jid("120363001", "g.us"), sender=sender, sender_alt=sender_alt,
                                   group=True, ID="3EB0VOTE"))


async def test_a_poll_vote_is_decrypted_through_the_client_and_delivered():
    pizza, sushi = hashlib.sha256(b"Pizza").digest(), hashlib.sha256(b"Sushi").digest()
    decrypted: list[Any] = []
    with trio.fail_after(10):
        fake = FakeClient()
        fake.decrypt_poll_vote = lambda ev: (decrypted.append(ev), e2e.PollVoteMessage(
            selectedOptions=[pizza, sushi]))[1]
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            fake.emit(vote_event(sender=jid("987654321", "lid"), sender_alt=jid("15552223333")))
            vote = await recv.receive()
            await t.disconnect()
    assert vote == PollVoted(event_id="3EB0VOTE", chat="120363001@g.us", sender="15552223333@s.whatsapp.net",
                             sender_phone="+15552223333", sender_lid="987654321@lid", is_group=True,
                             timestamp_ms=1_700_000_000_123, poll_id="3EB0POLL",
                             option_hashes=[pizza.hex(), sushi.hex()])
    [ev] = decrypted
    assert ev.Info.ID == "3EB0VOTE" and ev.Message.HasField("pollUpdateMessage")  # the whole MessageEv


async def test_a_vote_that_cannot_be_decrypted_is_logged_and_dropped(caplog):
    caplog.set_level(logging.WARNING, logger="actors._neonize")

    def fail(ev: Any) -> Any:
        raise DecryptPollVoteError("failed to decrypt poll vote: original message secret key not found")

    with trio.fail_after(10):
        fake = FakeClient()
        fake.decrypt_poll_vote = fail
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            fake.emit(vote_event())
            fake.emit(text_event("next", msg_id="3EB0NEXT"))
            nxt = await recv.receive()  # the vote was dropped; the callback thread went on
            await t.disconnect()
        assert isinstance(nxt, MessageReceived) and nxt.message_id == "3EB0NEXT"
        assert "poll vote not decrypted" in caplog.text and "original message secret key not found" in caplog.text
        assert "callback failed" not in caplog.text and runner.error is None
