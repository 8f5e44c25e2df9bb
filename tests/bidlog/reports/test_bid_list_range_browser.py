"""The bids list's range control in a real browser: a quick range limits the list and is
marked current, the days keep the other filters, a bad day is said next to its field."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from bidlog.choices import Outcome
from tests import live_browser
from tests.factories import BidLogFactory, BuyerFactory, UserFactory

PASSWORD = live_browser.PASSWORD
browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site


def test_a_quick_range_limits_the_bids_list_and_is_marked_current(browser, site):
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    acme = BuyerFactory(name="Acme Auto")
    now = timezone.now()
    for age in (timedelta(minutes=10), timedelta(days=3)):
        BidLogFactory(buyer=acme, outcome=Outcome.ACCEPTED, created_at=now - age)
    BidLogFactory(
        buyer=acme, outcome=Outcome.DECLINED, code=2000, created_at=now - timedelta(days=3)
    )
    BidLogFactory(buyer=acme, outcome=Outcome.ACCEPTED, created_at=now - timedelta(days=12))
    page = live_browser.log_in(browser, site, "alice")
    page.goto(f"{site}/bids/")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(4)
    expect(page.get_by_role("link", name="Any time")).to_have_attribute("aria-current", "true")

    page.get_by_role("link", name="7 days").click()
    expect(page.get_by_role("link", name="7 days")).to_have_attribute("aria-current", "true")
    expect(page.get_by_role("link", name="Any time")).not_to_have_attribute("aria-current", "true")
    expect(rows).to_have_count(3)
    expect(page.locator(".result-count")).to_have_text("3 bids match.")
    expect(page.locator(".range-label")).to_have_text("Last 7 days")

    # The other filters keep the quick range, and the CSV link carries both.
    page.get_by_label("Outcome (any of)").select_option("accepted")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(page.get_by_role("link", name="7 days")).to_have_attribute("aria-current", "true")
    csv_link = page.get_by_role("link", name="CSV of these bids")
    expect(csv_link).to_have_attribute("href", re.compile(r"^\?range=7d&.*outcome=accepted&"))
    expect(csv_link).to_have_attribute("href", re.compile(r"&export=csv$"))

    page.get_by_role("link", name="24 hours").click()
    expect(rows).to_have_count(1)
    expect(page.get_by_label("Outcome (any of)")).to_have_values(["accepted"])

    # A bad pair of days is said next to the "To" day, and nothing is listed.
    page.get_by_label("From:", exact=True).fill("2026-12-02")
    page.get_by_label("To:", exact=True).fill("2026-12-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".range-days")).to_contain_text("Must be on or after the first day.")
    expect(page.get_by_label("To:", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Fix the filters above to see bids.")
    page.close()
