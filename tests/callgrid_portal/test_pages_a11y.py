"""Every page in a real browser at desktop and phone width: axe-core finds no violation, the
page never scrolls sideways, and a screenshot of it is saved for people to look at.

To add a page, add one line to ``PAGES``: a name (the screenshot's), the path (``{buyer}``,
``{bid}``, ``{call}`` name the rows ``_world`` makes), who looks at it, and the status it
answers with. ``test_every_page_of_the_url_conf_is_checked`` fails when a page of the URL
conf is neither here nor in ``NOT_PAGES``.

Screenshots go to ``$SCREENSHOT_DIR`` (default ``var/screenshots/``), as
``<name>-<width>.png``; the run's summary prints the folder's path (tests/conftest.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.db.utils import OperationalError
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver, path
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from bidlog.choices import AlertRule, Outcome, Source
from bidlog.models import Alert, AlertMute, BidLog, Call
from buyers.models import Buyer
from tests import live_browser
from tests.conftest import SCREENSHOT_DIR
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, UserFactory

# The browser and the live server of the browser tests, shared as fixtures of this module.
PASSWORD = live_browser.PASSWORD
browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site

WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}


# The url_name of a page that exists only in this module's URL conf (the failing views).
TEST_ONLY = "(this module's failing views)"


@dataclass(frozen=True)
class PageCase:
    """One page to check: its name, path, who opens it and the status it answers with."""

    name: str
    path: str
    user: str = "viewer"  # viewer, operator, norole or anonymous
    status: int = 200
    url_name: str = ""  # the URL conf's name it covers, when the path alone cannot say


PAGES = [
    PageCase("overview", "/"),
    PageCase("overview-7d", "/?range=7d"),
    PageCase("overview-today-by-publisher", "/?range=today&group=publisher"),
    PageCase("overview-bad-dates", "/?from_date=2026-12-03&to_date=2026-12-01"),
    PageCase("bids", "/bids/"),
    PageCase("bids-filtered", "/bids/?code=4004"),
    PageCase("bids-sorted", "/bids/?sort=-duration_ms&outcome=accepted&outcome=timeout"),
    PageCase("bids-bad-filters", "/bids/?from_date=2026-12-02&to_date=2026-12-01&sort=x"),
    PageCase("bids-7d-exact-times", "/bids/?range=7d&since=2026-11-30T09:00&outcome=accepted"),
    PageCase("bids-operator", "/bids/", "operator"),
    PageCase("bid-detail-failed", "/bids/{bid}/"),
    PageCase("bid-detail-accepted", "/bids/{accepted}/"),
    PageCase("calls", "/calls/"),
    PageCase("calls-campaign-7d", "/calls/?range=7d&campaign=auto-tv"),
    PageCase("call-detail", "/calls/{call}/"),
    PageCase("reports", "/reports/"),
    PageCase("reports-bad-range", "/reports/?range=custom", status=200),
    PageCase("reports-dates-by-campaign", "/reports/?from_date=2026-11-01&to_date=2026-11-30"),
    PageCase("buyers", "/buyers/"),
    PageCase("buyer-detail", "/buyers/{buyer}/"),
    PageCase("buyer-detail-operator", "/buyers/{buyer}/?caller_id=3035551234", "operator"),
    PageCase("buyer-new", "/buyers/new/", "operator"),
    PageCase("buyer-edit", "/buyers/{buyer}/edit/", "operator"),
    PageCase("buyer-clone", "/buyers/{buyer}/clone/", "operator"),
    PageCase("buyers-operator", "/buyers/", "operator"),
    PageCase("troubleshooting", "/troubleshooting/"),
    PageCase("alerts", "/alerts/"),
    PageCase("live", "/live/"),
    PageCase("alerts-operator", "/alerts/", "operator"),
    PageCase("alerts-resolved", "/alerts/?status=resolved"),
    PageCase("login", "/accounts/login/", "anonymous"),
    PageCase("forbidden", "/buyers/new/", status=403),
    PageCase("no-role", "/", "norole", status=403),
    PageCase("not-found", "/bids/999999999/", status=404),
    PageCase("server-error", "/__test__/500/", "anonymous", status=500, url_name=TEST_ONLY),
    PageCase("unavailable", "/__test__/503/", "anonymous", status=503, url_name=TEST_ONLY),
]

# Pages of the URL conf that are not checked here, and why.
NOT_PAGES = {
    "logout": "POST only; its message is on the login page (test_logout_says_so)",
    "buyers:test_bid": "POST only; answers with a redirect to the buyer page",
    "buyers:status": "POST only; its confirm page: test_confirm_pages_have_no_axe_violation",
    "buyers:bulk_status": "POST only; its confirm page: test_confirm_pages_have_no_axe_violation",
    "bids:saved_save": "POST only; answers with a redirect to the bids list",
    "bids:saved_delete": "POST only; answers with a redirect to the bids list",
    "calls:paid-out": "POST only; answers with a redirect to the call page",
    "live-rows": "rows for the live page to insert (htmx), not a page of their own",
    "alerts:acknowledge": "POST only; answers with a redirect to the alert centre",
    "alerts:mute": "POST only; answers with a redirect to the alert centre",
    "alerts:unmute": "POST only; answers with a redirect to the alert centre",
}
# Whole parts of the URL conf that are not the portal's pages: Django's admin, and the API
# (JSON; its browsable and Swagger UI pages are DRF's and Swagger UI's markup, not ours).
NOT_PAGE_PREFIXES = ("admin/", "api/")


def _fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug, for the 500 page")


def _outage(request: HttpRequest) -> HttpResponse:
    raise OperationalError("connection refused, for the 503 page")


# The portal's URL conf plus two views that fail, to show the 500 and 503 pages.
urlpatterns = [
    path("__test__/500/", _fail),
    path("__test__/503/", _outage),
    *get_resolver("callgrid_portal.urls").url_patterns,
]
handler403 = "callgrid_portal.navigation.permission_denied"
handler500 = "callgrid_portal.outage.server_error"


@pytest.fixture(scope="module")
def screenshot_dir() -> Path:
    """The folder (``$SCREENSHOT_DIR``, default ``var/screenshots/``); conftest's terminal
    summary prints its path at the end of the run."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


