"""The public payload (`data`) of every gateway event: one msgspec Struct per event name.

Transports report what they know in their own, internal shape (the actors'
`TransportEvent`s: snake_case keys, a free-form `data` per message type). The
gateway maps that here, once, into these Structs; every key is camelCase at
every depth (`rename="camel"`). The same Structs generate the OpenAPI
document's `webhooks` and the README's event list, so the documentation is the
shape that is sent.
"""

import hashlib
import logging
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from actors import (
    ChatPresence, GroupEvent, GroupJoined, GroupLeft, GroupParticipantsChanged, GroupUpdated, MessageAction,
    MessageEdited, MessageReceived, MessageRevoked, PollVoted, Presence, ReactionReceived,
)

log = logging.getLogger("gateway.events")

__all__ = [
    "EVENT_PAYLOADS", "MediaInfo", "SharedContact", "EventPayload", "MessageData", "MessageReceivedEvent",
    "MessageSentEvent",
    "MessageEditedEvent", "MessageReactionEvent", "MessageRevokedEvent", "PollVoteEvent", "action_payload",
    "MessageStatusEvent", "PresenceUpdateEvent", "Quoted", "SessionConnectedEvent", "SessionDisconnectedEvent",
    "SessionQrEvent", "WebhookTestEvent", "events_markdown", "message_received_payload", "presence_payload",
    "public_keys", "GroupJoinedEvent", "GroupLeftEvent", "GroupParticipantsEvent", "GroupUpdatedEvent",
    "group_payload",
]


