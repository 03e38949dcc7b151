"""neonize → transport: JIDs, incoming events and Go errors. Pure functions, no I/O.

Importing this module imports neonize, which calls `logging.basicConfig`; only
`_transport` imports it, lazily (see that module's docstring).

Units, read from neonize's Go encoder (`goneonize/utils/encoder.go`):
`MessageInfo.Timestamp` is in milliseconds; `Receipt.Timestamp`,
`Presence.LastSeen`, `SendResponse.Timestamp` and `GroupInfo.GroupCreated`
are in seconds. Go's zero time encodes as a large negative number of seconds.
"""

from __future__ import annotations

import re
from typing import Any

from neonize.proto import Neonize_pb2 as pb

from .._jid import GROUP_SERVER, LID_SERVER, USER_SERVER, phone_from_jid
from .._transport import (
    ChatPresence, ContactInfo, GroupInfo, GroupNotFound, GroupParticipant, MessageAction, MessageEdited,
    MessageReceived, MessageRevoked, NotConnected, OnWhatsApp, ParticipantResult, PollVoted, Presence,
    NotAuthorized, ReactionReceived, Receipt, RecipientError, TransportError,
)

_KNOWN_SERVERS = frozenset({USER_SERVER, GROUP_SERVER, LID_SERVER, "broadcast", "newsletter"})


# -- JIDs ---------------------------------------------------------------------

def jid_str(jid: pb.JID | None) -> str | None:
    """`user@server` without agent or device part; None for an empty JID."""
    if jid is None or not jid.Server:
        return None
    return f"{jid.User}@{jid.Server}" if jid.User else jid.Server


def parse_jid(text: str) -> pb.JID:
    """`user[.agent:device]@server` → JID proto (all its required fields set). Raises RecipientError."""
    user, sep, server = text.partition("@")
    if not sep or not user or server not in _KNOWN_SERVERS:
        raise RecipientError(f"not a WhatsApp JID: {text!r}")
    user, _, device = user.partition(":")
    agent = ""
    if device:
        user, _, agent = user.partition(".")
    if not user or not (device or "0").isdigit() or not (agent or "0").isdigit():
        raise RecipientError(f"not a WhatsApp JID: {text!r}")
    return pb.JID(User=user, RawAgent=int(agent or 0), Device=int(device or 0), Integrator=0, Server=server,
                  IsEmpty=False)


def phone_jid(phone_e164: str) -> pb.JID:
    digits = phone_e164.removeprefix("+")
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise RecipientError(f"not an E.164 phone number: {phone_e164!r}")
    return parse_jid(f"{digits}@{USER_SERVER}")


def _pn_first(jid: str | None, alt: str | None) -> str | None:
    """Prefer the phone-number JID when `jid` is a LID and its alternative is known."""
    if jid and jid.endswith("@" + LID_SERVER) and alt and phone_from_jid(alt):
        return alt
    return jid


def _lid_of(jid: str | None, alt: str | None) -> str | None:
    """The LID whatsmeow addressed someone by: `jid` itself (LID addressing) or its alternative."""
    return next((j for j in (jid, alt) if j and j.endswith("@" + LID_SERVER)), None)


# -- incoming messages ----------------------------------------------------------

_POLL_FIELDS = ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3", "pollCreationMessageV4",
                "pollCreationMessageV5", "pollCreationMessageV6")
# Wrappers whatsmeow usually unwraps already; unwrap again in case a version does not.
_WRAPPERS = ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "viewOnceMessageV2Extension",
             "documentWithCaptionMessage", "editedMessage")
# Plumbing that is not a user-visible message.
_INTERNAL = frozenset({"protocolMessage", "senderKeyDistributionMessage",
                       "fastRatchetKeySenderKeyDistributionMessage", "messageContextInfo", "encReactionMessage",
                       "reactionMessage", "pollUpdateMessage", "keepInChatMessage", "pinInChatMessage"})
_WAID = re.compile(r"waid=(\d+)")
# Types whose bytes live on WhatsApp's media servers: their MessageReceived keeps the message for download_any.
MEDIA_KINDS = frozenset({"image", "video", "audio", "document", "sticker"})


def _unwrap(msg: Any) -> Any:
    for _ in range(4):
        for field in _WRAPPERS:
            if msg.HasField(field) and getattr(msg, field).HasField("message"):
                msg = getattr(msg, field).message
                break
        else:
            return msg
    return msg


