"""The queue a sender can search and stop: GET /messages, cancel, cancel all, reschedule, queue depth,
through the HTTP layer on the fake transport; and the claim/cancel race on both real stores."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
import trio

from gateway._queue import CANCELLED_ONE
from gateway.store import MessageStatus, open_store

from . import test_api_messages
from ._pg import fresh_schema
from .store_contract import a_message, a_session, a_user
from .test_api_sessions import BASE, error_of

RACES = 150
env = test_api_messages.env  # the fixture: a connected session on the fake transport


def _later(**delta) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


async def _scheduled(env, to="1234567890", hours=1) -> str:
    r = await env.send({"to": to, "text": "later", "sendAt": _later(hours=hours)})
    assert r.status_code == 202
    return (await r.get_json())["messageId"]


async def _list(env, query: str = "") -> dict:
    r = await env.client.get(f"/api/v1/messages{query}", headers=env.key)
    assert r.status_code == 200, await r.get_data()
    return await r.get_json()


async def test_search_by_status_recipient_and_time_newest_first_in_pages(env):
    sent = (await (await env.send({"to": "+1 555 000 1111", "text": "now"})).get_json())["messageId"]
    await env.wait_status(sent, "sent")
    mid_time = dt.datetime.now(dt.UTC).isoformat()
    waiting = [await _scheduled(env, to="15550001111"), await _scheduled(env, to="15550002222"),
               await _scheduled(env, to="15550002222@s.whatsapp.net")]
    everything = await _list(env)
    assert [m["messageId"] for m in everything["data"]] == [*reversed(waiting), sent]
    assert "history" not in everything["data"][0] and everything["nextCursor"] is None
    assert [m["messageId"] for m in (await _list(env, "?status=sent"))["data"]] == [sent]
    assert [m["messageId"] for m in (await _list(env, "?status=queued&to=%2B15550002222"))["data"]] == [
        waiting[2], waiting[1]]
    to_first = await _list(env, "?to=15550001111")  # a phone reads as its JID, as on a send
    assert [m["messageId"] for m in to_first["data"]] == [waiting[0], sent]
    assert to_first["data"][0]["to"] == "15550001111@s.whatsapp.net"
    assert [m["messageId"] for m in (await _list(env, f"?since={mid_time.replace('+00:00', 'Z')}"))["data"]] == [
        *reversed(waiting)]
    assert [m["messageId"] for m in (await _list(env, f"?until={mid_time.replace('+', '%2B')}"))["data"]] == [sent]
    page = await _list(env, "?limit=2")
    assert [m["messageId"] for m in page["data"]] == [waiting[2], waiting[1]] and page["nextCursor"]
    rest = await _list(env, f"?limit=2&cursor={page['nextCursor']}")
    assert [m["messageId"] for m in rest["data"]] == [waiting[0], sent]


@pytest.mark.parametrize("query, path", [
    ("?status=lost", "query.status"), ("?to=12", "query.to"), ("?to=" + "1" * 65, "query.to"),
    ("?since=yesterday", "query.since"),
    ("?until=2026-01-01T00:00:00", "query.until"), ("?limit=0", "query.limit"), ("?cursor=%21", "query.cursor"),
])
async def test_search_refuses_bad_filters_in_the_envelope(env, query, path):
    body = await error_of(await env.client.get(f"/api/v1/messages{query}", headers=env.key), 422, "VALIDATION_ERROR")
    assert body["details"][0]["path"] == path


async def test_cancel_a_scheduled_message_then_it_is_never_sent(env):
    mid = await _scheduled(env)
    r = await env.client.delete(f"/api/v1/messages/{mid}", headers=env.key)
    assert r.status_code == 200
    got = await r.get_json()
    assert (got["messageId"], got["status"], got["statusReason"]) == (mid, "cancelled", CANCELLED_ONE)
    assert got["action"] == "cancelled"
    detail = await (await env.client.get(f"/api/v1/messages/{mid}", headers=env.key)).get_json()
    assert [h["status"] for h in detail["history"]] == ["queued", "cancelled"]
    again = await error_of(await env.client.delete(f"/api/v1/messages/{mid}", headers=env.key), 409, "CONFLICT")
    assert "already cancelled" in again["message"]
    await error_of(await env.client.patch(f"/api/v1/messages/{mid}", json={"sendAt": _later(hours=2)},
                                          headers=env.key), 409, "CONFLICT")
    assert [m["messageId"] for m in (await _list(env, "?status=cancelled"))["data"]] == [mid]
    assert env.transport.sent == []


async def test_delete_on_a_sent_message_revokes_it_for_everyone_once(env):
    mid = (await (await env.send({"to": "1234567890", "text": "now"})).get_json())["messageId"]
    await env.wait_status(mid, "sent")
    r = await env.client.delete(f"/api/v1/messages/{mid}", headers=env.key)
    assert r.status_code == 200, await r.get_json()
    got = await r.get_json()
    assert (got["messageId"], got["action"], got["status"], got["statusReason"]) == (
        mid, "revoked", "sent", "revoked for everyone")
    assert env.transport.actions[-1] == ("revoke", "1234567890@s.whatsapp.net", got["whatsappId"], None)
    detail = await (await env.client.get(f"/api/v1/messages/{mid}", headers=env.key)).get_json()
    assert [(h["status"], h["reason"]) for h in detail["history"]][-1] == ("sent", "revoked for everyone")
    again = await error_of(await env.client.delete(f"/api/v1/messages/{mid}", headers=env.key), 409, "CONFLICT")
    assert "revoked" in again["message"]
    await error_of(await env.client.delete("/api/v1/messages/nope", headers=env.key), 404, "NOT_FOUND")


async def test_cancel_all_counts_and_the_session_shows_its_queue_depth(env):
    sid = env.session["id"]
    for hours in (1, 2, 3):
        await _scheduled(env, hours=hours)
    one = await (await env.client.get(f"{BASE}/{sid}", headers=env.key)).get_json()
    assert (one["queued"], one["scheduled"]) == (3, 3)
    listed = await (await env.client.get(BASE, headers=env.account.headers)).get_json()
    assert [(s["queued"], s["scheduled"]) for s in listed["data"]] == [(3, 3)]
    await error_of(await env.client.delete("/api/v1/messages", headers=env.key), 422, "VALIDATION_ERROR")
    await error_of(await env.client.delete("/api/v1/messages?status=sent", headers=env.key), 422, "VALIDATION_ERROR")
    r = await env.client.delete("/api/v1/messages?status=queued", headers=env.key)
    assert r.status_code == 200 and await r.get_json() == {"cancelled": 3}
    again = await env.client.delete("/api/v1/messages?status=queued", headers=env.key)
    assert await again.get_json() == {"cancelled": 0}
    one = await (await env.client.get(f"{BASE}/{sid}", headers=env.key)).get_json()
    assert (one["queued"], one["scheduled"]) == (0, 0)
    assert len((await _list(env, "?status=cancelled"))["data"]) == 3


async def test_reschedule_earlier_takes_effect_at_once(env):
    mid = await _scheduled(env, hours=1)
    soon = _later(seconds=1)
    r = await env.client.patch(f"/api/v1/messages/{mid}", json={"sendAt": soon}, headers=env.key)
    assert r.status_code == 200, await r.get_data()
    assert dt.datetime.fromisoformat((await r.get_json())["sendAt"]) == dt.datetime.fromisoformat(soon).replace(
        microsecond=dt.datetime.fromisoformat(soon).microsecond // 1000 * 1000)
    await env.wait_status(mid, "sent", timeout=10)  # the sender was nudged: it did not wait the hour
    body = await error_of(await env.client.patch(f"/api/v1/messages/{mid}", json={"sendAt": _later(hours=1)},
                                                 headers=env.key), 409, "CONFLICT")
    assert "can no longer be rescheduled" in body["message"]


@pytest.mark.parametrize("body, path", [
    ({"sendAt": "2020-01-01T00:00:00Z"}, "$.sendAt"), ({"sendAt": "soon"}, "$.sendAt"),
    ({"sendAt": "2099-01-01T00:00:00Z"}, "$.sendAt"), ({}, "$"), ({"sendAt": _later(hours=1), "x": 1}, "$"),
])
async def test_reschedule_validates_send_at_as_a_send_does(env, body, path):
    mid = await _scheduled(env)
    got = await error_of(await env.client.patch(f"/api/v1/messages/{mid}", json=body, headers=env.key), 422,
                         "VALIDATION_ERROR")
    assert got["details"][0]["path"] == path


async def test_reschedule_a_message_queued_to_send_now_is_a_conflict(env):
    sid = env.session["id"]
    r = await env.client.post(f"{BASE}/{sid}/disconnect", headers=env.account.headers)
    assert r.status_code == 200, await r.get_data()
    ready = a_message(await env.gateway.store.get_session(sid), expires_at=10**13)  # waits for a reconnect
    await env.gateway.store.create_messages([ready])
    body = await error_of(await env.client.patch(f"/api/v1/messages/{ready.id}", json={"sendAt": _later(hours=1)},
                                                 headers=env.key), 409, "CONFLICT")
    assert "not scheduled" in body["message"]
    assert (await (await env.client.delete(f"/api/v1/messages/{ready.id}", headers=env.key)).get_json())[
        "status"] == "cancelled"


# -- the race: the session's actor claims while the sender cancels -------------------------


async def _race(store) -> None:
    user = a_user("race@example.com")
    await store.create_user(user)
    session = a_session(user.id)
    await store.create_session(session)
    wins = {"claim": 0, "cancel": 0}
    for i in range(RACES):
        message = a_message(session, expires_at=10**13, send_at=None if i % 2 else 1_500)
        await store.create_messages([message])
        got: dict[str, object] = {}

        async def claim(into=got):
            into["claim"] = await store.claim_next_message(session.id, 2_000)

        async def cancel(into=got, mid=message.id):
            into["cancel"] = await store.cancel_message(mid, 2_000, reason="race")

        async with trio.open_nursery() as nursery:
            first, second = (claim, cancel) if i % 4 < 2 else (cancel, claim)
            nursery.start_soon(first)
            nursery.start_soon(second)
        winners = [k for k, v in got.items() if v is not None]
        assert len(winners) == 1, (i, got)
        wins[winners[0]] += 1
        final = (await store.get_message(message.id)).status
        assert final is (MessageStatus.SENDING if winners == ["claim"] else MessageStatus.CANCELLED)
        if final is MessageStatus.SENDING:
            await store.set_message_status(message.id, MessageStatus.SENT, 3_000)
        assert await store.claim_next_message(session.id, 4_000) is None  # a cancelled message is never claimed
    assert sum(wins.values()) == RACES and wins["claim"] and wins["cancel"], wins  # both sides won sometimes


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_claim_and_cancel_race_has_one_winner(kind, tmp_path):
    async with contextlib.AsyncExitStack() as stack:
        url = f"sqlite:///{tmp_path}/race.db" if kind == "sqlite" else await stack.enter_async_context(fresh_schema())
        store = await open_store(url)
        await store.migrate()
        try:
            with trio.fail_after(100):
                await _race(store)
        finally:
            await store.aclose()
