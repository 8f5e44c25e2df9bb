"""The alert centre in a real browser: an operator acknowledges an alert and mutes its buyer,
the header's count follows, and a viewer sees who did what without the buttons."""

from __future__ import annotations

from typing import cast

from playwright.sync_api import expect

from bidlog.choices import AlertRule
from bidlog.models import Alert, AlertMute
from buyers.models import Buyer
from tests import live_browser
from tests.factories import BuyerFactory, UserFactory

browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site
PASSWORD = live_browser.PASSWORD


def _alerts() -> tuple[Alert, Alert]:
    acme = cast(Buyer, BuyerFactory(name="Acme Auto"))
    beta = cast(Buyer, BuyerFactory(name="Beta Insurance"))
    disabled = Alert.objects.create(
        buyer=acme,
        rule=AlertRule.DISABLED,
        code=4001,
        priority="immediate",
        title="Acme Auto: Campaign disabled (repeated 4001)",
    )
    numbers = Alert.objects.create(
        buyer=beta,
        rule=AlertRule.NO_NUMBERS,
        code=4006,
        priority="immediate",
        title="Beta Insurance: No available numbers (repeated 4006)",
    )
    return disabled, numbers


def test_operator_acknowledges_then_mutes_and_the_header_count_follows(browser, site):
    UserFactory(username="bob", role="operator", password=PASSWORD)
    disabled, numbers = _alerts()
    page = live_browser.log_in(browser, site, "bob")
    count = page.locator("header .alert-count")
    expect(count).to_have_text("2 immediate alerts")
    count.click()
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()

    row = page.locator(f"#alert-{disabled.pk}")
    expect(row).to_contain_text("Immediate action")
    row.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_text(f"Alert {disabled.pk} acknowledged")).to_be_visible()
    expect(row).to_contain_text("Acknowledged by bob at")
    expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(count).to_have_text("1 immediate alert")

    other = page.locator(f"#alert-{numbers.pk}")
    other.get_by_label("Mute Beta Insurance for").select_option("4h")
    other.get_by_role("button", name="Mute buyer").click()
    expect(page.get_by_text("Beta Insurance's alerts are muted until")).to_be_visible()
    expect(other).to_contain_text("Muted until")
    expect(count).to_have_text("0 immediate alerts")
    mutes = page.get_by_role("region", name="Muted buyers")
    expect(mutes).to_contain_text("Beta Insurance: muted until")
    assert AlertMute.objects.get(buyer=numbers.buyer).muted_by.username == "bob"

    # A bad custom time is said next to nothing broken: a message naming the field.
    page.get_by_label("Mute for", exact=True).select_option("custom")
    page.get_by_role("button", name="Mute", exact=True).click()
    expect(page.get_by_text("Mute until: give the time the mute ends.")).to_be_visible()

    mutes.get_by_role("button", name="Unmute Beta Insurance").click()
    expect(page.get_by_text("Beta Insurance's alerts notify again.")).to_be_visible()
    expect(count).to_have_text("1 immediate alert")
    assert not AlertMute.objects.exists()

    page.locator(f"#alert-{disabled.pk}").get_by_role("link", name="Bids behind it").click()
    expect(page.get_by_role("heading", name="Bids")).to_be_visible()
    expect(page.get_by_label("Buyer:", exact=True)).to_have_value(str(disabled.buyer_id))
    expect(page.get_by_label("Since:", exact=True)).not_to_have_value("")
    page.close()


def test_viewer_sees_acknowledgements_but_no_buttons(browser, site):
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    bob = UserFactory(username="bob", role="operator")
    disabled, _numbers = _alerts()
    Alert.objects.filter(pk=disabled.pk).update(
        acknowledged_by=bob, acknowledged_at=disabled.opened_at
    )
    page = live_browser.log_in(browser, site, "alice")
    page.goto(f"{site}/alerts/")
    expect(page.locator(f"#alert-{disabled.pk}")).to_contain_text("Acknowledged by bob")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    expect(page.get_by_role("button", name="Mute buyer")).to_have_count(0)
    page.close()
