"""The sessions API through the HTTP layer, including its error cases."""

from __future__ import annotations

import logging

import pytest
import trio

from gateway import Config, create_app
from gateway._auth import SessionPrincipal
from gateway._requests import MAX_PROXY_URL
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from .conftest import make_account

BASE = "/api/v1/whatsapp-sessions"


async def create(client, account, **body):
    body.setdefault("name", "main")
    r = await client.post(BASE, json=body, headers=account.headers)
    assert r.status_code == 201, await r.get_data()
    return await r.get_json()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def error_of(r, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, await r.get_data())
    body = await r.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return body["error"]


async def test_create_answers_resource_with_key_once(client, account):
    s = await create(client, account, name="Sales", phoneNumber="+1 (234) 567-890",
                     webhookEvents=["message.received", "message.received"])
    assert s["apiKey"].startswith("wgs_")
    assert s["name"] == "Sales"
    assert s["phoneNumber"] == "+1234567890"
    assert s["status"] == "DISCONNECTED"
    assert s["webhookEvents"] == ["message.received"]
    assert s["webhookEnabled"] is True and s["webhookUrl"] is None
    assert s["createdAt"].endswith("Z") and s["updatedAt"] == s["createdAt"]
    r = await client.get(f"{BASE}/{s['id']}", headers=account.headers)
    got = await r.get_json()
    assert r.status_code == 200 and "apiKey" not in got
    assert got["id"] == s["id"]


async def test_get_with_own_session_key(client, account):
    s = await create(client, account)
    r = await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"]))
    assert r.status_code == 200
    assert (await r.get_json())["id"] == s["id"]


async def test_pat_also_accepted_as_bearer(client, account):
    r = await client.get(BASE, headers=bearer(account.token))
    assert r.status_code == 200


async def test_session_key_reaches_only_its_own_session(client, account):
    a = await create(client, account, name="a")
    b = await create(client, account, name="b")
    for method in ("get", "put", "delete"):
        kwargs = {"json": {"name": "x"}} if method == "put" else {}
        r = await getattr(client, method)(f"{BASE}/{b['id']}", headers=bearer(a["apiKey"]), **kwargs)
        await error_of(r, 404, "SESSION_NOT_FOUND")
    r = await client.post(f"{BASE}/{b['id']}/connect", headers=bearer(a["apiKey"]))
    await error_of(r, 404, "SESSION_NOT_FOUND")


async def test_other_users_session_is_not_found(client, gateway, account):
    other = await make_account(gateway, "other@example.com")
    theirs = await create(client, other, name="theirs")
    r = await client.get(f"{BASE}/{theirs['id']}", headers=account.headers)
    err = await error_of(r, 404, "SESSION_NOT_FOUND")
    r2 = await client.get(f"{BASE}/does-not-exist", headers=account.headers)
    assert (await error_of(r2, 404, "SESSION_NOT_FOUND")) == err  # existence does not leak
    r = await client.get(BASE, headers=account.headers)
    assert (await r.get_json())["data"] == []


