"""Connect, QR, pairing code, disconnect, delete and restore, through the HTTP layer.

The transport is the scriptable fake; the same flows run against the simulator in
the end-to-end tests.
"""

from __future__ import annotations

import trio

from gateway import create_app
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from .test_api_sessions import BASE, bearer, create, error_of


async def wait_status(client, headers, sid, status, timeout=5):
    with trio.fail_after(timeout):
        while True:
            got = await (await client.get(f"{BASE}/{sid}", headers=headers)).get_json()
            if got["status"] == status:
                return got
            await trio.sleep(0.01)


async def test_connect_answers_connecting_with_qr_then_scan_connects(client, account, transports, gateway):
    s = await create(client, account, phoneNumber="+15550001111")
    with gateway.bus.subscribe(s["id"]) as sub:
        r = await client.post(f"{BASE}/{s['id']}/connect", headers=bearer(s["apiKey"]))
        body = await r.get_json()
        assert r.status_code == 200 and body["status"] == "CONNECTING" and body["qr"].startswith("2@")
        q = await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers)
        assert (await q.get_json()) == {"qr": body["qr"], "status": "CONNECTING"}
        png = await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers, query_string={"format": "png"})
        assert png.content_type == "image/png" and (await png.get_data()).startswith(b"\x89PNG")
        svg = await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers, query_string={"format": "svg"})
        assert svg.content_type.startswith("image/svg+xml") and b"<svg" in await svg.get_data()
        bad = await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers, query_string={"format": "gif"})
        assert (await error_of(bad, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "query.format"
        transports.transports[s["id"]].scan()
        await wait_status(client, account.headers, s["id"], "CONNECTED")
        with trio.fail_after(5):
            names = [(await sub.receive.receive()).event for _ in range(2)]
        assert names == ["session.qr", "session.connected"]
    r = await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers)
    err = await error_of(r, 409, "QR_NOT_AVAILABLE")
    assert "CONNECTED" in err["message"]
    again = await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    assert (await again.get_json())["status"] == "CONNECTED"  # idempotent
    assert len(transports.transports[s["id"]].runs) == 1


async def test_qrcode_before_connect_is_409(client, account):
    s = await create(client, account)
    err = await error_of(await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers),
                         409, "QR_NOT_AVAILABLE")
    assert "DISCONNECTED" in err["message"]


async def test_pairing_code(client, account, transports):
    s = await create(client, account)
    r = await client.post(f"{BASE}/{s['id']}/pairing-code", headers=account.headers,
                          json={"phoneNumber": "+1 555 000 2222"})
    await error_of(r, 409, "CONFLICT")  # not connecting yet
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    r = await client.post(f"{BASE}/{s['id']}/pairing-code", headers=account.headers,
                          json={"phoneNumber": "+1 555 000 2222"})
    assert r.status_code == 200 and (await r.get_json()) == {"code": "ABCD1234"}
    assert transports.transports[s["id"]].paired_phone == "+15550002222"
    r = await client.post(f"{BASE}/{s['id']}/pairing-code", headers=account.headers, json={"phoneNumber": "12"})
    assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.phoneNumber"


async def test_disconnect_is_graceful_and_keeps_the_session(client, account, transports, gateway):
    transports.script = ["connect"]
    s = await create(client, account)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    await wait_status(client, account.headers, s["id"], "CONNECTED")
    with gateway.bus.subscribe(s["id"]) as sub:
        r = await client.post(f"{BASE}/{s['id']}/disconnect", headers=bearer(s["apiKey"]))
        assert (await r.get_json())["status"] == "DISCONNECTED"
        ev = sub.receive.receive_nowait()
        assert ev.event == "session.disconnected" and ev.data["status"] == "DISCONNECTED"
    t = transports.transports[s["id"]]
    assert t.cancelled_runs == 0 and not t.connected  # ended by disconnect(), not by cancellation
    record = await gateway.store.get_session(s["id"])
    assert record.connect_on_start is False


async def test_delete_logs_out_and_stops_the_actor(client, account, transports, gateway):
    transports.script = ["connect"]
    s = await create(client, account)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    await wait_status(client, account.headers, s["id"], "CONNECTED")
    r = await client.delete(f"{BASE}/{s['id']}", headers=account.headers)
    assert r.status_code == 200
    assert transports.transports[s["id"]]._logout is True
    assert gateway.supervisor.get(s["id"]) is None


