"""Answers of the message routes (the request bodies are `gateway._requests`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from .._requests import MessageType
from ._schemas import Answer


class MessageAccepted(Answer):
    message_id: str
    status: Literal["queued"]
    to: str
    type: MessageType
    modifiers: list[Literal["quoted", "viewOnce", "mentions"]] = []
    send_at: str | None = None


class BatchItemError(Answer):
    code: str
    message: str
    details: list[dict[str, str]] = []


class BatchItem(Answer):
    index: int
    ok: bool
    message_id: str | None = None
    status: str | None = None
    to: str | None = None
    type: str | None = None
    error: BatchItemError | None = None


class BatchAccepted(Answer):
    accepted: int
    rejected: int
    results: list[BatchItem]


class StatusChange(Answer):
    status: str
    at: str
    reason: str | None = None


MessageStatusName = Literal["queued", "sending", "sent", "delivered", "read", "failed", "cancelled"]


class MessageSummary(Answer):
    """A message without its status history (list, cancel and reschedule answers)."""

    message_id: str
    session_id: str
    to: str
    type: str
    status: MessageStatusName
    status_reason: str | None
    whatsapp_id: str | None
    send_at: str | None
    created_at: str
    updated_at: str


class MessageRemoved(MessageSummary):
    """The answer to DELETE /messages/:id: what was done to the message, and the message now."""

    action: Annotated[Literal["cancelled", "revoked"], Meta(description=(
        "`cancelled`: it was still queued and will never be sent; `revoked`: it was sent and is now deleted "
        "for everyone."))]


class MessageOut(MessageSummary):
    history: list[StatusChange]


class MessageList(Answer):
    data: list[MessageSummary]
    next_cursor: str | None


class QueueCancelled(Answer):
    cancelled: Annotated[int, Meta(description="How many queued messages (scheduled ones included) were cancelled.")]
