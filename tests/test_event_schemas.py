"""Event payloads: transport data mapped once into the public Structs, camelCase at every depth, documented.

Pure: no trio, no network. `public_problems` and `validate_event` are shared with the transport and
end-to-end tests, which check real events with them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from actors import (
    ChatPresence, ContactContent, LocationContent, MediaContent, MessageReceived, OutboundMessage, PollContent,
    Presence, ReplyTo, TextContent,
)
from bench.simulator._model import describe
from gateway._event_schemas import events_markdown, message_data, message_received_payload, presence_payload
from gateway.events import EVENT_PAYLOADS, EVENT_TYPES

JA, JB = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net"


def snake_keys(value: Any, path: str = "$") -> list[str]:
    """Paths of every mapping key, at any depth, that is not camelCase (has an underscore)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key:
                found.append(f"{path}.{key}")
            found += snake_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += snake_keys(item, f"{path}[{i}]")
    return found


@functools.cache
def _document() -> dict[str, Any]:
    from gateway.api._openapi import build_openapi
    from gateway.app import build_api

    return build_openapi(build_api().routes, version="test", server_url="/")


def validate_event(name: str, data: dict[str, Any], *, envelope: dict[str, Any] | None = None) -> None:
    """`data` (and the whole webhook body, if given) against the OpenAPI document's schema for `name`."""
    doc = _document()
    root = {"components": doc["components"]}
    schema = {"$ref": f"#/components/schemas/{EVENT_PAYLOADS[name].__name__}"}
    jsonschema.validate(data, root | schema, cls=jsonschema.Draft202012Validator)
    if envelope is not None:
        body = doc["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]["schema"]
        jsonschema.validate(envelope, root | body, cls=jsonschema.Draft202012Validator)
    assert not snake_keys(data), snake_keys(data)
    msgspec.convert(data, EVENT_PAYLOADS[name])  # and the Struct reads it back


def public(event: MessageReceived, **kw: Any) -> dict[str, Any]:
    data = msgspec.to_builtins(message_received_payload(event, **kw))
    validate_event("message.received", data)
    return data


def _received(message: OutboundMessage) -> MessageReceived:
    kind, text, data = describe(message)
    return MessageReceived(message_id="3EB0AA", chat=JA, sender=JA, sender_phone="+15550000001", push_name="Ann",
                           timestamp_ms=1_700_000_000_000, type=kind, text=text, data=data)


_SENT = {
    "text": OutboundMessage(to=JB, content=TextContent(body="hello")),
    "document": OutboundMessage(to=JB, content=MediaContent(kind="document", data=b"%PDF", mimetype="application/pdf",
                                                            filename="a.pdf", caption="cv")),
    "audio": OutboundMessage(to=JB, content=MediaContent(kind="audio", data=b"OggS", mimetype="audio/ogg", ptt=True)),
    "location": OutboundMessage(to=JB, content=LocationContent(latitude=1.5, longitude=2.5, name="here")),
    "contact": OutboundMessage(to=JB, content=ContactContent(full_name="John Doe", phone_number="+1234567890")),
    "poll": OutboundMessage(to=JB, content=PollContent(question="Lunch?", options=["a", "b"], selectable_count=2)),
    "reply": OutboundMessage(to=JB, content=TextContent(body="re"), view_once=False, mentions=[JB],
                             reply_to=ReplyTo(message_id="3EB0QQ", chat=JB, sender=JB, text="orig")),
    "viewOnce": OutboundMessage(to=JB, content=MediaContent(kind="image", data=b"\xff\xd8", mimetype="image/jpeg"),
                                view_once=True),
}


@pytest.mark.parametrize("name", list(_SENT))
def test_every_simulated_message_type_maps_to_camel_case_at_every_depth(name):
    data = public(_received(_SENT[name]))
    assert {"messageId", "chat", "sender", "from", "fromLid", "senderPhone", "pushName", "isGroup", "fromMe",
            "timestampMs", "type", "text", "data", "media"} == set(data)
    assert data["from"] == data["sender"] and data["fromLid"] is None  # the simulator addresses by phone here
    assert data["media"] is None  # filled by the session's host, once it has downloaded the file


def test_the_public_fields_of_each_type():
    by = {name: public(_received(m))["data"] for name, m in _SENT.items()}
    assert by["text"] == {}
    assert by["document"]["fileLength"] == 4 and by["document"]["filename"] == "a.pdf"
    assert by["audio"]["ptt"] is True
    assert by["contact"]["displayName"] == "John Doe" and by["contact"]["phoneNumbers"] == ["+1234567890"]
    assert by["poll"] == {"question": "Lunch?", "options": ["a", "b"], "selectableCount": 2}
    assert by["reply"]["quoted"] == {"messageId": "3EB0QQ", "chat": JB, "sender": JB, "text": "orig"}
    assert by["reply"]["mentions"] == [JB]
    assert by["viewOnce"]["viewOnce"] is True


def test_a_quote_without_its_author_is_filled_only_when_the_gateway_knows_it():
    anonymous = OutboundMessage(to=JB, content=TextContent(body="re"),
                                reply_to=ReplyTo(message_id="3EB0QQ", chat=JB))
    assert public(_received(anonymous))["data"]["quoted"]["sender"] is None
    assert public(_received(anonymous), quoted_sender=JA)["data"]["quoted"]["sender"] == JA
    named = _SENT["reply"]  # a transport's own answer wins
    assert public(_received(named), quoted_sender=JA)["data"]["quoted"]["sender"] == JB


def test_unknown_and_mistyped_transport_fields_never_lose_the_message():
    event = MessageReceived(message_id="x", chat=JA, sender=JA, timestamp_ms=1, type="image",
                            data={"mimetype": "image/png", "file_length": "many", "brand_new_field": 1,
                                  "quoted": {"message_id": "q", "extra_key": 2}})
    data = public(event)["data"]
    assert data == {"mimetype": "image/png", "quoted": {"messageId": "q", "chat": None, "sender": None,
                                                        "text": None}}
    assert message_data({}) == message_data({"only_unknown": True})


def test_presence_payloads():
    online = msgspec.to_builtins(presence_payload(Presence(jid=JA, available=True, last_seen_ms=5)))
    typing = msgspec.to_builtins(presence_payload(ChatPresence(chat=JA, sender=JA, state="recording")))
    assert online == {"jid": JA, "available": True, "lastSeenMs": 5}
    assert typing == {"chat": JA, "sender": JA, "state": "recording"}
    for data in (online, typing):
        validate_event("presence.update", data)


def test_every_event_name_has_a_payload_schema():
    assert set(EVENT_TYPES) <= set(EVENT_PAYLOADS)
    _, components = msgspec.json.schema_components(list(EVENT_PAYLOADS.values()))
    for typ in EVENT_PAYLOADS.values():
        assert not snake_keys(components[typ.__name__].get("properties", {})), typ


def test_the_readme_lists_every_event_with_its_fields():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    text = events_markdown()
    assert text in readme  # the README's event tables are the Structs', word for word
    for name in EVENT_PAYLOADS:
        assert f"**`{name}`**" in text
