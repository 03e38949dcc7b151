"""neonize → transport conversions, from hand-built neonize protobufs. Pure: no Go, no network.

These tests run no trio code, threads or subprocesses (nothing that can block);
pytest-timeout bounds them.
"""

from __future__ import annotations

import msgspec
import pytest

pb = pytest.importorskip("neonize.proto.Neonize_pb2")

from neonize.exc import IsOnWhatsAppError, SendMessageError, SendPresenceError  # noqa: E402
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as e2e  # noqa: E402

from actors import (  # noqa: E402
    NotAuthorized,
    ChatPresence, GroupNotFound, MessageReceived, NotConnected, Presence, Receipt, RecipientError, TransportError,
)
from actors.neonize import _events as conv  # noqa: E402
from gateway._event_schemas import message_received_payload  # noqa: E402

from .test_event_schemas import public  # noqa: E402


def jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> pb.JID:
    return pb.JID(User=user, RawAgent=0, Device=device, Integrator=0, Server=server, IsEmpty=False)


EMPTY = pb.JID(User="", RawAgent=0, Device=0, Integrator=0, Server="", IsEmpty=True)


def message_event(msg: e2e.Message, *, chat: pb.JID, sender: pb.JID, sender_alt: pb.JID = EMPTY,
                  group: bool = False, from_me: bool = False, **info: object) -> pb.Message:
    source = pb.MessageSource(Chat=chat, Sender=sender, SenderAlt=sender_alt, IsFromMe=from_me, IsGroup=group)
    return pb.Message(Info=pb.MessageInfo(MessageSource=source, ID=info.get("ID", "3EB0AA"),
                                          Pushname=info.get("Pushname", "Ann"),
                                          Timestamp=info.get("Timestamp", 1_700_000_000_123)),
                      Message=msg)


def go_filled(msg):
    """Set every unset required field to its zero value, as Go's encoder does (it sets them all)."""
    for f in msg.DESCRIPTOR.fields:
        if f.message_type is not None:
            if f.is_repeated:
                for item in getattr(msg, f.name):
                    go_filled(item)
            elif f.is_required or msg.HasField(f.name):
                getattr(msg, f.name).SetInParent()
                go_filled(getattr(msg, f.name))
        elif f.is_required and not msg.HasField(f.name):
            setattr(msg, f.name, f.default_value)
    return msg


def roundtrip(ev):
    """Events reach Python serialized by Go: convert what a parse of the wire bytes gives."""
    return type(ev).FromString(go_filled(ev).SerializeToString())


# -- JIDs --------------------------------------------------------------------------

def test_jid_strings_drop_the_device_part():
    assert conv.jid_str(jid("15551234567", device=12)) == "15551234567@s.whatsapp.net"
    assert conv.jid_str(jid("1203630001", "g.us")) == "1203630001@g.us"
    assert conv.jid_str(EMPTY) is None


def test_parse_jid_sets_every_required_field():
    parsed = conv.parse_jid("15551234567:3@s.whatsapp.net")
    assert (parsed.User, parsed.Device, parsed.Server) == ("15551234567", 3, "s.whatsapp.net")
    assert pb.JID.FromString(parsed.SerializeToString()) == parsed  # required fields all present
    assert conv.parse_jid("120363001-1234@g.us").Server == "g.us"
    for bad in ("15551234567", "@s.whatsapp.net", "1555@example.com", "a:b@s.whatsapp.net"):
        with pytest.raises(RecipientError):
            conv.parse_jid(bad)


def test_phone_numbers_become_user_jids():
    assert conv.phone_jid("+15551234567").User == "15551234567"
    for bad in ("+1555abc", "+12", "", "+1234567890123456"):
        with pytest.raises(RecipientError):
            conv.phone_jid(bad)


# -- messages ----------------------------------------------------------------------

def test_text_message():
    ev = roundtrip(message_event(e2e.Message(conversation="hello"), chat=jid("15551234567"),
                                 sender=jid("15551234567", device=2)))
    m = conv.message_received(ev)
    assert m == MessageReceived(message_id="3EB0AA", chat="15551234567@s.whatsapp.net",
                                sender="15551234567@s.whatsapp.net", sender_phone="+15551234567",
                                push_name="Ann", timestamp_ms=1_700_000_000_123, type="text", text="hello")


