"""A viewer cannot recover a masked caller number by trying candidates in the ``caller_id``
filter or the eligibility check: only complete numbers are searched, and every search a
viewer makes (found, not found or refused) counts toward a per-user limit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory

RATE = "5/hour"


@pytest.fixture(autouse=True)
def _low_rate(settings):
    settings.CALLER_SEARCH_THROTTLE_RATE = RATE


def _candidates(count: int) -> list[str]:
    # What a viewer who read "303***1234" would try: every middle, one after the other.
    return [f"303{middle:03d}1234" for middle in range(200, 200 + count)]


@pytest.mark.parametrize("url", ["/api/v1/bids/", "/api/v1/calls/", "/api/v1/buyers/eligibility/"])
def test_a_viewer_trying_candidates_in_the_api_is_throttled(viewer_api, db, url):
    BidLogFactory(caller_id="3032051234")
    answers = [viewer_api.get(url, {"caller_id": c}).status_code for c in _candidates(8)]
    assert answers[:5] == [200] * 5
    assert answers[5:] == [429] * 3
    refused = viewer_api.get(url, {"caller_id": "3032051234"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    # Searching without a caller is not limited.
    assert viewer_api.get(url if "eligibility" not in url else "/api/v1/bids/").status_code == 200


def test_failed_and_partial_lookups_count_toward_the_limit(viewer_api, db):
    for partial in ("303", "303***1234", "30320", "3032"):
        response = viewer_api.get("/api/v1/bids/", {"caller_id": partial})
        assert response.status_code == 400
        assert response.json()["field"] == "caller_id"
    assert viewer_api.get("/api/v1/bids/", {"caller_id": "3032001234"}).status_code == 200
    assert viewer_api.get("/api/v1/bids/", {"caller_id": "3032011234"}).status_code == 429


def test_operators_keep_searching_without_this_limit(operator_api, db):
    for candidate in _candidates(8):
        assert operator_api.get("/api/v1/bids/", {"caller_id": candidate}).status_code == 200


def test_a_viewer_trying_candidates_on_the_pages_is_throttled(alice, db):
    client = page_client(alice)
    for candidate in _candidates(5):
        assert client.get(reverse("bids:list"), {"caller_id": candidate}).status_code == 200
    page = client.get(reverse("calls:list"), {"caller_id": "3032101234"})
    assert page.status_code == 429
    assert "Too many searches by caller ID" in page.content.decode()
    buyer = BuyerFactory()
    check = client.get(reverse("buyers:detail", args=[buyer.pk]), {"caller_id": "3032111234"})
    assert check.status_code == 429
    assert "Too many searches by caller ID" in check.content.decode()
    # The rest of the pages still answer.
    assert client.get(reverse("bids:list")).status_code == 200
