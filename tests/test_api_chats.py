"""Presence and chat actions through the HTTP layer, on the fake transport: what each route asks of
the transport, how it refuses, and the stored subscriptions followed again after a reconnect.
The simulator end-to-end test (test_e2e_sim.py) covers the same flows between two sessions."""

from __future__ import annotations

import trio

from actors import RecipientError
from gateway.store import open_store

from ._pg import pg_url_fixture  # noqa: F401 - registers `pg_url`
from .store_contract import a_session, a_user
from .test_api_messages import env  # noqa: F401 - the fixture
from .test_api_sessions import BASE

JB = "15550002222@s.whatsapp.net"
GROUP = "120363041234567890@g.us"


async def post(env, path, body):  # noqa: F811 - the fixture's name
    r = await env.client.post(f"/api/v1{path}", json=body, headers=env.key)
    return r.status_code, await r.get_json()


async def test_own_availability_and_chat_states(env):  # noqa: F811
    assert await post(env, "/presence", {"available": True}) == (200, {"available": True})
    assert await post(env, "/presence", {"available": False}) == (200, {"available": False})
    for state in ("composing", "recording", "paused"):
        status, body = await post(env, "/chats/+1 555 000 2222/presence", {"state": state})
        assert (status, body) == (200, {"chat": JB, "state": state})
    assert (await post(env, f"/chats/{GROUP}/presence", {"state": "composing"}))[0] == 200
    assert env.transport.actions == [
        ("presence", True), ("presence", False), ("chat_presence", JB, "composing"),
        ("chat_presence", JB, "recording"), ("chat_presence", JB, "paused"), ("chat_presence", GROUP, "composing")]


async def test_bad_input_is_refused_in_the_envelope(env):  # noqa: F811
    status, body = await post(env, "/chats/not-a-chat/presence", {"state": "composing"})
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR"
    assert "path.chat" in str(body)
    assert (await post(env, f"/chats/{JB}/presence", {"state": "dancing"}))[0] == 422
    assert (await post(env, "/presence/subscribe", {"to": GROUP}))[0] == 422  # a person, not a group
    status, body = await post(env, f"/chats/{GROUP}/read", {"messageId": "3EB0X"})
    assert status == 422 and "$.sender" in str(body)
    assert env.transport.actions == []


async def test_mark_read_names_the_author(env):  # noqa: F811
    assert await post(env, f"/chats/{JB}/read", {"messageId": "3EB0IN"}) == (
        200, {"chat": JB, "messageIds": ["3EB0IN"], "sender": JB})
    # in a one-to-one chat the author is the chat, whatever `sender` says
    assert (await post(env, f"/chats/{JB}/read", {"messageId": "3EB0IN", "sender": "+15550003333"}))[1][
        "sender"] == JB
    status, body = await post(env, f"/chats/{GROUP}/read", {"messageId": "3EB0G", "sender": "+15550003333"})
    assert status == 200 and body["sender"] == "15550003333@s.whatsapp.net"
    assert env.transport.actions == [("read", JB, ["3EB0IN"], JB), ("read", JB, ["3EB0IN"], JB),
                                     ("read", GROUP, ["3EB0G"], "15550003333@s.whatsapp.net")]


async def test_mark_read_refuses_a_message_this_session_sent(env):  # noqa: F811
    r = await env.send({"to": JB, "text": "mine"})
    mid = (await r.get_json())["messageId"]
    sent = await env.wait_status(mid, "sent")
    for ref in (mid, sent["whatsappId"]):
        status, body = await post(env, f"/chats/{JB}/read", {"messageId": ref})
        assert status == 409 and body["error"]["code"] == "CONFLICT"


async def test_subscriptions_are_stored_and_followed_again_after_a_reconnect(env):  # noqa: F811
    assert await post(env, "/presence/subscribe", {"to": "+15550002222"}) == (200, {"jid": JB, "subscribed": True})
    assert (await post(env, "/presence/subscribe", {"to": JB}))[0] == 200  # again: stored once
    listed = await (await env.client.get("/api/v1/presence/subscriptions", headers=env.key)).get_json()
    assert listed == {"data": [JB]}
    assert env.transport.actions == [("presence", True), ("subscribe", JB)] * 2
    env.transport.actions.clear()
    await env.transport.blip()  # the transport reconnected by itself
    with trio.fail_after(5):
        while len(env.transport.actions) < 2:
            await trio.sleep(0.01)
    assert env.transport.actions == [("presence", True), ("subscribe", JB)]


async def test_whatsapp_refusals_and_a_disconnected_session(env):  # noqa: F811
    env.transport.action_error = RecipientError("info query returned status 404: item-not-found")
    status, body = await post(env, "/presence/subscribe", {"to": JB})
    assert status == 422 and body["error"]["code"] == "VALIDATION_ERROR"
    listed = await (await env.client.get("/api/v1/presence/subscriptions", headers=env.key)).get_json()
    assert listed == {"data": []}  # a refused subscription is not stored
    await env.client.post(f"{BASE}/{env.session['id']}/disconnect", headers=env.account.headers)
    for path, body in (("/presence", {"available": True}), ("/presence/subscribe", {"to": JB}),
                       (f"/chats/{JB}/presence", {"state": "composing"}), (f"/chats/{JB}/read", {"messageId": "x"})):
        status, answer = await post(env, path, body)
        assert status == 409 and answer["error"]["code"] == "SESSION_DISCONNECTED", path


async def _subscriptions_per_session(store):
    await store.migrate()
    user = a_user()
    await store.create_user(user)
    a = a_session(user.id)
    await store.create_session(a)
    assert await store.add_presence_subscription(a.id, JB, 1) is True
    assert await store.add_presence_subscription(a.id, JB, 2) is False
    assert await store.add_presence_subscription(a.id, "15550001111@s.whatsapp.net", 3) is True
    assert await store.list_presence_subscriptions(a.id) == ["15550001111@s.whatsapp.net", JB]
    assert await store.list_presence_subscriptions("other") == []
    await store.delete_session(a.id)
    assert await store.list_presence_subscriptions(a.id) == []


async def test_sqlite_keeps_subscriptions_per_session(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        await _subscriptions_per_session(store)
    finally:
        await store.aclose()


async def test_postgres_keeps_subscriptions_per_session(pg_url):
    store = await open_store(pg_url)
    try:
        await _subscriptions_per_session(store)
    finally:
        await store.aclose()