class EventPayload(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """The base of every event payload: camelCase keys on the wire, and no key the schema does not name."""


def _d(text: str) -> Meta:
    return Meta(description=text)


# -- message.received -------------------------------------------------------------

class Quoted(EventPayload):
    """The message a reply quotes."""

    message_id: Annotated[str, _d("WhatsApp id of the quoted message.")]
    chat: Annotated[str | None, _d("Chat JID the quoted message belongs to.")] = None
    sender: Annotated[str | None, _d("JID of the quoted message's author (in a 1:1 chat: yours or the peer's).")] = None
    text: Annotated[str | None, _d("The quoted text, when the transport reports it.")] = None


class SharedContact(EventPayload, omit_defaults=True):
    """One shared contact."""

    display_name: Annotated[str | None, _d("Name shown for the contact.")] = None
    vcard: Annotated[str | None, _d("The vCard.")] = None
    phone_numbers: Annotated[list[str], _d("E.164 numbers found in the vCard (waid).")] = []


class MessageData(EventPayload, omit_defaults=True):
    """Type-specific fields of a received message; only those that apply are present."""

    mimetype: Annotated[str | None, _d("Media: MIME type.")] = None
    file_length: Annotated[int | None, _d("Media: size in bytes.")] = None
    sha256: Annotated[str | None, _d("Media: hex SHA-256 of the bytes, when known.")] = None
    filename: Annotated[str | None, _d("Document: file name.")] = None
    title: Annotated[str | None, _d("Document: title.")] = None
    page_count: Annotated[int | None, _d("Document: pages.")] = None
    width: Annotated[int | None, _d("Image, sticker: width in pixels.")] = None
    height: Annotated[int | None, _d("Image, sticker: height in pixels.")] = None
    seconds: Annotated[int | None, _d("Video, audio: duration.")] = None
    ptt: Annotated[bool | None, _d("Audio: a voice note (push to talk).")] = None
    gif_playback: Annotated[bool | None, _d("Video: plays as a GIF.")] = None
    is_animated: Annotated[bool | None, _d("Sticker: animated.")] = None
    latitude: Annotated[float | None, _d("Location: degrees.")] = None
    longitude: Annotated[float | None, _d("Location: degrees.")] = None
    live: Annotated[bool | None, _d("Location: a live location.")] = None
    name: Annotated[str | None, _d("Location: place name.")] = None
    address: Annotated[str | None, _d("Location: address.")] = None
    display_name: Annotated[str | None, _d("Contact: name shown.")] = None
    vcard: Annotated[str | None, _d("Contact: the vCard.")] = None
    phone_numbers: Annotated[list[str] | None, _d("Contact: E.164 numbers in the vCard.")] = None
    contacts: Annotated[list[SharedContact] | None, _d("Several contacts shared at once.")] = None
    question: Annotated[str | None, _d("Poll: the question.")] = None
    options: Annotated[list[str] | None, _d("Poll: the options.")] = None
    selectable_count: Annotated[int | None, _d("Poll: how many options a voter may choose (0: any).")] = None
    content: Annotated[str | None, _d("Unknown type: the protobuf field it arrived in.")] = None
    quoted: Annotated[Quoted | None, _d("A reply: the message it quotes.")] = None
    mentions: Annotated[list[str] | None, _d("JIDs mentioned.")] = None
    view_once: Annotated[bool | None, _d("View-once media.")] = None
    sender_alt: Annotated[str | None, _d("The sender's other JID (phone JID for a LID sender, or the reverse).")] = None
    chat_lid: Annotated[str | None, _d("The chat's LID, when `chat` was resolved to a phone JID.")] = None


class MediaInfo(EventPayload):
    """A received file, downloaded by the gateway: fetch it at `url` with the session key. When the download
    was refused or failed, `id` and `url` are null and `error` says why."""

    id: Annotated[str | None, _d("Media id (null: not downloaded, see `error`).")]
    mimetype: Annotated[str, _d("MIME type, as the sender declared it.")]
    size: Annotated[int | None, _d("Size in bytes (when not downloaded: the size WhatsApp announced, if known).")]
    sha256: Annotated[str | None, _d("Hex SHA-256 of the stored bytes.")] = None
    url: Annotated[str | None, _d("Where to fetch it: `GET /api/v1/media/{id}` with the session key.")] = None
    filename: Annotated[str | None, _d("File name, when the sender gave one (documents).")] = None
    error: Annotated[str | None, _d("Why it was not downloaded (over GATEWAY_MEDIA_MAX_BYTES, the transport's "
                                    "reason, a timeout).")] = None


class MessageReceivedEvent(EventPayload, kw_only=True):
    """`message.received`: a message arrived (or one you sent from another device, `fromMe`)."""

    message_id: Annotated[str, _d("WhatsApp id of the message.")]
    chat: Annotated[str, _d("Chat JID (user or group).")]
    sender: Annotated[str, _d("Author JID: the phone JID when it is known or can be resolved, else the LID.")]
    from_: Annotated[str, _d("The same as `sender` (the name other gateways use).")] = msgspec.field(name="from")
    from_lid: Annotated[str | None, _d("The author's LID (`…@lid`), when WhatsApp addressed them by LID or the "
                                       "gateway knows it.")] = None
    sender_phone: Annotated[str | None, _d("Author's E.164 number, when known.")] = None
    push_name: Annotated[str | None, _d("Author's WhatsApp display name.")] = None
    is_group: Annotated[bool, _d("Sent in a group.")] = False
    from_me: Annotated[bool, _d("Sent by this account (from another device).")] = False
    timestamp_ms: Annotated[int, _d("When it was sent, epoch milliseconds.")]
    type: Annotated[str, _d("text, image, video, audio, document, sticker, location, contact, poll or unknown "
                            "(reactions, edits, revokes and votes are events of their own).")]
    text: Annotated[str | None, _d("Text body or caption (poll: the question).")] = None
    data: Annotated[MessageData, _d("Type-specific fields.")] = MessageData()
    media: Annotated[MediaInfo | None, _d("Image, video, audio, document, sticker: the file as the gateway "
                                          "stored it (null for other types).")] = None


# -- message.sent / message.status -------------------------------------------------

class MessageStatusEvent(EventPayload):
    """`message.status`: a message you sent moved on (sent, delivered, read, failed, cancelled)."""

    message_id: Annotated[str, _d("The gateway's message id.")]
    whatsapp_id: Annotated[str | None, _d("WhatsApp id, once sent.")]
    to: Annotated[str, _d("Recipient JID.")]
    type: Annotated[str, _d("Message type (text, image, ...).")]
    status: Annotated[Literal["queued", "sending", "sent", "delivered", "read", "failed", "cancelled"],
                      _d("Where the message is now; an expired message is `failed` with the reason.")]
    reason: Annotated[str | None, _d("Why it failed or expired.")]


class MessageSentEvent(MessageStatusEvent):
    """`message.sent`: WhatsApp accepted a message you sent."""


# -- sessions and presence ---------------------------------------------------------

class SessionConnectedEvent(EventPayload):
    """`session.connected`: the session is online."""

    status: Annotated[Literal["CONNECTED"], _d("Always CONNECTED.")]
    phone_number: Annotated[str | None, _d("The account's E.164 number (known from the first pairing on).")]


class SessionDisconnectedEvent(EventPayload):
    """`session.disconnected`: the session went offline, was logged out, or failed."""

    status: Annotated[Literal["DISCONNECTED", "LOGGED_OUT", "FAILED"], _d("The new status.")]
    reason: Annotated[str | None, _d("Why.")]


class SessionQrEvent(EventPayload):
    """`session.qr`: a new QR code to scan (each replaces the last)."""

    qr: Annotated[str, _d("The QR code's text (render it as a QR code).")]


class PresenceUpdateEvent(EventPayload, omit_defaults=True):
    """`presence.update`: a contact's availability (`jid`, `available`) or typing in a chat (`chat`, `sender`,
    `state`)."""

    jid: Annotated[str | None, _d("Contact presence: whose.")] = None
    available: Annotated[bool | None, _d("Contact presence: online.")] = None
    last_seen_ms: Annotated[int | None, _d("Contact presence: last seen, epoch milliseconds, when shared.")] = None
    chat: Annotated[str | None, _d("Chat presence: the chat.")] = None
    sender: Annotated[str | None, _d("Chat presence: who is typing or recording.")] = None
    state: Annotated[Literal["composing", "recording", "paused"] | None, _d("Chat presence: what they do.")] = None


# -- actions on earlier messages ---------------------------------------------------

class _MessageAction(EventPayload, kw_only=True):
    chat: Annotated[str, _d("Chat JID (user or group) the message is in.")]
    sender: Annotated[str, _d("Who acted: the phone JID when it is known or can be resolved, else the LID.")]
    from_: Annotated[str, _d("The same as `sender`.")] = msgspec.field(name="from")
    from_lid: Annotated[str | None, _d("Their LID, when WhatsApp addressed them by LID or the gateway knows it.")] \
        = None
    sender_phone: Annotated[str | None, _d("Their E.164 number, when known.")] = None
    is_group: Annotated[bool, _d("In a group.")] = False
    from_me: Annotated[bool, _d("This account acted (from another device).")] = False
    timestamp_ms: Annotated[int, _d("When, epoch milliseconds.")]


class MessageReactionEvent(_MessageAction, kw_only=True):
    """`message.reaction`: someone reacted to a message, or took their reaction back (`removed`)."""

    message_id: Annotated[str, _d("WhatsApp id of the message reacted to.")]
    emoji: Annotated[str, _d("The reaction; empty when removed.")]
    removed: Annotated[bool, _d("The sender took their reaction back.")]


class MessageEditedEvent(_MessageAction, kw_only=True):
    """`message.edited`: a message's text or caption was changed by its author."""

    message_id: Annotated[str, _d("WhatsApp id of the edited message.")]
    text: Annotated[str | None, _d("The new text or caption.")]


class MessageRevokedEvent(_MessageAction, kw_only=True):
    """`message.revoked`: a message was deleted for everyone."""

    message_id: Annotated[str, _d("WhatsApp id of the revoked message.")]


class PollVoteEvent(_MessageAction, kw_only=True):
    """`poll.vote`: someone voted on a poll; `options` are their choices now (empty: vote taken back)."""

    message_id: Annotated[str, _d("WhatsApp id of the poll.")]
    options: Annotated[list[str], _d("The option names chosen, decrypted.")]
    unknown_options: Annotated[int, _d("Chosen options the gateway could not name (a poll it has not seen).")] = 0


# -- groups -------------------------------------------------------------------------

class _GroupEvent(EventPayload, kw_only=True):
    group: Annotated[str, _d("The group's JID.")]
    by: Annotated[str | None, _d("Who did it (a JID), when WhatsApp says.")] = None
    timestamp_ms: Annotated[int, _d("When, epoch milliseconds.")]


class GroupJoinedEvent(_GroupEvent, kw_only=True):
    """`group.joined`: this account is now in a group (added, joined by an invite link, or created it)."""

    name: Annotated[str | None, _d("The group's name, when known.")] = None


class GroupLeftEvent(_GroupEvent, kw_only=True):
    """`group.left`: this account is no longer in a group."""

    reason: Annotated[Literal["left", "removed"], _d("`left` by itself, or `removed` by an admin (`by`).")]


class GroupParticipantsEvent(_GroupEvent, kw_only=True):
    """`group.participants`: members were added, removed, promoted to admin or demoted."""

    action: Annotated[Literal["add", "remove", "promote", "demote"], _d("What happened to them.")]
    participants: Annotated[list[str], _d("Their JIDs.")]


class GroupUpdatedEvent(_GroupEvent, omit_defaults=True, kw_only=True):
    """`group.updated`: a group setting changed; only the changed fields are present."""

    name: Annotated[str | None, _d("The new name.")] = None
    topic: Annotated[str | None, _d("The new description (empty: removed).")] = None
    announce: Annotated[bool | None, _d("Only admins may send messages.")] = None
    locked: Annotated[bool | None, _d("Only admins may edit the group's info.")] = None
    picture_changed: Annotated[bool, _d("The picture was set or removed.")] = False


class WebhookTestEvent(EventPayload):
    """`webhook.test`: sent on request, to try an endpoint."""

    test: Annotated[bool, _d("Always true.")]


# Every event name → its payload. `gateway.events.EVENT_TYPES` are the ones a session subscribes to.
EVENT_PAYLOADS: Final[dict[str, type[EventPayload]]] = {
    "message.received": MessageReceivedEvent,
    "message.sent": MessageSentEvent,
    "message.status": MessageStatusEvent,
    "session.connected": SessionConnectedEvent,
    "session.disconnected": SessionDisconnectedEvent,
    "session.qr": SessionQrEvent,
    "presence.update": PresenceUpdateEvent,
    "message.reaction": MessageReactionEvent,
    "message.edited": MessageEditedEvent,
    "message.revoked": MessageRevokedEvent,
    "poll.vote": PollVoteEvent,
    "group.joined": GroupJoinedEvent,
    "group.left": GroupLeftEvent,
    "group.participants": GroupParticipantsEvent,
    "group.updated": GroupUpdatedEvent,
    "webhook.test": WebhookTestEvent,
}


# -- transport data → public payload ------------------------------------------------

def public_keys(value: Any) -> Any:
    """`value` with every mapping key camelCased, at every depth (transport data is snake_case)."""
    if isinstance(value, dict):
        return {_camel(str(k)): public_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public_keys(v) for v in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# The nested Structs of MessageData, by key: their unknown keys are dropped too.
_NESTED: Final[dict[str, type[EventPayload]]] = {"quoted": Quoted, "contacts": SharedContact}


def _known(value: Any, typ: type[EventPayload]) -> Any:
    """`value` with only the keys `typ` names (a transport may report more than the schema documents)."""
    if isinstance(value, list):
        return [_known(item, typ) for item in value]
    if not isinstance(value, dict):
        return value
    names = typ.__struct_encode_fields__
    return {k: _known(v, _NESTED[k]) if k in _NESTED and typ is MessageData else v
            for k, v in value.items() if k in names}


def message_data(data: dict[str, object]) -> MessageData:
    """A transport's type-specific fields as `MessageData`; keys the schema does not name are dropped."""
    known = _known(public_keys(data), MessageData)
    try:
        return msgspec.convert(known, MessageData)
    except msgspec.ValidationError as exc:
        # A field of an unexpected type must not lose the message: keep the fields that do convert.
        log.warning("message data dropped in part: %s", exc)
        kept = {}
        for key, value in known.items():
            try:
                msgspec.convert({key: value}, MessageData)
            except msgspec.ValidationError:
                continue
            kept[key] = value
        return msgspec.convert(kept, MessageData)


def message_received_payload(event: MessageReceived, *, quoted_sender: str | None = None,
                             media: MediaInfo | None = None) -> MessageReceivedEvent:
    """`message.received` for `event`; `quoted_sender` fills a quote whose author the transport did not name,
    `media` is its downloaded file (`gateway._incoming`)."""
    data = message_data(event.data)
    if data.quoted is not None and data.quoted.sender is None and quoted_sender is not None:
        data = msgspec.structs.replace(data, quoted=msgspec.structs.replace(data.quoted, sender=quoted_sender))
    return MessageReceivedEvent(
        message_id=event.message_id, chat=event.chat, sender=event.sender, from_=event.sender,
        from_lid=event.sender_lid, sender_phone=event.sender_phone,
        push_name=event.push_name, is_group=event.is_group, from_me=event.from_me, timestamp_ms=event.timestamp_ms,
        type=event.type, text=event.text, data=data, media=media)


def presence_payload(event: Presence | ChatPresence) -> PresenceUpdateEvent:
    if isinstance(event, Presence):
        return PresenceUpdateEvent(jid=event.jid, available=event.available, last_seen_ms=event.last_seen_ms)
    return PresenceUpdateEvent(chat=event.chat, sender=event.sender, state=event.state)


def action_payload(event: MessageAction, *, poll_options: list[str] | None = None) -> tuple[str, EventPayload]:
    """The event name and payload of an action on a message. A vote reported as option hashes is named
    from `poll_options` (the poll's options, when the gateway knows the poll)."""
    common = dict(chat=event.chat, sender=event.sender, from_=event.sender, from_lid=event.sender_lid,
                  sender_phone=event.sender_phone, is_group=event.is_group, from_me=event.from_me,
                  timestamp_ms=event.timestamp_ms)
    if isinstance(event, ReactionReceived):
        return "message.reaction", MessageReactionEvent(message_id=event.message_id, emoji=event.emoji,
                                                        removed=not event.emoji, **common)
    if isinstance(event, MessageEdited):
        return "message.edited", MessageEditedEvent(message_id=event.message_id, text=event.text, **common)
    if isinstance(event, MessageRevoked):
        return "message.revoked", MessageRevokedEvent(message_id=event.message_id, **common)
    assert isinstance(event, PollVoted)
    options, unknown = list(event.options), 0
    if event.option_hashes:
        by_hash = {hashlib.sha256(o.encode()).hexdigest(): o for o in poll_options or ()}
        named = [by_hash.get(h) for h in event.option_hashes]
        options += [o for o in named if o is not None]
        unknown = named.count(None)
    return "poll.vote", PollVoteEvent(message_id=event.poll_id, options=options, unknown_options=unknown, **common)


def group_payload(event: GroupEvent) -> tuple[str, EventPayload]:
    """The event name and payload of something that happened in a group."""
    common = dict(group=event.group, by=event.by, timestamp_ms=event.timestamp_ms)
    if isinstance(event, GroupJoined):
        return "group.joined", GroupJoinedEvent(name=event.name, **common)
    if isinstance(event, GroupLeft):
        return "group.left", GroupLeftEvent(reason=event.reason, **common)
    if isinstance(event, GroupParticipantsChanged):
        return "group.participants", GroupParticipantsEvent(action=event.action,
                                                            participants=list(event.participants), **common)
    assert isinstance(event, GroupUpdated)
    return "group.updated", GroupUpdatedEvent(name=event.name, topic=event.topic, announce=event.announce,
                                              locked=event.locked, picture_changed=event.picture_changed, **common)


# -- documentation -------------------------------------------------------------------

def events_markdown() -> str:
    """The README's event list (README.md holds exactly this text): one table per event, from the Structs."""
    _, components = msgspec.json.schema_components(list(EVENT_PAYLOADS.values()))
    out: list[str] = []
    for name, typ in EVENT_PAYLOADS.items():
        schema = components[typ.__name__]
        out += [f"**`{name}`** ({typ.__name__}): {_first_line(typ.__doc__).split(': ', 1)[-1]}", "",
                "| Field | Type | Meaning |", "|---|---|---|"]
        out += _rows(schema, components, "")
        out.append("")
    return "\n".join(out).rstrip("\n")


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").split())


def _rows(schema: dict[str, Any], components: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    for key, prop in schema.get("properties", {}).items():
        nested = _ref(prop)
        rows.append(f"| `{prefix}{key}` | {_type_name(prop)} | {prop.get('description', '')} |")
        if nested is not None and nested != "SharedContact":
            rows += _rows(components[nested], components, f"{prefix}{key}.")
    return rows


def _ref(prop: dict[str, Any]) -> str | None:
    for option in [prop, *prop.get("anyOf", ())]:
        if "$ref" in option:
            return option["$ref"].rsplit("/", 1)[-1]
    return None


def _type_name(prop: dict[str, Any]) -> str:
    options = prop.get("anyOf", [prop])
    names = []
    for o in options:
        if "$ref" in o:
            names.append("object")
        elif "enum" in o:
            names.append(" \\| ".join(f"`{v}`" for v in o["enum"]))
        elif o.get("type") == "array":
            names.append("array")
        elif "type" in o:
            names.append(str(o["type"]))
    return " \\| ".join(names)
