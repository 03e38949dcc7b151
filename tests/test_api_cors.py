"""CORS: only the configured origins, a preflight answered before routing, the headers a client reads exposed."""

from __future__ import annotations

import pytest
import trio

from gateway import Config, create_app
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from .conftest import make_account

PAGE = "https://app.example.com"


@pytest.fixture
async def cors_app(tmp_path):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", cors_origins=f"{PAGE}/, https://b.example")
    app = create_app(config, transport_factory=FakeFactory())
    async with app.test_app():
        yield app


async def test_a_preflight_from_an_allowed_origin_is_answered(cors_app):
    with trio.fail_after(10):
        client = cors_app.test_client()
        r = await client.options("/api/v1/send-message", headers={
            "Origin": PAGE, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert r.status_code == 204
        assert r.headers["Access-Control-Allow-Origin"] == PAGE
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        allowed = r.headers["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed and "idempotency-key" in allowed


async def test_answers_to_an_allowed_origin_expose_the_limit_headers(cors_app):
    with trio.fail_after(10):
        client = cors_app.test_client()
        account = await make_account(running_gateway(cors_app))
        r = await client.get("/api/v1/whatsapp-sessions", headers=account.headers | {"Origin": PAGE})
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == PAGE
        exposed = r.headers["Access-Control-Expose-Headers"]
        assert "Retry-After" in exposed and "X-RateLimit-Remaining" in exposed
        r = await client.get("/api/v1/whatsapp-sessions", headers={"Origin": PAGE})  # errors too
        assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == PAGE


async def test_other_origins_get_no_cors_headers(cors_app, client):
    with trio.fail_after(10):
        r = await cors_app.test_client().options("/api/v1/send-message", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 204 and "Access-Control-Allow-Origin" not in r.headers
        # the default (no GATEWAY_CORS_ORIGINS): no cross-origin calls at all
        r = await client.options("/api/v1/send-message", headers={"Origin": PAGE, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in r.headers
        r = await client.get("/healthz", headers={"Origin": PAGE})
        assert "Access-Control-Allow-Origin" not in r.headers
