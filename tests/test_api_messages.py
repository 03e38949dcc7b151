"""send-message, send-messages and messages/:id through the HTTP layer, on the fake transport.

The simulator end-to-end tests cover the same flows over a real network model.
"""

from __future__ import annotations

import base64
import datetime as dt

import msgspec
import pytest
import trio

from actors import ContactContent, LocationContent, MediaContent, PollContent, TextContent
from gateway import Config, create_app
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class Env:
    def __init__(self, app, factory, account, session):
        self.app, self.factory, self.account, self.session = app, factory, account, session
        self.client = app.test_client()
        self.gateway = running_gateway(app)

    @property
    def key(self):
        return bearer(self.session["apiKey"])

    @property
    def transport(self):
        return self.factory.transports[self.session["id"]]

    async def send(self, body, headers=None, path="/api/v1/send-message"):
        return await self.client.post(path, json=body, headers=self.key | (headers or {}))

    async def wait_status(self, message_id, status, timeout=10):
        with trio.fail_after(timeout):
            while True:
                r = await self.client.get(f"/api/v1/messages/{message_id}", headers=self.key)
                got = await r.get_json()
                if got["status"] == status:
                    return got
                await trio.sleep(0.01)


@pytest.fixture
async def env(tmp_path):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", send_min_gap=0.0,
                    send_jitter=0.0, limit_send="1000/minute", limit_api="1000/minute")
    factory = FakeFactory(["connect"])
    app = create_app(config, transport_factory=factory)
    async with app.test_app():
        account = await make_account(running_gateway(app))
        client = app.test_client()
        session = await create(client, account, phoneNumber="+15550009999")
        await client.post(f"{BASE}/{session['id']}/connect", headers=account.headers)
        e = Env(app, factory, account, session)
        with trio.fail_after(5):
            while (await (await client.get(f"{BASE}/{session['id']}", headers=account.headers)).get_json())[
                    "status"] != "CONNECTED":
                await trio.sleep(0.01)
        yield e


async def test_seed_example_text(env):
    # the seed's JavaScript example body, verbatim
    r = await env.client.post("/api/v1/send-message", data=msgspec.json.encode(
        {"to": "1234567890", "text": "Hello from the API!"}),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {env.session['apiKey']}"})
    body = await r.get_json()
    assert r.status_code == 202
    assert set(body) >= {"messageId", "status", "to", "type"}
    assert body["status"] == "queued" and body["type"] == "text" and body["to"] == "1234567890@s.whatsapp.net"
    assert r.headers["X-RateLimit-Limit"] == "1000"
    got = await env.wait_status(body["messageId"], "sent")
    assert got["whatsappId"] == "WA000001"
    assert [h["status"] for h in got["history"]] == ["queued", "sending", "sent"]
    sent = env.transport.sent[0]
    assert sent.to == "1234567890@s.whatsapp.net" and sent.content == TextContent(body="Hello from the API!")
    assert sent.id_hint == body["messageId"]


async def test_receipts_move_status_forward_only(env):
    with env.gateway.bus.subscribe(env.session["id"]) as sub:
        mid = (await (await env.send({"to": "+1234567890", "text": "hi"})).get_json())["messageId"]
        got = await env.wait_status(mid, "sent")
        await env.transport.receipt([got["whatsappId"]], "delivered")
        await env.wait_status(mid, "delivered")
        await env.transport.receipt([got["whatsappId"]], "read")
        await env.wait_status(mid, "read")
        await env.transport.receipt([got["whatsappId"]], "delivered")  # late: ignored
        await trio.sleep(0.2)
        final = await env.wait_status(mid, "read")
        assert [h["status"] for h in final["history"]] == ["queued", "sending", "sent", "delivered", "read"]
        events = []
        while True:
            try:
                events.append(sub.receive.receive_nowait())
            except trio.WouldBlock:
                break
        assert [(e.event, e.data["status"]) for e in events] == [
            ("message.sent", "sent"), ("message.status", "delivered"), ("message.status", "read")]


@pytest.mark.parametrize("body,kind,check", [
    ({"image": {"data": base64.b64encode(PNG).decode(), "caption": "Optional"}}, "image",
     lambda m: isinstance(m.content, MediaContent) and m.content.mimetype == "image/png"
     and m.content.caption == "Optional" and m.content.data == PNG),
    ({"location": {"latitude": 37.7749, "longitude": -122.4194, "name": "San Francisco"}}, "location",
     lambda m: m.content == LocationContent(latitude=37.7749, longitude=-122.4194, name="San Francisco")),
    ({"contact": {"fullName": "John Doe", "phoneNumber": "+1234567890"}}, "contact",
     lambda m: m.content == ContactContent(full_name="John Doe", phone_number="+1234567890")),
    ({"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"], "selectableCount": 2}}, "poll",
     lambda m: m.content == PollContent(question="Lunch?", options=["Pizza", "Sushi"], selectable_count=2)),
    ({"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"], "selectableCount": 2.0}}, "poll",
     lambda m: m.content == PollContent(question="Lunch?", options=["Pizza", "Sushi"], selectable_count=2)
     and type(m.content.selectable_count) is int),
    ({"document": {"data": base64.b64encode(b"%PDF-1.4 x").decode(), "filename": "a.pdf"}}, "document",
     lambda m: m.content.mimetype == "application/pdf" and m.content.filename == "a.pdf"),
    ({"sticker": {"data": base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode()}}, "sticker",
     lambda m: m.content.kind == "sticker"),
    ({"audio": {"data": base64.b64encode(b"OggS" + b"\x00" * 20).decode(), "ptt": True}, "viewOnce": True},
     "audio", lambda m: m.content.ptt and m.view_once),
    ({"video": {"data": base64.b64encode(b"\x00\x00\x00\x18ftypmp42").decode()}}, "video",
     lambda m: m.content.mimetype == "video/mp4"),
    ({"text": "hi @15551112222", "mentions": ["+1 555 111 2222"]}, "text",
     lambda m: m.mentions == ["15551112222@s.whatsapp.net"]),
])
async def test_every_type_reaches_the_transport(env, body, kind, check):
    r = await env.send({"to": "1234567890"} | body)
    accepted = await r.get_json()
    assert r.status_code == 202, accepted
    assert accepted["type"] == kind
    await env.wait_status(accepted["messageId"], "sent")
    assert check(env.transport.sent[-1])


