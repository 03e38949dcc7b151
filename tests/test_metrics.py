"""/metrics: Prometheus text that prometheus-client's own parser reads, with live numbers."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway import Config, create_app
from gateway._metrics import GatewayMetrics
from gateway.app import running_gateway

from bench._receiver import open_receiver

from ._fake_transport import FakeFactory
from .conftest import make_account


def parse(text: str) -> dict[str, list]:
    """family name -> samples"""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(families, family, sample_name, **labels) -> float:
    matches = [s.value for s in families[family] if s.name == sample_name and all(
        s.labels.get(k) == v for k, v in labels.items())]
    assert matches, f"no {sample_name} {labels} in {families[family]}"
    return sum(matches)


@pytest.fixture
async def app(tmp_path):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", send_min_gap=0.0,
                    send_jitter=0.0, limit_send="2/minute", limit_api="1000/minute")
    app = create_app(config, transport_factory=FakeFactory(["connect"]))
    async with app.test_app():
        yield app


async def scrape(client) -> dict[str, list]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.content_type.startswith("text/plain")
    return parse((await r.get_data()).decode())


async def test_metrics_cover_requests_sessions_limits_and_webhooks(tmp_path):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", send_min_gap=0.0,
                    send_jitter=0.0, limit_send="2/minute", limit_api="1000/minute", allow_private_urls=True)
    app = create_app(config, transport_factory=FakeFactory(["connect"]))
    with trio.fail_after(20):
        async with open_receiver() as receiver, app.test_app():
            await _cover_requests_sessions_limits_and_webhooks(app, receiver)


async def _cover_requests_sessions_limits_and_webhooks(app, receiver) -> None:
    client = app.test_client()
    gateway = running_gateway(app)
    account = await make_account(gateway)
    # one webhook event (the connect), delivered to a receiver that answers 204
    r = await client.post("/api/v1/whatsapp-sessions", json={
        "name": "m", "webhookUrl": receiver.url, "webhookEvents": ["session.connected"]}, headers=account.headers)
    session = await r.get_json()
    await client.post(f"/api/v1/whatsapp-sessions/{session['id']}/connect", headers=account.headers)
    while (await (await client.get(f"/api/v1/whatsapp-sessions/{session['id']}",
                                   headers=account.headers)).get_json())["status"] != "CONNECTED":
        await trio.sleep(0.01)
    key = {"Authorization": f"Bearer {session['apiKey']}"}
    statuses = []
    for _ in range(3):  # the third is over the 2/minute send limit
        r = await client.post("/api/v1/send-message", json={"to": "+15550001234", "text": "hi"}, headers=key)
        statuses.append(r.status_code)
    assert statuses == [202, 202, 429]
    await client.get("/api/v1/messages/nope", headers=key)
    await client.get("/no/such/path")
    while gateway.dispatcher.statistics().delivered < 1:
        await trio.sleep(0.01)

    families = await scrape(client)
    lat = "gateway_http_request_duration_seconds"
    assert value(families, lat, lat + "_count", route="/api/v1/send-message", status="202") == 2
    assert value(families, lat, lat + "_count", route="/api/v1/send-message", status="429") == 1
    # a route's template is the label, never the id in the path
    assert value(families, lat, lat + "_count", route="/api/v1/messages/<message_id>", status="404") == 1
    assert value(families, lat, lat + "_count", route="unmatched", status="404") == 1
    assert value(families, lat, lat + "_bucket", route="/api/v1/send-message", status="202", le="+Inf") == 2

    assert value(families, "gateway_sessions", "gateway_sessions", state="CONNECTED") == 1
    assert value(families, "gateway_sessions", "gateway_sessions", state="FAILED") == 0
    assert value(families, "gateway_sessions_supervised", "gateway_sessions_supervised") == 1
    assert value(families, "gateway_actor_restarts", "gateway_actor_restarts_total") == 0
    assert "gateway_actor_mailbox_depth" in families and "gateway_actor_event_backlog" in families
    assert value(families, "gateway_ratelimit_rejections", "gateway_ratelimit_rejections_total",
                 scope="send") == 1
    assert value(families, "gateway_webhook_attempts", "gateway_webhook_attempts_total", outcome="2xx") == 1
    assert value(families, "gateway_webhook_deliveries", "gateway_webhook_deliveries_total",
                 result="delivered") == 1
    assert value(families, "gateway_webhook_deliveries", "gateway_webhook_deliveries_total", result="dead") == 0
    assert value(families, "gateway_events_published", "gateway_events_published_total") >= 1


async def test_queue_depths_come_from_the_store(app):
    with trio.fail_after(20):
        client = app.test_client()
        gateway = running_gateway(app)
        account = await make_account(gateway)
        session = await (await client.post("/api/v1/whatsapp-sessions", json={"name": "q"},
                                           headers=account.headers)).get_json()
        await client.post(f"/api/v1/whatsapp-sessions/{session['id']}/connect", headers=account.headers)
        while gateway.control.actor(session["id"]).state.value != "CONNECTED":
            await trio.sleep(0.01)
        key = {"Authorization": f"Bearer {session['apiKey']}"}
        later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
        for _ in range(2):  # scheduled a day ahead: they stay queued
            r = await client.post("/api/v1/send-message", headers=key, json={
                "to": "+15550001234", "text": "later", "sendAt": later})
            assert r.status_code == 202, await r.get_data()
        families = await scrape(client)
        assert value(families, "gateway_queue_depth", "gateway_queue_depth", queue="messages_queued") == 2
        assert value(families, "gateway_queue_depth", "gateway_queue_depth", queue="messages_sending") == 0
        assert value(families, "gateway_queue_depth", "gateway_queue_depth", queue="webhooks_pending") == 0
        assert await gateway.store.queue_depths() == {
            "messages_queued": 2, "messages_sending": 0, "webhooks_pending": 0}


async def test_each_app_has_its_own_registry(tmp_path):
    with trio.fail_after(20):
        apps = [create_app(Config(database_url=f"sqlite:///{tmp_path}/{i}.db", transport="sim"),
                           transport_factory=FakeFactory(["qr"])) for i in range(2)]
        async with apps[0].test_app(), apps[1].test_app():
            await apps[0].test_client().get("/healthz")
            first = await scrape(apps[0].test_client())
            second = await scrape(apps[1].test_client())
        lat = "gateway_http_request_duration_seconds"
        assert value(first, lat, lat + "_count", route="/healthz") == 1
        assert not [s for s in second[lat] if s.labels.get("route") == "/healthz"]


def test_webhook_statistics_are_read_from_a_dispatcher_at_scrape_time():
    from gateway.webhooks import DispatcherStatistics

    class FakeDispatcher:
        def statistics(self):
            return DispatcherStatistics(in_flight=3, busy_endpoints=1, failing_endpoints=1, attempts=7,
                                        delivered=4, retried=2, dead=1, expedited=0,
                                        outcomes={"2xx": 4, "timeout": 3})

    class FakeGateway:  # only what the webhook families read; the others need the full Gateway
        dispatcher = FakeDispatcher()

    from gateway._metrics import _webhook_families

    families = {f.name: f for f in _webhook_families(FakeGateway())}  # type: ignore[arg-type]
    attempts = {s.labels["outcome"]: s.value for s in families["gateway_webhook_attempts"].samples
                if s.name.endswith("_total")}
    assert attempts == {"2xx": 4, "timeout": 3}
    results = {s.labels["result"]: s.value for s in families["gateway_webhook_deliveries"].samples
               if s.name.endswith("_total")}
    assert results == {"delivered": 4, "retried": 2, "dead": 1}
    assert families["gateway_webhook_in_flight"].samples[0].value == 3


async def test_metrics_while_the_gateway_is_not_serving_still_parse():
    metrics = GatewayMetrics()
    families = parse(metrics.render().decode())
    assert "gateway_webhook_attempts" in families
    assert "gateway_sessions" not in families
