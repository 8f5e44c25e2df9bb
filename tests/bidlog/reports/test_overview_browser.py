"""The overview's comparisons, the range control and the campaign filters in a real browser."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from bidlog.choices import Outcome
from tests import live_browser
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, UserFactory

PASSWORD = live_browser.PASSWORD
browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site


@pytest.fixture
def shift(site):
    """Today, the same hours yesterday and last week: 3, 2 and 4 sales of $20; two campaigns."""
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    acme = BuyerFactory(name="Acme Auto")
    now = timezone.now()
    for back, campaigns in ((0, ["auto", "auto", "solar"]), (1, ["auto", "auto"]), (7, ["x"] * 4)):
        # Earlier periods further back: "24 hours" starts on the hour (up to 25 hours back).
        moment = now - timedelta(days=back, minutes=20 if back == 0 else 90)
        for campaign in campaigns:
            call = CallFactory(
                winner=acme,
                routed=True,
                bid_amount=Decimal("20.00"),
                campaign=campaign,
                publisher="Acme Media",
                created_at=moment,
            )
            BidLogFactory(buyer=acme, call=call, outcome=Outcome.ACCEPTED, created_at=moment)
    return site


def _overview(browser, site: str) -> Page:
    page = live_browser.log_in(browser, site, "alice")
    page.goto(f"{site}/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def test_the_overview_shows_each_figure_against_yesterday_and_last_week(browser, shift):
    page = _overview(browser, shift)
    calls = page.locator("#kpi-calls")
    expect(calls.locator("strong")).to_have_text("3")
    yesterday = calls.locator("li.change", has_text="vs yesterday")
    expect(yesterday).to_be_visible()
    expect(yesterday).to_contain_text("▲")
    expect(yesterday).to_contain_text("+50.0%")
    expect(yesterday).to_contain_text("better")
    expect(yesterday).to_have_class("change better")
    last_week = calls.locator("li.change", has_text="vs the same time last week")
    expect(last_week).to_contain_text("▼")
    expect(last_week).to_contain_text("-25.0%")
    expect(last_week).to_contain_text("worse")
    expect(page.locator("#kpi-revenue strong")).to_have_text("$60.00")
    # The colours differ, and the words say the same for those who cannot see them.
    better = yesterday.evaluate("node => getComputedStyle(node).color")
    worse = last_week.evaluate("node => getComputedStyle(node).color")
    assert better != worse

    # Quick ranges: Today is marked current once chosen, and the figures follow.
    page.get_by_role("link", name="Today", exact=True).click()
    expect(page.get_by_role("link", name="Today", exact=True)).to_have_attribute(
        "aria-current", "true"
    )
    expect(page.locator("legend")).to_contain_text("Today")

    # The date picker: one day picked is that day, midnight to now.
    today = timezone.now().date().isoformat()
    page.get_by_label("From").fill(today)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("legend .range-label")).to_have_text(today)
    expect(page.get_by_label("From")).to_have_value(today)
    page.close()


def test_campaign_filters_on_the_overview_and_the_calls_list(browser, shift):
    page = _overview(browser, shift)
    # Biggest drop in revenue first: "auto" earned what it did yesterday, "solar" is new.
    rows = page.locator("table.tag-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("auto")
    page.get_by_label("Campaign").fill("solar")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#kpi-calls strong")).to_have_text("1")
    expect(page.locator("#kpi-revenue strong")).to_have_text("$20.00")

    page.goto(f"{shift}/calls/")
    page.get_by_role("link", name="7 days").click()
    page.get_by_label("Campaign").fill("auto")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name="7 days")).to_have_attribute("aria-current", "true")
    calls = page.locator("table tbody tr")
    expect(calls).to_have_count(4)  # today's two and yesterday's two; none from last week
    expect(page.locator("table tbody")).not_to_contain_text("solar")
    page.get_by_label("Campaign").fill("bad<tag>")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("characters not allowed")).to_be_visible()
    page.close()