async def test_quoted_reply_uses_the_whatsapp_id(env):
    first = (await (await env.send({"to": "1234567890", "text": "original"})).get_json())["messageId"]
    sent = await env.wait_status(first, "sent")
    r = await env.send({"to": "1234567890", "text": "reply", "replyTo": first})
    reply = await r.get_json()
    assert reply["modifiers"] == ["quoted"]
    await env.wait_status(reply["messageId"], "sent")
    quoted = env.transport.sent[-1].reply_to
    assert quoted.message_id == sent["whatsappId"] and quoted.text == "original"
    r = await env.send({"to": "1234567890@s.whatsapp.net", "text": "reply to theirs", "replyTo": "3EB0ABCDEF"})
    await env.wait_status((await r.get_json())["messageId"], "sent")
    assert env.transport.sent[-1].reply_to.message_id == "3EB0ABCDEF"


BAD = [
    ({"to": "1234567890"}, "$"),
    ({"to": "1234567890", "text": "a", "image": {"url": "https://example.com/a.png"}}, "$"),
    ({"to": "12", "text": "a"}, "$.to"),
    ({"to": "12345678901234567", "text": "a"}, "$.to"),
    ({"to": "abc@example.com", "text": "a"}, "$.to"),
    ({"to": "1234567890", "text": ""}, "$.text"),
    ({"to": "1234567890", "text": "x" * 4097}, "$.text"),
    ({"to": "1234567890", "text": "a", "extra": 1}, "$"),
    ({"to": "1234567890", "image": {"url": "https://e.com/a.png", "caption": "c" * 1025}}, "$.image.caption"),
    ({"to": "1234567890", "image": {"url": "ftp://e.com/a.png"}}, "$.image.url"),
    ({"to": "1234567890", "image": {"url": "http://127.0.0.1/a.png"}}, "$.image.url"),
    ({"to": "1234567890", "image": {"url": "http://169.254.169.254/a.png"}}, "$.image.url"),
    ({"to": "1234567890", "image": {}}, "$.image"),
    ({"to": "1234567890", "image": {"url": "https://e.com/a", "data": "AAAA"}}, "$.image"),
    ({"to": "1234567890", "image": {"data": "not base64!"}}, "$.image.data"),
    ({"to": "1234567890", "image": {"data": base64.b64encode(b"GIF89a....").decode()}}, "$.image.data"),
    ({"to": "1234567890", "image": {"data": base64.b64encode(b"\xff\xd8\xff" + b"0" * (5 * 1024 * 1024)).decode()}},
     "$.image.data"),
    ({"to": "1234567890", "sticker": {"data": base64.b64encode(b"RIFF0000WEBP" + b"0" * 600_000).decode()}},
     "$.sticker.data"),
    ({"to": "1234567890", "location": {"latitude": 91, "longitude": 0}}, "$.location.latitude"),
    ({"to": "1234567890", "location": {"latitude": -90.5, "longitude": 0}}, "$.location.latitude"),
    ({"to": "1234567890", "location": {"latitude": 0, "longitude": 180.1}}, "$.location.longitude"),
    ({"to": "1234567890", "location": {"latitude": 0}}, "$.location"),
    ({"to": "1234567890", "contact": {"fullName": "J", "phoneNumber": "12"}}, "$.contact.phoneNumber"),
    ({"to": "1234567890", "poll": {"question": "q", "options": ["a"]}}, "$.poll.options"),
    ({"to": "1234567890", "poll": {"question": "q", "options": [str(i) for i in range(13)]}}, "$.poll.options"),
    ({"to": "1234567890", "poll": {"question": "q", "options": ["a", "A"]}}, "$.poll.options"),
    ({"to": "1234567890", "poll": {"question": "q", "options": ["a", "b"], "selectableCount": 3}},
     "$.poll.selectableCount"),
    ({"to": "1234567890", "poll": {"question": "q", "options": ["a", "b"], "selectableCount": 0}},
     "$.poll.selectableCount"),
    ({"to": "1234567890", "text": "a", "viewOnce": True}, "$.viewOnce"),
    ({"to": "1234567890", "text": "a", "mentions": ["12"]}, "$.mentions[0]"),
    ({"to": "1234567890", "text": "a", "mentions": ["1203630@g.us"]}, "$.mentions[0]"),
    ({"to": "1234567890", "text": "a", "sendAt": "tomorrow"}, "$.sendAt"),
    ({"to": "1234567890", "text": "a", "sendAt": "2030-01-01T00:00:00"}, "$.sendAt"),
    ({"to": "1234567890", "text": "a", "sendAt": "2020-01-01T00:00:00Z"}, "$.sendAt"),
    ({"to": "1234567890", "text": "a", "sendAt": "2099-01-01T00:00:00Z"}, "$.sendAt"),
    ({"to": 1234567890, "text": "a"}, "$.to"),
]