async def test_session_key_cannot_list_or_create(client, account):
    s = await create(client, account)
    r = await client.get(BASE, headers=bearer(s["apiKey"]))
    await error_of(r, 401, "UNAUTHORIZED")
    r = await client.post(BASE, json={"name": "x"}, headers=bearer(s["apiKey"]))
    await error_of(r, 401, "UNAUTHORIZED")
    r = await client.post(f"{BASE}/{s['id']}/rotate-key", headers=bearer(s["apiKey"]))
    await error_of(r, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("headers", [
    {},
    {"X-API-Token": "nope"},
    {"X-API-Token": "wgp_0000000000000000_doesnotexist"},
    {"Authorization": "Basic abc"},
    {"Authorization": "Bearer wgs_0000000000000000_doesnotexist"},
])
async def test_bad_credentials_are_401(client, headers):
    r = await client.get(BASE, headers=headers)
    await error_of(r, 401, "UNAUTHORIZED")


async def test_right_id_wrong_secret_is_401(client, account):
    prefix, _, _ = account.token.rpartition("_")
    r = await client.get(BASE, headers={"X-API-Token": prefix + "_" + "A" * 43})
    await error_of(r, 401, "UNAUTHORIZED")


async def test_list_pages_with_cursor(client, account):
    ids = [(await create(client, account, name=f"s{i}"))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        q = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        r = await client.get(BASE, headers=account.headers, query_string=q)
        page = await r.get_json()
        assert r.status_code == 200 and len(page["data"]) <= 2
        seen += [s["id"] for s in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)
    assert set(seen) == set(ids)


@pytest.mark.parametrize("query,path", [
    ({"limit": "0"}, "query.limit"),
    ({"limit": "101"}, "query.limit"),
    ({"limit": "ten"}, "query.limit"),
    ({"cursor": "%%%"}, "query.cursor"),
])
async def test_bad_page_params_are_422(client, account, query, path):
    r = await client.get(BASE, headers=account.headers, query_string=query)
    err = await error_of(r, 422, "VALIDATION_ERROR")
    assert err["details"][0]["path"] == path


@pytest.mark.parametrize("body,path", [
    ({}, "$"),
    ({"name": ""}, "$.name"),
    ({"name": "x" * 101}, "$.name"),
    ({"name": 5}, "$.name"),
    ({"name": "a", "nickname": "typo"}, "$"),
    ({"name": "a", "phoneNumber": "12345"}, "$.phoneNumber"),
    ({"name": "a", "phoneNumber": "+1234567890123456"}, "$.phoneNumber"),
    ({"name": "a", "phoneNumber": "12ab567890"}, "$.phoneNumber"),
    ({"name": "a", "webhookUrl": "ftp://example.com/x"}, "$.webhookUrl"),
    ({"name": "a", "webhookUrl": "http://127.0.0.1:9/hook"}, "$.webhookUrl"),
    ({"name": "a", "webhookUrl": "http://localhost/hook"}, "$.webhookUrl"),
    ({"name": "a", "webhookUrl": "http://169.254.169.254/latest/meta-data"}, "$.webhookUrl"),
    ({"name": "a", "webhookUrl": "http://[::ffff:10.0.0.1]/"}, "$.webhookUrl"),
    ({"name": "a", "webhookEvents": ["message.exploded"]}, "$.webhookEvents[0]"),
    ({"name": "a", "webhookEnabled": "yes"}, "$.webhookEnabled"),
])
async def test_create_validation_names_the_path(client, account, body, path):
    r = await client.post(BASE, json=body, headers=account.headers)
    err = await error_of(r, 422, "VALIDATION_ERROR")
    assert err["details"][0]["path"] == path


async def test_private_webhook_url_allowed_when_configured(tmp_path):
    from gateway import Config, create_app
    from gateway.app import running_gateway

    from ._fake_transport import FakeFactory

    app = create_app(Config(database_url=f"sqlite:///{tmp_path}/g.db", allow_private_urls=True),
                     transport_factory=FakeFactory())
    async with app.test_app():
        account = await make_account(running_gateway(app))
        s = await create(app.test_client(), account, webhookUrl="http://127.0.0.1:9/hook")
        assert s["webhookUrl"] == "http://127.0.0.1:9/hook"


async def test_malformed_json_is_422(client, account):
    r = await client.post(BASE, data=b'{"name": ', headers=account.headers | {"Content-Type": "application/json"})
    err = await error_of(r, 422, "VALIDATION_ERROR")
    assert "Malformed JSON" in err["message"]
    r = await client.post(BASE, data=b'["not", "an object"]', headers=account.headers)
    await error_of(r, 422, "VALIDATION_ERROR")


async def test_oversized_body_is_413(client, account, gateway):
    big = b'{"name": "' + b"x" * (gateway.config.max_body + 10) + b'"}'
    r = await client.post(BASE, data=big, headers=account.headers)
    await error_of(r, 413, "PAYLOAD_TOO_LARGE")


async def test_update_changes_only_given_fields_and_null_clears(client, account):
    s = await create(client, account, name="before", phoneNumber="+1234567890")
    r = await client.put(f"{BASE}/{s['id']}", headers=account.headers,
                         json={"name": "after", "webhookEvents": ["session.connected"], "webhookEnabled": False})
    u = await r.get_json()
    assert r.status_code == 200
    assert (u["name"], u["phoneNumber"], u["webhookEvents"], u["webhookEnabled"]) == \
        ("after", "+1234567890", ["session.connected"], False)
    r = await client.put(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"]), json={"phoneNumber": None})
    assert (await r.get_json())["phoneNumber"] is None
    r = await client.get(f"{BASE}/{s['id']}", headers=account.headers)
    got = await r.get_json()
    assert got["name"] == "after" and got["phoneNumber"] is None and got["updatedAt"] >= s["updatedAt"]


async def test_update_validation(client, account):
    s = await create(client, account)
    r = await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"webhookUrl": "http://10.1.2.3/x"})
    err = await error_of(r, 422, "VALIDATION_ERROR")
    assert err["details"][0]["path"] == "$.webhookUrl"
    r = await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"name": None})
    await error_of(r, 422, "VALIDATION_ERROR")


