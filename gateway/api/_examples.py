"""Request examples, by body type: the OpenAPI document's, /docs', and the README's.

README.md holds `send_examples_markdown()` verbatim (a test checks it), so the
examples a reader copies from the README are the ones the document shows and
the fuzzer in CI sends.
"""

from __future__ import annotations

import json
from typing import Any, Final, NamedTuple

from .._requests import CreateSession, PairingCodeRequest, SendMessage, SendMessages, UpdateSession
from .chats import MarkRead, SetChatPresence, SetPresence, SubscribePresence
from .contacts import UpsertContact
from .groups import ChangeParticipants, CreateGroup, SetGroupPicture, UpdateGroupSettings
from .message_actions import EditMessage, React, VotePoll
from .messages import RescheduleMessage
from .tokens import CreateToken


class Example(NamedTuple):
    summary: str
    value: dict[str, Any]


_TO: Final = "1234567890"

SEND_MESSAGE: Final[dict[str, Example]] = {
    "text": Example("Text", {"to": _TO, "text": "Hello from the API!"}),
    "image": Example("Image by URL, with a caption",
                     {"to": _TO, "image": {"url": "https://example.com/photo.jpg", "caption": "Optional"}}),
    "video": Example("Video as base64 data", {"to": _TO, "video": {"data": "<base64>", "caption": "clip"}}),
    "voiceNote": Example("Voice note", {"to": _TO, "audio": {"url": "https://example.com/note.ogg", "ptt": True}}),
    "document": Example("Document", {"to": _TO, "document": {"url": "https://example.com/a.pdf",
                                                             "filename": "a.pdf"}}),
    "sticker": Example("Sticker (WebP)", {"to": _TO, "sticker": {"url": "https://example.com/s.webp"}}),
    "location": Example("Location", {"to": _TO, "location": {"latitude": 37.7749, "longitude": -122.4194,
                                                             "name": "San Francisco"}}),
    "contact": Example("Contact card", {"to": _TO, "contact": {"fullName": "John Doe",
                                                               "phoneNumber": "+1234567890"}}),
    "poll": Example("Poll", {"to": _TO, "poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"],
                                                 "selectableCount": 1}}),
    "reply": Example("Reply quoting a message",
                     {"to": _TO, "text": "Agreed", "replyTo": "<messageId or WhatsApp id>"}),
    "viewOnce": Example("View-once image", {"to": _TO, "image": {"url": "https://example.com/photo.jpg"},
                                            "viewOnce": True}),
    "mentions": Example("Group text with a mention", {"to": "120363041234567890@g.us", "text": "hi @15551234567",
                                                      "mentions": ["+15551234567"]}),
    "scheduled": Example("Scheduled text", {"to": _TO, "text": "Good morning", "sendAt": "2026-12-01T09:00:00Z"}),
}

EXAMPLES: Final[dict[type, dict[str, Example]]] = {
    SendMessage: SEND_MESSAGE,
    SendMessages: {"batch": Example("Two messages in one request", {"messages": [
        SEND_MESSAGE["text"].value, {"to": "+44 20 7946 0958", "text": "Hello too"}]})},
    CreateSession: {
        "minimal": Example("Just a name", {"name": "sales"}),
        "webhook": Example("With a webhook and its own send limit", {
            "name": "support", "webhookUrl": "https://example.com/hooks/whatsapp",
            "webhookEvents": ["message.received", "message.status"], "sendLimit": "20/minute"}),
        "proxy": Example("Through a SOCKS5 proxy",
                         {"name": "eu", "proxyUrl": "socks5://user:password@10.0.0.2:1080"}),
    },
    UpdateSession: {
        "rename": Example("Rename", {"name": "sales EU"}),
        "webhookOff": Example("Pause webhooks", {"webhookEnabled": False}),
        "proxyOff": Example("Connect directly (or through GATEWAY_PROXY_URL)", {"proxyUrl": None}),
    },
    PairingCodeRequest: {"phone": Example("Link by phone number instead of a QR", {"phoneNumber": "+1234567890"})},
    RescheduleMessage: {"later": Example("Move a scheduled message", {"sendAt": "2026-12-01T09:00:00Z"})},
    UpsertContact: {"contact": Example("Name a contact", {"phoneNumber": "+1234567890", "name": "John Doe"})},
    CreateGroup: {"group": Example("A group of two", {"name": "Launch team",
                                                      "participants": ["+15551234567", "+15557654321"]})},
    ChangeParticipants: {"people": Example("People by number", {"participants": ["+15551234567"]})},
    UpdateGroupSettings: {
        "info": Example("Rename and describe", {"name": "Launch team", "description": "Plans for the Q3 launch"}),
        "announce": Example("Only admins send, only admins edit", {"announce": True, "locked": True}),
    },
    SetGroupPicture: {"url": Example("A JPEG by URL", {"url": "https://example.com/team.jpg"}),
                      "base64": Example("A JPEG as base64", {"base64": "/9j/4AAQSkZJRgABAQAAAQABAAD/2Q=="})},
    SetPresence: {"online": Example("Show the account online", {"available": True})},
    SubscribePresence: {"contact": Example("Follow a contact's presence", {"to": _TO})},
    SetChatPresence: {"typing": Example("Typing", {"state": "composing"}),
                      "recording": Example("Recording a voice note", {"state": "recording"})},
    MarkRead: {"direct": Example("A received message, by its WhatsApp id", {"messageId": "3EB0C767D26A1D8A1B2C"}),
               "group": Example("In a group, with its author", {"messageId": "3EB0C767D26A1D8A1B2C",
                                                                  "sender": "+15551234567"})},
    React: {"own": Example("React to a message, by its messageId", {"emoji": "👍"}),
            "remove": Example("Remove the reaction", {"emoji": ""}),
            "received": Example("React to a received message, by its WhatsApp id",
                                {"emoji": "❤️", "chat": "+15551234567"})},
    EditMessage: {"fix": Example("Fix a typo", {"text": "Hello from the API (edited)"})},
    VotePoll: {"own": Example("Vote on a poll", {"options": ["Pizza"]}),
               "received": Example("Vote on a received poll", {"options": ["Pizza", "Sushi"],
                                                               "chat": "+15551234567"})},
    CreateToken: {"ci": Example("A token for CI that expires in 90 days", {"name": "ci", "expiresInDays": 90}),
                  "crm": Example("A token that does not expire", {"name": "crm"})},
}


def openapi_examples(body: type) -> dict[str, dict[str, Any]]:
    """The `examples` map of a request body's media type, or {} for a body without any."""
    return {name: {"summary": e.summary, "value": e.value} for name, e in EXAMPLES.get(body, {}).items()}


def send_examples_markdown() -> str:
    """The README's block of send-message examples (README.md holds exactly this text)."""
    lines = [json.dumps(e.value, ensure_ascii=False) for e in SEND_MESSAGE.values()]
    return "\n".join(["```json", *lines, "```"])
