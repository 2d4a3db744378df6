"""Fixtures of the end-to-end tests: one headless Chromium per module, a fresh page per test."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.support.chromium import launch_chromium


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A page in its own context; the module's ``TIMEOUT_MS`` (default 15 s) bounds each wait,
    and an uncaught error in the page fails the test."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(getattr(request.module, "TIMEOUT_MS", 15000))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors
