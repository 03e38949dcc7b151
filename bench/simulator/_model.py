"""The simulator's state objects and the mapping from outbound content to what a recipient sees.

Pure data: no I/O and no clock. `_network.Network` mutates these.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from actors import (
    ContactContent, LocationContent, MediaContent, OutboundMessage, PollContent, TextContent, TransportEvent,
    phone_from_jid, user_jid,
)
from actors.sim import Frame

RECORD_TEXT_CHARS = 256


class Outbox(Protocol):
    """The server side of one link, as the network sees it."""

    id: int
    slots: dict[str, Slot]

    def enqueue(self, frame: Frame) -> None:
        """Queue a frame for the link's writer; never blocks (bounded by the credit windows)."""

    def close(self) -> None:
        """Drop the whole link (fault injection)."""


class OpError(Exception):
    """An operation failed; `kind` picks the client's exception class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def recipient_error(message: str) -> OpError:
    return OpError("recipient", message)


def not_authorized(message: str) -> OpError:
    """WhatsApp's `not-authorized` refusal (not an admin, a locked group)."""
    return OpError("not_authorized", f"not-authorized: {message}")


@dataclass(eq=False, slots=True)
class ReceiptTicket:
    """Shared by every copy of one message to one recipient, so receipts go out once."""

    sender: Account
    message_id: str
    chat: str  # the chat as the sender sees it: the recipient's JID, or the group's
    participant: str | None  # groups: who delivered/read it
    done: bool = False


@dataclass(eq=False, slots=True)
class Item:
    """One event waiting for (or in flight to) a device."""

    event: TransportEvent
    durable: bool  # messages and receipts survive a drop; presence, typing, Connected do not
    ticket: ReceiptTicket | None = None


@dataclass(eq=False, slots=True)
class Account:
    phone: str
    jid: str
    push_name: str | None = None
    verified_name: str | None = None
    devices: dict[str, Device] = field(default_factory=dict)
    contacts: dict[str, str | None] = field(default_factory=dict)  # jid → full name
    groups: set[str] = field(default_factory=set)
    subscribers: set[str] = field(default_factory=set)  # device ids following this account's presence
    available: bool = False
    last_seen_ms: int | None = None
    lid: str = ""  # `<digits>@lid`, given by the network when the account is made (`_identity`)
    about: str | None = None
    picture_id: str | None = None  # None: no profile picture
    blocked: set[str] = field(default_factory=set)  # JIDs this account blocked
    # how others see this account's messages: "off" (phone JID), "lid" (phone JID and LID), "lid-only" (LID)
    addressing: str = "off"


@dataclass(eq=False, slots=True)
class Device:
    device_id: str
    token: str
    account: Account
    session_id: str
    slot: Slot | None = None
    backlog: deque[Item] = field(default_factory=deque)


@dataclass(eq=False, slots=True)
class Slot:
    """One session's `run` on one link: pairing (no device yet) or bound to a device."""

    link: Outbox
    session_id: str
    requested_phone: str | None = None
    device: Device | None = None
    inflight: deque[Item] = field(default_factory=deque)
    qr: str | None = None
    pair_code: str | None = None
    pair_code_phone: str | None = None
    generation: int = 0  # bumped when pairing ends, so stale QR and autopair timers do nothing
    closed: bool = False
    proxy: str | None = None  # the proxy the session said it connects through (password masked)


@dataclass(eq=False, slots=True)
class Group:
    jid: str
    name: str
    owner: str
    created_at_ms: int
    topic: str | None = None
    roles: dict[str, int] = field(default_factory=dict)  # jid → 0 member, 1 admin, 2 super admin
    announce: bool = False  # only admins send
    locked: bool = False  # only admins edit the group's info
    picture_id: str | None = None
    invite_code: str | None = None  # made on first ask; a reset replaces it


def new_message_id() -> str:
    """Shaped like the ids WhatsApp Web clients make: 3EB0 then 18 hex digits."""
    return "3EB0" + secrets.token_hex(9).upper()


def new_qr_code() -> str:
    """Shaped like a whatsmeow QR payload: `2@ref,noise key,identity key,adv secret`."""
    parts = [secrets.token_urlsafe(36), secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32)]
    return "2@" + ",".join(parts)


def new_pair_code() -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"  # whatsmeow's Crockford-like set
    return "".join(secrets.choice(alphabet) for _ in range(8))


def normalize_phone(value: str) -> str | None:
    """A user JID, `+digits` or bare digits → E.164; anything else → None."""
    if "@" in value:
        return phone_from_jid(value)
    digits = value.strip().lstrip("+").replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 5 <= len(digits) <= 15:
        return None
    return "+" + digits


def jid_of(phone: str) -> str:
    return user_jid(phone)


def describe(message: OutboundMessage) -> tuple[str, str | None, dict[str, object]]:
    """(type, text, data) of a MessageReceived for `message`; `data` is JSON-safe.

    Media bytes are not repeated in the event: `sha256` and `file_length` let a
    receiver prove the bytes crossed the network intact, the way a real client
    gets a hash and a download path rather than the file.
    """
    content = message.content
    data: dict[str, object] = {}
    text: str | None = None
    match content:
        case TextContent(body=body):
            kind, text = "text", body
        case MediaContent():
            kind, text = content.kind, content.caption
            data = {"mimetype": content.mimetype, "file_length": len(content.data),
                    "sha256": hashlib.sha256(content.data).hexdigest()}
            if content.filename is not None:
                data["filename"] = content.filename
            if content.kind == "audio":
                data["ptt"] = content.ptt
        case LocationContent():
            kind = "location"
            data = {"latitude": content.latitude, "longitude": content.longitude}
            if content.name is not None:
                data["name"] = content.name
            if content.address is not None:
                data["address"] = content.address
        case ContactContent():
            kind = "contact"
            # what a WhatsApp contact message carries (and neonize reports): a display name and a vCard
            data = {"display_name": content.full_name, "phone_numbers": [content.phone_number],
                    "vcard": ("BEGIN:VCARD\nVERSION:3.0\nFN:" + content.full_name + "\nTEL;type=CELL;waid="
                              + content.phone_number.lstrip("+") + ":" + content.phone_number + "\nEND:VCARD")}
        case PollContent():
            kind, text = "poll", content.question
            data = {"question": content.question, "options": list(content.options),
                    "selectable_count": content.selectable_count}
        case _:  # pragma: no cover - the Content union is closed
            kind = "unknown"
    if message.reply_to is not None:
        data["quoted"] = msgspec.to_builtins(message.reply_to)
    if message.view_once:
        data["view_once"] = True
    if message.mentions:
        data["mentions"] = list(message.mentions)
    return kind, text, data


def record_text(text: str | None) -> str | None:
    return text[:RECORD_TEXT_CHARS] if text is not None else None