def test_extended_text_carries_quote_and_mentions():
    ctx = e2e.ContextInfo(stanzaID="QUOTED1", participant="15550000001@s.whatsapp.net",
                          mentionedJID=["15550000002@s.whatsapp.net"])
    ev = message_event(e2e.Message(extendedTextMessage=e2e.ExtendedTextMessage(text="hi @15550000002",
                                                                                 contextInfo=ctx)),
                       chat=jid("15551234567"), sender=jid("15551234567"))
    m = conv.message_received(roundtrip(ev))
    assert m is not None and m.type == "text" and m.text == "hi @15550000002"
    assert m.data == {"quoted": {"message_id": "QUOTED1", "chat": "15551234567@s.whatsapp.net",
                                 "sender": "15550000001@s.whatsapp.net", "text": None},
                      "mentions": ["15550000002@s.whatsapp.net"]}
    public = message_received_payload(m)
    assert public.data.quoted is not None and public.data.quoted.sender == "15550000001@s.whatsapp.net"


def test_a_quote_carries_its_text_and_a_missing_participant_is_left_to_the_gateway():
    """In a 1:1 chat WhatsApp may leave `participant` empty: the author is us or the peer, which only the
    gateway can tell (it knows which ids it sent); the transport reports None and the quoted text."""
    ctx = e2e.ContextInfo(stanzaID="QUOTED2", quotedMessage=e2e.Message(conversation="the original"))
    ev = message_event(e2e.Message(extendedTextMessage=e2e.ExtendedTextMessage(text="yes", contextInfo=ctx)),
                       chat=jid("15551234567"), sender=jid("15551234567"))
    m = conv.message_received(roundtrip(ev))
    assert m is not None and m.data["quoted"] == {"message_id": "QUOTED2", "chat": "15551234567@s.whatsapp.net",
                                                  "sender": None, "text": "the original"}
    public = message_received_payload(m, quoted_sender="15550000009@s.whatsapp.net")
    assert msgspec.to_builtins(public)["data"]["quoted"] == {
        "messageId": "QUOTED2", "chat": "15551234567@s.whatsapp.net", "sender": "15550000009@s.whatsapp.net",
        "text": "the original"}


def test_a_quote_in_a_group_names_its_author_and_an_image_reply_quotes_too():
    ctx = e2e.ContextInfo(stanzaID="Q3", participant="15550000003@s.whatsapp.net",
                          quotedMessage=e2e.Message(imageMessage=e2e.ImageMessage(caption="that pic")))
    img = e2e.ImageMessage(caption="this one", mimetype="image/jpeg", contextInfo=ctx)
    ev = message_event(e2e.Message(imageMessage=img), chat=jid("120363001", "g.us"), sender=jid("15550000004"),
                       group=True)
    m = conv.message_received(roundtrip(ev))
    assert m is not None and m.data["quoted"] == {"message_id": "Q3", "chat": "120363001@g.us",
                                                  "sender": "15550000003@s.whatsapp.net", "text": "that pic"}
    assert public(m)["data"]["quoted"]["sender"] == "15550000003@s.whatsapp.net"


def test_image_caption_in_a_group_with_a_lid_sender_uses_sender_alt_for_the_phone():
    img = e2e.ImageMessage(caption="look", mimetype="image/jpeg", width=640, height=480, fileLength=1234)
    ev = message_event(e2e.Message(imageMessage=img), chat=jid("120363001", "g.us"),
                       sender=jid("987654321", "lid"), sender_alt=jid("15557654321"), group=True)
    m = conv.message_received(roundtrip(ev))
    assert m is not None
    assert (m.type, m.text, m.is_group, m.chat) == ("image", "look", True, "120363001@g.us")
    assert m.sender == "15557654321@s.whatsapp.net" and m.sender_phone == "+15557654321"
    assert m.data["sender_alt"] == "15557654321@s.whatsapp.net"
    assert m.data["mimetype"] == "image/jpeg" and m.data["width"] == 640


def test_lid_sender_without_phone_keeps_the_lid():
    ev = message_event(e2e.Message(conversation="x"), chat=jid("120363001", "g.us"),
                       sender=jid("987654321", "lid"), group=True)
    m = conv.message_received(roundtrip(ev))
    assert m is not None and m.sender == "987654321@lid" and m.sender_phone is None


