"""End to end: the gateway with the `sim` transport against a `gateway simulator` process."""

from __future__ import annotations

import base64
import datetime as dt
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio

from actors import MessageReceived
from bench.simulator import open_sim_control
from gateway import Config, create_app
from gateway._host import SessionHost
from gateway._ports import SINGLE_NODE
from gateway.app import running_gateway

from ._sim_proc import simulator
from .conftest import make_account
from .test_api_messages import PNG
from .test_api_sessions import BASE, bearer, create
from .test_event_schemas import validate_event

pytestmark = pytest.mark.slow

A_PHONE, B_PHONE, C_PHONE = "+15550000001", "+15550000002", "+15550000003"


@asynccontextmanager
async def gateway_app(tmp_path, sim_url):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", data_dir=str(tmp_path / "data"), transport="sim",
                    sim_url=sim_url, send_min_gap=0.0, send_jitter=0.0, limit_send="off",
                    limit_api="off", reconnect_max_delay=1.0)
    app = create_app(config)
    async with app.test_app():
        yield app, app.test_client(), running_gateway(app)


async def status_of(client, headers, sid):
    return (await (await client.get(f"{BASE}/{sid}", headers=headers)).get_json())["status"]


async def wait_status(client, headers, sid, status, timeout=20):
    with trio.fail_after(timeout):
        while await status_of(client, headers, sid) != status:
            await trio.sleep(0.02)


_PROGRESS = ["queued", "sending", "sent", "delivered", "read"]


async def wait_message(client, key, mid, status, timeout=20):
    """Wait until the message has reached `status` (receipts may already have moved it further on)."""
    with trio.fail_after(timeout):
        while True:
            got = await (await client.get(f"/api/v1/messages/{mid}", headers=key)).get_json()
            if got["status"] == status or (
                    got["status"] in _PROGRESS and status in _PROGRESS
                    and _PROGRESS.index(got["status"]) > _PROGRESS.index(status)):
                return got
            await trio.sleep(0.02)


