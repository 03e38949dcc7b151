"""Event names the gateway emits (webhooks and the live stream), and each one's payload schema."""

from __future__ import annotations

from typing import Final

from ._event_schemas import EVENT_PAYLOADS, EventPayload, MessageData, Quoted

__all__ = ["EVENT_PAYLOADS", "EVENT_TYPES", "EventPayload", "MessageData", "Quoted"]

EVENT_TYPES: Final[tuple[str, ...]] = (
    "message.received",
    "message.sent",
    "message.status",
    "session.connected",
    "session.disconnected",
    "session.qr",
    "presence.update",
    "message.reaction",
    "message.edited",
    "message.revoked",
    "poll.vote",
    "group.joined",
    "group.left",
    "group.participants",
    "group.updated",
)
