"""Answer bodies of the public API, as msgspec types (requests are `gateway._requests`).

The OpenAPI document is generated from them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta


class Answer(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every answer body. Nulls are written out, so clients see every field."""


def fields_of(answer: Answer) -> dict[str, object]:
    """An answer's fields by name, to build a wider answer from it (`Wider(**fields_of(a), extra=...)`)."""
    return {f: getattr(answer, f) for f in answer.__struct_fields__}


SessionStateName = Literal["DISCONNECTED", "CONNECTING", "CONNECTED", "LOGGED_OUT", "FAILED"]


class SessionProxy(Answer):
    """The proxy a session connects to WhatsApp through."""

    url: Annotated[str, Meta(description="The proxy URL, its password replaced by `***`.",
                             examples=["socks5://user:***@10.0.0.2:1080"])]
    source: Annotated[Literal["session", "default"], Meta(description=(
        "`session`: the session's own `proxyUrl`; `default`: GATEWAY_PROXY_URL, as it has none."))]


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
    proxy_url: Annotated[str | None, Meta(description=(
        "The session's own proxy, its password replaced by `***`; null: none of its own."))]
    proxy: Annotated[SessionProxy | None, Meta(description=(
        "What the session connects to WhatsApp through: its own proxy, else GATEWAY_PROXY_URL; null: directly."))]
    created_at: str
    updated_at: str
    queued: Annotated[int | None, Meta(description=(
        "Messages waiting to be sent, scheduled ones included (status `queued`). Counted by GET of a session "
        "and by the list (one query per page); null in the other answers."))]
    scheduled: Annotated[int | None, Meta(description=(
        "Of the queued messages, those whose `sendAt` is still ahead. Counted as `queued` is."))]


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


class PairingCodeAnswer(Answer):
    code: Annotated[str, Meta(description="8-character code to enter in WhatsApp → Linked devices → "
                                          "Link with phone number.", examples=["ABCD1234"])]


class SessionList(Answer):
    data: list[Session]
    next_cursor: str | None


class Health(Answer):
    status: str
    checks: dict[str, str] = {}
