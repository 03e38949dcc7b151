"""A real browser for the tests of pages people look at: Debian's Chromium driven by Playwright.

Playwright's own browser download cannot be reached here, so Playwright drives
the system Chromium (`/usr/bin/chromium`). When it is missing, the suite
installs it with apt-get (the registry is reachable, CI runs as root); when
that fails the test fails, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False, timeout=900,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is not installed and `apt-get install -y chromium` did not install it")
    return found


@contextmanager
def browser_page(**context_options: object) -> Iterator[object]:
    """A fresh page in headless Chromium; yields the Playwright `Page`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(**context_options)
            yield context.new_page()
        finally:
            browser.close()


AXE_VERSION = "4.14.1"  # tests/package.json pins the same
_TESTS = os.path.dirname(os.path.abspath(__file__))
AXE_PATH = os.path.join(_TESTS, "node_modules", "axe-core", "axe.min.js")
SERIOUS = ("serious", "critical")


def axe_source() -> str:
    """axe-core from npm (tests/package.json, tests/package-lock.json), installed on first use; never skipped."""
    if not os.path.exists(AXE_PATH):
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core for the accessibility checks, and is not installed")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=_TESTS, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0 or not os.path.exists(AXE_PATH):
            pytest.fail(f"`npm ci` in tests/ did not install axe-core: {done.stderr[-2000:]}")
    with open(AXE_PATH, encoding="utf-8") as f:
        return f.read()


def run_axe(page: object) -> dict:
    """axe-core's WCAG 2.x A/AA rules on the page as it is now; returns its results (`violations`, ...).

    Evaluated through the DevTools protocol, so the page's strict CSP stays on and needs no exception."""
    if not page.evaluate("() => typeof window.axe === 'object'"):  # type: ignore[attr-defined]
        page.evaluate(axe_source() + "\n;undefined")  # type: ignore[attr-defined]
    return page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a",
                                                                             "wcag21aa", "best-practice"]}});
        return {violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                    nodes: v.nodes.map(n => n.target.join(" "))})),
                passes: r.passes.length, incomplete: r.incomplete.length};
    }""")  # type: ignore[attr-defined]


def serious_violations(result: dict) -> list[dict]:
    return [v for v in result["violations"] if v["impact"] in SERIOUS]
