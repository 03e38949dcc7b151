"""Event names the gateway emits (webhooks and the live stream)."""

from __future__ import annotations

from typing import Final

EVENT_TYPES: Final[tuple[str, ...]] = (
    "message.received",
    "message.sent",
    "message.status",
    "session.connected",
    "session.disconnected",
    "session.qr",
    "presence.update",
)
