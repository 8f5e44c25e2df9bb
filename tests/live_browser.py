"""Headless Chromium and a live server of the test module's own, for the page tests.

Chromium comes from the system (Debian's ``chromium`` package), driven by Playwright; the
portal runs in pytest-django's live server. Without Chromium these tests fail, saying how to
install it: a browser test that skips would hide a broken page. A test module binds the
fixtures to its own names (``browser = live_browser.browser``): both are module-scoped.
"""

import os
import shutil
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from callgrid_portal.roles import ROLES

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
# As root, in a sandbox without network: no sandboxing, GPU, or calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    # Playwright's sync API runs an event loop on this thread; the tests' own ORM calls are
    # plain synchronous code between its steps.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def site_server(django_db_setup, django_db_blocker) -> Iterator[str]:
    """A live server of this module's own, started with plain-http settings.

    pytest-django's ``live_server`` is session-wide and may start before any test's settings
    apply; its security middleware would then redirect every page to https, which this
    server cannot speak. The middleware reads those settings once, when the server starts.
    """
    with (
        override_settings(
            SECURE_SSL_REDIRECT=False, SESSION_COOKIE_SECURE=False, CSRF_COOKIE_SECURE=False
        ),
        django_db_blocker.unblock(),
    ):
        server = LiveServer("localhost")
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
def site(site_server, transactional_db) -> str:
    # A transactional test empties every table afterwards, the migration's role groups too.
    for role in ROLES:
        Group.objects.get_or_create(name=role)
    return site_server


def log_in(browser: Browser, site: str, username: str) -> Page:
    page = browser.new_page()
    page.goto(f"{site}/buyers/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buyers")).to_be_visible()
    return page