async def test_pair_message_types_receipts_groups_and_recovery(tmp_path):
    with simulator("--receipt-delay", "0.05") as sim:
        async with gateway_app(tmp_path, sim.url) as (app, client, gw):
            account = await make_account(gw)
            async with open_sim_control(sim.url) as ctl:
                a = await create(client, account, name="a", phoneNumber=A_PHONE)
                b = await create(client, account, name="b", phoneNumber=B_PHONE)

                # connect: CONNECTING with a QR, a scan pairs it
                r = await (await client.post(f"{BASE}/{a['id']}/connect", headers=account.headers)).get_json()
                assert r["status"] == "CONNECTING" and r["qr"].startswith("2@")
                await ctl.scan(a["id"], A_PHONE)
                await client.post(f"{BASE}/{b['id']}/connect", headers=account.headers)
                await ctl.wait_qr(b["id"])
                await ctl.scan(b["id"], B_PHONE)
                for s in (a, b):
                    await wait_status(client, account.headers, s["id"], "CONNECTED")
                ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])

                # every type from A reaches B; A's statuses move to read
                bodies = [
                    {"text": "hello"},
                    {"image": {"data": base64.b64encode(PNG).decode(), "caption": "pic"}},
                    {"video": {"data": base64.b64encode(b"\x00\x00\x00\x18ftypmp42").decode()}},
                    {"audio": {"data": base64.b64encode(b"OggS" + bytes(20)).decode(), "ptt": True}},
                    {"document": {"data": base64.b64encode(b"%PDF-1.4").decode(), "filename": "a.pdf"}},
                    {"sticker": {"data": base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode()}},
                    {"location": {"latitude": 37.7749, "longitude": -122.4194, "name": "San Francisco"}},
                    {"contact": {"fullName": "John Doe", "phoneNumber": "+1234567890"}},
                    {"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"]}},
                    {"image": {"data": base64.b64encode(PNG).decode()}, "viewOnce": True},
                    {"text": "hi @15550000002", "mentions": [B_PHONE]},
                ]
                with gw.bus.subscribe(b["id"]) as inbox:
                    mids = []
                    for body in bodies:
                        r = await client.post("/api/v1/send-message", json={"to": B_PHONE} | body, headers=ka)
                        assert r.status_code == 202, await r.get_json()
                        mids.append((await r.get_json())["messageId"])
                    first = await wait_message(client, ka, mids[0], "sent")
                    r = await client.post("/api/v1/send-message", json={"to": B_PHONE, "text": "re", "replyTo": mids[0]},
                                          headers=ka)
                    mids.append((await r.get_json())["messageId"])
                    received = []
                    with trio.fail_after(20):
                        while len(received) < len(mids):
                            ev = await inbox.receive.receive()
                            if ev.event == "message.received":
                                received.append(ev.data)
                            validate_event(ev.event, ev.data, envelope=msgspec.to_builtins(ev))
                assert [m["type"] for m in received] == [
                    "text", "image", "video", "audio", "document", "sticker", "location", "contact", "poll", "image",
                    "text", "text"]
                assert received[0]["text"] == "hello" and received[1]["text"] == "pic"
                assert received[9]["data"].get("viewOnce") is True
                assert received[10]["data"]["mentions"] == ["15550000002@s.whatsapp.net"]
                assert received[11]["data"]["quoted"]["messageId"] == first["whatsappId"]
                # A quoted its own message: B's gateway names A (the peer) as the quoted sender
                assert received[11]["data"]["quoted"]["sender"] == "15550000001@s.whatsapp.net"
                assert received[11]["data"]["quoted"]["text"] == "hello"
                assert received[7]["data"]["displayName"] == "John Doe"
                assert received[7]["data"]["phoneNumbers"] == ["+1234567890"]
                for mid in mids:
                    read = await wait_message(client, ka, mid, "read")
                    assert [h["status"] for h in read["history"]] == ["queued", "sending", "sent", "delivered", "read"]

                # on-whatsapp answers from the simulator's registry: an unregistered number is not there
                await ctl.unregister("+15559999999")
                yes = await (await client.get(f"/api/v1/on-whatsapp/{B_PHONE}", headers=ka)).get_json()
                no = await (await client.get("/api/v1/on-whatsapp/+15559999999", headers=ka)).get_json()
                assert yes["onWhatsApp"] is True and yes["jid"] == "15550000002@s.whatsapp.net"
                assert no["onWhatsApp"] is False
                again = await (await client.get(f"/api/v1/on-whatsapp/{B_PHONE}", headers=ka)).get_json()
                assert again["cached"] is True

                # groups: create, add (per-participant results), remove, leave
                await ctl.register(C_PHONE)
                g = await client.post("/api/v1/groups", json={"name": "team", "participants": [B_PHONE]}, headers=ka)
                group = await g.get_json()
                assert g.status_code == 201 and group["jid"].endswith("@g.us")
                added = await (await client.post(f"/api/v1/groups/{group['jid']}/participants/add",
                                                 json={"participants": [C_PHONE, "+15559999999", B_PHONE]},
                                                 headers=ka)).get_json()
                by_jid = {x["jid"].split("@")[0]: x for x in added["results"]}  # +15559999999 is unregistered
                assert by_jid["15550000003"]["ok"] and not by_jid["15559999999"]["ok"] and not by_jid["15550000002"]["ok"]
                members = await (await client.get(f"/api/v1/groups/{group['jid']}/participants", headers=ka)).get_json()
                assert {m["phoneNumber"] for m in members["data"]} >= {A_PHONE, B_PHONE, C_PHONE}
                removed = await (await client.post(f"/api/v1/groups/{group['jid']}/participants/remove",
                                                   json={"participants": [C_PHONE]}, headers=ka)).get_json()
                assert removed["results"][0]["ok"]
                listed = await (await client.get("/api/v1/groups", headers=kb)).get_json()
                assert group["jid"] in [x["jid"] for x in listed["data"]]
                left = await client.post(f"/api/v1/groups/{group['jid']}/leave", headers=kb)
                assert (await left.get_json())["left"] is True
                listed = await (await client.get("/api/v1/groups", headers=kb)).get_json()
                assert group["jid"] not in [x["jid"] for x in listed["data"]]

                # idempotent retries send once; a scheduled message waits for its time
                body = {"to": B_PHONE, "text": "exactly once"}
                r1 = await client.post("/api/v1/send-message", json=body, headers=ka | {"Idempotency-Key": "k-1"})
                r2 = await client.post("/api/v1/send-message", json=body, headers=ka | {"Idempotency-Key": "k-1"})
                assert (await r1.get_json()) == (await r2.get_json())
                await wait_message(client, ka, (await r1.get_json())["messageId"], "sent")
                when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.2)
                r = await client.post("/api/v1/send-message", json={"to": B_PHONE, "text": "later",
                                                                    "sendAt": when.isoformat()}, headers=ka)
                scheduled = (await r.get_json())["messageId"]
                await trio.sleep(0.5)
                assert not [m for m in await ctl.messages() if m.text == "later"]
                await wait_message(client, ka, scheduled, "sent")
                assert len([m for m in await ctl.messages() if m.text == "exactly once"]) == 1
                counts = await ctl.record_counts()
                assert counts.duplicates == 0

            # the simulator dies: sessions go DISCONNECTED, then come back by themselves without a scan
            sim.kill()
            await wait_status(client, account.headers, a["id"], "DISCONNECTED")
            sim.start()
            for s in (a, b):
                  await wait_status(client, account.headers, s["id"], "CONNECTED", timeout=30)
            r = await client.post("/api/v1/send-message", json={"to": B_PHONE, "text": "back"}, headers=ka)
            await wait_message(client, ka, (await r.get_json())["messageId"], "sent")

        # a gateway restart (a new app on the same database) brings the connected sessions back
        async with gateway_app(tmp_path, sim.url) as (app2, client2, gw2):
            for s in (a, b):
                await wait_status(client2, account.headers, s["id"], "CONNECTED", timeout=30)