@pytest.mark.parametrize(("msg", "kind", "text", "fields"), [
    (e2e.Message(videoMessage=e2e.VideoMessage(caption="clip", seconds=7, mimetype="video/mp4")),
     "video", "clip", {"seconds": 7}),
    (e2e.Message(audioMessage=e2e.AudioMessage(seconds=3, PTT=True, mimetype="audio/ogg")),
     "audio", None, {"ptt": True, "seconds": 3}),
    (e2e.Message(documentMessage=e2e.DocumentMessage(caption="cv", fileName="cv.pdf",
                                                     mimetype="application/pdf")),
     "document", "cv", {"filename": "cv.pdf", "mimetype": "application/pdf"}),
    (e2e.Message(stickerMessage=e2e.StickerMessage(mimetype="image/webp", isAnimated=True)),
     "sticker", None, {"is_animated": True}),
    (e2e.Message(locationMessage=e2e.LocationMessage(degreesLatitude=52.5, degreesLongitude=13.4, name="Mitte")),
     "location", None, {"latitude": 52.5, "longitude": 13.4, "name": "Mitte", "live": False}),
    (e2e.Message(contactMessage=e2e.ContactMessage(
        displayName="Bob", vcard="BEGIN:VCARD\nTEL;waid=15550001111:+1 555-000-1111\nEND:VCARD")),
     "contact", "Bob", {"display_name": "Bob", "phone_numbers": ["+15550001111"]}),
    (e2e.Message(pollCreationMessage=e2e.PollCreationMessage(
        name="Lunch?", options=[e2e.PollCreationMessage.Option(optionName=o) for o in ("pizza", "salad")],
        selectableOptionsCount=1)),
     "poll", "Lunch?", {"question": "Lunch?", "options": ["pizza", "salad"], "selectable_count": 1}),
    (e2e.Message(pollCreationMessageV3=e2e.PollCreationMessage(
        name="Q", options=[e2e.PollCreationMessage.Option(optionName="a")])),
     "poll", "Q", {"options": ["a"]}),
])
def test_message_types(msg, kind, text, fields):
    m = conv.message_received(roundtrip(message_event(msg, chat=jid("15551234567"), sender=jid("15551234567"))))
    assert m is not None and m.type == kind and m.text == text
    assert fields.items() <= m.data.items()
    assert public(m)["type"] == kind  # the gateway's payload of it: camelCase at every depth, as documented


def test_wrapped_view_once_is_unwrapped():
    inner = e2e.Message(imageMessage=e2e.ImageMessage(caption="secret", viewOnce=True))
    msg = e2e.Message(viewOnceMessageV2=e2e.FutureProofMessage(message=inner))
    m = conv.message_received(roundtrip(message_event(msg, chat=jid("1555"), sender=jid("1555"))))
    assert m is not None and m.type == "image" and m.text == "secret" and m.data["view_once"] is True


def test_protocol_messages_are_dropped_and_other_content_is_unknown():
    proto_only = e2e.Message(protocolMessage=e2e.ProtocolMessage(type=e2e.ProtocolMessage.REVOKE))
    assert conv.message_received(message_event(proto_only, chat=jid("1555"), sender=jid("1555"))) is None
    assert conv.message_received(message_event(e2e.Message(), chat=jid("1555"), sender=jid("1555"))) is None
    other = e2e.Message(buttonsMessage=e2e.ButtonsMessage(contentText="pick"))
    m = conv.message_received(message_event(other, chat=jid("1555"), sender=jid("1555")))
    assert m is not None and m.type == "unknown" and m.data == {"content": "buttonsMessage"}


# -- actions on earlier messages: events of their own, never message.received ---------

def _action_of(msg, **kw):
    ev = roundtrip(message_event(msg, chat=kw.pop("chat", jid("15551234567")),
                                 sender=kw.pop("sender", jid("15551234567")), ID="3EB0ACT", **kw))
    assert conv.message_received(ev) is None  # not folded into message.received
    return conv.message_action(ev)


