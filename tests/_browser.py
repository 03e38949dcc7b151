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