def _content(msg: Any) -> tuple[str, Any, str | None, dict[str, object]]:
    """(type, sub-message carrying contextInfo or None, text, data) of a waE2E.Message."""
    if msg.HasField("extendedTextMessage"):
        return "text", msg.extendedTextMessage, msg.extendedTextMessage.text, {}
    if msg.conversation:
        return "text", None, msg.conversation, {}
    if msg.HasField("imageMessage"):
        m = msg.imageMessage
        return "image", m, m.caption or None, {"mimetype": m.mimetype, "width": m.width, "height": m.height,
                                               "file_length": m.fileLength, "view_once": m.viewOnce}
    if msg.HasField("videoMessage"):
        m = msg.videoMessage
        return "video", m, m.caption or None, {"mimetype": m.mimetype, "seconds": m.seconds,
                                               "file_length": m.fileLength, "gif_playback": m.gifPlayback,
                                               "view_once": m.viewOnce}
    if msg.HasField("audioMessage"):
        m = msg.audioMessage
        return "audio", m, None, {"mimetype": m.mimetype, "seconds": m.seconds, "ptt": m.PTT,
                                  "file_length": m.fileLength}
    if msg.HasField("documentMessage"):
        m = msg.documentMessage
        return "document", m, m.caption or None, {"mimetype": m.mimetype, "filename": m.fileName,
                                                  "title": m.title, "file_length": m.fileLength,
                                                  "page_count": m.pageCount}
    if msg.HasField("stickerMessage"):
        m = msg.stickerMessage
        return "sticker", m, None, {"mimetype": m.mimetype, "is_animated": m.isAnimated,
                                    "width": m.width, "height": m.height}
    if msg.HasField("locationMessage") or msg.HasField("liveLocationMessage"):
        live = msg.HasField("liveLocationMessage")
        m = msg.liveLocationMessage if live else msg.locationMessage
        data: dict[str, object] = {"latitude": m.degreesLatitude, "longitude": m.degreesLongitude, "live": live}
        if not live:
            data |= {"name": m.name or None, "address": m.address or None}
        return "location", m, (m.caption or None) if live else None, data
    if msg.HasField("contactMessage"):
        m = msg.contactMessage
        return "contact", m, m.displayName or None, _contact_data(m)
    if msg.HasField("contactsArrayMessage"):
        m = msg.contactsArrayMessage
        return "contact", m, m.displayName or None, {"contacts": [_contact_data(c) for c in m.contacts]}
    for field in _POLL_FIELDS:
        if msg.HasField(field):
            m = getattr(msg, field)
            return "poll", m, m.name, {"question": m.name, "options": [o.optionName for o in m.options],
                                       "selectable_count": m.selectableOptionsCount}
    return "unknown", None, None, {}


def _contact_data(m: Any) -> dict[str, object]:
    return {"display_name": m.displayName, "vcard": m.vcard,
            "phone_numbers": ["+" + d for d in _WAID.findall(m.vcard)]}


def _quoted(ctx: Any, chat: str) -> dict[str, object]:
    """The message a reply quotes. `participant` names its author; when WhatsApp left it empty, the
    gateway resolves a 1:1 chat's quote (its author is us or the peer, and the gateway knows what it sent)."""
    quoted_text = None
    if ctx.HasField("quotedMessage"):
        _, _, quoted_text, _ = _content(_unwrap(ctx.quotedMessage))
    return {"message_id": ctx.stanzaID, "chat": ctx.remoteJID or chat, "sender": ctx.participant or None,
            "text": quoted_text}


