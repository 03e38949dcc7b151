"""Webhooks through the whole gateway: a real local receiver, signatures checked by `standardwebhooks`."""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from standardwebhooks import Webhook

from gateway import Config, create_app
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of
from .test_event_schemas import validate_event


class Receiver:
    """A minimal ASGI webhook receiver: records every POST; `status` decides the answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.got = trio.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                kind = msg["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.calls.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        self.got.set()
        self.got = trio.Event()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait(self, n: int, timeout: float = 15) -> None:
        with trio.fail_after(timeout):
            while len(self.calls) < n:
                await self.got.wait()


@asynccontextmanager
async def receiver_at(port: int = 0):
    receiver = Receiver()
    cfg = HyperConfig()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, receiver, cfg)
        receiver.url = binds[0] + "/hook"
        yield receiver
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def gateway_with(tmp_path):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", allow_private_urls=True,
                    send_min_gap=0.0, send_jitter=0.0)
    factory = FakeFactory(["connect"])
    app = create_app(config, transport_factory=factory)
    async with app.test_app():
        yield app, app.test_client(), running_gateway(app)


async def wait_delivery(client, key, delivery_id, status, timeout=10):
    with trio.fail_after(timeout):
        while True:
            got = await (await client.get(f"/api/v1/webhooks/deliveries/{delivery_id}", headers=key)).get_json()
            if got["status"] == status:
                return got
            await trio.sleep(0.02)


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict:
    return Webhook(secret).verify(body, {"webhook-id": headers["webhook-id"],
                                         "webhook-timestamp": headers["webhook-timestamp"],
                                         "webhook-signature": headers["webhook-signature"]})


async def test_events_arrive_signed_filtered_and_listed(tmp_path):
    async with receiver_at() as rx, gateway_with(tmp_path) as (app, client, gw):
        account = await make_account(gw)
        s = await create(client, account, webhookUrl=rx.url,
                         webhookEvents=["session.connected", "message.sent", "message.status"])
        secret = s["webhookSecret"]
        assert secret.startswith("whsec_")
        got = await (await client.get(f"{BASE}/{s['id']}", headers=account.headers)).get_json()
        assert got["webhookSecret"] == secret
        assert (await (await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"]))).get_json())[
            "webhookSecret"] is None  # only the account token sees it
        await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        await rx.wait(1)
        r = await client.post("/api/v1/send-message", json={"to": "1234567890", "text": "hi"},
                              headers=bearer(s["apiKey"]))
        mid = (await r.get_json())["messageId"]
        await rx.wait(2)
        events = [verify(secret, h, b) for h, b in rx.calls]
        assert [e["event"] for e in events] == ["session.connected", "message.sent"]
        assert all(e["sessionId"] == s["id"] and e["timestamp"].endswith("Z") for e in events)
        assert events[1]["data"]["messageId"] == mid and events[1]["data"]["status"] == "sent"
        for e in events:  # each signed body as received is its documented envelope and payload
            validate_event(e["event"], e["data"], envelope=e)
        assert "session.qr" not in [e["event"] for e in events]  # filtered out
        with pytest.raises(Exception):
            verify("whsec_" + base64.b64encode(b"x" * 32).decode(), *rx.calls[0])
        with trio.fail_after(10):
            while True:  # the receiver answered; the dispatcher records that a moment later
                listed = await (await client.get("/api/v1/webhooks/deliveries", headers=bearer(s["apiKey"]),
                                                 query_string={"status": "delivered"})).get_json()
                if len(listed["data"]) == 2:
                    break
                await trio.sleep(0.02)
        assert {d["event"] for d in listed["data"]} == {"session.connected", "message.sent"}
        one = listed["data"][0]
        assert one["id"] == rx.calls[-1][0]["webhook-id"] and one["attempts"] == 1 and one["lastStatus"] == 200
        detail = await (await client.get(f"/api/v1/webhooks/deliveries/{one['id']}",
                                         headers=bearer(s["apiKey"]))).get_json()
        assert [a["statusCode"] for a in detail["history"]] == [200]
        bad = await client.get("/api/v1/webhooks/deliveries", headers=bearer(s["apiKey"]),
                               query_string={"status": "lost"})
        assert (await error_of(bad, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "query.status"


async def test_test_ping_redeliver_and_rotation(tmp_path):
    async with receiver_at() as rx, gateway_with(tmp_path) as (app, client, gw):
        account = await make_account(gw)
        s = await create(client, account, webhookUrl=rx.url, webhookEvents=["message.received"])
        r = await client.post(f"{BASE}/{s['id']}/webhook/test", headers=bearer(s["apiKey"]))
        queued = await r.get_json()
        assert r.status_code == 202 and queued["event"] == "webhook.test"
        await rx.wait(1)
        headers, body = rx.calls[0]
        assert headers["webhook-id"] == queued["deliveryId"]
        assert verify(s["webhookSecret"], headers, body)["event"] == "webhook.test"
        # redeliver: same id, same body
        await wait_delivery(client, bearer(s["apiKey"]), queued["deliveryId"], "delivered")
        r = await client.post(f"/api/v1/webhooks/deliveries/{queued['deliveryId']}/redeliver",
                              headers=bearer(s["apiKey"]))
        assert r.status_code == 202
        await rx.wait(2)
        assert rx.calls[1][0]["webhook-id"] == headers["webhook-id"] and rx.calls[1][1] == body
        # rotation: new events are signed with the new secret
        r = await client.post(f"{BASE}/{s['id']}/webhook/rotate-secret", headers=account.headers)
        new_secret = (await r.get_json())["webhookSecret"]
        assert new_secret != s["webhookSecret"]
        await client.post(f"{BASE}/{s['id']}/webhook/test", headers=account.headers)
        await rx.wait(3)
        assert verify(new_secret, *rx.calls[2])["event"] == "webhook.test"
        rot = await client.post(f"{BASE}/{s['id']}/webhook/rotate-secret", headers=bearer(s["apiKey"]))
        await error_of(rot, 401, "UNAUTHORIZED")
        other = await create(client, account, name="no hook")
        await error_of(await client.post(f"{BASE}/{other['id']}/webhook/test", headers=account.headers),
                       409, "CONFLICT")
        nope = await client.post(f"/api/v1/webhooks/deliveries/{queued['deliveryId']}/redeliver",
                                 headers=bearer(other["apiKey"]))
        await error_of(nope, 404, "NOT_FOUND")


async def test_retries_pending_survive_a_restart_with_the_same_ids(tmp_path):
    async with receiver_at() as rx:
        port = int(rx.url.split(":")[2].split("/")[0])
        rx.status = 503
        async with gateway_with(tmp_path) as (app, client, gw):
            account = await make_account(gw)
            s = await create(client, account, webhookUrl=rx.url)
            for _ in range(3):
                await client.post(f"{BASE}/{s['id']}/webhook/test", headers=account.headers)
            await rx.wait(3)  # each failed once; retries are now scheduled
            with trio.fail_after(10):
                while True:
                    pending = await (await client.get("/api/v1/webhooks/deliveries", headers=bearer(s["apiKey"]),
                                                      query_string={"status": "pending"})).get_json()
                    if all(d["attempts"] == 1 for d in pending["data"]):
                        break
                    await trio.sleep(0.02)
            ids = {d["id"] for d in pending["data"]}
            assert len(ids) == 3 and all(d["attempts"] == 1 and d["lastStatus"] == 503 for d in pending["data"])
        rx.status = 200
        rx.calls.clear()
        async with gateway_with(tmp_path) as (app, client, gw):
            await rx.wait(3, timeout=30)
            assert {h["webhook-id"] for h, _ in rx.calls} == ids
            await trio.sleep(0.2)
            delivered = await (await client.get("/api/v1/webhooks/deliveries", headers=bearer(s["apiKey"]),
                                                query_string={"status": "delivered"})).get_json()
            assert {d["id"] for d in delivered["data"]} == ids
        assert port


async def test_event_stream_in_order_and_slow_consumer_cut_off(tmp_path):
    from trio_websocket import ConnectionClosed, open_websocket_url

    from gateway._events import make_event

    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", stream_buffer=16)
    app = create_app(config, transport_factory=FakeFactory(["connect"]))
    hyper = HyperConfig()
    hyper.bind = ["127.0.0.1:0"]
    hyper.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, hyper)
        base = binds[0].replace("http://", "ws://")
        gw = running_gateway(app)
        account = await make_account(gw)
        s = await create(app.test_client(), account)
        async with open_websocket_url(f"{base}/api/v1/events?apiKey=nope") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == 4401
        # in order
        async with open_websocket_url(f"{base}/api/v1/events",
                                      extra_headers=[("Authorization", f"Bearer {s['apiKey']}")]) as ws:
            with trio.fail_after(5):
                while gw.bus.subscribers == 0:
                    await trio.sleep(0.01)
            for i in range(10):
                gw.bus.publish_nowait(make_event("presence.update", s["id"], {"n": i}))
            got = [msgspec.json.decode(await ws.get_message()) for _ in range(10)]
            assert [g["data"]["n"] for g in got] == list(range(10))
            assert got[0]["sessionId"] == s["id"]
        # a consumer that never reads is cut off with 4008; the gateway's buffer never exceeds 16 events
        async with open_websocket_url(f"{base}/api/v1/events", message_queue_size=1,
                                      extra_headers=[("Authorization", f"Bearer {s['apiKey']}")]) as ws:
            with trio.fail_after(5):
                while gw.bus.subscribers == 0:
                    await trio.sleep(0.01)
            blob = "x" * 65536
            with trio.fail_after(30):
                while gw.bus.subscribers:
                    for sub in list(gw.bus._subs):
                        assert sub.receive.statistics().current_buffer_used <= 16
                    gw.bus.publish_nowait(make_event("presence.update", s["id"], {"blob": blob}))
                    await trio.sleep(0)
            with trio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 4008
        nursery.cancel_scope.cancel()
