"""The neonize transport's identity and group-administration calls over the fake client: the neonize call each
makes (built JIDs, enums, topic ids, invite codes), how answers are converted, how Go's errors map, and that
none reaches Go unconnected (the LID-map reads would abort the process there)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

pb = pytest.importorskip("neonize.proto.Neonize_pb2")

from neonize.exc import (  # noqa: E402
    GetBlocklistError, GetGroupInfoError, GetGroupInviteLinkError, GetJIDFromStoreError, GetProfilePictureError,
    GetUserInfoError, InviteLinkError, LeaveGroupError, SetGroupAnnounceError, SetGroupLockedError,
    SetGroupNameError, SetGroupPhotoError, SetGroupTopicError, UpdateBlocklistError, UpdateGroupParticipantsError,
)
from neonize.utils.enum import BlocklistAction, ParticipantChange  # noqa: E402

from actors import (  # noqa: E402
    NotAuthorized,
    GroupNotFound, GroupSettings, NotConnected, ProfilePicture, RecipientError, TransportError, UserInfo,
)

from .test_neonize_transport import RESULTS, FakeClient, connected_transport, jid, make  # noqa: E402

PEER = "15552223333@s.whatsapp.net"
GROUP = "120363001@g.us"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
EMPTY_JID = pb.JID(User="", RawAgent=0, Device=0, Integrator=0, Server="", IsEmpty=True)


@pytest.fixture(autouse=True)
def _results(monkeypatch):
    answers = {
        "get_profile_picture": pb.ProfilePictureInfo(URL="https://pps.whatsapp.net/v/x.jpg", ID="1700000001"),
        # whatsmeow answers a map: in no particular order
        "get_user_info": [
            pb.GetUserInfoSingleReturnFunction(JID=jid("987654321", "lid"),
                                               UserInfo=pb.UserInfo(Status="", PictureID="")),
            pb.GetUserInfoSingleReturnFunction(JID=jid("15552223333"), UserInfo=pb.UserInfo(
                Status="at work", PictureID="1700000002",
                VerifiedName=pb.VerifiedName(Details={"verifiedName": "Bea's Bakery"}))),
        ],
        "get_lid_from_pn": jid("555000111", "lid"),
        "get_pn_from_lid": jid("15552223333"),
        "get_blocklist": pb.Blocklist(DHash="h1", JIDs=[jid("15550009999"), jid("15550008888", device=2)]),
        "update_blocklist": pb.Blocklist(DHash="h2", JIDs=[jid("15552223333")]),
        "set_group_name": None, "set_group_topic": None, "set_group_announce": None, "set_group_locked": None,
        "set_group_photo": "1700000003",
        "get_group_invite_link": "https://chat.whatsapp.com/AbCdEf123456",
        "get_group_info_from_link": pb.GroupInfo(JID=jid("120363009", "g.us"), GroupName=pb.GroupName(Name="Club"),
                                                 GroupAnnounce=pb.GroupAnnounce(IsAnnounce=True)),
        "join_group_with_link": jid("120363009", "g.us"),
        "update_group_participants": [pb.GroupParticipant(JID=jid("15552223333"), Error=0)],
    }
    for name, value in answers.items():
        monkeypatch.setitem(RESULTS, name, value)


def calls_of(fake: FakeClient, name: str) -> list[tuple[Any, ...]]:
    return [args for n, args in fake.calls if n == name]


# -- contacts and identity ---------------------------------------------------------------

async def test_identity_calls_reach_neonize_with_built_jids_and_answers_are_converted():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            picture = await t.get_picture("15552223333:4@s.whatsapp.net")
            infos = await t.get_user_info(["15552223333@s.whatsapp.net", "987654321@lid", "15550000000@s.whatsapp.net"])
            blocked = await t.get_blocklist()
            after_block = await t.update_blocklist(PEER, True)
            await t.update_blocklist("987654321@lid", False)
            lid, phone = await t.lid_for_phone(PEER), await t.phone_for_lid("555000111@lid")
            await t.disconnect()
        assert picture == ProfilePicture(jid=PEER, url="https://pps.whatsapp.net/v/x.jpg", id="1700000001")
        [(target,)] = calls_of(fake, "get_profile_picture")
        assert (target.User, target.Server, target.Device) == ("15552223333", "s.whatsapp.net", 0)

        # in the order asked; the phone's LID read from the store's LID map, a LID is its own
        assert infos == [UserInfo(jid=PEER, about="at work", lid="555000111@lid", verified_name="Bea's Bakery",
                                  picture_id="1700000002"),
                         UserInfo(jid="987654321@lid", lid="987654321@lid")]
        [asked] = calls_of(fake, "get_user_info")
        assert [(j.User, j.Server) for j in asked] == [("15552223333", "s.whatsapp.net"), ("987654321", "lid"),
                                                       ("15550000000", "s.whatsapp.net")]
        pn_reads = calls_of(fake, "get_lid_from_pn")
        assert [(j.User, j.Server) for (j,) in pn_reads[:1]] == [("15552223333", "s.whatsapp.net")]

        assert blocked == ["15550009999@s.whatsapp.net", "15550008888@s.whatsapp.net"]
        assert after_block == [PEER]
        (who, block), (lid_who, unblock) = calls_of(fake, "update_blocklist")
        assert (who.User, block) == ("15552223333", BlocklistAction.BLOCK)
        assert (lid_who.Server, unblock) == ("lid", BlocklistAction.UNBLOCK)

        assert (lid, phone) == ("555000111@lid", PEER)
        [(pn_jid,)] = calls_of(fake, "get_pn_from_lid")
        assert (pn_jid.User, pn_jid.Server) == ("555000111", "lid")


async def test_unknown_lids_are_none_and_the_wrong_kind_of_jid_never_reaches_go(monkeypatch):
    monkeypatch.setitem(RESULTS, "get_lid_from_pn", EMPTY_JID)  # the LID map's answer for a number it lacks
    monkeypatch.setitem(RESULTS, "get_pn_from_lid", EMPTY_JID)
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            assert await t.lid_for_phone(PEER) is None
            assert await t.phone_for_lid("555000111@lid") is None
            before = len(fake.calls)
            assert await t.lid_for_phone("555000111@lid") is None  # a LID has no LID
            assert await t.phone_for_lid(PEER) is None
            assert len(fake.calls) == before
            assert await t.get_user_info([]) == []
            for call in (t.get_user_info([GROUP]), t.update_blocklist(GROUP, True), t.lid_for_phone("nobody")):
                with pytest.raises(RecipientError):
                    await call
            assert len(fake.calls) == before
            await t.disconnect()


@pytest.mark.parametrize("go_text", ["that user or group does not have a profile picture",
                                     "the user has hidden their profile picture from you"])
async def test_no_picture_or_a_hidden_one_is_no_error(go_text):
    with trio.fail_after(10):
        fake = FakeClient()
        # neonize raises this one with the whole answer proto, not its text
        fake.fail["get_profile_picture"] = GetProfilePictureError(pb.GetProfilePictureReturnFunction(Error=go_text))
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            assert await t.get_picture(GROUP) == ProfilePicture(jid=GROUP)
            await t.disconnect()


@pytest.mark.parametrize(("go_text", "cls"), [
    ("info query returned status 429: rate-overlimit", TransportError),
    ("websocket not connected", NotConnected),
    ("info query returned status 400: bad-request", RecipientError),
])
async def test_other_picture_errors_keep_their_text(go_text, cls):
    with trio.fail_after(10):
        fake = FakeClient()
        fake.fail["get_profile_picture"] = GetProfilePictureError(pb.GetProfilePictureReturnFunction(Error=go_text))
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            with pytest.raises(cls) as exc:
                await t.get_picture(PEER)
            assert type(exc.value) is cls and exc.value.reason == go_text
            await t.disconnect()


async def test_contacts_carry_their_lid_from_the_store(caplog):
    contacts = [pb.Contact(JID=jid("15550000001"), Info=pb.ContactInfo(FullName="Ann")),
                pb.Contact(JID=jid("15550000002"), Info=pb.ContactInfo(FullName="Bob")),
                pb.Contact(JID=jid("15550000003"), Info=pb.ContactInfo(FullName="Cy")),
                pb.Contact(JID=jid("444000333", "lid"), Info=pb.ContactInfo(PushName="dee"))]
    store = {"15550000001": jid("111000111", "lid"), "15550000002": EMPTY_JID}

    def get_lid_from_pn(pn: Any) -> Any:
        if pn.User not in store:
            raise GetJIDFromStoreError("failed to query LID: database is locked")
        return store[pn.User]

    with trio.fail_after(10):
        fake = FakeClient()
        fake.contact.get_all_contacts = lambda: contacts
        fake.get_lid_from_pn = get_lid_from_pn
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            got = await t.get_contacts()
            await t.disconnect()
    assert [(c.jid, c.lid) for c in got] == [("15550000001@s.whatsapp.net", "111000111@lid"),
                                              ("15550000002@s.whatsapp.net", None),
                                              ("15550000003@s.whatsapp.net", None),  # a failed read is no LID
                                              ("444000333@lid", "444000333@lid")]


@pytest.mark.parametrize(("call", "name", "exc", "cls"), [
    (lambda t: t.get_user_info([PEER]), "get_user_info", GetUserInfoError("info query timed out"), TransportError),
    (lambda t: t.get_blocklist(), "get_blocklist", GetBlocklistError("websocket not connected"), NotConnected),
    (lambda t: t.update_blocklist(PEER, True), "update_blocklist",
     UpdateBlocklistError("info query returned status 400: bad-request"), RecipientError),
    (lambda t: t.lid_for_phone(PEER), "get_lid_from_pn",
     GetJIDFromStoreError("failed to query LID: database is locked"), TransportError),
    (lambda t: t.phone_for_lid("1@lid"), "get_pn_from_lid", GetJIDFromStoreError("client is nil"), NotConnected),
])
async def test_identity_errors_are_mapped(call, name, exc, cls):
    with trio.fail_after(10):
        fake = FakeClient()
        fake.fail[name] = exc
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            with pytest.raises(cls) as raised:
                await call(t)
            assert type(raised.value) is cls and raised.value.reason == exc.args[0]
            await t.disconnect()


# -- groups -------------------------------------------------------------------------------

async def test_group_settings_are_applied_only_when_set():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            await t.update_group_settings(GROUP, GroupSettings(name="Team B", topic="", announce=True))
            await t.update_group_settings(GROUP, GroupSettings(locked=False))
            await t.update_group_settings(GROUP, GroupSettings(topic="plans for May", announce=False, locked=True))
            before = len(fake.calls)
            await t.update_group_settings(GROUP, GroupSettings())
            assert len(fake.calls) == before
            await t.disconnect()
        changes = [(n, a) for n, a in fake.calls if n.startswith("set_group_")]
        assert [(n, a[1:]) for n, a in changes] == [
            ("set_group_name", ("Team B",)),
            ("set_group_topic", ("", "", "")),  # whatsmeow fills both topic ids; "" deletes the description
            ("set_group_announce", (True,)),
            ("set_group_locked", (False,)),
            ("set_group_topic", ("", "", "plans for May")),
            ("set_group_announce", (False,)),
            ("set_group_locked", (True,)),
        ]
        assert all((a[0].User, a[0].Server) == ("120363001", "g.us") for _, a in changes)


async def test_group_picture_is_set_from_a_jpeg_and_cannot_be_removed():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            assert await t.set_group_picture(GROUP, JPEG) == "1700000003"
            with pytest.raises(TransportError, match="removing a group picture is not supported"):
                await t.set_group_picture(GROUP, None)
            with pytest.raises(TransportError, match="JPEG"):
                await t.set_group_picture(GROUP, b"\x89PNG\r\n\x1a\n")
            await t.disconnect()
        [(group, data)] = calls_of(fake, "set_group_photo")
        assert (group.User, group.Server, data) == ("120363001", "g.us", JPEG)


async def test_invites_links_and_joins():
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            assert await t.group_invite_link(GROUP) == "https://chat.whatsapp.com/AbCdEf123456"
            await t.group_invite_link(GROUP, reset=True)
            info = await t.group_info_from_invite("https://chat.whatsapp.com/AbCdEf123456?utm=x")
            joined = await t.join_group_with_invite("AbCdEf123456")
            for bad in ("", "../etc", "https://chat.whatsapp.com/", "two words"):
                with pytest.raises(GroupNotFound):
                    await t.join_group_with_invite(bad)
            await t.disconnect()
        (g1, reset1), (g2, reset2) = calls_of(fake, "get_group_invite_link")
        assert (g1.Server, reset1, reset2) == ("g.us", False, True)
        assert calls_of(fake, "get_group_info_from_link") == [("AbCdEf123456",)]
        assert calls_of(fake, "join_group_with_link") == [("AbCdEf123456",)]  # the bad codes never reached Go
        assert (info.jid, info.name, info.announce) == ("120363009@g.us", "Club", True)
        assert joined == "120363009@g.us"


@pytest.mark.parametrize(("action", "change"), [("promote", ParticipantChange.PROMOTE),
                                                ("demote", ParticipantChange.DEMOTE),
                                                ("remove", ParticipantChange.REMOVE)])
async def test_promote_and_demote_use_neonize_participant_changes(action, change):
    with trio.fail_after(10):
        fake = FakeClient()
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            results = await t.update_participants(GROUP, [PEER], action)
            await t.disconnect()
        [(group, jids, how)] = calls_of(fake, "update_group_participants")
        assert group.Server == "g.us" and jids[0].User == "15552223333" and how is change
        assert [(r.jid, r.ok) for r in results] == [(PEER, True)]


# Each group call with the neonize call that fails and its error class.
GROUP_CALLS = [
    (lambda t: t.update_group_settings(GROUP, GroupSettings(name="x")), "set_group_name", SetGroupNameError),
    (lambda t: t.update_group_settings(GROUP, GroupSettings(topic="x")), "set_group_topic", SetGroupTopicError),
    (lambda t: t.update_group_settings(GROUP, GroupSettings(announce=True)), "set_group_announce",
     SetGroupAnnounceError),
    (lambda t: t.update_group_settings(GROUP, GroupSettings(locked=True)), "set_group_locked", SetGroupLockedError),
    (lambda t: t.set_group_picture(GROUP, JPEG), "set_group_photo", SetGroupPhotoError),
    (lambda t: t.group_invite_link(GROUP), "get_group_invite_link", GetGroupInviteLinkError),
    (lambda t: t.update_participants(GROUP, [PEER], "promote"), "update_group_participants",
     UpdateGroupParticipantsError),
    (lambda t: t.leave_group(GROUP), "leave_group", LeaveGroupError),
    (lambda t: t.group_info(GROUP), "get_group_info", GetGroupInfoError),
]


@pytest.mark.parametrize(("go_text", "cls"), [
    ("info query returned status 404: item-not-found", GroupNotFound),  # no such group
    ("info query returned status 403: forbidden", GroupNotFound),  # this account is not in it
    ("that group does not exist", GroupNotFound),  # whatsmeow's ErrGroupNotFound
    ("you're not participating in that group", GroupNotFound),  # ErrNotInGroup
    ("failed to get old group info to update topic: that group does not exist", GroupNotFound),
    ("info query returned status 401: not-authorized", NotAuthorized),  # not an admin
    ("you don't have the permission to get the group's invite link", NotAuthorized),
    ("websocket not connected", NotConnected),
    ("info query timed out", TransportError),
])
async def test_group_errors_are_mapped(go_text, cls):
    with trio.fail_after(20):
        fake = FakeClient()
        for _, name, error in GROUP_CALLS:
            fake.fail[name] = error(go_text)
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            for call, name, _ in GROUP_CALLS:
                with pytest.raises(TransportError) as exc:
                    await call(t)
                assert (name, type(exc.value), exc.value.reason) == (name, cls, go_text)
            await t.disconnect()


@pytest.mark.parametrize(("go_text", "cls"), [
    ("that group invite link has been revoked", GroupNotFound),
    ("that group invite link is not valid", GroupNotFound),
    ("info query returned status 404: item-not-found", GroupNotFound),
    ("info query returned status 401: not-authorized", NotAuthorized),
    ("info query timed out", TransportError),
])
async def test_invite_errors_are_mapped(go_text, cls):
    with trio.fail_after(10):
        fake = FakeClient()
        fake.fail["get_group_info_from_link"] = GetGroupInfoError(go_text)
        fake.fail["join_group_with_link"] = InviteLinkError(go_text)
        async with trio.open_nursery() as nursery:
            t, recv, runner = await connected_transport(nursery, fake)
            for call in (t.group_info_from_invite("AbCdEf123456"), t.join_group_with_invite("AbCdEf123456")):
                with pytest.raises(TransportError) as exc:
                    await call
                assert (type(exc.value), exc.value.reason) == (cls, go_text)
            await t.disconnect()


async def test_no_new_call_reaches_go_unless_connected_and_bad_jids_are_refused_first():
    fake = FakeClient()
    t = make(fake)
    calls = [t.get_picture(PEER), t.get_user_info([PEER]), t.get_blocklist(), t.update_blocklist(PEER, True),
             t.lid_for_phone(PEER), t.phone_for_lid("1@lid"), t.get_contacts(),
             t.update_group_settings(GROUP, GroupSettings(name="x")), t.set_group_picture(GROUP, JPEG),
             t.group_invite_link(GROUP), t.group_info_from_invite("AbCdEf123456"),
             t.join_group_with_invite("AbCdEf123456"), t.update_participants(GROUP, [PEER], "demote")]
    for call in calls:
        with pytest.raises(NotConnected):
            await call
    for call in (t.update_group_settings(PEER, GroupSettings(name="x")), t.set_group_picture(PEER, JPEG),
                 t.group_invite_link(PEER), t.update_participants(PEER, [PEER], "promote"),
                 t.update_group_settings(PEER, GroupSettings())):
        with pytest.raises(RecipientError):
            await call
    assert fake.calls == []