def message_received(ev: pb.Message) -> MessageReceived | None:
    """A `MessageEv` as a transport event; None for plumbing (protocol messages, key distribution)."""
    info = ev.Info
    src = info.MessageSource
    chat, sender = jid_str(src.Chat), jid_str(src.Sender)
    if not info.ID or chat is None:
        return None
    msg = _unwrap(ev.Message)
    kind, carrier, text, data = _content(msg)
    if kind == "unknown":
        present = [f.name for f, _ in msg.ListFields()]
        if not present or set(present) <= _INTERNAL:
            return None
        data = {"content": next((n for n in present if n not in _INTERNAL), present[0])}
    sender_alt = jid_str(src.SenderAlt)
    data = dict(data)
    if sender and sender_alt and sender != sender_alt:
        data["sender_alt"] = sender_alt
    if not src.IsGroup and chat.endswith("@" + LID_SERVER):
        # 1:1 chats addressed by LID: report the phone-number chat when whatsmeow knows it.
        alt = jid_str(src.RecipientAlt) if src.IsFromMe else sender_alt
        if alt and phone_from_jid(alt):
            data["chat_lid"], chat = chat, alt
    if carrier is not None and carrier.HasField("contextInfo"):
        ctx = carrier.contextInfo
        if ctx.stanzaID:
            data["quoted"] = _quoted(ctx, chat)
        if ctx.mentionedJID:
            data["mentions"] = list(ctx.mentionedJID)
    if ev.IsViewOnce:
        data["view_once"] = True
    author = _pn_first(sender, sender_alt) or chat
    return MessageReceived(
        message_id=info.ID, chat=chat, sender=author,
        sender_phone=phone_from_jid(author) or (phone_from_jid(sender_alt) if sender_alt else None),
        sender_lid=_lid_of(sender, sender_alt),
        push_name=info.Pushname or None, is_group=src.IsGroup, from_me=src.IsFromMe,
        timestamp_ms=info.Timestamp, type=kind, text=text, data=data,
        media_ref=msg.SerializeToString() if kind in MEDIA_KINDS else None,
    )