async def test_delete_then_key_stops_working(client, account):
    s = await create(client, account)
    r = await client.delete(f"{BASE}/{s['id']}", headers=account.headers)
    assert r.status_code == 200
    r = await client.get(f"{BASE}/{s['id']}", headers=account.headers)
    await error_of(r, 404, "SESSION_NOT_FOUND")
    r = await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"]))
    await error_of(r, 401, "UNAUTHORIZED")


async def test_rotate_key_revokes_old_key_at_once(client, account):
    s = await create(client, account)
    # warm the auth cache with the old key, so rotation must evict it
    assert (await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"]))).status_code == 200
    r = await client.post(f"{BASE}/{s['id']}/rotate-key", headers=account.headers)
    rotated = await r.get_json()
    assert r.status_code == 200 and rotated["apiKey"] != s["apiKey"]
    await error_of(await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"])), 401, "UNAUTHORIZED")
    assert (await client.get(f"{BASE}/{s['id']}", headers=bearer(rotated["apiKey"]))).status_code == 200


async def test_keys_are_stored_hashed(client, account, gateway):
    s = await create(client, account)
    record = await gateway.store.get_session(s["id"])
    secret = s["apiKey"].rsplit("_", 1)[1]
    assert secret.encode() not in record.key_hash and len(record.key_hash) == 32
    principal = await gateway.auth.authenticate(s["apiKey"])
    assert principal == SessionPrincipal(account.user_id, s["id"], record.key_id)


async def test_unknown_route_and_wrong_method(client, account):
    await error_of(await client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    r = await client.patch(BASE, headers=account.headers)
    await error_of(r, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


async def test_unhandled_exception_is_500_without_leak(client, account, gateway, monkeypatch, caplog):
    async def boom(*args, **kwargs):
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(gateway.sessions, "list", boom)
    r = await client.get(BASE, headers=account.headers)
    err = await error_of(r, 500, "INTERNAL_ERROR")
    assert "hunter2" not in (await r.get_data()).decode()
    assert err["message"] == "Internal server error"
    assert any("hunter2" in (rec.exc_text or str(rec.exc_info)) for rec in caplog.records)


@pytest.mark.parametrize("action", ["connect", "disconnect"])
async def test_connection_routes_need_auth(client, account, action):
    s = await create(client, account)
    await error_of(await client.post(f"{BASE}/{s['id']}/{action}"), 401, "UNAUTHORIZED")


# -- proxies -------------------------------------------------------------------

PROXY = "socks5://user:s3cret-pw@10.0.0.2:1080"
MASKED = "socks5://user:***@10.0.0.2:1080"


def logged(caplog) -> str:
    """Every log record's message and structured fields, as one text to search."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')} {r.exc_text or ''}" for r in caplog.records)


async def wait_status(client, headers, sid, status):
    with trio.fail_after(5):
        while (await (await client.get(f"{BASE}/{sid}", headers=headers)).get_json())["status"] != status:
            await trio.sleep(0.01)


async def test_a_proxy_is_stored_whole_and_every_answer_masks_its_password(client, account, gateway, transports,
                                                                          caplog):
    caplog.set_level(logging.DEBUG)
    s = await create(client, account, name="p", proxyUrl="SOCKS5://user:s3cret-pw@10.0.0.2:1080/")
    transports.scripts[s["id"]] = ["connect"]
    assert (s["proxyUrl"], s["proxy"]) == (MASKED, {"url": MASKED, "source": "session"})
    assert (await gateway.store.get_session(s["id"])).proxy_url == PROXY  # normalized, password kept
    answers = [await client.get(f"{BASE}/{s['id']}", headers=account.headers),
               await client.get(f"{BASE}/{s['id']}", headers=bearer(s["apiKey"])),
               await client.get(BASE, headers=account.headers),
               await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"name": "renamed"}),
               await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers),
               await client.post(f"{BASE}/{s['id']}/disconnect", headers=account.headers)]
    for r in answers:
        body = await r.get_data(as_text=True)
        assert r.status_code == 200 and MASKED in body and "s3cret" not in body, body
    listed = (await answers[2].get_json())["data"][0]
    assert listed["proxy"] == {"url": MASKED, "source": "session"}
    direct = await create(client, account, name="direct")
    assert direct["proxyUrl"] is None and direct["proxy"] is None
    assert "s3cret" not in logged(caplog)


async def test_masking_hides_every_kind_of_credential(client, account):
    for raw, shown in [
            ("http://tok3n@proxy.lan:3128", "http://***@proxy.lan:3128"),  # a lone user name is the credential
            ("https://me@example.com:pw@proxy:443", "https://me@example.com:***@proxy:443"),
            ("http://u:p%40ss@[fd00::2]:8080", "http://u:***@[fd00::2]:8080")]:
        s = await create(client, account, proxyUrl=raw)
        assert s["proxyUrl"] == shown and s["proxy"]["url"] == shown


async def test_a_proxy_may_be_on_a_private_or_loopback_address(client, account, gateway):
    assert gateway.config.allow_private_urls is False  # unlike webhooks, that switch does not apply
    for raw in ["socks5://10.0.0.2:1080", "http://192.168.1.10:3128", "http://127.0.0.1:8888",
                "https://localhost:8443", "http://[fd00::2]:3128", "socks5://tor_proxy:9050", "http://100.64.0.1:3128"]:
        s = await create(client, account, proxyUrl=raw)
        assert s["proxy"] == {"url": raw, "source": "session"}


BAD_PROXIES = [
    ("ftp://u:topsecret@proxy:21", "scheme http, https or socks5"),
    ("socks4://u:topsecret@proxy:1080", "scheme http, https or socks5"),
    ("u:topsecret@10.0.0.2:1080", "scheme http, https or socks5"),
    ("http://u:topsecret@proxy", "needs a port"),
    ("http://u:topsecret@proxy:0", "needs a port"),
    ("http://u:topsecret@proxy:65536", "port"),
    ("http://u:topsecret@proxy:3128/path", "must not have a path"),
    ("http://u:topsecret@proxy:3128?x=1", "query"),
    ("http://u:topsecret@proxy:3128#top", "fragment"),
    ("http://:topsecret@proxy:3128", "user name"),
    ("http://u:top secret@proxy:3128", "spaces"),
    ("http://u:topsecret\u00e9@proxy:3128", "credentials"),
    ("http://u:topsecret@169.254.169.254:80", "link-local"),
    ("http://u:topsecret@[fe80::1]:3128", "link-local"),
    ("http://u:topsecret@[::ffff:169.254.0.1]:3128", "link-local"),
    ("http://u:topsecret@0.0.0.0:3128", "unspecified"),
    ("http://u:topsecret@239.1.2.3:3128", "multicast"),
    ("http://u:topsecret@bad!host:3128", "host"),
    ("http://u:topsecret@10.0.0.300:3128", "host"),
    ("http://u:topsecret@:3128", "no host"),
    ("http://u:topsecret@proxy:3128/" + "x" * MAX_PROXY_URL, "length"),
    ("", "empty"),
    (1080, "str"),
]


async def test_a_bad_proxy_url_is_a_422_at_its_path_without_its_password(client, account):
    s = await create(client, account)
    for raw, says in BAD_PROXIES:
        for r in (await client.post(BASE, json={"name": "p", "proxyUrl": raw}, headers=account.headers),
                  await client.put(f"{BASE}/{s['id']}", json={"proxyUrl": raw}, headers=account.headers)):
            err = await error_of(r, 422, "VALIDATION_ERROR")
            assert err["details"][0]["path"] == "$.proxyUrl", raw
            assert says in err["details"][0]["message"], (raw, err)
            assert "topsecret" not in await r.get_data(as_text=True)
    listed = await (await client.get(BASE, headers=account.headers)).get_json()
    assert [x["id"] for x in listed["data"]] == [s["id"]]  # none was created


async def test_only_the_account_token_may_set_or_clear_a_proxy(client, account, gateway):
    s = await create(client, account, proxyUrl=PROXY)
    key = bearer(s["apiKey"])
    for body in ({"proxyUrl": "http://10.9.9.9:3128"}, {"proxyUrl": None}, {"name": "x", "proxyUrl": None}):
        err = await error_of(await client.put(f"{BASE}/{s['id']}", headers=key, json=body), 403, "FORBIDDEN")
        assert "proxyUrl" in err["message"] and "personal access token" in err["message"]
    record = await gateway.store.get_session(s["id"])
    assert (record.name, record.proxy_url) == ("main", PROXY)  # a refused body changes nothing
    r = await client.put(f"{BASE}/{s['id']}", headers=key, json={"name": "renamed"})
    assert r.status_code == 200 and (await r.get_json())["proxyUrl"] == MASKED
    r = await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"proxyUrl": None})
    assert r.status_code == 200 and (await r.get_json())["proxy"] is None
    assert (await gateway.store.get_session(s["id"])).proxy_url is None


async def test_an_online_session_reconnects_through_its_new_proxy(client, account, transports):
    s = await create(client, account, proxyUrl=PROXY)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    first = transports.transports[s["id"]]
    assert first.spec.proxy_url == PROXY
    first.scan()
    await wait_status(client, account.headers, s["id"], "CONNECTED")
    transports.scripts[s["id"]] = ["connect"]  # paired now: it connects again without a QR code
    r = await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"proxyUrl": "http://10.0.0.3:3128"})
    assert (await r.get_json())["proxy"] == {"url": "http://10.0.0.3:3128", "source": "session"}
    second = transports.transports[s["id"]]
    assert second is not first and not first.connected
    assert second.spec.proxy_url == "http://10.0.0.3:3128"
    await wait_status(client, account.headers, s["id"], "CONNECTED")
    assert second.connected
    # the same proxy again is no change: the connection stays
    await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"proxyUrl": "HTTP://10.0.0.3:3128"})
    assert transports.transports[s["id"]] is second and second.connected


async def test_an_offline_session_takes_its_new_proxy_on_its_next_connect(client, account, transports):
    s = await create(client, account)
    transports.scripts[s["id"]] = ["connect"]
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    first = transports.transports[s["id"]]
    assert first.spec.proxy_url is None
    await client.post(f"{BASE}/{s['id']}/disconnect", headers=account.headers)
    r = await client.put(f"{BASE}/{s['id']}", headers=account.headers, json={"proxyUrl": PROXY})
    assert (await r.get_json())["status"] == "DISCONNECTED"
    assert transports.transports[s["id"]] is first and first.runs == first.runs[:1]  # not reconnected
    r = await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    assert (await r.get_json())["status"] == "CONNECTED"
    assert transports.transports[s["id"]].spec.proxy_url == PROXY


async def test_a_proxy_password_in_a_connect_error_is_masked(client, account, transports, caplog):
    caplog.set_level(logging.DEBUG)
    s = await create(client, account, proxyUrl=PROXY)
    transports.scripts[s["id"]] = [f'fatal:proxyconnect: parse "{PROXY}": connection refused']
    r = await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    err = await error_of(r, 502, "CONNECT_FAILED")
    assert "user:***@10.0.0.2" in err["details"][0]["message"]
    got = await (await client.get(f"{BASE}/{s['id']}", headers=account.headers)).get_data(as_text=True)
    assert "user:***@10.0.0.2" in got
    for body in (await r.get_data(as_text=True), got, logged(caplog)):
        assert "s3cret" not in body


async def test_the_default_proxy_serves_sessions_without_their_own(tmp_path):
    factory = FakeFactory(["connect"])
    default = "http://gw:pa55word@proxy.internal:3128"
    app = create_app(Config(database_url=f"sqlite:///{tmp_path}/g.db", data_dir=str(tmp_path / "data"),
                            transport="sim", proxy_url=default), transport_factory=factory)
    async with app.test_app():
        client, account = app.test_client(), await make_account(running_gateway(app))
        plain = await create(client, account, name="plain")
        own = await create(client, account, name="own", proxyUrl=PROXY)
        shown = {"url": "http://gw:***@proxy.internal:3128", "source": "default"}
        assert (plain["proxyUrl"], plain["proxy"]) == (None, shown)
        assert own["proxy"] == {"url": MASKED, "source": "session"}
        for s in (plain, own):
            await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
        assert factory.transports[plain["id"]].spec.proxy_url == default
        assert factory.transports[own["id"]].spec.proxy_url == PROXY
        r = await client.put(f"{BASE}/{own['id']}", headers=account.headers, json={"proxyUrl": None})
        assert (await r.get_json())["proxy"] == shown  # cleared: the default applies, at once
        assert factory.transports[own["id"]].spec.proxy_url == default
        listed = await (await client.get(BASE, headers=account.headers)).get_data(as_text=True)
        assert "pa55word" not in listed and "s3cret" not in listed


async def test_the_session_page_shows_the_proxy_masked(client, account):
    from .test_dashboard import log_in

    s = await create(client, account, proxyUrl=PROXY)
    assert (await log_in(client, account.email, "correct horse battery")).status_code == 303
    page = await (await client.get(f"/dashboard/sessions/{s['id']}")).get_data(as_text=True)
    assert MASKED in page and "its own" in page and "s3cret" not in page