async def test_first_pairing_announces_the_number_and_replies_name_the_quoted_sender(tmp_path):
    """A session created without a number learns it from the pairing: `session.connected` carries it the
    first time, and the session resource keeps it. Replies in both directions name the quoted message's author."""
    with simulator("--receipt-delay", "0.05") as sim:
        async with gateway_app(tmp_path, sim.url) as (app, client, gw):
            account = await make_account(gw)
            async with open_sim_control(sim.url) as ctl:
                a = await create(client, account, name="fresh-a")
                b = await create(client, account, name="fresh-b")
                assert a["phoneNumber"] is None
                with gw.bus.subscribe(a["id"]) as a_events, gw.bus.subscribe(b["id"]) as b_events:
                    for s, phone in ((a, A_PHONE), (b, B_PHONE)):
                        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
                        await ctl.wait_qr(s["id"])
                        await ctl.scan(s["id"], phone)
                    connected = await next_valid_event(a_events, "session.connected")
                    assert connected.data == {"status": "CONNECTED", "phoneNumber": A_PHONE}
                    validate_event("session.connected", connected.data, envelope=msgspec.to_builtins(connected))
                    assert (await next_valid_event(b_events, "session.connected")).data["phoneNumber"] == B_PHONE
                    got = await (await client.get(f"{BASE}/{a['id']}", headers=account.headers)).get_json()
                    assert got["phoneNumber"] == A_PHONE
                    ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])

                    # B replies to A's message by its WhatsApp id: A sees itself as the quoted sender
                    mid = await send_text(client, ka, B_PHONE)
                    original = await next_valid_event(b_events, "message.received")
                    r = await client.post("/api/v1/send-message", headers=kb, json={
                        "to": A_PHONE, "text": "got it", "replyTo": original.data["messageId"]})
                    assert r.status_code == 202, await r.get_json()
                    reply = await next_valid_event(a_events, "message.received")
                    sent = await wait_message(client, ka, mid, "sent")
                    assert reply.data["data"]["quoted"]["messageId"] == sent["whatsappId"]
                    assert reply.data["data"]["quoted"]["sender"] == "15550000001@s.whatsapp.net"
                    validate_event("message.received", reply.data, envelope=msgspec.to_builtins(reply))

                    # a transport that leaves a 1:1 quote's author out (WhatsApp may): A's gateway knows it
                    # sent the quoted id, so A is the author; an id it never sent is the peer's
                    host = SessionHost(gw.store, gw.recorder, SINGLE_NODE, on_receipt=ignore_receipt, clock=gw.clock)
                    for n, (quoted_id, author) in enumerate([(sent["whatsappId"], "15550000001@s.whatsapp.net"),
                                                             ("3EB0NOTOURS", "15550000002@s.whatsapp.net")]):
                        await host.transport_event(a["id"], MessageReceived(
                            message_id=f"3EB0ANON{n}", chat="15550000002@s.whatsapp.net",
                            sender="15550000002@s.whatsapp.net", timestamp_ms=1, type="text", text="anon",
                            data={"quoted": {"message_id": quoted_id, "sender": None}}))
                        anon = await next_valid_event(a_events, "message.received")
                        assert anon.data["data"]["quoted"] == {"messageId": quoted_id, "chat": None,
                                                               "sender": author, "text": None}

                    # B replies to its own message by the gateway's id: A sees B as the quoted sender
                    own = await send_text(client, kb, A_PHONE)
                    await next_valid_event(a_events, "message.received")
                    await wait_message(client, kb, own, "sent")
                    r = await client.post("/api/v1/send-message", headers=kb,
                                          json={"to": A_PHONE, "text": "and this", "replyTo": own})
                    assert r.status_code == 202, await r.get_json()
                    again = await next_valid_event(a_events, "message.received")
                    assert again.data["data"]["quoted"]["sender"] == "15550000002@s.whatsapp.net"


