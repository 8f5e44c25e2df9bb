"""The exact answer to each kind of bad input, per endpoint: status, field and message.

The table is the one in the issue-18 note: what was tried, and what the API says back.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import CallFactory

pytestmark = pytest.mark.django_db

RANGE = "Must be between 1970-01-01 and 2999-12-31 (UTC)."
ISO = "Enter an ISO 8601 date-time such as 2025-05-01T12:00:00Z."
CURSOR = "Invalid cursor; follow the next or previous link of a page."
SOURCES = "live, test, health, import"

QUERIES = [
    ("/api/v1/bids/", {"since": "9999-12-31T23:59:59-14:00"}, "since", f"since: {RANGE}"),
    ("/api/v1/bids/", {"until": "0001-01-01"}, "until", f"until: {RANGE}"),
    ("/api/v1/bids/", {"since": "2026-13-45"}, "since", f"since: {ISO}"),
    (
        "/api/v1/bids/",
        {"outcome_class": "maybe"},
        "outcome_class",
        "outcome_class: 'maybe' is not one of: bid, no_bid, blocked, error, pending.",
    ),
    ("/api/v1/bids/", {"source": "x"}, "source", f"source: 'x' is not one of: {SOURCES}."),
    ("/api/v1/bids/", {"code": "x"}, "code", "code: Enter a number."),
    ("/api/v1/bids/", {"cursor": "garbage"}, "cursor", f"cursor: {CURSOR}"),
    (
        "/api/v1/bids/",
        {"grid_id": "a\u0000b"},
        "grid_id",
        "Query parameter 'grid_id' must not contain the NUL character (\\u0000).",
    ),
    (
        "/api/v1/calls/",
        {"routed": "maybe"},
        "routed",
        "routed: 'maybe' is not one of: true, false.",
    ),
    (
        "/api/v1/calls/",
        {"paid_out": "maybe"},
        "paid_out",
        "paid_out: 'maybe' is not one of: true, false.",
    ),
    (
        "/api/v1/calls/",
        {"strategy": "x"},
        "strategy",
        "strategy: 'x' is not one of: waterfall, highest_bid.",
    ),
    ("/api/v1/calls/", {"since": "0001-01-01T00:00:00+05:00"}, "since", f"since: {RANGE}"),
    ("/api/v1/calls/", {"cursor": "YQ"}, "cursor", f"cursor: {CURSOR}"),
    (
        "/api/v1/buyers/",
        {"status": "x"},
        "status",
        "status: 'x' is not one of: active, paused, disabled.",
    ),
    ("/api/v1/reports/summary/", {"since": "9999-12-31"}, "since", f"since: {RANGE}"),
    (
        "/api/v1/reports/summary/",
        {"until": "9999-12-31T23:59:59+14:00"},
        "until",
        f"until: {RANGE}",
    ),
    (
        "/api/v1/reports/summary/",
        {"since": "2020-01-01", "until": "2026-01-01"},
        "since",
        "since: A report covers at most 400 days.",
    ),
    (
        "/api/v1/reports/summary/",
        {"source": "x"},
        "source",
        f"source: 'x' is not one of: {SOURCES}.",
    ),
    (
        "/api/v1/reports/summary/",
        {"format": "xml"},
        "format",
        "format: 'xml' is not one of: json, api, csv.",
    ),
    (
        "/api/v1/reports/timeseries/",
        {"bucket": "week"},
        "bucket",
        "bucket: 'week' is not one of: hour, day.",
    ),
    ("/api/v1/reports/states/", {"since": "0001-01-01"}, "since", f"since: {RANGE}"),
    ("/api/v1/alerts/", {"status": "x"}, "status", "status: 'x' is not one of: open, resolved."),
    (
        "/api/v1/error-codes/",
        {"priority": "x"},
        "priority",
        "priority: 'x' is not one of: immediate, review, action, validation, normal, info.",
    ),
]


@pytest.mark.parametrize(("url", "params", "field", "detail"), QUERIES)
def test_each_bad_query_gets_its_exact_answer(admin_api, url, params, field, detail):
    response = admin_api.get(url, params)

    assert response.status_code == 400
    assert (response.json()["field"], response.json()["detail"]) == (field, detail)


NOT_FINITE = "{0}: {1} is not a finite number; JSON has no such value."

BODIES = [
    ("POST", "/api/v1/route/", '{"CallerId": "3035551234", "Score": 1e999}', "Score",
     "Score: 1e999 is not a finite number."),
    ("POST", "/api/v1/route/", '{"CallerId": "3035551234", "Score": [NaN]}', "Score",
     NOT_FINITE.format("Score", "NaN")),
    ("POST", "/api/v1/route/", '{"CallerId": "3035551234", "S": ' + "9" * 200 + "}", "S",
     "S: a number longer than 100 characters (99999999999999999999...) is not accepted."),
    ("POST", "/api/v1/route/", "[1e999]", None,
     "JSON parse error - 1e999 is not a finite number"),
    ("POST", "/api/v1/route/", "[]", None, "Send a JSON object."),
    ("POST", "/api/v1/route/", '{"CallerId": "3035551234", "strategy": "x"}', "strategy",
     "strategy: 'x' is not one of: waterfall, highest_bid."),
    ("POST", "/api/v1/buyers/{buyer}/test-bid/", '[{"CallerId": "3035551234"}]', None,
     "Send a JSON object."),
    ("POST", "/api/v1/buyers/{buyer}/test-bid/", '{"Score": -Infinity}', "Score",
     NOT_FINITE.format("Score", "-Infinity")),
    ("POST", "/api/v1/bids/import/", '{"records": [{"bid_amount": 1e999}]}', "bid_amount",
     "bid_amount: 1e999 is not a finite number."),
    ("POST", "/api/v1/bids/import/", "[]", None, "Send a JSON object."),
    ("POST", "/api/v1/buyers/", '{"name": "x", "min_bid": Infinity}', "min_bid",
     NOT_FINITE.format("min_bid", "Infinity")),
    ("PATCH", "/api/v1/calls/{call}/", '{"paid_out": false}', "paid_out",
     "paid_out: Only a routed call can be marked paid out."),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "body", "field", "detail"), BODIES)
def test_each_bad_body_gets_its_exact_answer(
    admin_api, sim_buyer, method, url, body, field, detail
):
    ids = {"buyer": sim_buyer().pk, "call": CallFactory(routed=False).pk}

    response = admin_api.generic(method, url.format(**ids), body, content_type="application/json")

    assert response.status_code == 400
    assert (response.json()["field"], response.json()["detail"]) == (field, detail)


@pytest.mark.parametrize(
    ("created_at", "outcome", "message"),
    [
        ("9999-12-31T23:59:59-14:00", None, {"created_at": [RANGE]}),
        ("recent", "accepted", {"outcome": ["Code 2000 is declined, not accepted."]}),
    ],
)
def test_each_bad_import_record_gets_its_exact_reason(
    admin_api, sim_buyer, created_at, outcome, message
):
    if created_at == "recent":
        created_at = (timezone.now() - timedelta(hours=1)).isoformat()
    record = {
        "external_id": "e",
        "grid_id": sim_buyer().grid_id,
        "caller_id": "3035551234",
        "created_at": created_at,
        "code": 2000,
    }
    if outcome:
        record["outcome"] = outcome

    response = admin_api.post("/api/v1/bids/import/", {"records": [record]}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["records"]["0"] == message
