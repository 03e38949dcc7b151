"""React, edit, revoke and vote over HTTP, on the fake transport: what reaches the transport, and every refusal
in the error envelope. The edit window is checked on an injected clock (the e2e test runs the real one)."""

from __future__ import annotations

import base64

import pytest

from gateway._actions import EDIT_WINDOW_MS, MessageActions, check_edit_window, check_emoji
from gateway.errors import ValidationError

from . import test_api_messages
from .test_api_messages import PNG
from .test_api_queue import _scheduled
from .test_api_sessions import BASE, error_of

env = test_api_messages.env  # the fixture: a connected session on the fake transport
TO = "1234567890@s.whatsapp.net"
PEER = "15557654321@s.whatsapp.net"
GROUP = "120363041234567890@g.us"


async def _sent(env, body) -> dict:
    r = await env.send({"to": "1234567890"} | body)
    assert r.status_code == 202, await r.get_json()
    return await env.wait_status((await r.get_json())["messageId"], "sent")


async def test_react_to_an_own_message_by_either_id_and_remove_it(env):
    m = await _sent(env, {"text": "hi"})
    r = await env.client.post(f"/api/v1/messages/{m['messageId']}/reaction", json={"emoji": "👍"}, headers=env.key)
    assert r.status_code == 200, await r.get_json()
    got = await r.get_json()
    assert (got["chat"], got["emoji"], got["removed"]) == (TO, "👍", False) and got["whatsappId"].startswith("ACT")
    r = await env.client.post(f"/api/v1/messages/{m['whatsappId']}/reaction", json={"emoji": ""}, headers=env.key)
    assert (await r.get_json())["removed"] is True
    assert env.transport.actions[-2:] == [("react", TO, m["whatsappId"], "👍", None),
                                          ("react", TO, m["whatsappId"], "", None)]


async def test_react_to_a_received_message_names_its_chat_and_in_a_group_its_author(env):
    path = "/api/v1/messages/3EB0RECEIVED/reaction"
    body = await error_of(await env.client.post(path, json={"emoji": "👍"}, headers=env.key), 404, "NOT_FOUND")
    assert "`chat`" in body["message"]  # not one of ours: a received message needs its chat
    r = await env.client.post(path, json={"emoji": "❤️", "chat": "+15557654321"}, headers=env.key)
    assert r.status_code == 200 and env.transport.actions[-1] == ("react", PEER, "3EB0RECEIVED", "❤️", PEER)
    body = await error_of(await env.client.post(path, json={"emoji": "👍", "chat": GROUP}, headers=env.key),
                          422, "VALIDATION_ERROR")
    assert body["details"][0]["path"] == "$.sender"
    r = await env.client.post(path, json={"emoji": "👍", "chat": GROUP, "sender": "+15557654321"}, headers=env.key)
    assert r.status_code == 200 and env.transport.actions[-1] == ("react", GROUP, "3EB0RECEIVED", "👍", PEER)


@pytest.mark.parametrize("emoji", ["ok", "👍 ", "1", "👍👍👍👍👍👍👍👍👍👍👍", "a👍", "é", "ひ"])
async def test_a_reaction_must_be_an_emoji(env, emoji):
    r = await env.client.post("/api/v1/messages/3EB0X/reaction", json={"emoji": emoji, "chat": PEER}, headers=env.key)
    body = await error_of(r, 422, "VALIDATION_ERROR")
    assert body["details"][0]["path"] == "$.emoji"


def test_emoji_rule_accepts_sequences_flags_keycaps_and_skin_tones():
    for emoji in ["", "👍", "❤️", "👨‍👩‍👧", "🇩🇪", "1️⃣", "👍🏽", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "™️"]:
        assert check_emoji(emoji) == emoji
    for bad in ("ok", "1", "ひ", "👍 "):
        with pytest.raises(ValidationError):
            check_emoji(bad)


async def test_a_queued_message_cannot_be_reacted_to_edited_or_revoked_but_is_cancelled(env):
    mid = await _scheduled(env)
    await error_of(await env.client.post(f"/api/v1/messages/{mid}/reaction", json={"emoji": "👍"}, headers=env.key),
                   409, "CONFLICT")
    body = await error_of(await env.client.put(f"/api/v1/messages/{mid}", json={"text": "x"}, headers=env.key),
                          409, "CONFLICT")
    assert "not sent (status queued)" in body["message"]
    r = await env.client.delete(f"/api/v1/messages/{mid}", headers=env.key)
    assert ((await r.get_json())["action"], (await r.get_json())["status"]) == ("cancelled", "cancelled")
    assert not [a for a in env.transport.actions if a[0] in ("react", "edit", "revoke")]