def media_message(ref: bytes | None) -> Any:
    """The waE2E.Message a `media_ref` holds, for `download_any` (it carries the keys and the path)."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    if not ref:
        raise TransportError("the message carries no media to download")
    try:
        return Message.FromString(ref)
    except Exception as exc:  # protobuf's DecodeError
        raise TransportError(f"unreadable media reference: {exc}") from None


# -- actions on earlier messages ---------------------------------------------------

_REVOKE, _EDIT = 0, 14  # waE2E.ProtocolMessage.Type REVOKE and MESSAGE_EDIT


def message_action(ev: pb.Message) -> MessageAction | None:
    """A reaction, an edit or a revoke carried by a `MessageEv`; None for anything else (a poll vote
    needs Go to decrypt it: `poll_vote`)."""
    msg = _unwrap(ev.Message)
    if msg.HasField("reactionMessage"):
        m = msg.reactionMessage
        return _action(ev, ReactionReceived, message_id=m.key.ID, emoji=m.text)
    if msg.HasField("protocolMessage"):
        m = msg.protocolMessage
        if m.type == _REVOKE and m.key.ID:
            return _action(ev, MessageRevoked, message_id=m.key.ID)
        if m.type == _EDIT and m.key.ID:
            _, _, text, _ = _content(_unwrap(m.editedMessage))
            return _action(ev, MessageEdited, message_id=m.key.ID, text=text)
    return None


def poll_update_id(ev: pb.Message) -> str | None:
    """The poll a `MessageEv` votes on, when it is a poll vote (decrypt it with `decrypt_poll_vote`)."""
    msg = _unwrap(ev.Message)
    if msg.HasField("pollUpdateMessage"):
        return msg.pollUpdateMessage.pollCreationMessageKey.ID or None
    return None


def poll_vote(ev: pb.Message, selected: Any) -> PollVoted | None:
    """A decrypted vote (`PollVoteMessage.selectedOptions`: SHA-256 digests of the option names)."""
    poll_id = poll_update_id(ev)
    if poll_id is None:
        return None
    return _action(ev, PollVoted, poll_id=poll_id, option_hashes=[bytes(h).hex() for h in selected])


def _action(ev: pb.Message, kind: type[MessageAction], **fields: Any) -> Any:
    info = ev.Info
    src = info.MessageSource
    chat, sender, sender_alt = jid_str(src.Chat), jid_str(src.Sender), jid_str(src.SenderAlt)
    if not info.ID or chat is None:
        return None
    if not src.IsGroup and chat.endswith("@" + LID_SERVER):
        alt = jid_str(src.RecipientAlt) if src.IsFromMe else sender_alt
        if alt and phone_from_jid(alt):
            chat = alt
    author = _pn_first(sender, sender_alt) or chat
    return kind(event_id=info.ID, chat=chat, sender=author,
                sender_phone=phone_from_jid(author) or (phone_from_jid(sender_alt) if sender_alt else None),
                sender_lid=_lid_of(sender, sender_alt),
                is_group=src.IsGroup, from_me=src.IsFromMe, timestamp_ms=info.Timestamp, **fields)


# -- receipts and presence ------------------------------------------------------

_RECEIPT_TYPES = {pb.Receipt.DELIVERED: "delivered", pb.Receipt.READ: "read", pb.Receipt.PLAYED: "played"}


def receipt(ev: pb.Receipt) -> Receipt | None:
    """Delivered/read/played receipts; None for the others (retry, self, server error, ...)."""
    kind = _RECEIPT_TYPES.get(ev.Type)
    chat = jid_str(ev.MessageSource.Chat)
    if kind is None or chat is None or not ev.MessageIDs:
        return None
    sender = _pn_first(jid_str(ev.MessageSource.Sender), jid_str(ev.MessageSource.SenderAlt))
    return Receipt(message_ids=list(ev.MessageIDs), chat=chat, sender=sender, type=kind,  # type: ignore[arg-type]
                   timestamp_ms=max(ev.Timestamp, 0) * 1000)


def presence(ev: pb.Presence) -> Presence | None:
    jid = jid_str(ev.From)
    if jid is None:
        return None
    last_seen = ev.LastSeen * 1000 if ev.LastSeen > 0 else None
    return Presence(jid=jid, available=not ev.Unavailable, last_seen_ms=last_seen)


def chat_presence(ev: pb.ChatPresence) -> ChatPresence | None:
    src = ev.MessageSource
    chat, sender = jid_str(src.Chat), _pn_first(jid_str(src.Sender), jid_str(src.SenderAlt))
    if chat is None or sender is None:
        return None
    if ev.State == pb.ChatPresence.COMPOSING:
        state = "recording" if ev.Media == pb.ChatPresence.AUDIO else "composing"
    elif ev.State == pb.ChatPresence.PAUSED:
        state = "paused"
    else:
        return None
    return ChatPresence(chat=chat, sender=sender, state=state)  # type: ignore[arg-type]


# -- pairing and failure reasons --------------------------------------------------

def pair_succeeded(ev: pb.PairStatus) -> bool:
    return ev.Status == pb.PairStatus.SUCCESS


def failure_reason(reason: int) -> str:
    """`ConnectFailureReason` → `logged_out`, `main_device_gone`, ...; `unknown` for unset values."""
    try:
        return pb.ConnectFailureReason.Name(reason).lower()
    except ValueError:
        return "unknown"


def temporary_ban_reason(ev: pb.TemporaryBan) -> str:
    try:
        code = pb.TemporaryBan.TempBanReason.Name(ev.Code).lower()
    except ValueError:
        code = "unknown"
    return f"temporarily banned ({code}), expires in {max(ev.Expire, 0)} s"


# -- results --------------------------------------------------------------------

def on_whatsapp(asked: list[str], responses: Any) -> list[OnWhatsApp]:
    """One result per asked number, in order; numbers WhatsApp did not answer for do not exist."""
    by_digits = {}
    for r in responses:
        digits = "".join(ch for ch in r.Query if ch.isdigit()) or (r.JID.User if r.HasField("JID") else "")
        by_digits[digits] = r
    out = []
    for phone in asked:
        r = by_digits.get(phone.removeprefix("+"))
        if r is None or not r.IsIn:
            out.append(OnWhatsApp(phone_number=phone, exists=False))
            continue
        name = r.VerifiedName.Details.verifiedName if r.HasField("VerifiedName") else ""
        out.append(OnWhatsApp(phone_number=phone, exists=True, jid=jid_str(r.JID), verified_name=name or None))
    return out


def contact_info(c: pb.Contact, lid: str | None = None) -> ContactInfo | None:
    """A contact of the store; `lid` is its LID from the store's mapping (a LID contact is its own)."""
    jid = jid_str(c.JID)
    if jid is None:
        return None
    i = c.Info
    return ContactInfo(jid=jid, phone_number=phone_from_jid(jid), full_name=i.FullName or None,
                       push_name=i.PushName or None, business_name=i.BusinessName or None,
                       lid=_lid_of(jid, lid))


def _participant_jid(p: pb.GroupParticipant) -> str:
    return _pn_first(jid_str(p.JID), jid_str(p.PhoneNumber)) or jid_str(p.LID) or ""


