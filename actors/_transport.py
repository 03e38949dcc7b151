"""The Transport protocol: one WhatsApp connection for one session.

Two implementations exist: `neonize` (real WhatsApp, through whatsmeow) and
`sim` (a client of `gateway simulator`). The session actor is the only caller.

Lifecycle
---------
`run(events, task_status=...)` owns the connection for one connection cycle:

- it starts connecting and calls `task_status.started()` once the attempt is
  under way (not once connected: pairing can take minutes);
- progress arrives as events on `events` (`QRCode`, `Connected`, ...);
- it returns normally when the connection ended because `disconnect()` or
  `logout()` was called, or WhatsApp logged the session out (after emitting
  `LoggedOut`);
- it raises `ConnectFailed` when no connection could be made, or the
  connection was lost and the transport does not recover by itself. The actor
  then backs off and calls `run` again on the same transport object (never a
  new one: neonize leaks on client churn).

A transport may reconnect by itself after a drop (whatsmeow does); it then
emits `Disconnected` and later `Connected` while `run` keeps going.

Every other call needs a live connection and raises `NotConnected` otherwise.
Calls may run concurrently with each other.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec
import trio

from ._messages import OutboundMessage, SendResult
from ._proxy_url import masked

# -- errors -------------------------------------------------------------------

class TransportError(Exception):
    """A transport call failed. `reason` is the underlying error text (Go's, for neonize)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConnected(TransportError):
    """Raised by calls that need a live connection when there is none."""

    def __init__(self, reason: str = "session is not connected") -> None:
        super().__init__(reason)


class ConnectFailed(TransportError):
    """Raised by `run` when a connection could not be made or was lost.

    `retryable` is False for failures that retrying cannot fix (for example a
    device store that cannot be opened); the actor then goes to FAILED at once.
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.retryable = retryable


class PairingTimeout(ConnectFailed):
    """Raised by `run` when an unpaired session was not paired before its deadline."""

    def __init__(self, reason: str = "not paired before the pairing deadline") -> None:
        super().__init__(reason, retryable=False)


class MediaToolMissing(TransportError):
    """A media type needs ffmpeg/ffprobe and it is not installed."""


class RecipientError(TransportError):
    """The recipient or group is invalid, unknown, or refused the operation."""


class NotAuthorized(RecipientError):
    """WhatsApp refused: this account may not do that (it is not an admin of the group, the group is locked)."""


class GroupNotFound(RecipientError):
    """The group does not exist, or this account is not in it (WhatsApp does not say which)."""


# -- events (transport → actor) -----------------------------------------------

class TransportEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    pass


class QRCode(TransportEvent, tag="qr", kw_only=True):
    """A new pairing QR code (they rotate every ~20 s while unpaired)."""

    code: str


class PairingCode(TransportEvent, tag="pairing_code", kw_only=True):
    code: str


class Connected(TransportEvent, tag="connected", kw_only=True):
    """Logged in and online. `jid` is the account's own JID."""

    jid: str
    phone_number: str | None = None  # E.164
    push_name: str | None = None


class Disconnected(TransportEvent, tag="disconnected", kw_only=True):
    """The connection dropped; `run` keeps going and the transport reconnects by itself."""

    reason: str


class LoggedOut(TransportEvent, tag="logged_out", kw_only=True):
    """WhatsApp ended the pairing (unlinked from the phone, banned, ...)."""

    reason: str


class MessageReceived(TransportEvent, tag="message", kw_only=True):
    message_id: str
    chat: str  # chat JID (user or group)
    sender: str  # author JID: the phone JID when known, else the LID
    sender_phone: str | None = None  # E.164, when known
    sender_lid: str | None = None  # the author's LID (`...@lid`), when WhatsApp addressed it by LID
    push_name: str | None = None
    is_group: bool = False
    from_me: bool = False
    timestamp_ms: int
    type: str  # text, image, video, audio, document, sticker, location, contact, poll, reaction, unknown
    text: str | None = None  # text body or caption
    # type-specific fields (mimetype, latitude, options, quoted id, ...), JSON-safe
    data: dict[str, object] = {}
    # Media only: what the transport that delivered it needs to download the bytes (`download_media`);
    # opaque to everyone else (neonize: the serialized waE2E.Message; sim: the network's media id).
    media_ref: bytes | None = None


ReceiptType = Literal["delivered", "read", "played"]


class Receipt(TransportEvent, tag="receipt", kw_only=True):
    message_ids: list[str]
    chat: str
    sender: str | None = None  # who delivered/read it (groups)
    type: ReceiptType
    timestamp_ms: int


class Presence(TransportEvent, tag="presence", kw_only=True):
    jid: str
    available: bool
    last_seen_ms: int | None = None


# What can happen to a group's members: the first two change who is in it, the last two who is an admin.
ParticipantAction = Literal["add", "remove", "promote", "demote"]

# What a chat shows while someone is in it: typing, recording a voice note, or neither.
ChatState = Literal["composing", "recording", "paused"]


class ChatPresence(TransportEvent, tag="chat_presence", kw_only=True):
    chat: str
    sender: str
    state: ChatState


class MessageAction(TransportEvent, kw_only=True):
    """Something done to an earlier message: its author, where, and when. `event_id` is the id of the
    WhatsApp message that carried the action (a repeat of one action carries the same id)."""

    event_id: str
    chat: str  # chat JID (user or group)
    sender: str  # who acted (the phone JID when known, else the LID)
    sender_phone: str | None = None  # E.164, when known
    sender_lid: str | None = None  # their LID, when WhatsApp addressed them by LID
    is_group: bool = False
    from_me: bool = False  # this account acted (from another device)
    timestamp_ms: int


class ReactionReceived(MessageAction, tag="reaction", kw_only=True):
    """A reaction to `message_id`; an empty `emoji` removes the sender's reaction."""

    message_id: str
    emoji: str


class MessageEdited(MessageAction, tag="edited", kw_only=True):
    """`message_id`'s text or caption was changed to `text`."""

    message_id: str
    text: str | None = None


class MessageRevoked(MessageAction, tag="revoked", kw_only=True):
    """`message_id` was deleted for everyone."""

    message_id: str


class PollVoted(MessageAction, tag="poll_vote", kw_only=True):
    """`sender` voted on the poll `poll_id`: the options it chose now (none: it took its vote back).

    A transport that decrypts only to option hashes (whatsmeow gives SHA-256 digests of the option
    names) reports `option_hashes` (hex) and leaves `options` empty; the gateway names them from the
    poll it knows."""

    poll_id: str
    options: list[str] = []
    option_hashes: list[str] = []


class GroupEvent(TransportEvent, kw_only=True):
    """Something happened in a group this account is (or was) in. `by` is who did it (a JID, the phone JID
    when known), None when WhatsApp does not say (the server acted, or an invite was used)."""

    group: str  # group JID
    by: str | None = None
    timestamp_ms: int


class GroupJoined(GroupEvent, tag="group_joined", kw_only=True):
    """This account joined `group`: added by someone (`by`), by an invite link, or it created the group."""

    name: str | None = None


class GroupLeft(GroupEvent, tag="group_left", kw_only=True):
    """This account is no longer in `group`: it left (`left`) or an admin removed it (`removed`)."""

    reason: Literal["left", "removed"] = "left"


class GroupParticipantsChanged(GroupEvent, tag="group_participants", kw_only=True):
    """Members of `group` were added, removed, promoted to admin or demoted (this account among them or not)."""

    action: ParticipantAction
    participants: list[str]  # JIDs


class GroupUpdated(GroupEvent, tag="group_updated", kw_only=True):
    """A group setting changed; only the fields that changed are set."""

    name: str | None = None
    topic: str | None = None  # the description; "" when it was removed
    announce: bool | None = None  # only admins may send
    locked: bool | None = None  # only admins may edit the group's info
    picture_changed: bool = False  # set or removed: fetch it with `get_picture`


AnyEvent = (QRCode | PairingCode | Connected | Disconnected | LoggedOut | MessageReceived | Receipt | Presence
            | ChatPresence | ReactionReceived | MessageEdited | MessageRevoked | PollVoted | GroupJoined | GroupLeft
            | GroupParticipantsChanged | GroupUpdated)

# Where `run` reports its events: the send side of a channel whose other end the actor reads.
EventSendChannel = trio.MemorySendChannel[TransportEvent]


# -- results ------------------------------------------------------------------

class OnWhatsApp(msgspec.Struct, frozen=True, kw_only=True):
    phone_number: str  # E.164 as asked
    exists: bool
    jid: str | None = None
    verified_name: str | None = None


class ContactInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One of the account's WhatsApp contacts (the phone's address book as WhatsApp syncs it)."""

    jid: str
    phone_number: str | None = None
    full_name: str | None = None  # the name in the phone's address book
    push_name: str | None = None  # the name the contact chose
    business_name: str | None = None
    lid: str | None = None  # the contact's LID (`...@lid`), when known


class ProfilePicture(msgspec.Struct, frozen=True, kw_only=True):
    """A user's or group's profile picture. `url` is None when there is none, or its privacy settings hide it;
    WhatsApp's URLs expire after a while (hours)."""

    jid: str
    url: str | None = None
    id: str | None = None  # changes whenever the picture does


class UserInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What WhatsApp tells about an account: its about text, its LID, its business name."""

    jid: str
    about: str | None = None  # the "about" (status) text; None when hidden or unset
    lid: str | None = None
    verified_name: str | None = None
    picture_id: str | None = None


class GroupSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Group settings to change; None leaves a setting as it is."""

    name: str | None = None
    topic: str | None = None  # the description; "" removes it
    announce: bool | None = None  # only admins may send messages
    locked: bool | None = None  # only admins may edit the group's info


class GroupParticipant(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    phone_number: str | None = None
    is_admin: bool = False
    is_super_admin: bool = False
    lid: str | None = None


class GroupInfo(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    name: str
    topic: str | None = None
    owner: str | None = None
    created_at_ms: int | None = None
    participants: list[GroupParticipant] = []
    announce: bool = False  # only admins may send messages
    locked: bool = False  # only admins may edit the group's info


class ParticipantResult(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    ok: bool
    error: str | None = None  # e.g. "not-authorized", "404" (not on WhatsApp), "409" (already in group)


# -- the protocol -------------------------------------------------------------

class SessionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a transport needs to know about its session."""

    session_id: str
    phone_number: str | None = None  # E.164; the simulator pairs as this number
    data_dir: str = "./data"  # neonize keeps the device store below it
    # http://, https:// or socks5:// (user:password@ allowed): the transport connects through it
    proxy_url: str | None = None

    def __repr__(self) -> str:
        """Without the proxy's credentials: a spec can end up in a log line or a traceback."""
        proxy = None if self.proxy_url is None else masked(self.proxy_url)
        shown = {name: getattr(self, name) for name in self.__struct_fields__} | {"proxy_url": proxy}
        return f"SessionSpec({', '.join(f'{name}={value!r}' for name, value in shown.items())})"


class Transport(Protocol):
    async def run(self, events: EventSendChannel, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own one connection cycle; see the module docstring."""

    async def disconnect(self) -> None:
        """Close the connection gracefully, keeping the pairing. `run` then returns."""

    async def logout(self) -> None:
        """Unlink the device from the account (a new pairing is needed). `run` then returns."""

    async def pair_phone(self, phone_number: str) -> str:
        """Ask for an 8-character pairing code for `phone_number` (E.164); needs `run` unpaired."""

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def is_on_whatsapp(self, phone_numbers: list[str]) -> list[OnWhatsApp]: ...

    async def get_contacts(self) -> list[ContactInfo]: ...

    async def list_groups(self) -> list[GroupInfo]: ...

    async def create_group(self, name: str, participants: list[str]) -> GroupInfo: ...

    async def group_info(self, group_jid: str) -> GroupInfo: ...

    async def update_participants(self, group_jid: str, participants: list[str],
                                  action: ParticipantAction) -> list[ParticipantResult]: ...

    async def leave_group(self, group_jid: str) -> None: ...

    async def send_presence(self, available: bool) -> None: ...

    async def subscribe_presence(self, jid: str) -> None: ...

    async def send_typing(self, chat: str, composing: bool) -> None:
        """`send_chat_presence(chat, "composing" if composing else "paused")`."""

    async def send_chat_presence(self, chat: str, state: ChatState) -> None:
        """Show `state` in `chat` (a user or group JID): typing, recording audio, or paused."""

    async def mark_read(self, chat: str, message_ids: list[str], sender: str) -> None:
        """Send a read receipt for received messages in `chat`; `sender` is their author
        (the chat itself in a one-to-one chat, the participant in a group)."""

    # Actions on earlier messages. `sender` names the author of the message acted on (a participant's
    # JID in a group); None means this account wrote it. Each returns the id of the message that
    # carries the action.

    async def react(self, chat: str, message_id: str, emoji: str, *, sender: str | None = None) -> SendResult:
        """React to `message_id` in `chat` with `emoji`; an empty `emoji` removes this account's reaction."""

    async def edit_message(self, chat: str, message_id: str, text: str, *,
                           caption_of: str | None = None) -> SendResult:
        """Replace the text of this account's message `message_id` (or its caption: `caption_of` is the
        media kind, image, video or document). WhatsApp accepts edits for 15 minutes after the send."""

    async def revoke_message(self, chat: str, message_id: str, *, sender: str | None = None) -> SendResult:
        """Delete `message_id` for everyone in `chat` (another author's: a group admin only)."""

    async def vote_poll(self, chat: str, poll_id: str, options: list[str], *,
                        sender: str | None = None) -> SendResult:
        """Vote on the poll `poll_id` in `chat` with these option names (none: take the vote back)."""


    async def download_media(self, message: MessageReceived) -> bytes:
        """The bytes of a received media message (its `media_ref`). Raises TransportError with the
        reason when they cannot be fetched (expired on the server, no `media_ref`, ...)."""

    # Contacts and identity. `jid` is a user JID (phone or LID) or, for pictures, a group JID.

    async def get_picture(self, jid: str) -> ProfilePicture:
        """The profile picture of a user or group (`url` None: none, or hidden from this account)."""

    async def get_user_info(self, jids: list[str]) -> list[UserInfo]:
        """About text, LID and business name of each account (one entry per JID WhatsApp knows)."""

    async def get_blocklist(self) -> list[str]:
        """The JIDs this account has blocked."""

    async def update_blocklist(self, jid: str, block: bool) -> list[str]:
        """Block (or unblock) `jid`; returns the blocklist after the change."""

    async def lid_for_phone(self, jid: str) -> str | None:
        """The LID (`...@lid`) of a phone JID, from WhatsApp's mapping; None when unknown."""

    async def phone_for_lid(self, lid: str) -> str | None:
        """The phone JID of a LID, from WhatsApp's mapping; None when unknown."""

    # Group administration (this account must be an admin; GroupNotFound when it is not in the group).

    async def update_group_settings(self, group_jid: str, settings: GroupSettings) -> None:
        """Apply each setting that is not None (name, description, announce-only, locked)."""

    async def set_group_picture(self, group_jid: str, jpeg: bytes | None) -> str | None:
        """Set the group's picture (a JPEG), or remove it (None); returns the new picture id."""

    async def group_invite_link(self, group_jid: str, *, reset: bool = False) -> str:
        """The group's invite link (`https://chat.whatsapp.com/<code>`); `reset` revokes the old one first."""

    async def group_info_from_invite(self, code: str) -> GroupInfo:
        """What an invite code leads to, without joining (GroupNotFound: revoked or unknown code)."""

    async def join_group_with_invite(self, code: str) -> str:
        """Join the group an invite code leads to; returns the group's JID."""


class TransportFactory(Protocol):
    """Makes one Transport per session; owns what the transports share (a link, a lock)."""

    def create(self, spec: SessionSpec) -> Transport: ...

    async def aclose(self) -> None: ...
