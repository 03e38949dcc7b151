"""The dashboard in a real browser, as a newcomer goes through it, against real processes.

A `gateway serve` (sim transport), a `gateway simulator`, a local SMTP server (aiosmtpd) and a
local webhook receiver run for the module; Debian's Chromium is driven by Playwright. Every page
is checked with axe-core (no serious or critical violation) and saved as a screenshot under
`tests/screenshots/` (the README names it), with axe's results in `tests/screenshots/axe.json`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from ._browser import CHROMIUM_FLAGS, chromium_path, run_axe, serious_violations
from ._procs import base_env, free_port, run_cli, serving
from ._sim_proc import simulator
from ._smtp import SmtpServer, reset_link, smtp_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SHOTS = Path(__file__).parent / "screenshots"
EMAIL, PASSWORD, NEW_PASSWORD = "newcomer@example.com", "first password 1", "second password 2"
QR_INTERVAL = 3


@dataclass
class Stack:
    base: str
    sim_url: str
    smtp: SmtpServer
    hooks: list[dict]
    hook_url: str


class _Receiver(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append({"headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with smtp_server() as smtp, simulator("--qr-interval", str(QR_INTERVAL)) as sim:
        env = base_env(tmp_path_factory.mktemp("dashboard"), GATEWAY_TRANSPORT="sim", GATEWAY_SIM_URL=sim.url,
                       GATEWAY_SMTP_URL=smtp.url, GATEWAY_PUBLIC_URL=base, GATEWAY_TRUSTED_PROXIES="127.0.0.1",
                       GATEWAY_ALLOW_PRIVATE_URLS="true", GATEWAY_SEND_MIN_GAP="0", GATEWAY_SEND_JITTER="0")
        with serving(env, port=port) as (url, _proc):
            yield Stack(url, sim.url, smtp, _Receiver.seen, f"http://127.0.0.1:{receiver.server_port}/hook")
    receiver.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


AXE: dict[str, dict] = {}


def look(page, name: str) -> None:
    """Screenshot the page and check it with axe-core: no serious or critical violation."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    result = run_axe(page)
    AXE[name] = {"url": page.url, "violations": result["violations"], "passes": result["passes"]}
    (SHOTS / "axe.json").write_text(json.dumps(AXE, indent=2))
    assert serious_violations(result) == [], (name, serious_violations(result))


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def submit(page, button: str, *, path: str | None = None):
    """Click a form's button and return the answer to the form's POST."""
    with page.expect_response(lambda r: r.request.method == "POST" and (path is None or r.url.endswith(path))) as info:
        page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_load_state()
    return info.value