@pytest.fixture(scope="module")
def axe() -> Axe:
    return Axe()


@pytest.fixture
def world(site) -> dict[str, Any]:
    """A portal with something on every page: buyers, bids good and bad, a call, an alert."""
    for username, role in (("alice", "viewer"), ("bob", "operator"), ("nora", None)):
        UserFactory(username=username, role=role, password=PASSWORD)
    UserFactory(username="ada", role="admin", email="ada@example.com")
    buyer = cast(
        Buyer, BuyerFactory(name="Acme Auto", min_bid=Decimal("10.00"), health_check_minutes=15)
    )
    other = cast(Buyer, BuyerFactory(name="Beta Insurance", priority=2, timeout_seconds=2))
    accepted = cast(BidLog, BidLogFactory(buyer=buyer))
    failed = cast(
        BidLog,
        BidLogFactory(
            buyer=other,
            outcome=Outcome.CAPACITY_CHECK_FAILED,
            code=4004,
            http_status=400,
            bid_amount=None,
            message="Capacity check failed",
            duration_ms=2100,
        ),
    )
    BidLogFactory(buyer=buyer, outcome=Outcome.TIMEOUT, code=None, http_status=None)
    BidLogFactory(buyer=buyer, source=Source.HEALTH, outcome=Outcome.DECLINED, code=2000)
    call = cast(
        Call,
        CallFactory(
            winner=buyer,
            routed=True,
            bid_amount=Decimal("25.50"),
            campaign="auto-tv",
            publisher="Acme Media",
        ),
    )
    accepted.call = call
    accepted.save()
    Alert.objects.create(
        buyer=other,
        rule=AlertRule.CAPACITY_CHECK,
        code=4004,
        priority="review",
        title="Capacity check failing while active",
    )
    Alert.objects.create(
        buyer=buyer,
        rule=AlertRule.DISABLED,
        code=4001,
        priority="immediate",
        title="Acme Auto: Campaign disabled (repeated 4001)",
    )
    Alert.objects.create(
        buyer=buyer,
        rule=AlertRule.TIMEOUTS,
        priority="review",
        title="Acme Auto: Timeout rate too high",
        status="resolved",
        resolved_at=timezone.now(),
        acknowledged_at=timezone.now(),
    )
    AlertMute.objects.create(buyer=other, until=timezone.now() + timedelta(hours=4))
    return {
        "site": site,
        "buyer": buyer.pk,
        "bid": failed.pk,
        "accepted": accepted.pk,
        "call": call.pk,
    }


def _open(browser: Browser, site: str, user: str) -> Page:
    page = browser.new_page()
    if user != "anonymous":
        username = {"viewer": "alice", "operator": "bob", "norole": "nora"}[user]
        page.goto(f"{site}/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
    return page


def _violations(results: Any) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(", ".join(map(str, node["target"])) for node in v["nodes"][:5])
        for v in results.response["violations"]
    )


