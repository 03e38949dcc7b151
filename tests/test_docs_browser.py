"""/docs in a real browser: every operation listed and linked, examples shown, schemas folded, nothing fetched."""

from __future__ import annotations

import httpx
import pytest

from gateway.api._examples import SEND_MESSAGE

from ._browser import browser_page
from ._procs import base_env, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(base_env(tmp_path_factory.mktemp("docs"))) as (base, _proc):
        yield base


@pytest.mark.timeout(300)
@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_docs_page_reads_well(server, viewport, tmp_path):
    doc = httpx.get(server + "/api/v1/openapi.json").json()
    operations = [op for ops in doc["paths"].values() for op in ops.values()]
    requests: list[str] = []
    console: list[str] = []
    with browser_page(viewport=viewport) as page:
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        answer = page.goto(server + "/docs")
        headers = answer.headers
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        # The page's own style is allowed by its hash, so the strict policy blocks nothing.
        assert page.evaluate("getComputedStyle(document.querySelector('.op')).borderTopStyle") == "solid"
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        # Every operation has a section, and the contents link to each one.
        assert page.locator("article.op").count() == len(operations)
        for op in operations:
            link = page.locator(f"nav a[href='#{op['operationId']}']")
            assert link.count() == 1, op["operationId"]
        # The send-message examples are all there, the first open, its JSON readable.
        send = page.locator("article#send_message")
        assert send.locator("h4", has_text="Request examples").count() == 1
        assert send.locator("details > summary").filter(has_text="Poll").count() == 1
        first = send.locator("details").first
        assert first.get_attribute("open") is not None
        assert '"text": "Hello from the API!"' in first.locator("pre").inner_text()
        assert send.locator("details").count() >= len(SEND_MESSAGE) + 1
        # Schemas are folded away until opened.
        schema = send.locator("details", has=page.locator("summary", has_text="Request body schema"))
        assert not schema.locator("pre").is_visible()
        schema.locator("summary").click()
        assert schema.locator("pre").is_visible()
        assert '"oneOf"' in schema.locator("pre").inner_text()
        # Markdown is rendered, not shown raw: backticks become <code>.
        description = page.locator("main > p").first
        assert description.locator("code").count() >= 1 and "`" not in description.inner_text()
        # A link in the contents jumps to its section.
        page.locator("nav a[href='#send_message']").click()
        assert page.url.endswith("#send_message")
        # Nothing but the page itself was requested: no CDN, no fonts, no scripts.
        assert all(url.startswith(server) for url in requests), requests
        assert not [line for line in console if "Content Security Policy" in line], console
        # No horizontal scrolling on a phone.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"] + 1, width
