"""Viewers see no caller numbers: every phone-like value is masked wherever they can read it
(pages, API, alerts, support text), by one function (:mod:`callgrid_portal.privacy`)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from bidlog.choices import AlertRule, Outcome
from bidlog.models import Alert
from callgrid_portal.privacy import mask_phone, mask_phones_in
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

CALLER = "7205559876"
# Extra parameters in the spellings buyers and tools use, each holding the caller's number.
EXTRA = {
    "ANI": "720-555-9876",
    "ani": "+1 (720) 555 9876",
    "Ani": 7205559876,
    "CallerNumber": "720.555.9876",
    "caller_phone": "17205559876",
}
DESTINATION = "13035550000"


def assert_no_full_number(text: str) -> None:
    """Neither the caller's nor the destination's exchange sits next to its last four digits,
    in any spelling (``555-9876``, ``555 9876``, ``5559876``)."""
    assert not re.search(r"555\D{0,2}9876", text), "a caller number is readable"
    assert not re.search(r"555\D{0,2}0000", text), "the destination number is readable"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("3035551234", "303***1234"),
        ("+13035551234", "+1303***1234"),
        ("13035551234", "1303***1234"),
        ("(303) 555-1234", "303***1234"),
        ("+44 20 7946 0958", "+4420***0958"),
        ("303555123456789", "3035***6789"),
        ("555-1234", "***"),
        ("", ""),
    ],
)
def test_mask_phone_keeps_the_area_code_and_last_four(value, shown):
    assert mask_phone(value) == shown


def test_mask_phones_in_finds_numbers_by_shape_under_any_key_and_leaves_the_rest():
    masked = mask_phones_in({**EXTRA, "note": "call 303.555.1234 back", "amount": 25.5})
    assert_no_full_number(str(masked))
    assert masked["Ani"] == "720***9876"
    assert masked["ani"] == "+1720***9876"
    assert masked["note"] == "call 303***1234 back"
    assert masked["amount"] == 25.5
    untouched = "at 2025-05-01 12:00:00+00:00, Grid ID 12345678901234567890123, bid #1234, $25.50"
    assert mask_phones_in(untouched) == untouched


@pytest.fixture
def exposed_bid(db):
    """A bid and its call whose every field that can carry a number carries one."""
    buyer = BuyerFactory()
    call = CallFactory(
        caller_id=CALLER,
        params=dict(EXTRA),
        destination=DESTINATION,
        routed=True,
        winner=buyer,
        bid_amount="25.50",
    )
    return BidLogFactory(
        buyer=buyer,
        call=call,
        caller_id=CALLER,
        request={"CallerId": CALLER, "InboundStateCode": "CO", **EXTRA},
        response_caller_id="1" + CALLER,
        destination=DESTINATION,
        raw_response=f'{{"code": 4004, "destination": "{DESTINATION}", "ANI": "720 555 9876"}}',
        message=f"Capacity check failed for {EXTRA['ani']}",
        error=f"caller {EXTRA['CallerNumber']} refused",
        code=4004,
        http_status=400,
        outcome=Outcome.CAPACITY_CHECK_FAILED,
    )


def test_viewers_read_no_number_on_the_bid_and_call_pages(alice, bob, exposed_bid):
    urls = [
        reverse("bids:list"),
        reverse("bids:detail", args=[exposed_bid.pk]),
        reverse("calls:list"),
        reverse("calls:detail", args=[exposed_bid.call_id]),
    ]
    for url in urls:
        page = page_client(alice).get(url).content.decode()
        assert "720***9876" in page
        assert_no_full_number(page)
    # The support request on the bid page quotes the payload: masked for viewers too.
    detail = page_client(alice).get(urls[1]).content.decode()
    assert "Support request" in detail and "Payload:" in detail
    # Operators read everything in full.
    assert "720.555.9876" in page_client(bob).get(urls[1]).content.decode()
    assert DESTINATION in page_client(bob).get(urls[3]).content.decode()


def test_viewers_read_no_number_in_the_bids_and_calls_api(viewer_api, operator_api, exposed_bid):
    urls = [
        "/api/v1/bids/",
        f"/api/v1/bids/{exposed_bid.pk}/",
        "/api/v1/calls/",
        f"/api/v1/calls/{exposed_bid.call_id}/",
    ]
    for url in urls:
        response = viewer_api.get(url)
        assert response.status_code == 200
        assert_no_full_number(response.content.decode())
    bid = viewer_api.get(urls[1]).json()
    assert bid["request"]["ANI"] == "720***9876"
    assert bid["request"]["CallerId"] == "720***9876"
    assert bid["destination"] == "1303***0000"
    call = viewer_api.get(urls[3]).json()
    assert call["params"]["CallerNumber"] == "720***9876"
    assert call["bids"][0]["destination"] == "1303***0000"
    assert operator_api.get(urls[3]).json()["params"] == EXTRA


def test_viewers_read_no_number_on_the_buyer_page_and_api(alice, viewer_api, operator_api, db):
    buyer = BuyerFactory(
        extra_params={"ANI": "720-555-9876", "Publisher": "acme"},
        health_check_minutes=5,
        health_check_caller_id=CALLER,
        notes=f"Escalations: {DESTINATION}",
    )
    page = page_client(alice).get(reverse("buyers:detail", args=[buyer.pk])).content.decode()
    assert "ANI=720***9876" in page and "Publisher=acme" in page
    assert_no_full_number(page)
    url = f"/api/v1/buyers/{buyer.pk}/"
    body = viewer_api.get(url).json()
    assert body["health_check_caller_id"] == "720***9876"
    assert body["extra_params"] == {"ANI": "720***9876", "Publisher": "acme"}
    assert_no_full_number(viewer_api.get("/api/v1/buyers/").content.decode())
    assert operator_api.get(url).json()["health_check_caller_id"] == CALLER


def test_viewers_read_no_number_in_alerts(alice, viewer_api, operator_api, db):
    buyer = BuyerFactory()
    Alert.objects.create(
        buyer=buyer,
        rule=AlertRule.CAPACITY_CHECK,
        priority="high",
        title=f"Capacity check failing for {CALLER}",
        detail=f"Last caller +1 720 555 9876, destination {DESTINATION}",
    )
    assert_no_full_number(viewer_api.get("/api/v1/alerts/").content.decode())
    for url in (reverse("home"), reverse("buyers:detail", args=[buyer.pk])):
        assert_no_full_number(page_client(alice).get(url).content.decode())
    assert CALLER in operator_api.get("/api/v1/alerts/").content.decode()
