"""The pages in a real browser: log in, check a caller, fix a bad edit, send a test bid,
read a routed call and free its caller, follow a failing bid from the overview to its guidance.

Headless Chromium from the system (Debian's ``chromium`` package) driven by Playwright; the
portal runs in pytest-django's live server. Without Chromium these tests fail, saying how to
install it: a browser test that skips would hide a broken page.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from bidlog.choices import Outcome
from bidlog.models import Call
from bidlog.routing import limits
from bidlog.routing.strategies import call_route
from buyers.models import Buyer
from tests import live_browser
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, UserFactory

browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site
PASSWORD = live_browser.PASSWORD


def test_operator_checks_a_caller_then_fixes_a_bad_edit(browser, site):
    UserFactory(username="bob", role="operator", password=PASSWORD)
    buyer = BuyerFactory(name="Acme Auto", min_bid=Decimal("10.00"), duplicate_window_days=30)
    CallFactory(
        winner=buyer,
        routed=True,
        paid_out=True,
        caller_id="3035551234",
        created_at=buyer.created_at - timedelta(days=1),
    )
    page = live_browser.log_in(browser, site, "bob")

    page.get_by_role("link", name="Acme Auto").click()
    expect(page.get_by_role("heading", name="Acme Auto")).to_be_visible()
    page.get_by_label("Caller ID:", exact=True).fill("(303) 555-1234")
    page.get_by_role("button", name="Check").click()
    expect(page.locator(".result")).to_contain_text("cannot be sent this caller now")
    expect(page.locator(".reasons")).to_contain_text("duplicate window (30 days) until")

    page.get_by_label("Caller ID:", exact=True).fill("720 555 9876")
    page.get_by_role("button", name="Check").click()
    expect(page.locator(".result")).to_contain_text("can be sent this caller now")

    page.get_by_role("link", name="Edit this buyer").click()
    page.get_by_label("Minimum bid").fill("-5")
    page.get_by_label("Operating hours").fill("mon-fri 08:00-20:00\nsat 22:00-02:00")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Please correct the errors below.")).to_be_visible()
    expect(page.locator(".field.has-errors")).to_have_count(2)
    expect(page.locator(".field.has-errors").nth(1)).to_contain_text(
        '"sat 22:00-24:00" and "sun 00:00-02:00"'
    )
    assert Buyer.objects.get(pk=buyer.pk).min_bid == Decimal("10.00")

    page.get_by_label("Minimum bid").fill("12.75")
    page.get_by_label("Operating hours").fill("mon-fri 08:00-20:00\nsat 22:00-24:00")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved Acme Auto.")).to_be_visible()
    expect(page.locator("dl.config")).to_contain_text("$12.75")
    expect(page.locator("dl.config")).to_contain_text(
        "Mon-Fri 08:00-20:00; Sat 22:00-24:00; closed Sun"
    )
    saved = Buyer.objects.get(pk=buyer.pk)
    assert saved.min_bid == Decimal("12.75")
    assert saved.operating_hours["sat"] == [["22:00", "24:00"]]

    # Pausing asks first (tests/bidlog/buyer_pages/test_edits_browser.py shows Cancel); OK pauses.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Acme Auto is now paused.")).to_be_visible()
    expect(page.get_by_role("button", name="Activate")).to_be_visible()
    assert Buyer.objects.get(pk=buyer.pk).status == "paused"
    page.close()


def test_viewer_reads_but_cannot_edit(browser, site):
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    buyer = BuyerFactory(name="Read Only")
    page = live_browser.log_in(browser, site, "alice")
    expect(page.get_by_role("link", name="Add a buyer")).to_have_count(0)
    page.get_by_role("link", name="Read Only").click()
    expect(page.get_by_role("link", name="Edit this buyer")).to_have_count(0)
    response = page.goto(f"{site}/buyers/{buyer.pk}/edit/")
    assert response is not None and response.status == 403
    page.close()


@pytest.mark.integration
def test_operator_sends_a_test_bid_and_sees_the_answer_arrive(
    browser, site, celery_worker_factory, simulator
):
    """A real worker sends the bid to the simulator; the waiting page shows its answer."""
    UserFactory(username="bob", role="operator", password=PASSWORD)
    buyer = BuyerFactory(
        name="Sim Buyer", endpoint_url=simulator.endpoint, health_check_caller_id="7205550100"
    )
    limits.limits_reset(grid_id=buyer.grid_id)
    simulator.configure(buyer.grid_id, respond="accept", bid_amount="31.25")
    celery_worker_factory()
    page = live_browser.log_in(browser, site, "bob")
    page.get_by_role("link", name="Sim Buyer").click()
    page.get_by_role("button", name="Send test bid").click()

    result = page.locator(".test-bid-result")
    expect(result).to_contain_text("Answer: Accepted (code 1000), bid $31.25", timeout=30_000)
    [received] = simulator.requests(buyer.grid_id)
    assert received["body"]["CallerId"] == "7205550100"
    page.close()


@pytest.mark.integration
def test_operator_reads_a_routed_call_and_marks_it_not_paid_out(browser, site, simulator):
    """A real auction over HTTP to the simulator; the call page shows it and frees the caller."""
    UserFactory(username="bob", role="operator", password=PASSWORD)
    low, high = (
        BuyerFactory(
            name=name, priority=priority, endpoint_url=simulator.endpoint, duplicate_window_days=30
        )
        for name, priority in (("Low Bidder", 1), ("High Bidder", 2))
    )
    for buyer, amount in ((low, "21.00"), (high, "34.00")):
        limits.limits_reset(grid_id=buyer.grid_id)
        simulator.configure(buyer.grid_id, respond="accept", bid_amount=amount)
    call = call_route(caller_id="(303) 555-1234", state_code="CO", strategy="highest_bid")
    assert call.winner == high

    page = live_browser.log_in(browser, site, "bob")
    page.get_by_role("link", name="Calls").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("High Bidder")
    expect(rows.first).to_contain_text("$34.00")
    rows.first.get_by_role("link").first.click()

    expect(page.get_by_role("heading", name=f"Call {call.pk}")).to_be_visible()
    bids = page.locator("section.panel", has_text="Bids behind it").locator("tbody tr")
    expect(bids).to_have_count(2)
    expect(bids.nth(1)).to_contain_text("won")
    page.get_by_role("button", name="Mark not paid out").click()
    expect(page.get_by_text("its caller may be sent to this buyer again")).to_be_visible()
    assert Call.objects.get(pk=call.pk).paid_out is False
    # The caller is free for the buyer that bought it: the next auction may sell it again.
    again = call_route(caller_id="3035551234", state_code="CO", strategy="highest_bid")
    assert again.winner == high
    page.close()


def test_viewer_follows_a_failing_bid_from_the_overview_to_its_guidance(browser, site):
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    buyer = BuyerFactory(name="Beta")
    BidLogFactory(buyer=buyer, outcome=Outcome.ACCEPTED, code=1000)
    failing = BidLogFactory(
        buyer=buyer,
        outcome=Outcome.CAPACITY_CHECK_FAILED,
        code=4004,
        http_status=400,
        bid_amount=None,
        message="Capacity check failed",
        caller_id="7205559876",
    )
    page = live_browser.log_in(browser, site, "alice")
    page.get_by_role("link", name="Overview").click()
    # The overview's acceptance key figure: one of the two bids accepted.
    expect(page.locator(".figure-acceptance")).to_contain_text("50")

    page.get_by_role("link", name="Bids", exact=True).click()
    page.get_by_label("CallGrid code").fill("4004")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("720***9876")  # a viewer sees the number masked
    rows.first.get_by_role("link").first.click()

    expect(page.get_by_role("heading", name=f"Bid {failing.pk}")).to_be_visible()
    expect(page.locator("textarea.support")).to_contain_text("answered code 4004")
    page.get_by_role("link", name="Every code in the troubleshooting guide").click()
    expect(page.locator("#code-4004")).to_be_in_viewport()
    page.close()


def test_pages_and_api_docs_work_under_the_content_security_policy(browser, site):
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    buyer = BuyerFactory(name="Gamma")
    BidLogFactory(buyer=buyer, outcome=Outcome.ACCEPTED, code=1000)
    page = live_browser.log_in(browser, site, "alice")
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    for path in ("/", f"/buyers/{buyer.pk}/", "/bids/", "/reports/"):
        response = page.goto(f"{site}{path}")
        assert response is not None and response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]
        # The stylesheet is a file of the project's: the header is styled.
        expect(page.locator("header")).to_have_css("background-color", "rgb(29, 36, 48)")
    page.goto(f"{site}/")
    # The charts are SVG coloured by the stylesheet's classes, not style attributes the policy
    # refuses.
    expect(page.locator(".chart-svg rect.bar.s0").first).to_have_css("fill", "rgb(58, 111, 196)")
    page.goto(f"{site}/api/v1/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("CallGrid Portal API")
    assert refused == []
    page.close()


def test_the_admin_works_under_the_content_security_policy(browser, site):
    UserFactory(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    BuyerFactory(name="Delta")
    page = browser.new_page()
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(f"{site}/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#buyers-buyer")).to_be_visible()
    page.goto(f"{site}/admin/buyers/buyer/")
    expect(page.get_by_role("link", name="Delta")).to_be_visible()
    page.goto(f"{site}/admin/buyers/buyer/add/")
    expect(page.locator("#buyer_form")).to_be_visible()
    assert refused == []
    page.close()
