"""Request and answer bodies of the public API, as msgspec types.

Requests inherit `Request`: unknown fields are refused, so a typo is a 422
rather than a silently ignored setting. Limits live in the types, and the
OpenAPI document is generated from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from actors import SessionState

from ..events import EVENT_TYPES


class Request(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Base of every request body."""


class Answer(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every answer body. Nulls are written out, so clients see every field."""


SessionName = Annotated[str, Meta(min_length=1, max_length=100, description="A label for people.")]
PhoneNumber = Annotated[str, Meta(
    min_length=7, max_length=32,
    description="7 to 15 digits with an optional leading +; spaces, dashes, dots and parentheses are ignored.",
    examples=["+1234567890"])]
WebhookUrl = Annotated[str, Meta(max_length=2048, description="http(s) URL that receives events.",
                                 examples=["https://example.com/hooks/whatsapp"])]
EventName = Literal[EVENT_TYPES]  # type: ignore[valid-type]
WebhookEvents = Annotated[list[EventName], Meta(
    max_length=len(EVENT_TYPES),
    description="Events to deliver. Empty means every event.")]
SendLimit = Annotated[str, Meta(max_length=32, examples=["20/minute"], description=(
    "This session's own send rate, COUNT/PERIOD (PERIOD second, minute or hour); null uses "
    "GATEWAY_LIMIT_SEND. Settable with the personal access token only."))]
SessionStateName = Literal["DISCONNECTED", "CONNECTING", "CONNECTED", "LOGGED_OUT", "FAILED"]


class CreateSession(Request):
    name: SessionName
    phone_number: PhoneNumber | None = None
    webhook_url: WebhookUrl | None = None
    webhook_events: WebhookEvents = []
    webhook_enabled: bool = True
    send_limit: SendLimit | None = None


class UpdateSession(Request):
    """Fields left out stay as they are; `null` clears an optional field."""

    name: SessionName | UnsetType = UNSET
    phone_number: PhoneNumber | None | UnsetType = UNSET
    webhook_url: WebhookUrl | None | UnsetType = UNSET
    webhook_events: WebhookEvents | UnsetType = UNSET
    webhook_enabled: bool | UnsetType = UNSET
    send_limit: SendLimit | None | UnsetType = UNSET


class Session(Answer):
    id: str
    name: str
    phone_number: str | None
    status: SessionStateName
    status_reason: str | None
    webhook_url: str | None
    webhook_events: list[str]
    webhook_enabled: bool
    webhook_secret: Annotated[str | None, Meta(description=(
        "The Standard Webhooks signing secret (whsec_...). Shown to the personal access token only; "
        "null for session keys."))]
    send_limit: str | None
    created_at: str
    updated_at: str


class SessionWithKey(Session):
    api_key: Annotated[str, Meta(description="The session API key. Shown only in this answer: store it now.")]


class SessionConnecting(Session):
    qr: Annotated[str | None, Meta(
        description="The pairing QR code string, when it arrived within GATEWAY_QR_WAIT; "
                    "else poll GET .../qrcode.")] = None


class QrCode(Answer):
    qr: Annotated[str, Meta(description="Render this string as a QR code and scan it in WhatsApp "
                                        "(Linked devices). It rotates about every 20 s.")]
    status: SessionStateName


class PairingCodeRequest(Request):
    phone_number: PhoneNumber


class PairingCodeAnswer(Answer):
    code: Annotated[str, Meta(description="8-character code to enter in WhatsApp → Linked devices → "
                                          "Link with phone number.", examples=["ABCD1234"])]


class SessionList(Answer):
    data: list[Session]
    next_cursor: str | None


class Health(Answer):
    status: str
    checks: dict[str, str] = {}
