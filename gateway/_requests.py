"""What callers ask for: every request body of the public API, as msgspec types.

Requests inherit `Request`: unknown fields are refused, so a typo is a 422
rather than a silently ignored setting. Limits live in the types, and the
OpenAPI document is generated from them. The services take these types
directly; the answers are the HTTP edge's (`gateway/api/`).

The send-message payload: twelve types, one shape. A message has `to` and
exactly one content key: `text`, `image`, `video`, `audio`, `document`,
`sticker`, `location`, `contact` or `poll`. The other three seed types are
modifiers on content: `replyTo` (quoted), `viewOnce` and `mentions`. The type
is detected from which content key is present. Limits follow WhatsApp's: text
4096 characters, captions 1024, polls 2 to 12 distinct options of at most 100
characters, media sizes per type (enforced after decoding or fetching, in
`gateway/_media.py`).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ._patterns import (
    HTTP_URL_PATTERN,
    MIME_TYPE_PATTERN,
    PERSON_PATTERN,
    PHONE_PATTERN,
    PROXY_URL_PATTERN,
    RECIPIENT_PATTERN,
    SEND_LIMIT_PATTERN,
)
from .events import EVENT_TYPES

# What a pattern means, for error messages (msgspec only says which regex failed).
PATTERN_MEANINGS: Final = {
    HTTP_URL_PATTERN: "must be an http:// or https:// URL",
    PHONE_PATTERN: "must be 7 to 15 digits with an optional leading +; spaces, dashes, dots and "
                   "parentheses are ignored",
    RECIPIENT_PATTERN: "must be a phone number, a user JID (digits@s.whatsapp.net) or a group JID (...@g.us)",
    PERSON_PATTERN: "must be a person: a phone number or a user JID (digits@s.whatsapp.net), not a group",
    SEND_LIMIT_PATTERN: "must be COUNT/UNIT such as 20/minute: UNIT second (COUNT 1 to 1000), minute "
                        "(1 to 60000), hour or day (1 to 100000)",
    MIME_TYPE_PATTERN: "must be a MIME type such as image/png",
}


WHOLE_MARK: Final = "x-whole-number"  # the OpenAPI document states such a float as `"type": "integer"`


def whole_number(*, ge: int, le: int, description: str) -> object:
    """An integer field as JSON has it: `3` and `3.0` are the same number (JSON Schema's `integer`
    says so too), which msgspec's `int` refuses. Decoded as a float within the bounds; the service
    turns it into an int with `whole`, refusing a fraction."""
    return Annotated[float, Meta(ge=ge, le=le, description=description, extra_json_schema={WHOLE_MARK: True})]


def whole(value: float, path: str) -> int:
    """`value` (from a `whole_number` field) as an int, or the ValidationError naming `path`."""
    from .errors import ValidationError

    if not float(value).is_integer():
        raise ValidationError.at(path, "must be a whole number")
    return int(value)


class Request(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Base of every request body."""



SessionName = Annotated[str, Meta(min_length=1, max_length=100, description="A label for people.")]
PhoneNumber = Annotated[str, Meta(
    min_length=7, max_length=32, pattern=PHONE_PATTERN,
    description="7 to 15 digits with an optional leading +; spaces, dashes, dots and parentheses are ignored.",
    examples=["+1234567890"])]
WebhookUrl = Annotated[str, Meta(max_length=2048, pattern=HTTP_URL_PATTERN,
                                 description="http(s) URL that receives events.", examples=["https://example.com/hooks/whatsapp"])]
EventName = Literal[EVENT_TYPES]  # type: ignore[valid-type]
WebhookEvents = Annotated[list[EventName], Meta(
    max_length=len(EVENT_TYPES),
    description="Events to deliver. Empty means every event.")]
SendLimit = Annotated[str, Meta(max_length=32, pattern=SEND_LIMIT_PATTERN, examples=["20/minute"], description=(
    "This session's own send rate, COUNT/UNIT with UNIT second (COUNT at most 1000), minute (at most "
    "60000), hour or day (at most 100000); null uses GATEWAY_LIMIT_SEND. Settable with the personal "
    "access token only."))]


MAX_PROXY_URL: Final = 2048
# The pattern is documented, not decoded: `_control.parse_proxy_url` checks the whole URL and says what is wrong.
ProxyUrl = Annotated[str, Meta(
    max_length=MAX_PROXY_URL, extra_json_schema={"pattern": PROXY_URL_PATTERN},
    examples=["socks5://user:secret@10.0.0.2:1080"], description=(
        "An HTTP, HTTPS or SOCKS5 proxy the session connects to WhatsApp through: "
        "scheme://[user[:password]@]host:port. Never echoed with its password. null uses GATEWAY_PROXY_URL (if "
        "set). Settable with the personal access token only."))]


class CreateSession(Request):
    name: SessionName
    phone_number: PhoneNumber | None = None
    webhook_url: WebhookUrl | None = None
    webhook_events: WebhookEvents = []
    webhook_enabled: bool = True
    send_limit: SendLimit | None = None
    proxy_url: ProxyUrl | None = None


class UpdateSession(Request):
    """Fields left out stay as they are; `null` clears an optional field."""

    name: SessionName | UnsetType = UNSET
    phone_number: PhoneNumber | None | UnsetType = UNSET
    webhook_url: WebhookUrl | None | UnsetType = UNSET
    webhook_events: WebhookEvents | UnsetType = UNSET
    webhook_enabled: bool | UnsetType = UNSET
    send_limit: SendLimit | None | UnsetType = UNSET
    proxy_url: ProxyUrl | None | UnsetType = UNSET