def test_reactions_and_their_removal():
    from actors import ReactionReceived

    put = _action_of(e2e.Message(reactionMessage=e2e.ReactionMessage(key={"ID": "TARGET", "fromMe": True},
                                                                     text="👍")))
    assert put == ReactionReceived(event_id="3EB0ACT", message_id="TARGET", emoji="👍",
                                   chat="15551234567@s.whatsapp.net", sender="15551234567@s.whatsapp.net",
                                   sender_phone="+15551234567", timestamp_ms=1_700_000_000_123)
    gone = _action_of(e2e.Message(reactionMessage=e2e.ReactionMessage(key={"ID": "TARGET"}, text="")),
                      chat=jid("120363001", "g.us"), sender=jid("987654321", "lid"), sender_alt=jid("15557654321"),
                      group=True)
    assert gone.emoji == "" and gone.is_group and gone.chat == "120363001@g.us"
    assert gone.sender == "15557654321@s.whatsapp.net" and gone.sender_phone == "+15557654321"


def test_edits_carry_the_new_text_or_caption():
    from actors import MessageEdited

    def edit(new):
        proto = e2e.ProtocolMessage(type=e2e.ProtocolMessage.MESSAGE_EDIT, key={"ID": "TARGET"}, editedMessage=new)
        # whatsmeow unwraps the editedMessage envelope (IsEdit); unwrap it here in case it did not
        return _action_of(e2e.Message(editedMessage=e2e.FutureProofMessage(
            message=e2e.Message(protocolMessage=proto))), IsEdit=True)

    text = edit(e2e.Message(conversation="fixed"))
    assert isinstance(text, MessageEdited) and (text.message_id, text.text) == ("TARGET", "fixed")
    assert edit(e2e.Message(imageMessage=e2e.ImageMessage(caption="new caption"))).text == "new caption"


def test_revokes_name_the_revoked_message_and_other_protocol_messages_are_nothing():
    from actors import MessageRevoked

    revoke = _action_of(e2e.Message(protocolMessage=e2e.ProtocolMessage(type=e2e.ProtocolMessage.REVOKE,
                                                                        key={"ID": "TARGET"})), from_me=True)
    assert isinstance(revoke, MessageRevoked) and revoke.message_id == "TARGET" and revoke.from_me
    other = e2e.Message(protocolMessage=e2e.ProtocolMessage(type=e2e.ProtocolMessage.EPHEMERAL_SETTING))
    assert _action_of(other) is None


def test_poll_votes_are_recognised_and_carry_the_option_hashes():
    import hashlib

    from actors import PollVoted

    msg = e2e.Message(pollUpdateMessage=e2e.PollUpdateMessage(pollCreationMessageKey={"ID": "POLL"}))
    ev = roundtrip(message_event(msg, chat=jid("15551234567"), sender=jid("15551234567"), ID="3EB0VOTE"))
    assert conv.message_received(ev) is None and conv.message_action(ev) is None
    assert conv.poll_update_id(ev) == "POLL"
    digest = hashlib.sha256(b"Pizza").digest()
    vote = conv.poll_vote(ev, [digest])
    assert isinstance(vote, PollVoted) and (vote.poll_id, vote.event_id) == ("POLL", "3EB0VOTE")
    assert vote.option_hashes == [digest.hex()] and vote.options == []
    assert conv.poll_update_id(message_event(e2e.Message(conversation="x"), chat=jid("1555"), sender=jid("1555"))) \
        is None


@pytest.mark.parametrize(("sender", "alt", "author", "lid"), [
    (jid("987654321", "lid"), jid("15557654321"), "15557654321@s.whatsapp.net", "987654321@lid"),  # LID-addressed
    (jid("15557654321"), jid("987654321", "lid"), "15557654321@s.whatsapp.net", "987654321@lid"),  # LID as the alt
    (jid("987654321", "lid", device=3), EMPTY, "987654321@lid", "987654321@lid"),  # the LID alone
    (jid("15557654321", device=2), EMPTY, "15557654321@s.whatsapp.net", None),  # no LID at all
])
def test_the_sender_stays_phone_first_and_its_lid_is_kept(sender, alt, author, lid):
    msg = message_event(e2e.Message(conversation="x"), chat=jid("120363001", "g.us"), sender=sender,
                        sender_alt=alt, group=True)
    m = conv.message_received(roundtrip(msg))
    assert m is not None and (m.sender, m.sender_lid) == (author, lid)
    react = message_event(e2e.Message(reactionMessage=e2e.ReactionMessage(key={"ID": "T"}, text="👍")),
                          chat=jid("120363001", "g.us"), sender=sender, sender_alt=alt, group=True)
    action = conv.message_action(roundtrip(react))
    assert action is not None and (action.sender, action.sender_lid) == (author, lid)
    assert public(m)["fromLid"] == lid  # the gateway's payload carries it