async def test_logout_unlinks_the_device_and_keeps_the_session(client, account, transports, gateway):
    transports.script = ["connect"]
    s = await create(client, account)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    await wait_status(client, account.headers, s["id"], "CONNECTED")
    r = await client.post(f"{BASE}/{s['id']}/logout", headers=bearer(s["apiKey"]))
    assert r.status_code == 200 and (await r.get_json())["status"] == "LOGGED_OUT"
    assert transports.transports[s["id"]]._logout is True
    record = await gateway.store.get_session(s["id"])
    assert record is not None and record.connect_on_start is False  # it stays, and does not come back by itself
    again = await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"]))
    assert again.status_code == 200  # the key still works


async def test_connect_failure_surfaces_as_failed_with_reason(client, account, transports):
    transports.script = ["fail:failed to dial whatsapp web websocket: no such host"]
    s = await create(client, account)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    got = await wait_status(client, account.headers, s["id"], "FAILED", timeout=30)
    assert "no such host" in got["statusReason"]


async def test_restart_brings_connected_sessions_back(tmp_path):
    from gateway import Config

    from .conftest import make_account

    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim")
    factory = FakeFactory(["connect"])
    app = create_app(config, transport_factory=factory)
    async with app.test_app():
        account = await make_account(running_gateway(app))
        client = app.test_client()
        on = await create(client, account, name="on")
        off = await create(client, account, name="off")
        await client.post(f"{BASE}/{on['id']}/connect", headers=account.headers)
        await wait_status(client, account.headers, on["id"], "CONNECTED")
    factory2 = FakeFactory(["connect"])
    app2 = create_app(config, transport_factory=factory2)
    async with app2.test_app():
        client = app2.test_client()
        await wait_status(client, account.headers, on["id"], "CONNECTED")
        assert off["id"] not in factory2.transports
        assert (await (await client.get(f"{BASE}/{off['id']}", headers=account.headers)).get_json())["status"] \
            == "DISCONNECTED"


async def test_repeated_inbound_message_is_one_event(client, account, transports, gateway):
    from actors import MessageReceived

    transports.script = ["connect"]
    s = await create(client, account)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    await wait_status(client, account.headers, s["id"], "CONNECTED")
    t = transports.transports[s["id"]]
    msg = MessageReceived(message_id="3EB0AA", chat="1555@s.whatsapp.net", sender="1555@s.whatsapp.net",
                          timestamp_ms=1, type="text", text="hi")
    with gateway.bus.subscribe(s["id"]) as sub:
        for _ in range(3):  # at-least-once transports may repeat an event after a reconnect
            await t._events.send(msg)
        await t._events.send(MessageReceived(message_id="3EB0BB", chat=msg.chat, sender=msg.sender,
                                             timestamp_ms=2, type="text", text="next"))
        with trio.fail_after(5):
            first = await sub.receive.receive()
            second = await sub.receive.receive()
        assert (first.data["messageId"], second.data["messageId"]) == ("3EB0AA", "3EB0BB")
        assert first.data["text"] == "hi" and first.event == "message.received"


async def test_a_connect_that_fails_at_once_is_an_error_answer_logged_and_named(client, account, transports, caplog):
    chain = ("failed to connect: websocket: bad handshake: " + "x" * 200
             + ": device store /data/s.db cannot be opened")
    transports.script = [f"fatal:{chain}"]
    s = await create(client, account)
    with trio.fail_after(10):
        r = await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    err = await error_of(r, 502, "CONNECT_FAILED")
    assert err["message"] == "Connecting the session failed: failed to connect"  # short and readable
    assert err["details"][0]["message"] == chain  # the raw text, whole, in a field of its own
    assert any(rec.getMessage() == "connect failed" for rec in caplog.records)
    got = await (await client.get(f"{BASE}/{s['id']}", headers=account.headers)).get_json()
    assert got["status"] == "FAILED"
    qr = await error_of(await client.get(f"{BASE}/{s['id']}/qrcode", headers=account.headers), 409, "QR_NOT_AVAILABLE")
    assert "FAILED" in qr["message"] and "failed to connect" in qr["message"]
    assert "Call connect first" not in qr["message"]


async def test_connect_after_a_failure_answers_the_new_attempt_not_the_old_state(client, account, transports):
    """A FAILED session connected again: the answer is about this connect, not the failure before it."""
    transports.script = ["fatal:device store cannot be opened", "connect"]
    s = await create(client, account)
    with trio.fail_after(10):
        await error_of(await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers), 502, "CONNECT_FAILED")
        r = await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    assert r.status_code == 200, await r.get_data()
    assert (await r.get_json())["status"] == "CONNECTED"
