"""Bulk import: operator only, all or nothing, idempotent by external_id, counted in reports."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bidlog.choices import Outcome, Source
from bidlog.ingest.imports import _insert
from bidlog.ingest.records import MAX_RECORDS, ROW_DEFAULTS
from bidlog.models import BidLog, RollupBucket
from bidlog.reports.rollups import floor_hour, rollup_build, rollup_refresh
from bidlog.reports.services import report_summary
from tests.factories import BuyerFactory

URL = "/api/v1/bids/import/"


@pytest.fixture
def buyer(db):
    return BuyerFactory(min_bid=Decimal("10.00"))


def _record(buyer, n: int, **overrides) -> dict:
    at = timezone.now() - timedelta(hours=3, minutes=n % 50)
    record = {
        "external_id": f"ext-{n}",
        "grid_id": buyer.grid_id,
        "created_at": at.isoformat(),
        "caller_id": "(303) 555-1234",
        "state_code": "co",
        "code": 1000,
        "http_status": 200,
        "bid_amount": "22.50",
        "destination": "13035550000",
        "duration_ms": 180,
    }
    record.update(overrides)
    return record


def test_operator_imports_records_as_source_import(operator_api, buyer):
    records = [_record(buyer, n) for n in range(3)]

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.status_code == 201
    assert response.json() == {"created": 3, "existing": 0, "received": 3}
    bid = BidLog.objects.get(external_id="ext-0")
    assert (bid.source, bid.outcome, bid.caller_id, bid.state_code) == (
        Source.IMPORT,
        Outcome.ACCEPTED,
        "3035551234",
        "CO",
    )


def test_viewer_may_not_import(viewer_api, buyer):
    response = viewer_api.post(URL, {"records": [_record(buyer, 1)]}, format="json")

    assert response.status_code == 403
    assert not BidLog.objects.exists()


def test_resending_a_batch_creates_nothing_new(operator_api, buyer):
    records = [_record(buyer, n) for n in range(5)]
    operator_api.post(URL, {"records": records[:3]}, format="json")

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.json() == {"created": 2, "existing": 3, "received": 5}
    assert BidLog.objects.count() == 5


def test_one_bad_record_rejects_the_whole_batch_with_per_row_errors(operator_api, buyer):
    records = [
        _record(buyer, 0),
        _record(buyer, 1, created_at="last tuesday"),
        _record(buyer, 2, grid_id="nosuchgrid000000000000"),
        _record(buyer, 3, bid_amount="-4"),
        _record(buyer, 0),
    ]

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]["records"]
    assert set(errors) == {"1", "2", "3", "4"}
    assert "created_at" in errors["1"] and "grid_id" in errors["2"]
    assert "bid_amount" in errors["3"] and "external_id" in errors["4"]
    assert not BidLog.objects.exists()


def test_outcome_is_read_from_the_code_and_min_bid(operator_api, buyer):
    records = [
        _record(buyer, 0, bid_amount="5.00"),
        _record(buyer, 1, code=2000, bid_amount=None),
        _record(buyer, 2, code=None, outcome="timeout", http_status=None, bid_amount=None),
        _record(buyer, 3, code=4003, caller_id="123", http_status=None, bid_amount=None),
    ]

    operator_api.post(URL, {"records": records}, format="json")

    outcomes = dict(BidLog.objects.values_list("external_id", "outcome"))
    assert outcomes == {
        "ext-0": Outcome.BELOW_MIN_BID,
        "ext-1": Outcome.DECLINED,
        "ext-2": Outcome.TIMEOUT,
        "ext-3": Outcome.INVALID_CALLER_ID,
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("code", "12abc", "Must be a whole number."),
        ("code", "2" * 4000, "Must be a whole number."),
        ("code", 2.0, "Must be a whole number."),
        ("duration_ms", "-1", "Must be between 0 and 2147483647."),
        ("bid_amount", "1" * 40, "Must be a number of dollars such as 25.50."),
        ("bid_amount", "25.005", "Must have at most 2 decimal places."),
        ("bid_amount", "100000000", "Must be between 0 and 99999999.99."),
        # The one wording of a refused caller ID (InvalidCallerId.message), as the route's.
        (
            "caller_id",
            "123",
            "Invalid caller ID (4003): caller ID must have 10 digits (or 1 + 10 digits), got 3.",
        ),
        # A regular expression's "$" also matches before a final newline.
        ("state_code", "CO\n", "Must be a two-letter state code."),
        ("message", 5, "Must be a string."),
        ("destination", "1" * 33, "Must be at most 32 characters."),
    ],
)
def test_each_bad_value_is_refused_by_size_and_range_naming_its_field(
    operator_api, buyer, field, value, message
):
    response = operator_api.post(URL, {"records": [_record(buyer, 0, **{field: value})]}, "json")

    assert response.status_code == 400
    assert response.json()["errors"]["records"]["0"][field] == [message]
    assert not BidLog.objects.exists()


def test_whole_numbers_may_come_as_strings_of_digits(operator_api, buyer):
    record = _record(buyer, 0, code="2000", http_status=" 200 ", bid_amount=None)

    response = operator_api.post(URL, {"records": [record]}, format="json")

    assert response.status_code == 201, response.json()
    assert BidLog.objects.values_list("code", "http_status").get() == (2000, 200)


@pytest.mark.parametrize(
    "body",
    [{}, {"records": "x"}, {"records": []}, {"records": [1]}],
)
def test_malformed_bodies_are_400_not_500(operator_api, buyer, body):
    response = operator_api.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == "records"


def test_more_than_the_limit_is_refused(operator_api, buyer):
    records = [_record(buyer, n) for n in range(MAX_RECORDS + 1)]

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.status_code == 400
    assert not BidLog.objects.exists()


def test_records_older_than_retention_or_in_the_future_are_refused(operator_api, buyer, settings):
    settings.BIDLOG_RETENTION_DAYS = 30
    old = (timezone.now() - timedelta(days=31)).isoformat()
    future = (timezone.now() + timedelta(days=1)).isoformat()
    records = [_record(buyer, 0, created_at=old), _record(buyer, 1, created_at=future)]

    response = operator_api.post(URL, {"records": records}, format="json")

    errors = response.json()["errors"]["records"]
    assert "retention" in errors["0"]["created_at"][0]
    assert "future" in errors["1"]["created_at"][0]


def test_imported_rows_count_in_reports_at_once_and_after_the_rollup(operator_api, buyer):
    now = timezone.now()
    rollup_build(start=now - timedelta(hours=6), end=now)
    records = [_record(buyer, n) for n in range(4)]

    operator_api.post(URL, {"records": records}, format="json")

    since, until = now - timedelta(hours=6), now
    hour = floor_hour(datetime.fromisoformat(records[0]["created_at"]).astimezone(UTC))
    assert RollupBucket.objects.get(grain="hour", bucket_start=hour).stale
    assert report_summary(since=since, until=until)["by_outcome"] == {"accepted": 4}
    rollup_refresh()
    assert not RollupBucket.objects.get(grain="hour", bucket_start=hour).stale
    summary = report_summary(since=since, until=until)
    assert summary["accepted"] == 4
    assert summary == report_summary(since=since, until=until, exact=True) | {
        "latency_ms": summary["latency_ms"],
        "buyers": summary["buyers"],
    }


def test_a_record_written_concurrently_is_kept_once(operator_api, buyer):
    # As if another import of the same record committed between our check and our write.
    operator_api.post(URL, {"records": [_record(buyer, 0)]}, format="json")
    row = {
        **ROW_DEFAULTS,
        "buyer_id": buyer.pk,
        "created_at": timezone.now() - timedelta(hours=1),
        "caller_id": "3035551234",
        "state_code": "CO",
        "request": {},
        "outcome": Outcome.DECLINED,
    }

    _insert([{**row, "external_id": "ext-0"}, {**row, "external_id": "ext-new"}])

    assert BidLog.objects.filter(external_id="ext-0").count() == 1
    assert BidLog.objects.filter(external_id="ext-new").exists()


def test_nul_characters_reject_the_record_naming_the_field(operator_api, buyer):
    records = [
        _record(buyer, 0, message="bad\u0000"),
        _record(buyer, 1, request={"Key\u0000": "v"}),
        _record(buyer, 2, external_id="ext\u00002"),
    ]

    response = operator_api.post(URL, {"records": records}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]["records"]
    assert ("message" in errors["0"], "request" in errors["1"], "external_id" in errors["2"]) == (
        True,
        True,
        True,
    )
    assert not BidLog.objects.exists()


def test_a_full_batch_past_djangos_default_upload_limit_is_accepted(operator_api, buyer):
    # 5,000 records with long messages weigh more than Django's default 2.5 MB body limit.
    records = [_record(buyer, n, message="m" * 500) for n in range(MAX_RECORDS)]
    body = json.dumps({"records": records})
    assert len(body) > 2.5 * 1024 * 1024

    response = operator_api.generic("POST", URL, body, content_type="application/json")

    assert response.status_code == 201, response.content[:200]
    assert response.json()["created"] == MAX_RECORDS
