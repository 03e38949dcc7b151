"""End to end: contacts, blocking, profiles and LIDs, the gateway with the `sim` transport against a
`gateway simulator` process, two sessions paired once."""

from __future__ import annotations

import pytest
import trio

from bench.simulator import open_sim_control

from ._sim_proc import simulator
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of
from .test_api_webhooks import receiver_at, verify
from .test_e2e_sim import A_PHONE, B_PHONE, C_PHONE, gateway_app, next_event, pair, wait_message, wait_status
from .test_event_schemas import validate_event

pytestmark = pytest.mark.slow

JA, JB = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net"
GONE = "+15559999999"  # taken off WhatsApp


async def get(client, path, key):
    return await client.get(f"/api/v1{path}", headers=key)


async def ok(client, path, key) -> dict:
    r = await get(client, path, key)
    assert r.status_code == 200, (path, await r.get_data())
    return await r.get_json()


async def send(client, key, to, text) -> str:
    r = await client.post("/api/v1/send-message", json={"to": to, "text": text}, headers=key)
    assert r.status_code == 202, await r.get_json()
    return (await r.get_json())["messageId"]


class Hooks:
    """A's webhook calls, signature-checked, by event."""

    def __init__(self, rx, secret: str) -> None:
        self.rx, self.secret = rx, secret

    async def wait_for(self, event: str, timeout: float = 15, **data) -> dict:
        with trio.fail_after(timeout):
            while True:
                for envelope in self.all():
                    if envelope["event"] == event and all(envelope["data"].get(k) == v for k, v in data.items()):
                        return envelope
                await self.rx.got.wait()

    def all(self) -> list[dict]:
        out = [verify(self.secret, headers, body) for headers, body in self.rx.calls]
        for envelope in out:
            validate_event(envelope["event"], envelope["data"], envelope=envelope)
        return out