async def ignore_receipt(session_id, receipt):
    pass


async def next_valid_event(sub, name, timeout=20):
    """The next event called `name` on a bus subscription (others are checked against their schema)."""
    with trio.fail_after(timeout):
        while True:
            ev = await sub.receive.receive()
            validate_event(ev.event, ev.data, envelope=msgspec.to_builtins(ev))
            if ev.event == name:
                return ev


async def send_text(client, key, to):
    r = await client.post("/api/v1/send-message", json={"to": to, "text": "Hello from the API!"}, headers=key)
    assert r.status_code == 202, await r.get_json()
    return (await r.get_json())["messageId"]


async def on_whatsapp(client, key, phone):
    return await (await client.get(f"/api/v1/on-whatsapp/{phone}", headers=key)).get_json()


async def test_open_world_sends_to_the_seed_example_number_and_closed_world_refuses_it(tmp_path):
    """The API document's example recipient, `1234567890`, with no register: sent, delivered, read. A number
    control unregistered, or any unregistered one in a `--closed-world` simulator, fails "not on WhatsApp"."""
    for closed in (False, True):
        options = ("--autopair", "0.05", "--receipt-delay", "0.05") + (("--closed-world",) if closed else ())
        run_dir = tmp_path / ("closed" if closed else "open")
        run_dir.mkdir()
        with simulator(*options) as sim:
            async with gateway_app(run_dir, sim.url) as (_, client, gw), open_sim_control(sim.url) as ctl:
                account = await make_account(gw)
                s = await create(client, account, name="a", phoneNumber=A_PHONE)
                await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
                await wait_status(client, account.headers, s["id"], "CONNECTED")
                key = bearer(s["apiKey"])
                seed = await send_text(client, key, "1234567890")
                if closed:
                    failed = await wait_message(client, key, seed, "failed")
                    assert "not on WhatsApp" in failed["statusReason"]
                    assert (await on_whatsapp(client, key, "1234567890"))["onWhatsApp"] is False
                    assert await ctl.messages(recipient="+1234567890") == []
                    continue
                read = await wait_message(client, key, seed, "read")
                assert [h["status"] for h in read["history"]] == ["queued", "sending", "sent", "delivered", "read"]
                [entry] = await ctl.messages(recipient="+1234567890")
                assert entry.text == "Hello from the API!" and entry.sender == "15550000001@s.whatsapp.net"
                answer = await on_whatsapp(client, key, "1234567890")
                assert (answer["onWhatsApp"], answer["jid"]) == (True, "1234567890@s.whatsapp.net")
                await ctl.unregister("+15557770009")
                failed = await wait_message(client, key, await send_text(client, key, "+15557770009"), "failed")
                assert "not on WhatsApp" in failed["statusReason"]
                assert (await on_whatsapp(client, key, "+15557770009"))["onWhatsApp"] is False


async def next_event(bus, kind, timeout=15, **data):
    """The next `kind` event on a bus subscription whose data has these values (others are skipped)."""
    with trio.fail_after(timeout):
        while True:
            ev = await bus.receive.receive()
            if ev.event == kind and all(ev.data.get(k) == v for k, v in data.items()):
                return ev