class PairingCodeRequest(Request):
    phone_number: PhoneNumber



MAX_TEXT: Final = 4096
MAX_CAPTION: Final = 1024
MAX_POLL_OPTIONS: Final = 12
MAX_MENTIONS: Final = 256
MAX_BATCH: Final = 100

Recipient = Annotated[str, Meta(
    min_length=7, max_length=64, pattern=RECIPIENT_PATTERN,
    description="A phone number (7 to 15 digits, optional leading +, spaces, dashes, dots and parentheses "
                "ignored), a user JID (`15551234567@s.whatsapp.net`) or a group JID (`...@g.us`).",
    examples=["1234567890", "+1234567890", "120363041234567890@g.us"])]
Person = Annotated[str, Meta(
    min_length=7, max_length=64, pattern=PERSON_PATTERN,
    description="A phone number or a user JID (`15551234567@s.whatsapp.net`).")]
HttpUrl = Annotated[str, Meta(max_length=2048, pattern=HTTP_URL_PATTERN,
                              description="http(s) URL the gateway downloads the media from.")]
Base64 = Annotated[str, Meta(description="The media itself, base64-encoded (standard alphabet). "
                                         "Use either `url` or `data`.",
                              extra_json_schema={"contentEncoding": "base64"})]
Caption = Annotated[str, Meta(max_length=MAX_CAPTION)]
MimeType = Annotated[str, Meta(max_length=127, pattern=MIME_TYPE_PATTERN)]


class Media(Request):
    url: HttpUrl | None = None
    data: Base64 | None = None
    mimetype: MimeType | None = None


class Image(Media):
    caption: Caption | None = None


class Video(Media):
    caption: Caption | None = None


class Audio(Media):
    ptt: Annotated[bool, Meta(description="Send as a voice note.")] = False


class Document(Media):
    filename: Annotated[str, Meta(min_length=1, max_length=255)] | None = None
    caption: Caption | None = None


class Sticker(Media):
    pass


class Location(Request):
    latitude: Annotated[float, Meta(ge=-90, le=90)]
    longitude: Annotated[float, Meta(ge=-180, le=180)]
    name: Annotated[str, Meta(max_length=1000)] | None = None
    address: Annotated[str, Meta(max_length=1000)] | None = None


class ContactCard(Request):
    full_name: Annotated[str, Meta(min_length=1, max_length=256)]
    phone_number: PhoneNumber


class Poll(Request):
    question: Annotated[str, Meta(min_length=1, max_length=255)]
    options: Annotated[list[Annotated[str, Meta(min_length=1, max_length=100)]],
                       Meta(min_length=2, max_length=MAX_POLL_OPTIONS, extra_json_schema={"uniqueItems": True},
                            description="Distinct options (compared ignoring case and surrounding spaces).")]
    selectable_count: whole_number(ge=1, le=MAX_POLL_OPTIONS,  # type: ignore[valid-type]
                                   description="How many options a voter may pick (1 = single choice).") = 1


CONTENT_KEYS: Final = ("text", "image", "video", "audio", "document", "sticker", "location", "contact", "poll")
MessageType = Literal["text", "image", "video", "audio", "document", "sticker", "location", "contact", "poll"]


class SendMessage(Request):
    """One message. Exactly one content key; `replyTo`, `viewOnce` and `mentions` modify it."""

    to: Recipient
    text: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)] | None = None
    image: Image | None = None
    video: Video | None = None
    audio: Audio | None = None
    document: Document | None = None
    sticker: Sticker | None = None
    location: Location | None = None
    contact: ContactCard | None = None
    poll: Poll | None = None
    reply_to: Annotated[str, Meta(min_length=1, max_length=128, description=(
        "Quote a message: a `messageId` this API returned, or a WhatsApp message id of a message in "
        "the same chat (e.g. from a message.received webhook)."))] | None = None
    view_once: Annotated[bool, Meta(description="View-once media (image, video or audio).")] = False
    mentions: Annotated[list[Person], Meta(max_length=MAX_MENTIONS, description=(
        "People to @mention (phone numbers or JIDs); put @<digits> in the text where they appear."))] = []
    send_at: Annotated[str, Meta(description=(
        "Schedule: an ISO 8601 time with a timezone (e.g. 2026-12-01T09:00:00Z), at most 30 days ahead. "
        "Omit to send now."))] | None = None


def _present(key: str) -> dict[str, object]:
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


# Rules between fields that the types cannot carry, stated in the OpenAPI document
# (`gateway/api/_openapi.py` adds them to each type's schema) and enforced in
# `_compose.draft`: exactly one content key, exactly one of url or data, and
# viewOnce only on image, video or audio.
SCHEMA_RULES: Final[dict[type, dict[str, object]]] = {
    SendMessage: {"oneOf": [_present(k) for k in CONTENT_KEYS],
                  "if": {"required": ["viewOnce"], "properties": {"viewOnce": {"const": True}}},
                  "then": {"anyOf": [_present(k) for k in ("image", "video", "audio")]}},
    **{kind: {"oneOf": [_present("url"), _present("data")]} for kind in (Image, Video, Audio, Document, Sticker)},
}


class SendMessages(Request):
    messages: Annotated[list[SendMessage], Meta(min_length=1, max_length=MAX_BATCH)]


class SendMessagesRaw(Request):
    """How a batch is decoded: items one by one, so one bad item does not sink the rest."""

    messages: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_BATCH)]
