"""What a session sends: transport-neutral outbound message content.

The HTTP layer turns an API payload into an `OutboundMessage`; each transport
turns that into its wire form (neonize protobufs, simulator JSON). Media is
already fetched and checked when it gets here: transports get bytes, never URLs.
"""

from __future__ import annotations

import shutil
from typing import Final, Literal

import msgspec

# The host tools a media kind needs with the real transport (duration, thumbnail, conversion).
MEDIA_TOOLS: Final[dict[str, tuple[str, ...]]] = {"video": ("ffmpeg", "ffprobe"), "audio": ("ffprobe",)}


def missing_tools(*tools: str) -> list[str]:
    """Which of `tools` are not installed on this host (the one place that asks)."""
    return [t for t in tools if shutil.which(t) is None]


def missing_media_tools(kind: str) -> list[str]:
    """The tools `kind` needs (`MEDIA_TOOLS`) that are missing here."""
    return missing_tools(*MEDIA_TOOLS.get(kind, ()))


class _Content(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class TextContent(_Content, tag="text"):
    body: str


MediaKind = Literal["image", "video", "audio", "document", "sticker"]


class MediaContent(_Content, tag="media"):
    kind: MediaKind
    data: bytes
    mimetype: str
    caption: str | None = None
    filename: str | None = None
    # audio only: send as a voice note (push-to-talk)
    ptt: bool = False


class LocationContent(_Content, tag="location"):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class ContactContent(_Content, tag="contact"):
    full_name: str
    phone_number: str  # E.164, "+" then digits


class PollContent(_Content, tag="poll"):
    question: str
    options: list[str]
    selectable_count: int = 1


Content = TextContent | MediaContent | LocationContent | ContactContent | PollContent


class ReplyTo(msgspec.Struct, frozen=True, kw_only=True):
    """The message being quoted."""

    message_id: str  # the WhatsApp id of the quoted message
    chat: str  # chat JID the quoted message belongs to
    sender: str | None = None  # JID of the quoted message's author (groups)
    text: str | None = None  # quoted text shown in the bubble, when known


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    to: str  # a user JID (digits@s.whatsapp.net) or a group JID (...@g.us)
    content: Content
    reply_to: ReplyTo | None = None
    view_once: bool = False
    mentions: list[str] = []  # user JIDs
    # The gateway's id for this message. A transport that can choose the WhatsApp id
    # (the simulator) uses it, so a resend after a crash is recognised as the same
    # message; neonize 0.5.2 cannot, and ignores it.
    id_hint: str | None = None


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str  # the WhatsApp message id
    timestamp_ms: int