@pytest.mark.parametrize("body,path", BAD)
async def test_bad_input_is_422_naming_the_path(env, body, path):
    r = await env.send(body)
    err = await error_of(r, 422, "VALIDATION_ERROR")
    assert err["details"][0]["path"] == path, err
    assert env.transport.sent == []


async def test_not_connected_is_409(env):
    await env.client.post(f"{BASE}/{env.session['id']}/disconnect", headers=env.key)
    await error_of(await env.send({"to": "1234567890", "text": "a"}), 409, "SESSION_DISCONNECTED")


async def test_pat_cannot_send(env):
    r = await env.client.post("/api/v1/send-message", json={"to": "1234567890", "text": "a"},
                              headers=env.account.headers)
    await error_of(r, 401, "UNAUTHORIZED")


async def test_idempotency_key(env):
    body = {"to": "1234567890", "text": "once"}
    r1 = await env.send(body, {"Idempotency-Key": "order-42"})
    r2 = await env.send(body, {"Idempotency-Key": "order-42"})
    a1, a2 = await r1.get_json(), await r2.get_json()
    assert r1.status_code == r2.status_code == 202 and a1 == a2
    assert r2.headers["Idempotent-Replayed"] == "true"
    await env.wait_status(a1["messageId"], "sent")
    await trio.sleep(0.2)
    assert len(env.transport.sent) == 1
    r3 = await env.send({"to": "1234567890", "text": "different"}, {"Idempotency-Key": "order-42"})
    await error_of(r3, 422, "IDEMPOTENCY_KEY_REUSED")
    r4 = await env.send(body, {"Idempotency-Key": "order-43"})
    assert (await r4.get_json())["messageId"] != a1["messageId"]


async def test_scheduled_message_waits_for_its_time(env):
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5)
    r = await env.send({"to": "1234567890", "text": "later", "sendAt": at.isoformat()})
    accepted = await r.get_json()
    assert accepted["sendAt"] is not None
    await trio.sleep(0.7)
    assert (await env.wait_status(accepted["messageId"], "queued"))["status"] == "queued"
    got = await env.wait_status(accepted["messageId"], "sent", timeout=10)
    sent_at = dt.datetime.fromisoformat(got["history"][-1]["at"])
    assert sent_at >= at - dt.timedelta(milliseconds=5)