async def test_presence_typing_and_read_between_two_sessions_across_reconnects(tmp_path):
    """A follows B's presence (again after a reconnect, and after the simulator drops its link), B sees A type
    and record, and A's read receipt turns B's message `read` with a `message.status` event."""
    jb = "15550000002@s.whatsapp.net"
    ja = "15550000001@s.whatsapp.net"
    with simulator("--receipt-delay", "0.05") as sim:
        async with gateway_app(tmp_path, sim.url) as (app, client, gw), open_sim_control(sim.url) as ctl:
            await ctl.set_auto_read(False)  # B's message turns read only when A marks it
            account = await make_account(gw)
            a = await create(client, account, name="a", phoneNumber=A_PHONE)
            b = await create(client, account, name="b", phoneNumber=B_PHONE)
            for s, phone in ((a, A_PHONE), (b, B_PHONE)):
                await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
                await ctl.wait_qr(s["id"])
                await ctl.scan(s["id"], phone)
                await wait_status(client, account.headers, s["id"], "CONNECTED")
            ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])

            async def b_goes(available):
                r = await client.post("/api/v1/presence", json={"available": available}, headers=kb)
                assert (r.status_code, await r.get_json()) == (200, {"available": available})

            with gw.bus.subscribe(a["id"]) as a_bus, gw.bus.subscribe(b["id"]) as b_bus:
                r = await client.post("/api/v1/presence/subscribe", json={"to": B_PHONE}, headers=ka)
                assert (r.status_code, await r.get_json()) == (200, {"jid": jb, "subscribed": True})
                await next_event(a_bus, "presence.update", jid=jb, available=False)  # B's state, at once
                await b_goes(True)
                online = await next_event(a_bus, "presence.update", jid=jb, available=True)
                assert set(online.data) >= {"jid", "available"}
                await b_goes(False)
                await next_event(a_bus, "presence.update", jid=jb, available=False)

                # typing and recording reach B as chat presence
                for state in ("composing", "recording", "paused"):
                    r = await client.post(f"/api/v1/chats/{B_PHONE}/presence", json={"state": state}, headers=ka)
                    assert r.status_code == 200, await r.get_json()
                    ev = await next_event(b_bus, "presence.update", state=state)
                    assert (ev.data["chat"], ev.data["sender"]) == (ja, ja)

                # A reads B's message: B's message turns read, with its message.status event
                r = await client.post("/api/v1/send-message", json={"to": A_PHONE, "text": "read me"}, headers=kb)
                mid = (await r.get_json())["messageId"]
                got = await next_event(a_bus, "message.received", text="read me")
                delivered = await wait_message(client, kb, mid, "delivered")
                await trio.sleep(0.3)  # several receipt delays: nothing reads it by itself
                assert (await (await client.get(f"/api/v1/messages/{mid}", headers=kb)).get_json())[
                    "status"] == "delivered"
                r = await client.post(f"/api/v1/chats/{B_PHONE}/read", json={"messageId": got.data["messageId"]},
                                      headers=ka)
                assert (r.status_code, (await r.get_json())["messageIds"]) == (200, [delivered["whatsappId"]])
                status = await next_event(b_bus, "message.status", status="read")
                assert status.data["messageId"] == mid
                read = await wait_message(client, kb, mid, "read")
                assert [h["status"] for h in read["history"]][-2:] == ["delivered", "read"]

                # A disconnects and connects again: it follows B again by itself
                await client.post(f"{BASE}/{a['id']}/disconnect", headers=account.headers)
                await wait_status(client, account.headers, a["id"], "DISCONNECTED")
                await client.post(f"{BASE}/{a['id']}/connect", headers=account.headers)
                await wait_status(client, account.headers, a["id"], "CONNECTED")
                await next_event(a_bus, "presence.update", jid=jb, available=False)  # subscribed again
                await b_goes(True)
                await next_event(a_bus, "presence.update", jid=jb, available=True)

                # the simulator drops A's link: A reconnects by itself and follows B again
                await ctl.drop(a["id"])
                await wait_status(client, account.headers, a["id"], "CONNECTED", timeout=30)
                await next_event(a_bus, "presence.update", jid=jb, available=True)  # subscribed again
                await b_goes(False)
                await next_event(a_bus, "presence.update", jid=jb, available=False)