def test_lid_addressed_one_to_one_chat_reports_the_phone_chat():
    ev = message_event(e2e.Message(conversation="hey"), chat=jid("987654321", "lid"),
                       sender=jid("987654321", "lid"), sender_alt=jid("15557654321"))
    m = conv.message_received(roundtrip(ev))
    assert m is not None and m.chat == "15557654321@s.whatsapp.net" and m.data["chat_lid"] == "987654321@lid"


# -- receipts, presence --------------------------------------------------------------

@pytest.mark.parametrize(("go_type", "kind"), [(pb.Receipt.DELIVERED, "delivered"), (pb.Receipt.READ, "read"),
                                               (pb.Receipt.PLAYED, "played")])
def test_receipts(go_type, kind):
    ev = pb.Receipt(MessageSource=pb.MessageSource(Chat=jid("15551234567"), Sender=jid("15551234567", device=1),
                                                  IsFromMe=False, IsGroup=False),
                    MessageIDs=["A", "B"], Timestamp=1_700_000_000, Type=go_type)
    assert conv.receipt(roundtrip(ev)) == Receipt(message_ids=["A", "B"], chat="15551234567@s.whatsapp.net",
                                                  sender="15551234567@s.whatsapp.net", type=kind,
                                                  timestamp_ms=1_700_000_000_000)


def test_other_receipt_types_are_ignored():
    for go_type in (pb.Receipt.READ_SELF, pb.Receipt.RETRY, pb.Receipt.SERVER_ERROR):
        ev = pb.Receipt(MessageSource=pb.MessageSource(Chat=jid("1555"), Sender=jid("1555")), MessageIDs=["A"],
                        Timestamp=1, Type=go_type)
        assert conv.receipt(ev) is None


def test_presence():
    ev = pb.Presence(From=jid("15551234567"), Unavailable=True, LastSeen=1_700_000_000)
    assert conv.presence(roundtrip(ev)) == Presence(jid="15551234567@s.whatsapp.net", available=False,
                                                    last_seen_ms=1_700_000_000_000)
    never = pb.Presence(From=jid("15551234567"), Unavailable=False, LastSeen=-62135596800)  # Go's zero time
    assert conv.presence(never) == Presence(jid="15551234567@s.whatsapp.net", available=True)


@pytest.mark.parametrize(("state", "media", "expected"), [
    (pb.ChatPresence.COMPOSING, pb.ChatPresence.TEXT, "composing"),
    (pb.ChatPresence.COMPOSING, pb.ChatPresence.AUDIO, "recording"),
    (pb.ChatPresence.PAUSED, pb.ChatPresence.TEXT, "paused"),
])
def test_chat_presence(state, media, expected):
    ev = pb.ChatPresence(MessageSource=pb.MessageSource(Chat=jid("1555"), Sender=jid("1555")), State=state,
                         Media=media)
    assert conv.chat_presence(roundtrip(ev)) == ChatPresence(chat="1555@s.whatsapp.net",
                                                             sender="1555@s.whatsapp.net", state=expected)


def test_failure_reasons():
    assert conv.failure_reason(pb.LoggedOut(Reason=pb.LOGGED_OUT).Reason) == "logged_out"
    assert conv.failure_reason(pb.MAIN_DEVICE_GONE) == "main_device_gone"
    assert conv.failure_reason(999) == "unknown"
    ban = pb.TemporaryBan(Code=pb.TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=3600)
    assert conv.temporary_ban_reason(roundtrip(ban)) == (
        "temporarily banned (send_to_too_many_people), expires in 3600 s")
    assert conv.pair_succeeded(pb.PairStatus(Status=pb.PairStatus.SUCCESS))
    assert not conv.pair_succeeded(pb.PairStatus(Status=pb.PairStatus.ERROR, Error="bad"))


# -- results -------------------------------------------------------------------------

