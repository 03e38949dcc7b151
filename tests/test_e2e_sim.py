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
from .test_api_sessions import BASE, bearer, create, error_of
from .test_event_schemas import validate_event

pytestmark = pytest.mark.slow

A_PHONE, B_PHONE, C_PHONE = "+15550000001", "+15550000002", "+15550000003"


@asynccontextmanager
async def gateway_app(tmp_path, sim_url, **settings):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", data_dir=str(tmp_path / "data"), transport="sim",
                    sim_url=sim_url, send_min_gap=0.0, send_jitter=0.0, limit_send="off",
                    limit_api="off", reconnect_max_delay=1.0, **settings)
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



async def pair(client, account, ctl, a: dict, b: dict, *, wait: bool = True) -> None:
    """Connect sessions `a` and `b` and scan their QR codes as A_PHONE and B_PHONE (then wait for CONNECTED)."""
    for s, phone in ((a, A_PHONE), (b, B_PHONE)):
        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        await ctl.wait_qr(s["id"])
        await ctl.scan(s["id"], phone)
    for s in (a, b) if wait else ():
        await wait_status(client, account.headers, s["id"], "CONNECTED")

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
                    await pair(client, account, ctl, a, b, wait=False)
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
            await pair(client, account, ctl, a, b)
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


async def test_received_media_is_downloaded_and_served_to_its_session_only(tmp_path):
    """A sends B an image and a document: B's `message.received` names each stored file, B's key fetches
    exactly the bytes A sent, A's key cannot; a file over GATEWAY_MEDIA_MAX_BYTES still gives its event,
    with the reason; a purged file is 404."""
    import hashlib

    document = b"%PDF-1.4\n" + bytes(range(256)) * 2
    too_big = b"%PDF-1.4\n" + b"x" * 3000
    with simulator("--receipt-delay", "0.05") as sim:
        async with gateway_app(tmp_path, sim.url, media_max_bytes=2048) as (app, client, gw):
            account = await make_account(gw)
            async with open_sim_control(sim.url) as ctl:
                a = await create(client, account, name="media-a", phoneNumber=A_PHONE)
                b = await create(client, account, name="media-b", phoneNumber=B_PHONE)
                await pair(client, account, ctl, a, b)
                ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])
                with gw.bus.subscribe(b["id"]) as inbox:
                    for body in ({"image": {"data": base64.b64encode(PNG).decode(), "caption": "pic"}},
                                 {"document": {"data": base64.b64encode(document).decode(),
                                               "filename": 'q3 "report".pdf'}},
                                 {"document": {"data": base64.b64encode(too_big).decode(), "filename": "big.pdf"}}):
                        r = await client.post("/api/v1/send-message", json={"to": B_PHONE} | body, headers=ka)
                        assert r.status_code == 202, await r.get_json()
                    received = []
                    with trio.fail_after(20):
                        while len(received) < 3:
                            ev = await inbox.receive.receive()
                            if ev.event == "message.received":
                                validate_event(ev.event, ev.data, envelope=msgspec.to_builtins(ev))
                                received.append(ev.data)
                image, doc, big = (m["media"] for m in received)
                for media, sent, mimetype in ((image, PNG, "image/png"), (doc, document, "application/pdf")):
                    assert media["id"].startswith("med_") and media["url"] == f"/api/v1/media/{media['id']}"
                    assert media["size"] == len(sent) and media["sha256"] == hashlib.sha256(sent).hexdigest()
                    assert media["mimetype"] == mimetype and media["error"] is None
                    r = await client.get(media["url"], headers=kb)
                    assert r.status_code == 200
                    body = await r.get_data()
                    assert body == sent and hashlib.sha256(body).hexdigest() == media["sha256"]
                    assert r.headers["Content-Type"] == mimetype
                    assert r.headers["Content-Length"] == str(len(sent))
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                    assert r.headers["Cache-Control"] == "private"
                    # another session's key: the file does not exist for it
                    other = await client.get(media["url"], headers=ka)
                    assert other.status_code == 404 and (await other.get_json())["error"]["code"] == "NOT_FOUND"
                assert image["filename"] is None and r.headers["Content-Disposition"] == (
                    "attachment; filename=\"q3 _report_.pdf\"; filename*=UTF-8''q3%20%22report%22.pdf")
                assert doc["filename"] == 'q3 "report".pdf'
                assert big == {"id": None, "mimetype": "application/pdf", "size": len(too_big), "sha256": None,
                               "url": None, "filename": "big.pdf",
                               "error": f"{len(too_big)} bytes is larger than GATEWAY_MEDIA_MAX_BYTES (2048 bytes)"}
                assert [m["type"] for m in received] == ["image", "document", "document"]
                assert received[0]["text"] == "pic"
                assert received[0]["data"]["sha256"] == image["sha256"]  # what the network announced

                # past the retention, the purge takes file and record: the URL is 404
                assert await gw.media.store.purge_older_than(gw.clock.now_ms() + 1) == 2
                gone = await client.get(image["url"], headers=kb)
                assert gone.status_code == 404 and (await gone.get_json())["success"] is False
                assert not [p for p in (tmp_path / "data" / "media").rglob("med_*")]
                bad = await client.get("/api/v1/media/..%2F..%2Fg.db", headers=kb)
                assert bad.status_code == 404


