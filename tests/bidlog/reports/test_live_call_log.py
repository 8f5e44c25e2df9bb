"""The live call log: the page, its poll endpoint, and in a browser a call appearing without a
reload, and the pause button stopping it."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from bidlog.choices import Outcome
from bidlog.reports.live_pages import ROWS
from tests import live_browser
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, UserFactory

HTMX = (
    Path(__file__).resolve().parents[3]
    / "callgrid_portal/static/callgrid_portal/vendor/htmx/htmx-2.0.11.min.js"
)
# npm's htmx.org 2.0.11, dist/htmx.min.js, as published (see the folder's VERSION).
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"

browser = live_browser.browser
site_server = live_browser.site_server
site = live_browser.site
PASSWORD = live_browser.PASSWORD


def _call_with_bids(buyer, **fields):
    call = CallFactory(winner=buyer, routed=True, bid_amount=Decimal("33.00"), **fields)
    BidLogFactory(buyer=buyer, call=call, outcome=Outcome.DECLINED, code=2000, bid_amount=None)
    BidLogFactory(buyer=buyer, call=call, outcome=Outcome.ACCEPTED, bid_amount=Decimal("33.00"))
    return call


def test_vendored_htmx_is_the_pinned_release_unchanged():
    data = HTMX.read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert b'version:"2.0.11"' in data


@pytest.mark.django_db
def test_page_lists_calls_newest_first_with_their_bids_and_trace_links(alice):
    buyer = BuyerFactory(name="Acme")
    older = _call_with_bids(buyer, caller_id="3035551234")
    newer = _call_with_bids(buyer)
    CallFactory(created_at=timezone.now() - timedelta(days=2))  # outside the page's window

    response = page_client(alice).get("/live/")

    page = response.content.decode()
    assert response.status_code == 200
    assert page.index(f"/calls/{newer.pk}/") < page.index(f"/calls/{older.pk}/")
    assert page.count('data-call-id="') == 2
    assert "Acme: Declined" in page and "Acme: Accepted $33.00" in page
    assert "303***1234" in page and "3035551234" not in page  # a viewer sees it masked
    assert f'data-after="{newer.pk}"' in page
    assert "htmx-2.0.11.min.js" in page


@pytest.mark.django_db
def test_poll_answers_only_calls_newer_than_the_last_seen(alice, django_assert_max_num_queries):
    buyer = BuyerFactory()
    seen = _call_with_bids(buyer)
    new = _call_with_bids(buyer)
    client = page_client(alice)

    with django_assert_max_num_queries(8):  # session, user, role, calls, their bids
        response = client.get(f"/live/rows/?after={seen.pk}")

    body = response.content.decode()
    assert response.status_code == 200
    assert f'data-call-id="{new.pk}"' in body
    assert f'data-call-id="{seen.pk}"' not in body
    assert client.get(f"/live/rows/?after={new.pk}").status_code == 204


@pytest.mark.django_db
def test_poll_is_bounded_in_time_and_count(alice):
    CallFactory(created_at=timezone.now() - timedelta(hours=1))  # an old row arriving late
    for _ in range(ROWS + 5):
        CallFactory()
    response = page_client(alice).get("/live/rows/?after=0")
    assert response.content.decode().count("data-call-id=") == ROWS


@pytest.mark.django_db
@pytest.mark.parametrize("after", ["x", "-1", "1.5", "9" * 40, "\uff11\uff12"])
def test_bad_after_is_a_400_naming_it(alice, after):
    response = page_client(alice).get("/live/rows/", {"after": after})
    assert response.status_code == 400
    assert response.content.decode().startswith("after:")


@pytest.mark.django_db
def test_visitors_are_sent_to_log_in(client):
    assert client.get("/live/rows/").status_code == 302


def test_new_call_appears_without_reload_and_pause_stops_it(browser, site):
    UserFactory(username="alice", role="viewer", password=PASSWORD)
    buyer = BuyerFactory(name="Live Buyer")
    first = _call_with_bids(buyer)
    page = live_browser.log_in(browser, site, "alice")
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.get_by_role("link", name="Live", exact=True).click()
    rows = page.locator("#live-rows tr[data-call-id]")
    expect(rows).to_have_count(1)
    marker = page.evaluate("() => { window.notReloaded = true; return true; }")
    assert marker

    second = _call_with_bids(buyer)
    expect(rows).to_have_count(2, timeout=10_000)
    expect(rows.first).to_have_attribute("data-call-id", str(second.pk))
    expect(rows.nth(1)).to_have_attribute("data-call-id", str(first.pk))
    expect(rows.first).to_contain_text("Live Buyer: Accepted $33.00")

    pause = page.get_by_role("button", name="Pause")
    pause.click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("status")).to_contain_text("Paused")
    third = _call_with_bids(buyer)
    page.wait_for_timeout(7_000)  # two polls' worth
    expect(rows).to_have_count(2)

    page.get_by_role("button", name="Resume").click()
    expect(rows).to_have_count(3, timeout=10_000)
    expect(rows.first).to_have_attribute("data-call-id", str(third.pk))
    assert page.evaluate("() => window.notReloaded === true")  # the same page all along
    assert refused == []  # htmx runs under the policy: no inline style, no eval

    rows.first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=f"Call {third.pk}")).to_be_visible()
    page.close()