@pytest.mark.parametrize("case", PAGES, ids=[case.name for case in PAGES])
def test_page_has_no_axe_violation_at_either_width(browser, world, axe, screenshot_dir, case):
    page = _open(browser, world["site"], case.user)
    url = world["site"] + case.path.format(**world)
    problems = []
    with override_settings(ROOT_URLCONF=__name__):
        for width_name, (width, height) in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            response = page.goto(url)
            assert response is not None and response.status == case.status, case.path
            page.screenshot(path=screenshot_dir / f"{case.name}-{width_name}.png", full_page=True)
            results = axe.run(page)
            if results.violations_count:
                problems.append(f"at {width_name} width:\n{_violations(results)}")
            # Wide tables and charts scroll inside their own box, never the page.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            if overflow > 0:
                problems.append(f"at {width_name} width the page scrolls sideways by {overflow}px")
    page.close()
    assert not problems, "\n".join(problems)


def test_confirm_pages_have_no_axe_violation(browser, world, axe, screenshot_dir):
    """The pages that ask before pausing are POST answers, what a person without JavaScript
    sees. Here the dialog's question is taken off the buttons, so the click brings the page."""
    page = _open(browser, world["site"], "operator")
    problems = []
    cases = (
        ("buyer-pause-confirm", f"/buyers/{world['buyer']}/", "Pause", "Pause Acme Auto?"),
        ("buyer-disable-confirm", f"/buyers/{world['buyer']}/", "Disable", "Disable Acme Auto?"),
        ("buyers-bulk-pause-confirm", "/buyers/", "Pause", "Pause 2 buyers?"),
    )
    for name, url, button, heading in cases:
        for width_name, (width, height) in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            page.goto(world["site"] + url)
            page.evaluate(
                "document.querySelectorAll('[data-confirm]')"
                ".forEach(b => b.removeAttribute('data-confirm'))"
            )
            for box in page.locator('input[name="buyers"]').all():
                box.check()
            page.get_by_role("button", name=button).first.click()
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
            page.screenshot(path=screenshot_dir / f"{name}-{width_name}.png", full_page=True)
            results = axe.run(page)
            if results.violations_count:
                problems.append(f"{name} at {width_name} width:\n{_violations(results)}")
    page.close()
    assert not problems, "\n".join(problems)


def _page_names(patterns: list[URLPattern | URLResolver], prefix: str, namespace: str) -> set:
    names = set()
    for entry in patterns:
        route = prefix + str(entry.pattern).lstrip("^")
        if route.startswith(NOT_PAGE_PREFIXES):
            continue
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names |= _page_names(entry.url_patterns, route, inner)
        elif entry.name:
            names.add(f"{namespace}{entry.name}")
    return names


def test_every_page_of_the_url_conf_is_checked():
    resolver = get_resolver("callgrid_portal.urls")
    pages = _page_names(resolver.url_patterns, "", "")
    covered = set()
    for case in PAGES:
        if case.url_name:
            covered.add(case.url_name)
            continue
        match = resolver.resolve(case.path.split("?")[0].format(buyer=1, bid=1, accepted=1, call=1))
        covered.add(match.view_name)
    missing = pages - covered - set(NOT_PAGES)
    assert not missing, f"Add these pages to PAGES (or NOT_PAGES, saying why): {sorted(missing)}"


def test_phone_header_collapses_into_a_menu(browser, world):
    page = _open(browser, world["site"], "viewer")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(world["site"] + "/bids/")
    toggle = page.get_by_role("button", name="Menu")
    nav = page.get_by_role("navigation", name="Main")
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(nav).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Bids")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("link", name="Reports")).to_be_visible()
    # At desktop width the menu is always there and the button is not.
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(toggle).to_be_hidden()
    expect(nav.get_by_role("link", name="Overview")).to_be_visible()
    page.close()


def test_phone_header_without_script_shows_every_link(browser, world):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(world["site"] + "/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Calls")
    ).to_be_visible()
    context.close()


def test_phone_forms_stack_and_tables_scroll_in_their_box(browser, world):
    page = _open(browser, world["site"], "operator")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(world["site"] + f"/buyers/{world['buyer']}/edit/")
    label = page.locator("label", has_text="Minimum bid").bounding_box()
    field = page.get_by_label("Minimum bid").bounding_box()
    assert label is not None and field is not None
    assert field["y"] >= label["y"] + label["height"] - 1  # the field is under its label
    page.goto(world["site"] + "/bids/")
    box = page.locator(".table-box").first
    assert box.evaluate("el => el.scrollWidth > el.clientWidth")  # the table scrolls inside
    page.close()


def test_skip_link_goes_to_the_content(browser, world):
    page = _open(browser, world["site"], "viewer")
    page.goto(world["site"] + "/reports/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.close()


def test_a_user_without_a_role_sees_no_menu_and_whom_to_ask(browser, world):
    page = _open(browser, world["site"], "norole")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_text("has no role in the portal yet")).to_be_visible()
    expect(page.get_by_text("ada <ada@example.com>")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_count(0)
    expect(nav.get_by_role("button", name="Log out")).to_be_attached()
    page.close()


def test_logout_says_so(browser, world):
    page = _open(browser, world["site"], "viewer")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    page.close()