def test_on_whatsapp_answers_every_number_in_order():
    responses = [pb.IsOnWhatsAppResponse(Query="+15550000002", JID=jid("15550000002"), IsIn=True),
                 pb.IsOnWhatsAppResponse(Query="+15550000001", JID=jid("15550000001"), IsIn=False)]
    out = conv.on_whatsapp(["+15550000001", "+15550000002", "+15550000003"], responses)
    assert [(o.phone_number, o.exists, o.jid) for o in out] == [
        ("+15550000001", False, None), ("+15550000002", True, "15550000002@s.whatsapp.net"),
        ("+15550000003", False, None)]


def test_group_info_and_participants():
    g = pb.GroupInfo(
        JID=jid("120363001", "g.us"), OwnerJID=jid("111", "lid"), OwnerPN=jid("15550000001"),
        GroupName=pb.GroupName(Name="Team"), GroupTopic=pb.GroupTopic(Topic="plans"), GroupCreated=1_700_000_000,
        Participants=[pb.GroupParticipant(JID=jid("111", "lid"), PhoneNumber=jid("15550000001"), IsAdmin=True,
                                          IsSuperAdmin=True),
                      pb.GroupParticipant(JID=jid("15550000002"), LID=jid("222", "lid"))])
    info = conv.group_info(roundtrip(g))
    assert (info.jid, info.name, info.topic, info.owner) == ("120363001@g.us", "Team", "plans",
                                                             "15550000001@s.whatsapp.net")
    assert info.created_at_ms == 1_700_000_000_000
    assert [(p.jid, p.phone_number, p.is_admin, p.is_super_admin, p.lid) for p in info.participants] == [
        ("15550000001@s.whatsapp.net", "+15550000001", True, True, "111@lid"),  # JID a LID, phone known
        ("15550000002@s.whatsapp.net", "+15550000002", False, False, "222@lid")]
    assert (info.announce, info.locked) == (False, False)


def test_group_info_carries_announce_and_locked_and_a_participant_without_lid():
    g = pb.GroupInfo(JID=jid("120363001", "g.us"), GroupName=pb.GroupName(Name="Ann's"),
                     GroupAnnounce=pb.GroupAnnounce(IsAnnounce=True), GroupLocked=pb.GroupLocked(isLocked=True),
                     Participants=[pb.GroupParticipant(JID=jid("15550000003"))])
    info = conv.group_info(roundtrip(g))
    assert (info.announce, info.locked) == (True, True)
    assert [(p.jid, p.lid) for p in info.participants] == [("15550000003@s.whatsapp.net", None)]
    only_locked = conv.group_info(roundtrip(pb.GroupInfo(JID=jid("1", "g.us"), GroupLocked=pb.GroupLocked(
        isLocked=True))))
    assert (only_locked.announce, only_locked.locked) == (False, True)


def test_participant_results_read_each_error_code():
    changed = [pb.GroupParticipant(JID=jid("15550000001")),
               pb.GroupParticipant(JID=jid("333", "lid"), PhoneNumber=jid("15550000002"), Error=409),
               pb.GroupParticipant(JID=jid("15550000003"), Error=403)]
    asked = ["15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net", "15550000003@s.whatsapp.net",
             "15550000004@s.whatsapp.net"]
    out = conv.participant_results(asked, changed)
    assert [(r.ok, r.error) for r in out] == [(True, None), (False, "409"), (False, "403"),
                                              (False, "no result from WhatsApp")]


def test_contact_info():
    c = pb.Contact(JID=jid("15550000001"), Info=pb.ContactInfo(Found=True, FullName="Ann Lee", PushName="ann"))
    info = conv.contact_info(roundtrip(c))
    assert info is not None and (info.phone_number, info.full_name, info.push_name, info.business_name) == (
        "+15550000001", "Ann Lee", "ann", None)
    assert info.lid is None
    assert conv.contact_info(roundtrip(c), "555@lid").lid == "555@lid"
    by_lid = conv.contact_info(roundtrip(pb.Contact(JID=jid("555", "lid"), Info=pb.ContactInfo(PushName="ann"))))
    assert (by_lid.jid, by_lid.lid, by_lid.phone_number) == ("555@lid", "555@lid", None)


