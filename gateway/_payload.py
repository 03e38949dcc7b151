"""What is persisted for a queued message: everything its sender needs to build it later.

The payload is written once, when the message is accepted, and read when the
session's sender claims it (`gateway._outbound`) or when a later message
quotes it. Media given by URL is downloaded only then, so a queued message
holds a reference, not the bytes.
"""

from __future__ import annotations

from typing import Final

import msgspec

from actors import Content, MediaContent, PollContent, ReplyTo, TextContent


class MediaRef(msgspec.Struct, frozen=True, kw_only=True):
    """Media still to be downloaded when the message is sent."""

    kind: str
    url: str
    mimetype: str | None = None
    caption: str | None = None
    filename: str | None = None
    ptt: bool = False


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    to: str
    content: Content | None = None
    media_url: MediaRef | None = None
    reply_to: ReplyTo | None = None
    view_once: bool = False
    mentions: list[str] = []


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(Payload)


def pack(payload: Payload) -> bytes:
    return _ENCODER.encode(payload)


def unpack(raw: bytes) -> Payload:
    return _DECODER.decode(raw)


def quoted_text(raw: bytes) -> str | None:
    """The text a reply shows of the message it quotes (its body or caption), if it has one."""
    try:
        content = unpack(raw).content
    except msgspec.DecodeError:
        return None
    if isinstance(content, TextContent):
        return content.body
    if isinstance(content, MediaContent):
        return content.caption
    return None


def poll_content(raw: bytes) -> PollContent | None:
    """The poll a stored message is, or None when it is not one."""
    try:
        content = unpack(raw).content
    except msgspec.DecodeError:
        return None
    return content if isinstance(content, PollContent) else None

