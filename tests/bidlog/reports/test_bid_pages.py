"""The bid log pages: filters, cursor paging, one bid with its guidance and support request."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import Outcome, Source
from bidlog.monitoring.support import support_request_text
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory

CALLER = "7205559876"


def test_visitors_are_sent_to_log_in(db):
    for url in (reverse("bids:list"), reverse("bids:detail", args=[1])):
        assert Client().get(url)["Location"].startswith(reverse("login"))


def test_filters_narrow_the_list_and_name_bad_values(alice):
    acme, other = BuyerFactory(name="Acme"), BuyerFactory(name="Other")
    BidLogFactory(buyer=acme, outcome=Outcome.ACCEPTED, code=1000, message="kept-acme")
    BidLogFactory(buyer=other, outcome=Outcome.DECLINED, code=2000, message="kept-other")
    client = page_client(alice)
    page = client.get(reverse("bids:list"), {"buyer": acme.pk}).content.decode()
    assert "kept-acme" in page and "kept-other" not in page
    page = client.get(reverse("bids:list"), {"code": "2000"}).content.decode()
    assert "kept-other" in page and "kept-acme" not in page
    response = client.get(reverse("bids:list"), {"since": "yesterday", "caller_id": "12"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "Enter an ISO 8601 date-time" in text
    assert "Fix the filters above" in text


def test_pages_go_back_by_cursor_without_repeats_or_gaps(alice, settings):
    buyer = BuyerFactory()
    start = timezone.now() - timedelta(hours=1)
    # 120 bids, some sharing a timestamp, so the cursor must also use the id.
    for n in range(120):
        BidLogFactory(buyer=buyer, created_at=start + timedelta(seconds=n // 3), message=f"m{n}")
    client = page_client(alice)
    seen: list[int] = []
    url = reverse("bids:list")
    query = {"buyer": buyer.pk}
    while True:
        response = client.get(url, query)
        seen += [row["id"] for row in response.context["rows"]]
        older = response.context["older"]
        if not older:
            break
        url = reverse("bids:list") + "?" + older
        query = {}
    assert len(seen) == 120 == len(set(seen))
    assert "Newest bids" in response.content.decode()


def test_a_broken_page_link_shows_the_newest_bids(alice):
    BidLogFactory(message="still-here")
    for broken in ("nonsense", "2026-13-01T00:00:00~5", "2026-11-01T00:00:00~x", "~" + "9" * 30):
        response = page_client(alice).get(reverse("bids:list"), {"before": broken})
        text = response.content.decode()
        assert response.status_code == 200
        assert "That page link is broken" in text and "still-here" in text


def test_viewers_see_caller_ids_masked_in_the_list_and_the_bid(alice, bob):
    bid = BidLogFactory(
        caller_id=CALLER,
        request={"CallerId": CALLER, "InboundStateCode": "CO"},
        error=f"caller {CALLER} refused",
        outcome=Outcome.BAD_RESPONSE,
    )
    for url in (reverse("bids:list"), reverse("bids:detail", args=[bid.pk])):
        assert CALLER not in page_client(alice).get(url).content.decode()
        assert "720***9876" in page_client(alice).get(url).content.decode()
        assert CALLER in page_client(bob).get(url).content.decode()


def test_the_bid_page_explains_the_code_and_offers_a_support_request(bob):
    buyer = BuyerFactory(name="Acme", daily_cap=200)
    BidLogFactory(buyer=buyer, outcome=Outcome.ACCEPTED, code=1000, bid_amount=Decimal("30.00"))
    bid = BidLogFactory(
        buyer=buyer,
        outcome=Outcome.CAPACITY_CHECK_FAILED,
        code=4004,
        http_status=400,
        message="Capacity check failed",
        caller_id="3035551234",
        request={"CallerId": "3035551234"},
    )
    page = page_client(bob).get(reverse("bids:detail", args=[bid.pk])).content.decode()
    assert "4004:" in page and "What to do" in page and "When to contact CallGrid" in page
    assert "Support request" in page and "Subject: Acme" in page


def test_support_request_carries_what_callgrid_asks_for(db):
    buyer = BuyerFactory(name="Acme", grid_id="cm97s8hmv000123ijt06r4dj", daily_cap=150)
    now = timezone.now()
    BidLogFactory(buyer=buyer, outcome=Outcome.ACCEPTED, code=1000, bid_amount=Decimal("20.00"))
    BidLogFactory(buyer=buyer, outcome=Outcome.ACCEPTED, code=1000, bid_amount=Decimal("30.00"))
    old = BidLogFactory(
        buyer=buyer, outcome=Outcome.DUPLICATE, code=4005, created_at=now - timedelta(days=3)
    )
    bid = BidLogFactory(
        buyer=buyer,
        outcome=Outcome.DUPLICATE,
        code=4005,
        http_status=400,
        message="Duplicate call",
        request={"CallerId": "3035551234", "InboundStateCode": "CO"},
        source=Source.LIVE,
    )
    text = support_request_text(bid, now=now + timedelta(seconds=1))
    assert "Error code: 4005, message as received: 'Duplicate call'" in text
    assert "UTC" in text.split("When: ")[1].splitlines()[0]
    assert "Endpoint: POST https://bid.callgrid.com/api/bid/cm97s8hmv000123ijt06r4dj" in text
    assert 'Payload: {"CallerId": "3035551234", "InboundStateCode": "CO"}' in text
    assert "daily cap 150" in text
    assert "How often: 1 times in the last 24 hours, 2 in the last 7 days" in text
    assert old.created_at.strftime("%Y-%m-%d %H:%M UTC") in text
    assert "average accepted bid of the last 7 days ($25.00) is about $25.00" in text


def test_an_answered_bid_has_no_support_request(alice):
    bid = BidLogFactory(outcome=Outcome.DECLINED, code=2000, message="No bid")
    page = page_client(alice).get(reverse("bids:detail", args=[bid.pk])).content.decode()
    assert "2000:" in page
    assert "Support request" not in page


def test_a_missing_bid_is_404(alice):
    assert page_client(alice).get(reverse("bids:detail", args=[999999])).status_code == 404
    assert page_client(alice).get("/bids/abc/").status_code == 404


def test_troubleshooting_lists_every_code_most_urgent_first(alice):
    from callgrid_portal.bidapi import codes

    page = page_client(alice).get(reverse("troubleshooting")).content.decode()
    positions = [page.index(f'id="code-{entry.code}"') for entry in codes.by_priority()]
    assert positions == sorted(positions)
    assert "What a support request must carry" in page
    assert f"{reverse('bids:list')}?code=4004" in page


def test_troubleshooting_needs_a_login(db):
    assert Client().get(reverse("troubleshooting"))["Location"].startswith(reverse("login"))


@override_settings(TIME_ZONE="America/New_York")
def test_pages_show_utc_times_whatever_the_time_zone_setting(alice):
    bid = BidLogFactory(created_at=datetime(2026, 11, 30, 12, 0, 5, tzinfo=UTC))
    client = page_client(alice)
    listing = client.get(reverse("bids:list")).content.decode()
    assert "When (UTC)" in listing
    assert "2026-11-30 12:00:05" in listing  # not 07:00:05, New York's clock
    detail = client.get(reverse("bids:detail", args=[bid.pk])).content.decode()
    assert "2026-11-30 12:00:05 UTC" in detail
    # A time typed without an offset is UTC too, so what the page shows can be typed back.
    since = client.get(reverse("bids:list"), {"since": "2026-11-30T12:00:05"})
    assert [row["id"] for row in since.context["rows"]] == [bid.pk]