# -- errors --------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "cls"), [
    (SendMessageError("client is nil"), NotConnected),
    (SendMessageError("websocket not connected"), NotConnected),
    (SendMessageError("the store doesn't contain a device JID"), NotConnected),
    (SendMessageError("info query returned status 404: item-not-found"), RecipientError),
    (SendMessageError("info query returned status 403: forbidden"), RecipientError),
    (SendMessageError("can't send message to unknown server example"), RecipientError),
    (IsOnWhatsAppError("info query timed out"), TransportError),
    (SendPresenceError(b"websocket not connected"), NotConnected),  # this one carries bytes
])
def test_error_mapping_keeps_the_go_text(exc, cls):
    mapped = conv.transport_error(exc)
    assert type(mapped) is cls
    assert mapped.reason == conv.go_text(exc) and mapped.reason
    assert "b'" not in mapped.reason


@pytest.mark.parametrize(("text", "cls"), [
    ("that group does not exist", GroupNotFound),  # whatsmeow's ErrGroupNotFound in the neonize 0.5.2 build
    ("you're not participating in that group", GroupNotFound),
    ("that group invite link has been revoked", GroupNotFound),
    ("that group invite link is not valid", GroupNotFound),
    ("you don't have the permission to get the group's invite link", NotAuthorized),
    ("info query returned status 404: item-not-found", RecipientError),  # outside a group call
])
def test_whatsmeow_group_error_texts(text, cls):
    assert type(conv.transport_error(SendMessageError(text))) is cls


@pytest.mark.parametrize(("text", "cls"), [
    ("info query returned status 404: item-not-found", GroupNotFound),
    ("info query returned status 403: forbidden", GroupNotFound),
    ("info query returned status 401: not-authorized", NotAuthorized),
    ("info query returned status 400: bad-request", RecipientError),
    ("websocket not connected", NotConnected),
    ("info query timed out", TransportError),
])
def test_group_calls_read_404_and_403_as_the_group_gone(text, cls):
    mapped = conv.group_error(SendMessageError(text))
    assert type(mapped) is cls and mapped.reason == text


def test_an_error_carrying_its_answer_proto_gives_the_go_text():
    from neonize.exc import GetProfilePictureError

    exc = GetProfilePictureError(pb.GetProfilePictureReturnFunction(Error="info query timed out"))
    assert conv.go_text(exc) == "info query timed out"
    assert conv.transport_error(exc).reason == "info query timed out"


def test_transport_errors_pass_through():
    err = RecipientError("bad")
    assert conv.transport_error(err) is err


# -- received media: what download_any needs travels with the event ---------------------------

@pytest.mark.parametrize("field, sub", [
    ("imageMessage", e2e.ImageMessage(mimetype="image/jpeg", fileLength=10, directPath="/v/t62/x", mediaKey=b"k" * 32)),
    ("videoMessage", e2e.VideoMessage(mimetype="video/mp4", directPath="/v/x")),
    ("audioMessage", e2e.AudioMessage(mimetype="audio/ogg; codecs=opus", PTT=True, directPath="/v/x")),
    ("documentMessage", e2e.DocumentMessage(mimetype="application/pdf", fileName="a.pdf", directPath="/v/x")),
    ("stickerMessage", e2e.StickerMessage(mimetype="image/webp", directPath="/v/x")),
])
def test_media_messages_keep_the_message_for_download(field, sub):
    ev = message_event(e2e.Message(**{field: sub}), chat=jid("15550000004"), sender=jid("15550000004"))
    got = conv.message_received(ev)
    assert got is not None and got.media_ref is not None
    again = conv.media_message(got.media_ref)
    assert again.HasField(field) and getattr(again, field) == sub  # the keys and the path, intact


def test_view_once_media_keeps_the_unwrapped_message():
    img = e2e.ImageMessage(mimetype="image/jpeg", directPath="/v/x", viewOnce=True)
    wrapped = e2e.Message(viewOnceMessageV2=e2e.FutureProofMessage(message=e2e.Message(imageMessage=img)))
    got = conv.message_received(message_event(wrapped, chat=jid("15550000004"), sender=jid("15550000004")))
    assert got.type == "image" and conv.media_message(got.media_ref).imageMessage == img  # download_any reads it


def test_other_messages_carry_no_media_ref_and_a_bad_ref_is_a_clear_error():
    ev = message_event(e2e.Message(conversation="hi"), chat=jid("15550000004"), sender=jid("15550000004"))
    assert conv.message_received(ev).media_ref is None
    with pytest.raises(TransportError, match="no media"):
        conv.media_message(None)
    with pytest.raises(TransportError, match="unreadable media reference"):
        conv.media_message(b"\xff\xff\xff")
