"""Safer edits and the bids list in a real browser (issue 20, items 5 to 7): pausing asks
first and Cancel keeps the buyer active, the same question without JavaScript, clone, bulk
pause from the buyers list, a bad test caller kept in its field, and the bids list's filters,
sorting, CSV, saved filters and auto-refresh switch.

Chromium and the live server are the page tests' (tests/live_browser.py).
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from playwright.sync_api import Browser, Dialog, Page, expect

from bidlog.choices import Outcome
from bidlog.models import SavedBidFilter
from buyers.models import Buyer
from tests import live_browser
from tests.factories import BidLogFactory, BuyerFactory, UserFactory

PASSWORD = live_browser.PASSWORD
browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site


def _operator(browser: Browser, site: str, *, script: bool = True) -> Page:
    UserFactory(username="bob", role="operator", password=PASSWORD)
    context = browser.new_context(java_script_enabled=script)
    page = context.new_page()
    page.goto(f"{site}/accounts/login/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Buyers")).to_be_visible()
    return page


def _status(pk: int) -> str:
    return Buyer.objects.get(pk=pk).status


def test_pausing_asks_first_and_cancel_keeps_the_buyer_active(browser, site):
    buyer = BuyerFactory(name="Acme Auto")
    page = _operator(browser, site)
    page.goto(f"{site}/buyers/{buyer.pk}/")
    questions: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("heading", name="Acme Auto")).to_be_visible()
    assert questions == ["Pause Acme Auto? It will get no calls until someone activates it again."]
    assert _status(buyer.pk) == "active"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Acme Auto is now paused.")).to_be_visible()
    assert _status(buyer.pk) == "paused"
    # Activating stops no call, so it does not ask.
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_text("Acme Auto is now active.")).to_be_visible()
    page.context.close()


def test_without_javascript_a_page_asks_before_disabling(browser, site):
    buyer = BuyerFactory(name="Acme Auto")
    page = _operator(browser, site, script=False)
    page.goto(f"{site}/buyers/{buyer.pk}/")
    page.get_by_role("button", name="Disable").click()
    heading = "Disable Acme Auto? It will get no calls and stays off until someone activates it"
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    assert _status(buyer.pk) == "active"
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", name="Acme Auto")).to_be_visible()
    assert _status(buyer.pk) == "active"
    page.get_by_role("button", name="Disable").click()
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("Acme Auto is now disabled.")).to_be_visible()
    assert _status(buyer.pk) == "disabled"
    page.context.close()


def test_clone_makes_a_paused_copy_under_a_new_name(browser, site):
    source = BuyerFactory(name="Acme Auto", min_bid=Decimal("14.00"), daily_cap=40)
    page = _operator(browser, site)
    page.goto(f"{site}/buyers/{source.pk}/")
    page.get_by_role("link", name="Clone").click()
    expect(page.get_by_label("Name")).to_have_value("Acme Auto (copy)")
    page.get_by_label("Name").fill("Acme Auto West")
    page.get_by_label("Grid ID").fill("bad id")
    page.get_by_role("button", name="Create the copy").click()
    expect(page.get_by_label("Grid ID")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name")).to_have_value("Acme Auto West")
    page.get_by_label("Grid ID").fill("cm97s8hmv000555ijt06r4dj")
    page.get_by_role("button", name="Create the copy").click()
    expect(page.get_by_role("heading", name="Acme Auto West")).to_be_visible()
    expect(page.get_by_text("It is paused: check its settings")).to_be_visible()
    copy = Buyer.objects.get(name="Acme Auto West")
    assert (copy.status, copy.min_bid, copy.daily_cap) == ("paused", Decimal("14.00"), 40)
    page.context.close()


def test_bulk_pause_from_the_buyers_list(browser, site):
    first, second = BuyerFactory(name="Alpha"), BuyerFactory(name="Bravo")
    third = BuyerFactory(name="Charlie")
    page = _operator(browser, site)
    page.goto(f"{site}/buyers/")
    page.get_by_label("Select Alpha").check()
    page.get_by_label("Select Bravo").check()
    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("group", name="Change the ticked buyers").get_by_role(
        "button", name="Pause"
    ).click()
    expect(page.get_by_text("Now paused: Alpha, Bravo.")).to_be_visible()
    assert questions == [
        "Pause 2 buyers? They will get no calls until someone activates them again."
    ]
    assert [_status(b.pk) for b in (first, second, third)] == ["paused", "paused", "active"]
    page.context.close()


def test_a_bad_test_caller_stays_in_its_field_with_the_error(browser, site):
    buyer = BuyerFactory(name="Acme Auto")
    page = _operator(browser, site)
    page.goto(f"{site}/buyers/{buyer.pk}/")
    page.get_by_label("Test caller ID").fill("555-1234")
    page.get_by_role("button", name="Send test bid").click()
    field = page.get_by_label("Test caller ID")
    expect(field).to_have_value("555-1234")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_class("invalid")
    expect(page.locator("#test-bid .errorlist").last).to_contain_text("Invalid caller ID")
    page.context.close()


def test_the_bids_list_filters_sorts_exports_and_saves(browser, site):
    acme = BuyerFactory(name="Acme Auto")
    now = timezone.now()
    BidLogFactory(buyer=acme, duration_ms=120, created_at=now - timedelta(minutes=3))
    BidLogFactory(
        buyer=acme, duration_ms=900, outcome=Outcome.DECLINED, code=2000, bid_amount=None,
        message="Bid declined", created_at=now - timedelta(minutes=2),
    )  # fmt: skip
    BidLogFactory(
        buyer=acme, duration_ms=5000, outcome=Outcome.TIMEOUT, code=None, bid_amount=None,
        http_status=None, message="", created_at=now - timedelta(minutes=1),
    )  # fmt: skip
    page = _operator(browser, site)
    page.goto(f"{site}/bids/")
    expect(page.locator(".result-count")).to_have_text("3 bids match.")
    page.get_by_label("Outcome (any of)").select_option(["accepted", "declined"])
    # The day of the oldest bid: run just after midnight, "today" would leave them all out.
    first_day = (now - timedelta(minutes=3)).date().isoformat()
    page.get_by_label("From:", exact=True).fill(first_day)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".result-count")).to_have_text("2 bids match.")
    # Sort by the Time column, slowest first.
    page.get_by_role("link", name="Time", exact=True).click()
    expect(page.get_by_role("columnheader", name="Time")).to_have_attribute(
        "aria-sort", "descending"
    )
    expect(page.locator("tbody tr").first).to_contain_text("900 ms")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV of these bids").click()
    with open(download.value.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert [row["duration_ms"] for row in rows] == ["900", "120"]
    page.get_by_label("Save these filters as").fill("Slow answers today")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved the filters as “Slow answers today”.")).to_be_visible()
    saved = SavedBidFilter.objects.get()
    assert "outcome=accepted" in saved.query and "sort=-duration_ms" in saved.query
    assert f"from_date={first_day}" in saved.query
    page.goto(f"{site}/bids/")
    page.get_by_role("link", name="Slow answers today").click()
    expect(page.locator(".result-count")).to_have_text("2 bids match.")
    page.context.close()


def test_auto_refresh_is_a_remembered_switch_on_the_newest_page(browser, site):
    BidLogFactory()
    page = _operator(browser, site)
    page.goto(f"{site}/bids/")
    switch = page.get_by_label("Refresh every 30 s")
    expect(switch).to_be_visible()
    expect(switch).not_to_be_checked()
    switch.check()
    page.reload()
    expect(page.get_by_label("Refresh every 30 s")).to_be_checked()
    # A sorted list keeps what is on screen: the switch is off there.
    page.goto(f"{site}/bids/?sort=-duration_ms")
    expect(page.get_by_label("Refresh every 30 s")).to_be_disabled()
    page.context.close()