async def test_reactions_edits_revokes_and_poll_votes_reach_the_other_session_signed(tmp_path):
    """A reacts to B's message (and takes it back), edits and revokes its own, B votes on A's poll: each
    arrives at the other session as its own event, in its documented shape, and B's webhook gets them signed.
    None of them is folded into message.received; DELETE on a queued message still cancels it."""
    from .test_api_webhooks import receiver_at, verify

    ja, jb = "15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net"
    with simulator("--receipt-delay", "0.05") as sim:
        async with receiver_at() as rx, open_sim_control(sim.url) as ctl:
            config = Config(database_url=f"sqlite:///{tmp_path}/g.db", data_dir=str(tmp_path / "data"),
                            transport="sim", sim_url=sim.url, send_min_gap=0.0, send_jitter=0.0, limit_send="off",
                            limit_api="off", reconnect_max_delay=1.0, allow_private_urls=True)
            app = create_app(config)
            async with app.test_app():
                client, gw = app.test_client(), running_gateway(app)
                account = await make_account(gw)
                a = await create(client, account, name="a", phoneNumber=A_PHONE)
                b = await create(client, account, name="b", phoneNumber=B_PHONE, webhookUrl=rx.url,
                                 webhookEvents=["message.reaction", "message.edited", "message.revoked"])
                await pair(client, account, ctl, a, b)
                ka, kb = bearer(a["apiKey"]), bearer(b["apiKey"])

                with gw.bus.subscribe(a["id"]) as a_bus, gw.bus.subscribe(b["id"]) as b_bus:
                    seen_by_b: list = []

                    async def b_gets(kind, **data):
                        ev = await next_event(b_bus, kind, **data)
                        validate_event(ev.event, ev.data, envelope=msgspec.to_builtins(ev))
                        seen_by_b.append(ev)
                        return ev

                    # B writes to A; A reacts to the received message (by its WhatsApp id and chat), then removes it
                    r = await client.post("/api/v1/send-message", json={"to": A_PHONE, "text": "lunch?"}, headers=kb)
                    b_mid = (await r.get_json())["messageId"]
                    got = await next_event(a_bus, "message.received", text="lunch?")
                    wa_id = got.data["messageId"]
                    r = await client.post(f"/api/v1/messages/{wa_id}/reaction",
                                          json={"emoji": "👍", "chat": B_PHONE}, headers=ka)
                    assert r.status_code == 200, await r.get_json()
                    reaction = await b_gets("message.reaction", removed=False)
                    assert (reaction.data["messageId"], reaction.data["emoji"], reaction.data["chat"],
                            reaction.data["sender"]) == (wa_id, "👍", ja, ja)
                    r = await client.post(f"/api/v1/messages/{wa_id}/reaction", json={"emoji": "", "chat": B_PHONE},
                                          headers=ka)
                    assert r.status_code == 200
                    removed = await b_gets("message.reaction", removed=True)
                    assert removed.data["emoji"] == "" and removed.data["messageId"] == wa_id

                    # B reacts to its own sent message by its gateway id: A sees it
                    r = await client.post(f"/api/v1/messages/{b_mid}/reaction", json={"emoji": "🔥"}, headers=kb)
                    assert r.status_code == 200
                    own = await next_event(a_bus, "message.reaction", emoji="🔥")
                    assert own.data["messageId"] == wa_id and own.data["sender"] == jb

                    # A edits its own message: B gets the new text; the history notes it
                    r = await client.post("/api/v1/send-message", json={"to": B_PHONE, "text": "see you at 1"},
                                          headers=ka)
                    a_mid = (await r.get_json())["messageId"]
                    sent = await wait_message(client, ka, a_mid, "sent")
                    first = await b_gets("message.received", text="see you at 1")
                    r = await client.put(f"/api/v1/messages/{a_mid}", json={"text": "see you at 2"}, headers=ka)
                    assert r.status_code == 200, await r.get_json()
                    edited = await b_gets("message.edited")
                    assert (edited.data["messageId"], edited.data["text"], edited.data["sender"]) == (
                        sent["whatsappId"], "see you at 2", ja)
                    assert first.data["messageId"] == sent["whatsappId"]

                    # A revokes it: B gets message.revoked; GET shows it
                    r = await client.delete(f"/api/v1/messages/{a_mid}", headers=ka)
                    assert r.status_code == 200, await r.get_json()
                    assert (await r.get_json())["action"] == "revoked"
                    revoked = await b_gets("message.revoked")
                    assert revoked.data["messageId"] == sent["whatsappId"] and revoked.data["chat"] == ja
                    detail = await (await client.get(f"/api/v1/messages/{a_mid}", headers=ka)).get_json()
                    assert "revoked for everyone" in [h["reason"] for h in detail["history"]]
                    await error_of(await client.put(f"/api/v1/messages/{a_mid}", json={"text": "x"}, headers=ka),
                                   409, "CONFLICT")

                    # A polls B; B votes: A gets poll.vote with the option names
                    r = await client.post("/api/v1/send-message", headers=ka, json={
                        "to": B_PHONE, "poll": {"question": "Where?", "options": ["Pizza", "Sushi", "Tacos"],
                                                "selectableCount": 2}})
                    poll_mid = (await r.get_json())["messageId"]
                    poll = await next_event(b_bus, "message.received", type="poll")
                    r = await client.post(f"/api/v1/messages/{poll.data['messageId']}/vote",
                                          json={"options": ["Sushi", "Tacos"], "chat": A_PHONE}, headers=kb)
                    assert r.status_code == 200, await r.get_json()
                    vote = await next_event(a_bus, "poll.vote")
                    validate_event("poll.vote", vote.data, envelope=msgspec.to_builtins(vote))
                    assert (vote.data["messageId"], vote.data["options"], vote.data["sender"]) == (
                        poll.data["messageId"], ["Sushi", "Tacos"], jb)
                    poll_sent = await wait_message(client, ka, poll_mid, "sent")
                    assert poll_sent["whatsappId"] == poll.data["messageId"]
                    r = await client.post(f"/api/v1/messages/{poll.data['messageId']}/vote",
                                          json={"options": ["Nope"], "chat": A_PHONE}, headers=kb)
                    # a received poll's options are WhatsApp's to check, not the gateway's
                    assert (await error_of(r, 502, "WHATSAPP_ERROR"))["message"]

                    # a queued (scheduled) message is still cancelled, never revoked
                    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
                    r = await client.post("/api/v1/send-message", json={"to": B_PHONE, "text": "later",
                                                                        "sendAt": later}, headers=ka)
                    r = await client.delete(f"/api/v1/messages/{(await r.get_json())['messageId']}", headers=ka)
                    assert ((await r.get_json())["action"], (await r.get_json())["status"]) == (
                        "cancelled", "cancelled")

                # message.received carried none of the actions
                assert all(e.event != "message.received" or e.data["type"] in ("text", "poll") for e in seen_by_b)
                # B's webhook got the three subscribed events, signed, in their documented shape
                await rx.wait(4)
                secret = (await (await client.get(f"{BASE}/{b['id']}", headers=account.headers)).get_json())[
                    "webhookSecret"]
                events = [verify(secret, h, body) for h, body in rx.calls]
                assert [e["event"] for e in events] == ["message.reaction", "message.reaction", "message.edited",
                                                        "message.revoked"]
                for e in events:
                    validate_event(e["event"], e["data"], envelope=e)
