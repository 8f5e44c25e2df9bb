"""One classification for live and imported answers (issue 18, item 7).

The import derives a record's outcome from its code with the function the live client's
reading is built on, and rejects a record whose given outcome disagrees, with the reason.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import BidLog
from callgrid_portal.bidapi.answers import outcome_for, parse_response
from callgrid_portal.bidapi.client import BidAttempt
from tests.factories import BuyerFactory

URL = "/api/v1/bids/import/"
MIN_BID = Decimal("10.00")


@pytest.fixture
def buyer(db):
    return BuyerFactory(min_bid=MIN_BID)


def _record(buyer, n: int = 0, **overrides) -> dict:
    record = {
        "external_id": f"ext-{n}",
        "grid_id": buyer.grid_id,
        "created_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "caller_id": "3035551234",
        "code": 1000,
        "http_status": 200,
        "bid_amount": "22.50",
        "destination": "13035550000",
    }
    record.update(overrides)
    return {key: value for key, value in record.items() if value is not None}


def _live(code: int, amount: str | None, destination: str | None, http_status: int = 200):
    """What the live client makes of a buyer's answer carrying these values."""
    body: dict[str, object] = {"code": code, "message": "m"}
    if amount is not None:
        body["bid_amount"] = amount
    if destination is not None:
        body["destination"] = destination
    attempt = BidAttempt(attempt=1, outcome=Outcome.PENDING, started_at=datetime.now(UTC))
    parse_response(attempt, http_status, {}, json.dumps(body).encode(), MIN_BID)
    return attempt.outcome


CODES = [1000, 2000, 3000, 4000, 4001, 4003, 4005, 5000, 5001, 1234]
AMOUNTS = [None, "0", "9.99", "10.00", "25.50"]
DESTINATIONS = [None, "", "   ", "13035550000"]


@pytest.mark.parametrize(("code", "http_status"), [(c, 200) for c in CODES] + [(2000, 429)])
def test_outcome_for_reads_every_answer_as_the_live_client_does(code, http_status):
    for amount, destination in itertools.product(AMOUNTS, DESTINATIONS):
        derived = outcome_for(
            code,
            None if amount is None else Decimal(amount),
            destination or "",
            MIN_BID,
            http_status=http_status,
        )

        assert derived.outcome == _live(code, amount, destination, http_status), (
            code,
            amount,
            destination,
        )


def test_an_import_reads_each_record_as_the_live_client_would(operator_api, buyer):
    records, expected = [], {}
    combos = itertools.product(CODES, AMOUNTS, [None, "13035550000"])
    for n, (code, amount, destination) in enumerate(combos):
        records.append(_record(buyer, n, code=code, bid_amount=amount, destination=destination))
        expected[f"ext-{n}"] = _live(code, amount, destination)

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.status_code == 201, response.content[:500]
    assert dict(BidLog.objects.values_list("external_id", "outcome")) == expected


def test_code_1000_without_a_destination_is_a_bad_response_as_it_is_live(operator_api, buyer):
    response = operator_api.post(URL, {"records": [_record(buyer, destination="")]}, format="json")

    assert response.status_code == 201
    bid = BidLog.objects.get()
    assert (bid.outcome, bid.error) == (Outcome.BAD_RESPONSE, "accepted without a destination")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"code": 2000, "outcome": "accepted"}, "Code 2000 is declined, not accepted."),
        (
            {"destination": None, "outcome": "below_min_bid"},
            "Code 1000 is bad_response (accepted without a destination), not below_min_bid.",
        ),
        (
            {"bid_amount": "5.00", "outcome": "accepted"},
            "Code 1000 is below_min_bid (bid 5.00 is below the minimum 10.00), not accepted.",
        ),
        (
            {"code": 2000, "http_status": 429, "outcome": "declined"},
            "Code 2000 is rate_limited (HTTP 429), not declined.",
        ),
        ({"code": None, "outcome": "accepted"}, "Outcome accepted needs its code (1000)."),
    ],
)
def test_a_record_whose_outcome_contradicts_its_code_is_rejected_with_the_reason(
    operator_api, buyer, fields, message
):
    response = operator_api.post(URL, {"records": [_record(buyer, **fields)]}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["records"]["0"] == {"outcome": [message]}
    assert not BidLog.objects.exists()


def test_a_given_outcome_that_agrees_with_its_code_is_kept(operator_api, buyer):
    records = [
        _record(buyer, 0, outcome="accepted"),
        _record(buyer, 1, code=2000, bid_amount=None, outcome="declined"),
        _record(buyer, 2, code=None, http_status=None, bid_amount=None, outcome="timeout"),
    ]

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.status_code == 201
    assert sorted(BidLog.objects.values_list("outcome", flat=True)) == [
        "accepted",
        "declined",
        "timeout",
    ]
