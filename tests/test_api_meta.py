"""OpenAPI document, docs page, health."""

from __future__ import annotations

import re

from gateway.app import build_api


async def test_openapi_is_valid_3_1_and_covers_every_route(client):
    from openapi_spec_validator import validate

    r = await client.get("/api/v1/openapi.json")
    doc = await r.get_json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    for route in build_api().routes:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.path)
        assert route.method.lower() in doc["paths"][path], path
    create = doc["paths"]["/api/v1/whatsapp-sessions"]["post"]
    assert create["security"] and "requestBody" in create and "201" in create["responses"]
    assert "422" in create["responses"] and "401" in create["responses"]
    codes = {e["code"] for e in doc["x-error-codes"]}
    assert {"UNAUTHORIZED", "SESSION_NOT_FOUND", "SESSION_DISCONNECTED", "VALIDATION_ERROR", "RATE_LIMITED",
            "INTERNAL_ERROR", "PAYLOAD_TOO_LARGE", "NOT_FOUND", "METHOD_NOT_ALLOWED"} <= codes


async def test_docs_page_works_offline(client):
    r = await client.get("/docs")
    html = (await r.get_data()).decode()
    assert r.status_code == 200
    assert "/api/v1/whatsapp-sessions" in html and "Create session" in html
    assert not re.search(r"""(src|href)=["']?https?://""", html)  # nothing fetched from elsewhere
    assert "<script" not in html


async def test_health_and_ready(client):
    assert (await (await client.get("/healthz")).get_json())["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200 and (await r.get_json())["checks"]["store"] == "ok"
