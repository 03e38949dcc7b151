"""The dashboard's accounts and forms, over Quart's test client: logins, CSRF, limits, resets by real SMTP.

The pages themselves (what a person sees, live updates, axe-core) are driven in Chromium by
`test_dashboard_browser.py`; this file checks the rules underneath, fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from gateway import Config
from gateway._accounts import RESET_TTL_MS, Accounts
from gateway._logins import LOGIN_COOKIE
from gateway.store import open_store

from ._smtp import SmtpServer, reset_link, smtp_server

PASSWORD = "correct horse battery"
LOCAL_PEER = {"client": ("127.0.0.1", 40000)}  # the test client names no peer; a real server does
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def config(tmp_path, smtp: SmtpServer) -> Config:
    return Config(database_url=f"sqlite:///{tmp_path}/gateway.db", data_dir=str(tmp_path / "data"),
                  transport="sim", smtp_url=smtp.url, public_url="https://wa.example.com",
                  trusted_proxies="127.0.0.0/8")


async def csrf_of(client, path: str) -> str:
    answer = await client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    match = _CSRF.search(await answer.get_data(as_text=True))
    assert match, path
    return match.group(1)


async def post_form(client, path: str, form: dict[str, str], *, csrf_from: str | None = None, **kwargs):
    token = await csrf_of(client, csrf_from or path)
    kwargs.setdefault("scope_base", LOCAL_PEER)
    return await client.post(path, form={"csrf_token": token, **form}, **kwargs)


async def sign_up(client, email: str = "ada@example.com", password: str = PASSWORD):
    answer = await post_form(client, "/signup", {"email": email, "password": password, "confirm": password})
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard", await answer.get_data(True)
    return answer


async def log_in(client, email: str, password: str, **kwargs):
    return await post_form(client, "/login", {"email": email, "password": password}, **kwargs)


def login_cookie(client) -> str | None:
    cookies = {c.name: c.value for c in client.cookie_jar}
    return cookies.get(LOGIN_COOKIE)


async def test_home_sends_people_to_login_then_to_the_dashboard(app):
    client = app.test_client()
    answer = await client.get("/")
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    page = await client.get("/dashboard/api-tokens")
    assert page.status_code == 303 and page.headers["Location"] == "/login?next=/dashboard/api-tokens"
    await sign_up(client)
    assert (await client.get("/")).headers["Location"] == "/dashboard"


async def test_sign_up_sets_an_httponly_lax_cookie_and_every_page_is_locked_down(app):
    client = app.test_client()
    answer = await sign_up(client)
    cookie = answer.headers["Set-Cookie"]
    assert f"{LOGIN_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP, no trusted proxy saying otherwise
    anonymous = app.test_client()
    for path in ("/dashboard", "/dashboard/api-tokens", "/dashboard/account", "/login", "/signup", "/forgot",
                 "/reset?token=x"):
        page = await (client if path.startswith("/dashboard") else anonymous).get(path)
        assert page.status_code == 200, path
        csp = page.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        html = await page.get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html  # nothing inline for the CSP to allow


async def test_the_cookie_is_secure_behind_a_trusted_https_proxy(app):
    client = app.test_client()
    token = await csrf_of(client, "/signup")
    answer = await client.post("/signup", headers={"X-Forwarded-Proto": "https"}, scope_base=LOCAL_PEER, form={
        "csrf_token": token, "email": "sec@example.com", "password": PASSWORD, "confirm": PASSWORD})
    assert answer.status_code == 303 and "Secure" in answer.headers["Set-Cookie"]


async def test_forms_without_the_csrf_token_are_refused(app):
    client = app.test_client()
    await client.get("/signup")  # the anonymous CSRF cookie is set, but the form below does not carry it
    refused = await client.post("/signup", form={"email": "x@example.com", "password": PASSWORD, "confirm": PASSWORD})
    assert refused.status_code == 403 and "CSRF" in await refused.get_data(as_text=True)
    await sign_up(client)
    for path, form in (("/dashboard/sessions", {"name": "s"}), ("/dashboard/api-tokens", {"name": "t"}),
                       ("/logout", {})):
        answer = await client.post(path, form={**form, "csrf_token": "x" * 43})
        assert answer.status_code == 403, path
    assert (await client.get("/dashboard")).status_code == 200  # still logged in: the forged logout failed


async def test_login_logout_and_a_stale_cookie(app):
    client = app.test_client()
    await sign_up(client, "bob@example.com")
    old = login_cookie(client)
    out = await post_form(client, "/logout", {}, csrf_from="/dashboard")
    assert out.status_code == 303 and out.headers["Location"] == "/login?done=out"
    assert login_cookie(client) is None
    client.cookie_jar.set_cookie(_cookie(LOGIN_COOKIE, old))  # a copy of the old cookie is dead too
    assert (await client.get("/dashboard")).status_code == 303
    wrong = await log_in(client, "bob@example.com", "not the password")
    assert wrong.status_code == 401 and "Wrong email or password" in await wrong.get_data(as_text=True)
    ok = await log_in(client, "BOB@example.com ", PASSWORD, query_string={"next": "/dashboard/api-tokens"})
    assert ok.status_code == 303


async def test_login_goes_back_to_a_local_page_only(app):
    client = app.test_client()
    await sign_up(client, "nav@example.com")
    await post_form(client, "/logout", {}, csrf_from="/dashboard")
    for target, expected in (("/dashboard/api-tokens", "/dashboard/api-tokens"), ("//evil.example", "/dashboard"),
                             ("https://evil.example/", "/dashboard"), ("/\\evil.example", "/dashboard")):
        token = await csrf_of(client, "/login")
        answer = await client.post("/login", form={"csrf_token": token, "email": "nav@example.com",
                                                   "password": PASSWORD, "next": target})
        assert answer.headers["Location"] == expected, target
        await post_form(client, "/logout", {}, csrf_from="/dashboard")


async def test_the_sixth_failed_login_in_a_minute_is_429_and_even_the_right_password_waits(app):
    client = app.test_client()
    await sign_up(client, "eve@example.com")
    await post_form(client, "/logout", {}, csrf_from="/dashboard")
    # sign-up charged one attempt; a successful login gives its charge back
    assert (await log_in(client, "eve@example.com", PASSWORD)).status_code == 303
    await post_form(client, "/logout", {}, csrf_from="/dashboard")
    statuses = [(await log_in(client, "eve@example.com", f"guess {i}")).status_code for i in range(4)]
    assert statuses == [401] * 4
    limited = await log_in(client, "eve@example.com", PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "Too many attempts" in await limited.get_data(as_text=True)
    # another address behind the trusted proxy has its own allowance
    other = await log_in(client, "eve@example.com", PASSWORD, headers={"X-Forwarded-For": "203.0.113.9"})
    assert other.status_code == 303


async def test_sign_up_can_be_closed(tmp_path, smtp):
    from gateway import create_app

    config = Config(database_url=f"sqlite:///{tmp_path}/closed.db", data_dir=str(tmp_path / "d"), signup="closed")
    app = create_app(config)
    async with app.test_app():
        client = app.test_client()
        page = await client.get("/signup")
        assert page.status_code == 403 and "gateway users create" in await page.get_data(as_text=True)
        assert (await client.post("/signup", form={"email": "a@example.com"})).status_code == 403
        assert "/signup" not in await (await client.get("/login")).get_data(as_text=True)


async def test_change_password_ends_every_other_login(app):
    browser, laptop = app.test_client(), app.test_client()
    await sign_up(browser, "carol@example.com")
    assert (await log_in(laptop, "carol@example.com", PASSWORD)).status_code == 303
    wrong = await post_form(browser, "/dashboard/account", {"current": "nope nope", "password": "new password 1",
                                                            "confirm": "new password 1"})
    assert wrong.status_code == 422 and "current password" in await wrong.get_data(as_text=True)
    changed = await post_form(browser, "/dashboard/account", {"current": PASSWORD, "password": "new password 1",
                                                              "confirm": "new password 1"})
    assert changed.status_code == 303
    assert (await browser.get("/dashboard")).status_code == 200  # a fresh login for the person who changed it
    assert (await laptop.get("/dashboard")).status_code == 303  # the other one ended
    assert (await log_in(laptop, "carol@example.com", PASSWORD)).status_code == 401
    assert (await log_in(laptop, "carol@example.com", "new password 1")).status_code == 303


async def test_forgot_and_reset_by_real_smtp_once_and_never_telling_who_exists(app, smtp: SmtpServer, gateway):
    client = app.test_client()
    await sign_up(client, "dora@example.com")
    other = app.test_client()
    await log_in(other, "dora@example.com", PASSWORD)
    anonymous = app.test_client()
    known = await post_form(anonymous, "/forgot", {"email": "dora@example.com"})
    unknown = await post_form(anonymous, "/forgot", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    strip = lambda html: html.replace("dora@example.com", "E").replace("nobody@example.com", "E")  # noqa: E731
    assert strip(await known.get_data(as_text=True)) == strip(await unknown.get_data(as_text=True))
    mail = await smtp.inbox.wait_for("dora@example.com")
    assert mail["Subject"] == "Reset your WhatsApp gateway password"
    link = reset_link(mail)
    assert link.startswith("https://wa.example.com/reset?token=")  # GATEWAY_PUBLIC_URL, never the Host header
    assert smtp.inbox.to("nobody@example.com") == []
    path = urlsplit(link)
    form = {"token": path.query.removeprefix("token="), "password": "brand new pass", "confirm": "brand new pass"}
    done = await post_form(anonymous, "/reset", form, csrf_from=f"/reset?{path.query}")
    assert done.status_code == 303 and done.headers["Location"] == "/login?done=reset"
    again = await post_form(anonymous, "/reset", form, csrf_from=f"/reset?{path.query}")
    assert again.status_code == 422 and "used already" in await again.get_data(as_text=True)
    assert (await client.get("/dashboard")).status_code == 303  # every login ended
    assert (await other.get("/dashboard")).status_code == 303
    elsewhere = {"X-Forwarded-For": "192.0.2.77"}  # five auth requests came from the first address already
    assert (await log_in(anonymous, "dora@example.com", PASSWORD, headers=elsewhere)).status_code == 401
    assert (await log_in(anonymous, "dora@example.com", "brand new pass", headers=elsewhere)).status_code == 303


async def test_forgot_is_limited_to_three_an_hour_per_email(app, smtp: SmtpServer):
    client = app.test_client()
    statuses = []
    for i in range(4):  # each from its own address, so only the per-email limit applies
        answer = await post_form(client, "/forgot", {"email": "Fay@Example.com"},
                                 headers={"X-Forwarded-For": f"198.51.100.{i}"})
        statuses.append(answer.status_code)
    assert statuses == [200, 200, 200, 429]


async def test_a_reset_token_dies_after_an_hour(tmp_path):
    class Clock:
        now = 1_000_000

        def now_ms(self) -> int:
            return self.now

        def monotonic(self) -> float:
            return self.now / 1000

    clock = Clock()
    store = await open_store(f"sqlite:///{tmp_path}/r.db")
    try:
        await store.migrate()
        accounts = Accounts(store, clock=clock)
        await accounts.create_user("gil@example.com", PASSWORD)
        _, token = await accounts.start_reset("gil@example.com")
        _, late = await accounts.start_reset("gil@example.com")
        clock.now += RESET_TTL_MS - 1
        await accounts.finish_reset(token, "in time pass")
        clock.now += 1
        with pytest.raises(Exception, match="expired"):
            await accounts.finish_reset(late, "too late pass")
        assert await accounts.start_reset("nobody@example.com") is None
    finally:
        await store.aclose()


async def test_tokens_page_shows_a_token_once_and_the_api_refuses_it_once_revoked(app):
    client = app.test_client()
    await sign_up(client, "hal@example.com")
    created = await post_form(client, "/dashboard/api-tokens", {"name": "crm", "expiresInDays": "30"})
    assert created.status_code == 201
    html = await created.get_data(as_text=True)
    secret = re.search(r'id="new-token"[^>]*>(wgp_[^<]+)<', html).group(1)
    api = app.test_client()
    listed = await api.get("/api/v1/tokens", headers={"X-API-Token": secret})
    assert listed.status_code == 200 and [t["name"] for t in (await listed.get_json())["data"]] == ["crm"]
    page = await client.get("/dashboard/api-tokens")
    text = await page.get_data(as_text=True)
    assert secret not in text and "crm" in text and "active" in text
    token_id = secret.split("_")[1]
    revoked = await post_form(client, f"/dashboard/api-tokens/{token_id}/revoke", {}, csrf_from="/dashboard/api-tokens")
    assert revoked.status_code == 303
    assert (await api.get("/api/v1/tokens", headers={"X-API-Token": secret})).status_code == 401
    bad = await post_form(client, "/dashboard/api-tokens", {"name": "x", "expiresInDays": "99999"})
    assert bad.status_code == 422 and "expires in 1 to" in await bad.get_data(as_text=True)


async def test_the_api_takes_the_dashboard_login_with_its_csrf_header(app):
    client = app.test_client()
    await sign_up(client, "ivy@example.com")
    assert (await client.get("/api/v1/tokens")).status_code == 200
    refused = await client.post("/api/v1/tokens", json={"name": "from the page"})
    assert refused.status_code == 403 and (await refused.get_json())["error"]["code"] == "FORBIDDEN"
    csrf = await csrf_of(client, "/dashboard")
    made = await client.post("/api/v1/tokens", json={"name": "from the page"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    stranger = app.test_client()
    stranger.cookie_jar.set_cookie(_cookie(LOGIN_COOKIE, "A" * 43))
    assert (await stranger.get("/api/v1/tokens")).status_code == 401


async def test_a_new_session_shows_its_key_once(app, gateway):
    client = app.test_client()
    await sign_up(client, "jo@example.com")
    created = await post_form(client, "/dashboard/sessions", {"name": "Support", "phoneNumber": ""},
                              csrf_from="/dashboard")
    assert created.status_code == 201
    html = await created.get_data(as_text=True)
    key = re.search(r'id="session-key"[^>]*>(wgs_[^<]+)<', html).group(1)
    session_id = re.search(r'/dashboard/sessions/([0-9a-f-]{36})/', html).group(1)
    me = await app.test_client().get(f"/api/v1/whatsapp-sessions/{session_id}",
                                     headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200 and (await me.get_json())["name"] == "Support"
    again = await client.get(f"/dashboard/sessions/{session_id}")
    assert again.status_code == 200 and key not in await again.get_data(as_text=True)
    listed = await client.get("/dashboard/sessions.json")
    assert [(s["id"], s["status"]) for s in (await listed.get_json())["sessions"]] == [(session_id, "DISCONNECTED")]
    bad = await post_form(client, "/dashboard/sessions", {"name": "x", "phoneNumber": "12"}, csrf_from="/dashboard")
    assert bad.status_code == 422 and "phoneNumber" in await bad.get_data(as_text=True)


async def test_another_users_session_is_a_404_page(app):
    owner, stranger = app.test_client(), app.test_client()
    await sign_up(owner, "kim@example.com")
    created = await post_form(owner, "/dashboard/sessions", {"name": "Mine"}, csrf_from="/dashboard")
    session_id = re.search(r'/dashboard/sessions/([0-9a-f-]{36})/', await created.get_data(as_text=True)).group(1)
    await sign_up(stranger, "lee@example.com")
    for path in (f"/dashboard/sessions/{session_id}", f"/dashboard/sessions/{session_id}/live"):
        answer = await stranger.get(path)
        assert answer.status_code == 404, path
    page = await stranger.get(f"/dashboard/sessions/{session_id}")
    assert "text/html" in page.headers["Content-Type"] and "Session does not exist" in await page.get_data(True)
    data = await stranger.get(f"/dashboard/sessions/{session_id}/live")  # what the script polls stays JSON
    assert (await data.get_json())["error"]["code"] == "SESSION_NOT_FOUND"
    deleted = await post_form(stranger, f"/dashboard/sessions/{session_id}/delete", {"confirm": "Mine"},
                              csrf_from="/dashboard")
    assert deleted.status_code == 404
    assert (await owner.get(f"/dashboard/sessions/{session_id}")).status_code == 200


def _cookie(name: str, value: str):
    from http.cookiejar import Cookie

    return Cookie(0, name, value, None, False, "localhost", False, False, "/", True, False, None, False, None,
                  None, {})




async def test_simulate_scan_exists_only_on_the_sim_transport(tmp_path, smtp):
    from gateway import create_app

    from ._fake_transport import FakeFactory

    config = Config(database_url=f"sqlite:///{tmp_path}/wa.db", data_dir=str(tmp_path / "d"), transport="whatsapp")
    app = create_app(config, transport_factory=FakeFactory(["qr"]))
    async with app.test_app():
        client = app.test_client()
        await sign_up(client, "real@example.com")
        created = await post_form(client, "/dashboard/sessions", {"name": "Phone"}, csrf_from="/dashboard")
        html = await created.get_data(as_text=True)
        session_id = re.search(r'/dashboard/sessions/([0-9a-f-]{36})/', html).group(1)
        assert "Simulate scan" not in html
        refused = await post_form(client, f"/dashboard/sessions/{session_id}/simulate-scan", {},
                                  csrf_from="/dashboard")
        assert refused.status_code == 409 and "GATEWAY_TRANSPORT=sim" in await refused.get_data(as_text=True)


async def test_expired_logins_and_reset_tokens_are_purged_hourly(tmp_path, mock_clock):
    import time

    import trio
    import trio.testing

    from gateway._logins import Logins
    from gateway.store import PasswordReset

    class Wall:
        now = 10_000_000

        def now_ms(self) -> int:
            return self.now

        def monotonic(self) -> float:
            return trio.current_time()

    store = await open_store(f"sqlite:///{tmp_path}/p.db")
    try:
        await store.migrate()
        user = await Accounts(store).create_user("purge@example.com", PASSWORD)
        wall = Wall()
        logins = Logins(store, ttl=600, clock=wall)
        _, stale = await logins.start(user.id)
        await store.create_password_reset(PasswordReset(token_hash=b"h" * 32, user_id=user.id, created_at=0,
                                                        expires_at=wall.now + 1_000))
        wall.now += 601_000  # past both
        _, fresh = await logins.start(user.id)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(logins.purge_loop, 3600)

            async def gone(login) -> bool:  # the purge runs on a store thread: give it a moment of real time
                for _ in range(200):
                    await trio.testing.wait_all_tasks_blocked()
                    if await store.get_web_session(login.id_hash, 0) is None:
                        return True
                    time.sleep(0.01)
                return False

            assert await gone(stale)  # removed, not merely expired
            assert await store.get_web_session(fresh.id_hash, wall.now) is not None
            assert await store.use_password_reset(b"h" * 32, 0) is None
            wall.now += 601_000  # the fresh one ends too; it is gone only at the next round, an hour on
            mock_clock.jump(3599)
            await trio.testing.wait_all_tasks_blocked()
            assert await store.get_web_session(fresh.id_hash, 0) is not None
            mock_clock.jump(1)
            assert await gone(fresh)
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
