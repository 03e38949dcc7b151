"""The seed's rate limits through HTTP, on trio's MockClock (time only moves when the test jumps it)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio

from gateway import Config, create_app
from gateway._limits import RateGuard
from gateway.app import running_gateway

from ._fake_transport import FakeFactory
from .conftest import make_account
from .test_api_sessions import BASE, bearer, create, error_of


PROXY = {"client": ("127.0.0.1", 40000)}  # requests arrive through the trusted proxy


@asynccontextmanager
async def open_env(tmp_path, **limits):
    config = Config(database_url=f"sqlite:///{tmp_path}/g.db", transport="sim", send_min_gap=0.0, send_jitter=0.0,
                    trusted_proxies="127.0.0.1", **limits)
    app = create_app(config, transport_factory=FakeFactory(["connect"]))
    async with app.test_app():
        gateway = running_gateway(app)
        account = await make_account(gateway)
        yield app, gateway, account


async def connected_session(app, gateway, account, **body):
    client = app.test_client()
    s = await create(client, account, **body)
    await client.post(f"{BASE}/{s['id']}/connect", headers=account.headers)
    while gateway.control.actor(s["id"]).state.value != "CONNECTED":
        await trio.sleep(0)
    return s


async def test_send_boundary_retry_after_and_refill(tmp_path, mock_clock):
    async with open_env(tmp_path) as (app, gateway, account):  # seed defaults: 10/minute per session
        s = await connected_session(app, gateway, account)
        client = app.test_client()
        msg = {"to": "1234567890", "text": "hi"}
        for i in range(10):
            r = await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))
            assert r.status_code == 202, i
            assert r.headers["X-RateLimit-Limit"] == "10"
            assert r.headers["X-RateLimit-Remaining"] == str(9 - i)
        r = await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))
        err = await error_of(r, 429, "RATE_LIMITED")
        assert r.headers["Retry-After"] == "6" and r.headers["X-RateLimit-Remaining"] == "0"
        assert int(r.headers["X-RateLimit-Reset"]) == 60
        assert "10/minute" in err["message"]
        mock_clock.jump(5.9)
        await error_of(await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"])),
                       429, "RATE_LIMITED")
        mock_clock.jump(0.1)  # exactly at the advertised Retry-After
        assert (await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))).status_code == 202
        mock_clock.jump(60)  # a full refill gives the whole burst again, not more
        codes = [(await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))).status_code
                 for _ in range(11)]
        assert codes == [202] * 10 + [429]


async def test_batch_counts_each_message(tmp_path, mock_clock):
    async with open_env(tmp_path) as (app, gateway, account):
        s = await connected_session(app, gateway, account)
        client = app.test_client()
        batch = {"messages": [{"to": "1234567890", "text": str(i)} for i in range(8)]}
        r = await client.post("/api/v1/send-messages", json=batch, headers=bearer(s["apiKey"]))
        assert r.status_code == 202 and r.headers["X-RateLimit-Remaining"] == "2"
        r = await client.post("/api/v1/send-messages", json=batch, headers=bearer(s["apiKey"]))
        await error_of(r, 429, "RATE_LIMITED")  # 8 do not fit in 2: nothing is queued
        big = {"messages": [{"to": "1234567890", "text": str(i)} for i in range(11)]}
        r = await client.post("/api/v1/send-messages", json=big, headers=bearer(s["apiKey"]))
        await error_of(r, 422, "VALIDATION_ERROR")  # can never fit the 10/minute limit
        # what was sent, then what is still queued: a message sent in between is counted once, not twice
        sent = len(gateway.supervisor.get(s["id"]).transport.sent)
        assert await gateway.store.count_messages(s["id"], __import__("gateway.store").store.MessageStatus.QUEUED) \
            + sent <= 8


async def test_per_session_send_limit_set_by_account_token(tmp_path, mock_clock):
    async with open_env(tmp_path) as (app, gateway, account):
        s = await connected_session(app, gateway, account)
        client = app.test_client()
        r = await client.put(f"{BASE}/{s['id']}", json={"sendLimit": "2/minute"}, headers=bearer(s["apiKey"]))
        await error_of(r, 403, "FORBIDDEN")
        r = await client.put(f"{BASE}/{s['id']}", json={"sendLimit": "2/fortnight"}, headers=account.headers)
        assert (await error_of(r, 422, "VALIDATION_ERROR"))["details"][0]["path"] == "$.sendLimit"
        r = await client.put(f"{BASE}/{s['id']}", json={"sendLimit": "2/minute"}, headers=account.headers)
        assert (await r.get_json())["sendLimit"] == "2/minute"
        msg = {"to": "1234567890", "text": "hi"}
        codes = [(await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))).status_code
                 for _ in range(3)]
        assert codes == [202, 202, 429]


async def test_api_limit_is_per_user_across_keys(tmp_path, mock_clock):
    async with open_env(tmp_path, limit_api="6/minute") as (app, gateway, account):
        client = app.test_client()
        a = await create(client, account, name="a")  # 1
        b = await create(client, account, name="b")  # 2
        for key in (a, b, a):  # 3, 4, 5
            assert (await client.get(f"{BASE}/{key['id']}", headers=bearer(key["apiKey"]))).status_code == 200
        assert (await client.get(BASE, headers=account.headers)).status_code == 200  # 6
        r = await client.get(f"{BASE}/{b['id']}", headers=bearer(b["apiKey"]))
        await error_of(r, 429, "RATE_LIMITED")
        other = await make_account(gateway, "other@example.com")
        assert (await client.get(BASE, headers=other.headers)).status_code == 200  # users are isolated
        mock_clock.jump(10)
        assert (await client.get(BASE, headers=account.headers)).status_code == 200


async def test_failed_auth_is_limited_per_ip(tmp_path, mock_clock):
    async with open_env(tmp_path) as (app, gateway, account):  # 5/minute per IP
        client = app.test_client()
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(5):
            r = await client.get(BASE, scope_base=PROXY, headers=attacker | {"X-API-Token": "wgp_0123456789abcdef_guess"})
            await error_of(r, 401, "UNAUTHORIZED")
        r = await client.get(BASE, scope_base=PROXY, headers=attacker | {"X-API-Token": "wgp_0123456789abcdef_guess"})
        await error_of(r, 429, "RATE_LIMITED")
        assert int(r.headers["Retry-After"]) >= 1
        # a valid credential from the same address is never refused for the failures (one careless
        # client behind a shared proxy must not lock everyone out); failed attempts stay refused
        assert (await client.get(BASE, scope_base=PROXY, headers=attacker | account.headers)).status_code == 200
        for headers in ({}, {"X-API-Token": "wgp_0123456789abcdef_guess"}):
            r = await client.get(BASE, scope_base=PROXY, headers=attacker | headers)
            await error_of(r, 429 if headers else 401, "RATE_LIMITED" if headers else "UNAUTHORIZED")
        # another client IP is not affected
        r = await client.get(BASE, scope_base=PROXY, headers={"X-Forwarded-For": "198.51.100.1",
                                                                "X-API-Token": "wgp_0123456789abcdef_guess"})
        await error_of(r, 401, "UNAUTHORIZED")
        mock_clock.jump(12)  # two tokens back at 5/minute
        r = await client.get(BASE, scope_base=PROXY, headers=attacker | {"X-API-Token": "wgp_0123456789abcdef_guess"})
        await error_of(r, 401, "UNAUTHORIZED")


async def test_limited_answer_costs_no_store_io(tmp_path, mock_clock, monkeypatch):
    async with open_env(tmp_path, limit_send="1/minute") as (app, gateway, account):
        s = await connected_session(app, gateway, account)
        client = app.test_client()
        msg = {"to": "1234567890", "text": "hi"}
        assert (await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))).status_code == 202
        calls = []
        real_run = gateway.store._run
        background = ("Sender.run", "expire_loop", "_pump_events", "_connection_loop", "Dispatcher.")

        async def counting(fn):
            name = trio.lowlevel.current_task().name
            if not any(b in name for b in background):  # the session's own sender may still be busy
                calls.append(name)
            return await real_run(fn)

        monkeypatch.setattr(gateway.store, "_run", counting)
        r = await client.post("/api/v1/send-message", json=msg, headers=bearer(s["apiKey"]))
        await error_of(r, 429, "RATE_LIMITED")
        assert calls == []


@pytest.mark.parametrize("proxies,peer,xff,expected", [
    ("", "10.0.0.5", ["1.2.3.4"], "10.0.0.5"),  # no trusted proxy: the header is ignored
    ("10.0.0.0/8", "10.0.0.5", ["1.2.3.4"], "1.2.3.4"),
    ("10.0.0.0/8", "10.0.0.5", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),  # right-most untrusted hop wins
    ("10.0.0.0/8", "10.0.0.5", ["1.2.3.4, 10.0.0.9"], "1.2.3.4"),  # trusted hops are skipped
    ("10.0.0.0/8", "192.0.2.1", ["1.2.3.4"], "192.0.2.1"),  # an untrusted peer cannot spoof
    ("10.0.0.0/8", "10.0.0.5", ["not-an-ip"], "10.0.0.5"),
    ("10.0.0.0/8", "10.0.0.5", [], "10.0.0.5"),
])
def test_client_ip_trusted_proxy_rules(proxies, peer, xff, expected):
    guard = RateGuard(Config(trusted_proxies=proxies))
    assert guard.client_ip(peer, xff) == expected


async def test_limits_can_be_turned_off_for_load_tests(tmp_path, mock_clock):
    async with open_env(tmp_path, limit_send="off", limit_api="off") as (app, gateway, account):
        s = await connected_session(app, gateway, account)
        client = app.test_client()
        for _ in range(30):
            r = await client.post("/api/v1/send-message", json={"to": "1234567890", "text": "x"},
                                  headers=bearer(s["apiKey"]))
            assert r.status_code == 202 and "X-RateLimit-Limit" not in r.headers