async def test_contacts_blocking_profiles_lids_and_lid_addressing(tmp_path):
    with simulator("--receipt-delay", "0.05") as sim:
        async with receiver_at() as rx, open_sim_control(sim.url) as ctl, \
                gateway_app(tmp_path, sim.url, allow_private_urls=True) as (_, client, gw):
            account = await make_account(gw)
            a = await create(client, account, name="a", phoneNumber=A_PHONE, webhookUrl=rx.url,
                             webhookEvents=["message.received", "message.reaction"])
            b = await create(client, account, name="b", phoneNumber=B_PHONE)
            await pair(client, account, ctl, a, b)
            ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])
            hooks = Hooks(rx, a["webhookSecret"])
            lid_b = await ctl.lid(B_PHONE)

            # LID addressing, "lid-only": B is named by its LID alone; A's gateway asks WhatsApp once, and its
            # events name B by phone, with the LID beside it, signed, in the documented shape
            assert await gw.store.phone_for_lid(a["id"], lid_b) is None  # not learned yet (contacts would teach it)
            await ctl.set_addressing(B_PHONE, "lid-only")
            await send(client, kb, A_PHONE, "by lid only")
            event = await hooks.wait_for("message.received", text="by lid only")
            data = event["data"]
            assert (data["sender"], data["from"], data["fromLid"], data["senderPhone"], data["chat"]) == (
                JB, JB, lid_b, B_PHONE, JB)
            assert await gw.store.phone_for_lid(a["id"], lid_b) == JB  # learned
            r = await client.post(f"/api/v1/messages/{data['messageId']}/reaction",
                                  json={"emoji": "👍", "chat": A_PHONE}, headers=kb)
            assert r.status_code == 200, await r.get_json()
            reaction = (await hooks.wait_for("message.reaction", emoji="👍"))["data"]
            assert (reaction["from"], reaction["fromLid"], reaction["chat"]) == (JB, lid_b, JB)
            with gw.bus.subscribe(b["id"]) as b_bus:  # A answers in the chat the event named: it reaches B
                await send(client, ka, data["chat"], "answer")
                assert (await next_event(b_bus, "message.received", text="answer")).data["from"] == JA
            # "lid": both names arrive; the event is the same
            await ctl.set_addressing(B_PHONE, "lid")
            await send(client, kb, A_PHONE, "by lid")
            data = (await hooks.wait_for("message.received", text="by lid"))["data"]
            assert (data["from"], data["fromLid"], data["chat"], data["senderPhone"]) == (JB, lid_b, JB, B_PHONE)
            await ctl.set_addressing(B_PHONE, "off")

            # after A and B messaged, A's WhatsApp contacts list B, merged with A's own entries by number
            await send(client, ka, B_PHONE, "hi B")
            await send(client, kb, A_PHONE, "hi A")
            await hooks.wait_for("message.received", text="hi A")
            listed = await ok(client, "/contacts", ka)
            assert listed["whatsapp"] is True and listed["nextCursor"] is None
            [entry] = listed["data"]
            assert (entry["phoneNumber"], entry["jid"], entry["source"], entry["pushName"], entry["createdAt"]) == (
                B_PHONE, JB, "whatsapp", "Sim 0002", None)
            for phone, name in ((B_PHONE, "Bea"), (C_PHONE, "Cy")):
                r = await client.put("/api/v1/contacts", json={"fullName": name, "phoneNumber": phone}, headers=ka)
                assert (await r.get_json())["source"] == "gateway"
            pages, cursor = [], None
            while True:
                page = await ok(client, "/contacts?limit=1" + (f"&cursor={cursor}" if cursor else ""), ka)
                pages.append(page["data"])
                if (cursor := page["nextCursor"]) is None:
                    break
            assert [[(c["phoneNumber"], c["source"], c["fullName"]) for c in p] for p in pages] == [
                [(B_PHONE, "both", "Bea")], [(C_PHONE, "gateway", "Cy")], []]
            assert pages[0][0]["pushName"] == "Sim 0002" and pages[0][0]["createdAt"] is not None
            assert (await ok(client, f"/contacts/{B_PHONE}", ka))["source"] == "both"
            assert (await ok(client, f"/contacts/{A_PHONE}", kb))["source"] == "whatsapp"  # B's WhatsApp contact

            # A blocks B: B's message is sent, never reaches A (bus or webhook), never gets delivered
            with gw.bus.subscribe(a["id"]) as a_bus:
                r = await client.post(f"/api/v1/contacts/{B_PHONE}/block", headers=ka)
                assert (r.status_code, await r.get_json()) == (200, {"jid": JB, "blocked": True})
                assert await ok(client, "/contacts/blocklist", ka) == {"data": [JB]}
                blocked = await send(client, kb, A_PHONE, "while blocked")
                await wait_message(client, kb, blocked, "sent")
                r = await client.post(f"/api/v1/contacts/{B_PHONE}/unblock", headers=ka)
                assert (await r.get_json()) == {"jid": JB, "blocked": False}
                assert await ok(client, "/contacts/blocklist", ka) == {"data": []}
                after = await send(client, kb, A_PHONE, "after unblock")
                got = await next_event(a_bus, "message.received")
                assert got.data["text"] == "after unblock"  # the next one A gets
            await hooks.wait_for("message.received", text="after unblock")
            await wait_message(client, kb, after, "delivered")
            assert (await ok(client, f"/messages/{blocked}", kb))["status"] == "sent"
            assert "while blocked" not in [e["data"].get("text") for e in hooks.all()]


            # picture and about after B sets them, cached for GATEWAY_ON_WHATSAPP_TTL
            profile = await ctl.set_profile(B_PHONE, about="Out for lunch", picture=True)
            picture = await ok(client, f"/contacts/{B_PHONE}/picture", ka)
            assert picture == {"jid": JB, "url": profile["picture_url"], "id": profile["picture_id"], "cached": False}
            assert picture["url"].startswith("https://pps.whatsapp.sim/")
            await ctl.set_profile(B_PHONE, picture=True)
            assert (await ok(client, f"/contacts/{B_PHONE}/picture", ka))["cached"] is True  # the old one, cached
            assert await ok(client, f"/contacts/{B_PHONE}/about", ka) == {"jid": JB, "about": "Out for lunch",
                                                                            "cached": False}
            assert (await ok(client, f"/contacts/{B_PHONE}/about", ka))["cached"] is True
            none = await ok(client, f"/contacts/{C_PHONE}/picture", ka)  # on WhatsApp, no picture
            assert (none["url"], none["id"]) == (None, None)

            # LID lookups: the one A learned, from its store; one asked of WhatsApp, then remembered
            lid_c = await ctl.lid(C_PHONE)
            assert await ok(client, f"/lids/{lid_b}", ka) == {"lid": lid_b, "jid": JB, "phoneNumber": B_PHONE}
            assert await ok(client, f"/lids/by-phone/{C_PHONE}", ka) == {
                "lid": lid_c, "jid": "15550000003@s.whatsapp.net", "phoneNumber": C_PHONE}
            assert await gw.store.lid_for_phone(a["id"], "15550000003@s.whatsapp.net") == lid_c
            assert (await ok(client, f"/contacts/{B_PHONE}", ka))["lid"] == lid_b  # contacts show what was learned

            # the unknown cases, each in the error envelope
            await ctl.unregister(GONE)
            await error_of(await get(client, f"/contacts/{GONE}", ka), 404, "NOT_FOUND")
            for path in (f"/contacts/{GONE}/picture", f"/contacts/{GONE}/about", f"/lids/by-phone/{GONE}",
                         "/lids/999999999999999@lid"):
                await error_of(await get(client, path, ka), 404, "NOT_FOUND")
            await error_of(await client.post(f"/api/v1/contacts/{GONE}/block", headers=ka), 404, "NOT_FOUND")
            for path, at in (("/lids/abc@lid", "path.lid"), ("/lids/" + "1" * 21 + "@lid", "path.lid"),
                             ("/lids/" + "1" * 30 + "@lid", "path.lid"), ("/contacts/12ab/picture", "path.phone")):
                err = await error_of(await get(client, path, ka), 422, "VALIDATION_ERROR")
                assert err["details"][0]["path"] == at
            await error_of(await client.post(f"/api/v1/contacts/{A_PHONE}/block", headers=ka), 422,
                           "VALIDATION_ERROR")  # an account cannot block itself

            # B disconnected: its own contacts only, said so; what it never learned is not A's to tell it
            await client.put("/api/v1/contacts", json={"fullName": "Ann", "phoneNumber": A_PHONE}, headers=kb)
            await client.post(f"{BASE}/{b['id']}/disconnect", headers=account.headers)
            await wait_status(client, account.headers, b["id"], "DISCONNECTED")
            offline = await ok(client, "/contacts", kb)
            assert offline["whatsapp"] is False
            assert [(c["phoneNumber"], c["source"], c["pushName"]) for c in offline["data"]] == [
                (A_PHONE, "gateway", None)]
            await error_of(await get(client, f"/lids/{lid_b}", kb), 409, "SESSION_DISCONNECTED")
            await error_of(await get(client, f"/contacts/{A_PHONE}/about", kb), 409, "SESSION_DISCONNECTED")
            await error_of(await get(client, "/contacts/blocklist", kb), 409, "SESSION_DISCONNECTED")
            assert (await ok(client, f"/lids/{lid_b}", ka))["jid"] == JB  # A's own, still