def test_a_newcomer_from_sign_up_to_a_delivered_message_then_tokens_and_a_reset(stack: Stack, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)

    # / → /login, and a keyboard user lands on the skip link first
    first = page.goto(stack.base + "/")
    assert page.url == stack.base + "/login"
    headers = first.headers
    assert "unsafe-inline" not in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"
    assert page.evaluate("document.activeElement.id") == "email"  # the form is ready to type into
    look(page, "01-login")

    # sign up
    page.get_by_role("link", name="Create an account").click()
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    look(page, "02-signup")
    submit(page, "Create account")
    assert page.url == stack.base + "/dashboard"
    assert page.get_by_text(EMAIL).is_visible()
    page.keyboard.press("Tab")  # a keyboard user meets the skip link first, and it jumps to the content
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    look(page, "03-dashboard-empty")

    # create a session: its key is shown once
    page.fill("#name", "Support")
    assert submit(page, "Create session").status == 201
    key = page.locator("#session-key").inner_text().strip()
    assert key.startswith("wgs_")
    page.get_by_role("button", name="Copy").first.click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    session_id = page.locator("[data-poll-session]").get_attribute("data-poll-session").split("/")[3]
    look(page, "04-session-created-key-once")

    # connect: the QR appears, and the next one replaces it without a reload
    submit(page, "Connect")
    assert "Connecting" in page.locator(".alert.ok").inner_text()
    assert page.locator("#session-key").count() == 0  # the key was shown once
    qr = page.locator("img[data-qr]")
    qr.wait_for(state="visible")
    page.wait_for_function("() => { const i = document.querySelector('img[data-qr]'); "
                           "return i.complete && i.naturalWidth > 0; }")
    page.evaluate("window.sameDocument = true")
    first_qr = qr.get_attribute("src")
    page.wait_for_function(f"() => document.querySelector('img[data-qr]').src.indexOf({first_qr!r}) < 0",
                           timeout=(QR_INTERVAL + 10) * 1000)
    assert page.get_by_role("button", name="Simulate scan").is_visible()  # the sim transport only
    look(page, "05-session-qr")

    # pair it with the simulator from the command line: the page turns CONNECTED by itself
    scanned = run_cli(base_env(Path("/tmp")), "simulator", "scan", session_id, "--phone", "+15550001234",
                      "--url", stack.sim_url)
    assert scanned.returncode == 0, scanned.stderr
    page.wait_for_function("() => document.querySelector('[data-status]').textContent === 'CONNECTED'")
    assert page.evaluate("window.sameDocument") is True  # no reload happened
    assert page.locator("[data-qr-panel]").is_hidden()
    assert page.locator("[data-done]").is_hidden()  # "Connecting: scan the QR code" is gone with the QR
    assert page.locator("[data-phone]").inner_text() == "+15550001234"
    look(page, "06-session-connected")

    # the seed's example send, with the session key, ends sent; the page lists it
    sent = httpx.post(stack.base + "/api/v1/send-message", headers={"Authorization": f"Bearer {key}"},
                      json={"to": "1234567890", "text": "Hello from the API!"})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["messageId"]
    status = _wait_message(stack.base, key, message_id)
    assert status in ("sent", "delivered", "read"), status
    page.reload()
    row = page.locator("tr", has=page.locator(f"code:text-is('{message_id}')"))
    assert row.count() == 1 and row.locator(".badge").inner_text() in ("sent", "delivered", "read")

    # the webhook: set it, send a test, see the delivery and its attempts, redeliver it
    page.fill("#webhookUrl", stack.hook_url)
    submit(page, "Save webhook")
    assert "Webhook settings saved" in page.locator(".alert.ok").inner_text()
    submit(page, "Send a test event")
    _wait(lambda: any(h["body"].get("event") == "webhook.test" for h in stack.hooks))
    assert all("webhook-signature" in {k.lower() for k in h["headers"]} for h in stack.hooks)
    _wait(lambda: (page.reload(), page.locator(".badge.delivery-delivered").count() > 0)[1])
    delivered = page.locator("tr", has=page.locator(".badge.delivery-delivered")).first
    delivered.get_by_text("history").click()
    assert "delivered (204)" in delivered.inner_text()
    before = len(stack.hooks)
    delivered.get_by_role("button", name="Redeliver").click()
    page.wait_for_load_state()
    assert "queued again" in page.locator(".alert.ok").inner_text()
    _wait(lambda: len(stack.hooks) > before)
    look(page, "07-session-messages-webhook")

    # tokens: created and shown once, used with an HTTP client, revoked and refused
    page.get_by_role("link", name="API tokens").click()
    page.fill("#name", "crm")
    assert submit(page, "Create token").status == 201
    token = page.locator("#new-token").inner_text().strip()
    look(page, "08-tokens-created")
    listed = httpx.get(stack.base + "/api/v1/whatsapp-sessions", headers={"X-API-Token": token})
    assert listed.status_code == 200 and [s["name"] for s in listed.json()["data"]] == ["Support"]
    page.get_by_role("button", name="Revoke token crm").click()
    page.wait_for_load_state()
    assert "Token revoked" in page.locator(".alert.ok").inner_text()
    assert httpx.get(stack.base + "/api/v1/whatsapp-sessions", headers={"X-API-Token": token}).status_code == 401
    assert page.locator("tr", has_text="crm").locator(".badge").inner_text() == "revoked"
    look(page, "09-tokens-revoked")

    page.get_by_role("link", name="Account").click()
    look(page, "10-account")

    # forgot password: the link arrives by SMTP; the new password works, the old one not
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login?done=out")
    page.get_by_role("link", name="Forgot your password?").click()
    look(page, "11-forgot")
    page.fill("#email", EMAIL)
    submit(page, "Send the link")
    assert "is on its" in page.get_by_role("status").inner_text()
    link = reset_link(stack.smtp.inbox.wait_for_sync(EMAIL))
    page.goto(link)
    look(page, "12-reset")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    submit(page, "Set the password")
    assert page.url.endswith("/login?done=reset")
    # by keyboard: type, Tab, type, Enter
    page.focus("#email")
    page.keyboard.type(EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type(NEW_PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == stack.base + "/dashboard"
    assert page.locator("[data-session] [data-status]").inner_text() == "CONNECTED"
    look(page, "13-dashboard-after-reset")
    assert not [c for c in console if "Content Security Policy" in c], console
    context.close()


def test_the_sixth_failed_login_in_a_minute_answers_429(stack: Stack, browser):
    # its own client address (behind the trusted proxy), so the other test's requests do not count
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.50"})
    page = context.new_page()
    page.goto(stack.base + "/login")
    statuses = []
    for attempt in range(6):
        page.fill("#email", EMAIL)
        page.fill("#password", f"wrong guess {attempt}")
        statuses.append(submit(page, "Log in", path="/login").status)
    assert statuses == [401] * 5 + [429]
    assert "Too many attempts" in page.get_by_role("alert").inner_text()
    look(page, "14-login-limited")
    context.close()


def test_the_simulate_scan_button_pairs_a_session(stack: Stack, browser):
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.52"})
    page = context.new_page()
    page.goto(stack.base + "/login")
    page.fill("#email", EMAIL)
    page.fill("#password", NEW_PASSWORD)
    submit(page, "Log in")
    page.fill("#name", "Second line")
    submit(page, "Create session")
    submit(page, "Connect")
    page.locator("img[data-qr]").wait_for(state="visible")
    page.fill("#sim-phone", "+15550004321")
    submit(page, "Simulate scan")
    assert "The simulator scanned the QR code" in page.locator(".alert.ok").inner_text()
    page.wait_for_function("() => document.querySelector('[data-status]').textContent === 'CONNECTED'")
    page.wait_for_function("() => document.querySelector('[data-phone]').textContent === '+15550004321'")
    context.close()


def test_the_pages_fit_a_phone(stack: Stack, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                  extra_http_headers={"X-Forwarded-For": "203.0.113.51"})
    page = context.new_page()
    page.goto(stack.base + "/login")
    assert fits_the_width(page)
    page.fill("#email", EMAIL)
    page.fill("#password", NEW_PASSWORD)
    submit(page, "Log in")
    for path, name in (("/dashboard", "15-phone-dashboard"), ("/dashboard/api-tokens", "16-phone-tokens")):
        page.goto(stack.base + path)
        assert fits_the_width(page), path
        look(page, name)
    page.get_by_role("link", name="Sessions").click()
    page.get_by_role("link", name="Support").click()
    assert fits_the_width(page)
    look(page, "17-phone-session")
    missing = page.goto(stack.base + "/dashboard/sessions/no-such-session")
    assert missing.status == 404 and "Session does not exist" in page.content()
    assert page.get_by_role("button", name="Log out").count() == 1  # still shown as logged in
    look(page, "18-not-found")
    context.close()


def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def _wait_message(base: str, key: str, message_id: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    status = "unknown"
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/api/v1/messages/{message_id}", headers={"Authorization": f"Bearer {key}"}
                           ).json()["status"]
        if status not in ("queued", "sending"):
            return status
        time.sleep(0.2)
    return status



def test_axe_itself_catches_what_it_must(browser):
    """The check above would pass on a page axe never looked at: show it finds a real violation."""
    page = browser.new_page()
    page.set_content("<!doctype html><html lang='en'><title>t</title><main><input type='text'>"
                     "<img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='></main></html>")
    found = {v["id"] for v in serious_violations(run_axe(page))}
    assert {"label", "image-alt"} <= found, found
    page.close()