def group_info(g: pb.GroupInfo) -> GroupInfo:
    participants = [
        GroupParticipant(jid=(jid := _participant_jid(p)),
                         phone_number=phone_from_jid(jid) or phone_from_jid(jid_str(p.PhoneNumber) or ""),
                         is_admin=p.IsAdmin or p.IsSuperAdmin, is_super_admin=p.IsSuperAdmin,
                         lid=_lid_of(jid_str(p.LID), jid_str(p.JID)))
        for p in g.Participants
    ]
    created = int(g.GroupCreated * 1000) if g.GroupCreated > 0 else None
    return GroupInfo(jid=jid_str(g.JID) or "", name=g.GroupName.Name, topic=g.GroupTopic.Topic or None,
                     owner=_pn_first(jid_str(g.OwnerJID), jid_str(g.OwnerPN)), created_at_ms=created,
                     participants=participants, announce=g.GroupAnnounce.IsAnnounce,
                     locked=g.GroupLocked.isLocked)


def participant_results(asked: list[str], changed: Any) -> list[ParticipantResult]:
    """Per asked participant: ok unless WhatsApp set an error code (403, 404, 408, 409, ...) on it."""
    by_user: dict[str, Any] = {}
    for p in changed:
        for j in (p.JID, p.PhoneNumber, p.LID):
            if j.User:
                by_user[j.User] = p
    out = []
    for jid in asked:
        p = by_user.get(jid.partition("@")[0].partition(":")[0])
        if p is None:
            out.append(ParticipantResult(jid=jid, ok=False, error="no result from WhatsApp"))
        else:
            out.append(ParticipantResult(jid=jid, ok=p.Error == 0, error=str(p.Error) if p.Error else None))
    return out


# -- errors ---------------------------------------------------------------------

_NOT_CONNECTED = ("client is nil", "websocket not connected", "not connected", "websocket is disconnected",
                  "not logged in", "store doesn't contain a device jid")
_RECIPIENT = ("item-not-found", "status 400", "status 401", "status 403", "status 404", "status 406", "status 409",
              "bad-request", "not-authorized", "forbidden", "not-acceptable", "unknown server",
              "recipient must be", "invalid jid", "group not found", "not participating", "not on whatsapp",
              "don't have the permission")  # ErrGroupInviteLinkUnauthorized: not an admin


# Refusals of what this account may do: a 401 IQ error (not an admin) and ErrGroupInviteLinkUnauthorized.
_NOT_AUTHORIZED = ("status 401", "not-authorized", "don't have the permission")
# whatsmeow's ErrGroupNotFound ("that group does not exist"; older versions said "group not found") and
# ErrNotInGroup, which its group getters wrap 404 and 403 in; and ErrInviteLinkInvalid / ErrInviteLinkRevoked
# (an invite code leads to no group).
_GROUP_GONE = ("group not found", "that group does not exist", "not participating in that group",
               "that group invite link is not valid", "that group invite link has been revoked")
# A bare IQ error on a call addressed to a group: 404 no such group, 403 this account is not in it.
_GROUP_IQ_GONE = ("status 403", "status 404", "item-not-found", "forbidden")


def go_text(exc: BaseException) -> str:
    """The Go error text a neonize exception carries (some carry bytes, `get_profile_picture`'s the
    whole answer proto)."""
    arg = exc.args[0] if exc.args else ""
    if isinstance(getattr(arg, "Error", None), str):
        arg = arg.Error
    if isinstance(arg, bytes):
        arg = arg.decode("utf-8", "replace")
    return str(arg) or type(exc).__name__


def transport_error(exc: BaseException) -> TransportError:
    """Map a `NeonizeError` to NotConnected, RecipientError or TransportError, keeping Go's text."""
    if isinstance(exc, TransportError):
        return exc
    reason = go_text(exc)
    low = reason.lower()
    if any(n in low for n in _NOT_CONNECTED):
        return NotConnected(reason)
    if any(n in low for n in _GROUP_GONE):
        return GroupNotFound(reason)
    if any(n in low for n in _NOT_AUTHORIZED):
        return NotAuthorized(reason)
    if any(n in low for n in _RECIPIENT):
        return RecipientError(reason)
    return TransportError(reason)


def group_error(exc: BaseException) -> TransportError:
    """`transport_error` for a call addressed to a group: there, whatsmeow's bare 404 and 403 mean the
    group does not exist or this account is not in it (GroupNotFound); 401 (not an admin) stays a
    RecipientError."""
    mapped = transport_error(exc)
    if type(mapped) is RecipientError and any(n in mapped.reason.lower() for n in _GROUP_IQ_GONE):
        return GroupNotFound(mapped.reason)
    return mapped
