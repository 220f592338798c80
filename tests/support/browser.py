"""A real browser for end-to-end tests of the finance page: Debian's Chromium, driven
headless by Playwright (never a browser Playwright downloads itself).

Without Chromium or the ``playwright`` package these tests skip with the reason; under
``CI=true`` they fail instead (``.ci/run`` installs Chromium), so CI cannot pass by
skipping them."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("METERLINE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"
# Playwright's wait for a page or an element, in milliseconds.
TIMEOUT_MS = 15_000


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def require_browser() -> None:
    reason = browser_missing()
    if reason is None:
        return
    message = f"browser tests need Chromium: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: required)")
    pytest.skip(message)


@contextlib.asynccontextmanager
async def chromium_page(base_url: str):
    """A fresh browser context (no cookies) and a page in it, on ``base_url``."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(base_url=base_url)
            context.set_default_timeout(TIMEOUT_MS)
            yield await context.new_page()
        finally:
            await browser.close()
