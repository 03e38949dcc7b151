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
    sender: str  # author JID
    sender_phone: str | None = None  # E.164, when known
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
    sender: str  # who acted (the phone JID when known)
    sender_phone: str | None = None  # E.164, when known
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


AnyEvent = (QRCode | PairingCode | Connected | Disconnected | LoggedOut | MessageReceived | Receipt | Presence
            | ChatPresence | ReactionReceived | MessageEdited | MessageRevoked | PollVoted)

# Where `run` reports its events: the send side of a channel whose other end the actor reads.
EventSendChannel = trio.MemorySendChannel[TransportEvent]


# -- results ------------------------------------------------------------------

class OnWhatsApp(msgspec.Struct, frozen=True, kw_only=True):
    phone_number: str  # E.164 as asked
    exists: bool
    jid: str | None = None
    verified_name: str | None = None


class ContactInfo(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    phone_number: str | None = None
    full_name: str | None = None
    push_name: str | None = None
    business_name: str | None = None


class GroupParticipant(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    phone_number: str | None = None
    is_admin: bool = False
    is_super_admin: bool = False


class GroupInfo(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    name: str
    topic: str | None = None
    owner: str | None = None
    created_at_ms: int | None = None
    participants: list[GroupParticipant] = []


class ParticipantResult(msgspec.Struct, frozen=True, kw_only=True):
    jid: str
    ok: bool
    error: str | None = None  # e.g. "not-authorized", "404" (not on WhatsApp), "409" (already in group)


ParticipantAction = Literal["add", "remove"]


# -- the protocol -------------------------------------------------------------

class SessionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a transport needs to know about its session."""

    session_id: str
    phone_number: str | None = None  # E.164; the simulator pairs as this number
    data_dir: str = "./data"  # neonize keeps the device store below it


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


class TransportFactory(Protocol):
    """Makes one Transport per session; owns what the transports share (a link, a lock)."""

    def create(self, spec: SessionSpec) -> Transport: ...

    async def aclose(self) -> None: ...