async def test_edit_a_text_and_a_caption_then_refuse_other_types_and_revoked_messages(env):
    text = await _sent(env, {"text": "helo"})
    r = await env.client.put(f"/api/v1/messages/{text['messageId']}", json={"text": "hello"}, headers=env.key)
    assert r.status_code == 200, await r.get_json()
    assert (await r.get_json()) == {"messageId": text["messageId"], "whatsappId": text["whatsappId"], "to": TO,
                                    "text": "hello"}
    assert env.transport.actions[-1] == ("edit", TO, text["whatsappId"], "hello", None)
    detail = await (await env.client.get(f"/api/v1/messages/{text['messageId']}", headers=env.key)).get_json()
    assert detail["history"][-1]["reason"] == "edited"
    image = await _sent(env, {"image": {"data": base64.b64encode(PNG).decode(), "caption": "old"}})
    r = await env.client.put(f"/api/v1/messages/{image['whatsappId']}", json={"text": "new"}, headers=env.key)
    assert r.status_code == 200 and env.transport.actions[-1] == ("edit", TO, image["whatsappId"], "new", "image")
    loc = await _sent(env, {"location": {"latitude": 1.0, "longitude": 2.0}})
    body = await error_of(await env.client.put(f"/api/v1/messages/{loc['messageId']}", json={"text": "x"},
                                               headers=env.key), 409, "CONFLICT")
    assert "location" in body["message"]
    await env.client.delete(f"/api/v1/messages/{text['messageId']}", headers=env.key)
    body = await error_of(await env.client.put(f"/api/v1/messages/{text['messageId']}", json={"text": "again"},
                                               headers=env.key), 409, "CONFLICT")
    assert "revoked" in body["message"]
    await error_of(await env.client.put("/api/v1/messages/nope", json={"text": "x"}, headers=env.key), 404,
                   "NOT_FOUND")
    await error_of(await env.client.put(f"/api/v1/messages/{loc['messageId']}", json={"text": ""}, headers=env.key),
                   422, "VALIDATION_ERROR")


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self.now / 1000


async def test_the_edit_window_is_15_minutes_after_the_send_on_the_gateways_clock(env):
    m = await _sent(env, {"text": "typo"})
    sent_at = next(h for h in (await env.gateway.store.get_message_history(m["messageId"]))
                   if h.status.value == "sent").at
    clock = Clock(sent_at + EDIT_WINDOW_MS)
    actions = MessageActions(env.gateway.store, env.gateway.control, clock=clock)
    principal = _principal(env)
    await actions.edit(principal, m["messageId"], "just in time")
    clock.now += 1
    with pytest.raises(ValidationError) as exc:
        await actions.edit(principal, m["messageId"], "too late")
    assert "15 minutes" in exc.value.message and exc.value.details[0].path == "path.message_id"
    assert [a[3] for a in env.transport.actions if a[0] == "edit"] == ["just in time"]


def test_edit_window_rule():
    check_edit_window(0, EDIT_WINDOW_MS)
    check_edit_window(None, 10 * EDIT_WINDOW_MS)
    with pytest.raises(ValidationError, match="sent 16 minutes ago"):
        check_edit_window(0, 16 * 60_000)


async def test_vote_on_an_own_poll_checks_its_options(env):
    poll = await _sent(env, {"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"]}})
    path = f"/api/v1/messages/{poll['messageId']}/vote"
    r = await env.client.post(path, json={"options": ["Sushi"]}, headers=env.key)
    assert r.status_code == 200, await r.get_json()
    assert (await r.get_json())["options"] == ["Sushi"]
    assert env.transport.actions[-1] == ("vote", TO, poll["whatsappId"], ["Sushi"], None)
    for options in (["Tacos"], ["Pizza", "Sushi"]):  # not an option; more than the poll allows
        body = await error_of(await env.client.post(path, json={"options": options}, headers=env.key), 422,
                              "VALIDATION_ERROR")
        assert body["details"][0]["path"] == "$.options"
    text = await _sent(env, {"text": "not a poll"})
    await error_of(await env.client.post(f"/api/v1/messages/{text['messageId']}/vote", json={"options": ["a"]},
                                         headers=env.key), 409, "CONFLICT")
    r = await env.client.post("/api/v1/messages/3EB0POLL/vote", json={"options": ["x"], "chat": PEER},
                              headers=env.key)
    assert r.status_code == 200 and env.transport.actions[-1] == ("vote", PEER, "3EB0POLL", ["x"], PEER)


async def test_actions_need_a_connected_session(env):
    m = await _sent(env, {"text": "hi"})
    await env.client.post(f"{BASE}/{env.session['id']}/disconnect", headers=env.account.headers)
    for call in (env.client.post(f"/api/v1/messages/{m['messageId']}/reaction", json={"emoji": "👍"},
                                 headers=env.key),
                 env.client.put(f"/api/v1/messages/{m['messageId']}", json={"text": "x"}, headers=env.key),
                 env.client.delete(f"/api/v1/messages/{m['messageId']}", headers=env.key)):
        await error_of(await call, 409, "SESSION_DISCONNECTED")


def _principal(env):
    from gateway._auth import SessionPrincipal

    return SessionPrincipal(env.account.user_id, env.session["id"], "tests")
