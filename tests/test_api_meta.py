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


async def test_every_event_has_a_schema_and_a_webhooks_entry(client):
    from openapi_spec_validator import validate

    from gateway.events import EVENT_PAYLOADS, EVENT_TYPES

    doc = await (await client.get("/api/v1/openapi.json")).get_json()
    validate(doc)
    schemas = doc["components"]["schemas"]
    for name in EVENT_TYPES:
        schema_name = EVENT_PAYLOADS[name].__name__
        assert schema_name in schemas and schema_name.endswith("Event"), name
        post = doc["webhooks"][name]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["event"] == {"const": name}
        assert body["properties"]["data"] == {"$ref": f"#/components/schemas/{schema_name}"}
        assert {p["name"] for p in post["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    received = schemas["MessageReceivedEvent"]["properties"]
    assert "senderPhone" in received and "quoted" in schemas["MessageData"]["properties"]
    assert schemas["SessionConnectedEvent"]["required"] == ["status", "phoneNumber"]


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


async def test_a_client_generated_from_the_document_reaches_every_route(client):
    """What a code generator does: the server URL, then each path with its parameters filled in."""
    doc = await (await client.get("/api/v1/openapi.json")).get_json()
    assert not [name for name in doc["components"]["schemas"] if "." in name]  # API names, not module paths
    base = doc["servers"][0]["url"].rstrip("/")
    for path, operations in doc["paths"].items():
        for method in operations:
            url = base + re.sub(r"\{(\w+)\}", r"x\1", path)
            r = await client.open(url, method=method.upper(), json={} if method in ("post", "put") else None)
            body = await r.get_json()
            assert r.status_code != 405, (method, url)
            assert not (r.status_code == 404 and body["error"]["message"].startswith("No route")), (method, url)
            assert r.status_code in (401, 422), (method, url, r.status_code, body)  # reached: refused for no credential


async def test_the_document_states_what_the_server_enforces(client):
    from openapi_spec_validator import validate

    doc = await (await client.get("/api/v1/openapi.json")).get_json()
    validate(doc)
    paths = doc["paths"]
    send = paths["/api/v1/send-message"]["post"]
    key = [p for p in send["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"]
    assert key and key[0]["schema"]["maxLength"] == 255
    assert "415" in send["responses"]  # a body that is not JSON
    assert "403" in paths["/api/v1/whatsapp-sessions/{session_id}"]["put"]["responses"]  # sendLimit with a session key
    qr = paths["/api/v1/whatsapp-sessions/{session_id}/qrcode"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "image/png", "image/svg+xml"} <= set(qr)
    phone = [p for p in paths["/api/v1/contacts/{phone}"]["get"]["parameters"] if p["name"] == "phone"][0]
    assert "pattern" in phone["schema"]
    jid = [p for p in paths["/api/v1/groups/{jid}"]["get"]["parameters"] if p["name"] == "jid"][0]
    assert re.search(jid["schema"]["pattern"], "120363041234567890@g.us")
    assert not re.search(jid["schema"]["pattern"], "15551234567@s.whatsapp.net")
    assert "404" in paths["/api/v1/groups/{jid}"]["get"]["responses"]  # GROUP_NOT_FOUND
    # Body constraints: the patterns the server checks are in the schemas.
    create = doc["components"]["schemas"]["CreateSession"]["properties"]
    limit = create["sendLimit"]["anyOf"][0]["pattern"]
    assert re.search(limit, "20/minute") and not re.search(limit, "1001/second") and not re.search(limit, "5/15min")
    assert not re.search(create["webhookUrl"]["anyOf"][0]["pattern"], "file:///etc/passwd")
    phone_rule = create["phoneNumber"]["anyOf"][0]["pattern"]
    assert re.search(phone_rule, "+1 (555) 123-4567") and not re.search(phone_rule, "123456")
    message = doc["components"]["schemas"]["SendMessage"]
    assert len(message["oneOf"]) == 9  # exactly one content key
    # Every authenticated operation documents 401 and 429; every body has its examples.
    for path, ops in paths.items():
        for method, op in ops.items():
            if op["security"]:
                assert {"401", "429"} <= set(op["responses"]), (method, path)
            if "requestBody" in op:
                assert op["requestBody"]["content"]["application/json"].get("examples"), (method, path)
    assert "502" in paths["/api/v1/whatsapp-sessions/{session_id}/connect"]["post"]["responses"]


def test_the_readme_shows_the_documents_send_examples():
    from pathlib import Path

    from gateway.api._examples import send_examples_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert send_examples_markdown() in readme  # the README's examples are the document's, word for word