async def test_batch_with_per_item_results(env):
    r = await env.send({"messages": [
        {"to": "1234567890", "text": "one"},
        {"to": "12", "text": "bad number"},
        {"to": "1234567890", "location": {"latitude": 1, "longitude": 2}},
    ]}, path="/api/v1/send-messages")
    body = await r.get_json()
    assert r.status_code == 202 and body["accepted"] == 2 and body["rejected"] == 1
    ok = [x for x in body["results"] if x["ok"]]
    bad = [x for x in body["results"] if not x["ok"]]
    assert [x["index"] for x in body["results"]] == [0, 1, 2]
    assert bad[0]["error"]["details"][0]["path"] == "$.messages[1].to"
    for item in ok:
        await env.wait_status(item["messageId"], "sent")
    r = await env.send({"messages": [{"to": "12", "text": "x"}]}, path="/api/v1/send-messages")
    await error_of(r, 422, "VALIDATION_ERROR")
    r = await env.send({"messages": [{"to": "1234567890", "text": "x"}] * 101}, path="/api/v1/send-messages")
    await error_of(r, 422, "VALIDATION_ERROR")


MESSAGE_KEYS = ("a message has `to` and exactly one of: text, image, video, audio, document, sticker, location, "
                "contact, poll (and optionally replyTo, viewOnce, mentions, sendAt)")


async def test_an_unknown_content_key_lists_the_valid_ones_alone_and_in_a_batch(env):
    gif = {"to": "+15550001111", "gif": {"url": "https://example.com/a.gif"}}
    err = await error_of(await env.send(gif), 422, "VALIDATION_ERROR")
    assert err["details"] == [{"message": f"unknown field `gif`; {MESSAGE_KEYS}", "path": "$"}]
    assert err["message"] == f"unknown field `gif`; {MESSAGE_KEYS} at $"
    r = await env.send({"messages": [{"to": "1234567890", "text": "ok"}, gif]}, path="/api/v1/send-messages")
    body = await r.get_json()
    assert r.status_code == 202 and (body["accepted"], body["rejected"]) == (1, 1), body
    assert body["results"][1]["error"]["details"] == [
        {"message": f"unknown field `gif`; {MESSAGE_KEYS}", "path": "$.messages[1]"}]
    assert body["results"][1]["error"]["message"] == f"unknown field `gif`; {MESSAGE_KEYS} at $.messages[1]"
    err = await error_of(await env.send({"to": "1234567890", "image": {"url": "https://e.com/a.png", "alt": "x"}}),
                         422, "VALIDATION_ERROR")
    assert err["details"] == [{"message": "unknown field `alt`; accepted fields: url, data, mimetype, caption",
                               "path": "$.image"}]


async def test_send_failure_is_recorded(env):
    env.transport.send_error = "recipient is not on WhatsApp"
    mid = (await (await env.send({"to": "1234567890", "text": "x"})).get_json())["messageId"]
    got = await env.wait_status(mid, "failed")
    assert got["statusReason"] == "recipient is not on WhatsApp"


async def test_queued_messages_wait_for_reconnect(env):
    at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.5)
    mid = (await (await env.send({"to": "1234567890", "text": "queued", "sendAt": at.isoformat()})).get_json())[
        "messageId"]
    t = env.transport
    t.script, t.runs = ["fail:down", "connect"], []
    t.drop("network blip")  # due while the session is down: it must wait, not fail
    actor = env.gateway.control.actor(env.session["id"])
    with trio.fail_after(5):
        while actor.state.value == "CONNECTED":
            await trio.sleep(0.001)
    await error_of(await env.send({"to": "1234567890", "text": "now"}), 409, "SESSION_DISCONNECTED")
    got = await env.wait_status(mid, "sent", timeout=30)
    assert "failed" not in [h["status"] for h in got["history"]]
    assert len(t.runs) == 2 and t.sent_at[-1] >= t.runs[-1]


async def test_get_message_of_another_session_is_404(env):
    mid = (await (await env.send({"to": "1234567890", "text": "x"})).get_json())["messageId"]
    other = await create(env.client, env.account, name="other")
    r = await env.client.get(f"/api/v1/messages/{mid}", headers=bearer(other["apiKey"]))
    await error_of(r, 404, "NOT_FOUND")


async def test_video_needs_ffmpeg_with_the_whatsapp_transport(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="whatsapp", send_min_gap=0, send_jitter=0)
    factory = FakeFactory(["connect"])
    app = create_app(config, transport_factory=factory)
    async with app.test_app():
        account = await make_account(running_gateway(app))
        client = app.test_client()
        s = await create(client, account)
        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        with trio.fail_after(5):
            while running_gateway(app).control.actor(s["id"]).state.value != "CONNECTED":
                await trio.sleep(0.01)
        r = await client.post("/api/v1/send-message", headers=bearer(s["apiKey"]), json={
            "to": "1234567890", "video": {"url": "https://example.com/v.mp4"}})
        err = await error_of(r, 422, "MEDIA_TOOL_MISSING")
        assert "ffmpeg" in err["message"]
