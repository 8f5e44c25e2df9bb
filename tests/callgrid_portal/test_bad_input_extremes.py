"""Extreme but valid input gets a 4xx naming the field, never a 500 (issue 18, items 1-3).

Dates at the edges of ISO 8601 (year 1 and year 9999, with offsets that push them past what
Python's datetime holds), numbers JSON cannot carry (``1e999``, ``NaN``, ``Infinity``), bodies
of the wrong JSON type, broken cursors, filter values outside their choices, and paths that
name no endpoint.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from bidlog.choices import Source
from bidlog.filters import DATETIME_RANGE_MESSAGE, parse_iso_datetime
from bidlog.models import BidLog, Call
from tests.conftest import page_client
from tests.factories import BidLogFactory, CallFactory

pytestmark = pytest.mark.django_db

EXTREME_DATES = [
    "9999-12-31T23:59:59+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00-05:00",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31",
    "0001-01-01",
]


@pytest.fixture
def api(admin_api):
    admin_api.raise_request_exception = False  # a crash must show as the 500 it would be
    return admin_api


# --- 1. extreme dates ----------------------------------------------------------------------


@pytest.mark.parametrize("value", EXTREME_DATES)
def test_the_one_parser_refuses_extreme_dates_with_a_value_error(value):
    with pytest.raises(ValueError, match="between 1970-01-01 and 2999-12-31"):
        parse_iso_datetime(value)


def test_the_parser_refuses_text_too_long_to_be_a_date_before_parsing_it():
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_iso_datetime("2026-01-01T00:00:00" + "0" * 10_000)


def test_the_parser_still_reads_ordinary_dates():
    assert parse_iso_datetime("2026-05-01T12:00:00+02:00").isoformat() == (
        "2026-05-01T10:00:00+00:00"
    )
    assert parse_iso_datetime("2026-05-01").isoformat() == "2026-05-01T00:00:00+00:00"


@pytest.mark.parametrize("value", EXTREME_DATES)
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/bids/",
        "/api/v1/calls/",
        "/api/v1/reports/summary/",
        "/api/v1/reports/timeseries/",
        "/api/v1/reports/states/",
    ],
)
@pytest.mark.parametrize("field", ["since", "until"])
def test_an_extreme_date_in_a_filter_is_a_400_naming_the_field(api, url, field, value):
    response = api.get(url, {field: value})

    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["field"] == field
    assert body["detail"] == f"{field}: {DATETIME_RANGE_MESSAGE}"


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2999-12-30T23:59:59Z", "until": "2999-12-31T23:59:59.999999Z"},
        {"until": "2999-12-31"},
        {"since": "1970-01-01T00:00:00Z", "until": "1970-01-02"},
        {"since": "1970-01-01T00:00:00+00:00", "until": "1970-03-01T00:00:00Z"},
    ],
)
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/bids/",
        "/api/v1/calls/",
        "/api/v1/reports/summary/",
        "/api/v1/reports/timeseries/",
        "/api/v1/reports/states/",
        "/api/v1/reports/summary/?format=csv",
        "/api/v1/reports/timeseries/?bucket=day&tz=Pacific/Kiritimati",
    ],
)
def test_dates_at_the_edges_of_the_range_are_answered(api, url, query):
    BidLogFactory()
    path, _, extra = url.partition("?")

    response = api.get(f"{path}?{urlencode(query)}&{extra}")

    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize("value", EXTREME_DATES)
def test_an_extreme_date_in_an_import_rejects_that_row_with_its_reason(api, sim_buyer, value):
    buyer = sim_buyer()
    record = {
        "external_id": "x1",
        "grid_id": buyer.grid_id,
        "caller_id": "3035551234",
        "created_at": value,
        "code": 2000,
    }

    response = api.post("/api/v1/bids/import/", {"records": [record]}, format="json")

    assert response.status_code == 400, response.content[:300]
    assert response.json()["errors"]["records"]["0"] == {"created_at": [DATETIME_RANGE_MESSAGE]}
    assert not BidLog.objects.exists()


@pytest.mark.parametrize("value", EXTREME_DATES)
@pytest.mark.parametrize("name", ["home", "reports", "bids:list", "calls:list"])
def test_an_extreme_date_on_a_page_is_a_form_error_and_the_rest_is_kept(bob, name, value):
    client = page_client(bob)
    client.raise_request_exception = False
    params = {"since": value, "source": Source.LIVE}
    if name in ("home", "reports"):
        params["range"] = "custom"

    response = client.get(reverse(name), params)

    assert response.status_code == 200, response.content[:300]
    form = response.context["form"] if "form" in response.context else response.context["filter"]
    form = getattr(form, "form", form)
    assert form.errors["since"] == [DATETIME_RANGE_MESSAGE]
    assert form["source"].value() == Source.LIVE
    assert DATETIME_RANGE_MESSAGE in response.content.decode()


@pytest.mark.parametrize("value", EXTREME_DATES)
def test_an_extreme_page_cursor_shows_the_newest_page(bob, value):
    BidLogFactory()
    client = page_client(bob)
    client.raise_request_exception = False

    response = client.get(reverse("bids:list"), {"before": f"{value}~5"})

    assert response.status_code == 200
    assert response.context["broken_link"] is True
    assert len(response.context["rows"]) == 1


# --- 2. numbers JSON cannot carry ----------------------------------------------------------

NON_FINITE = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"]


def _raw(body: str) -> bytes:
    return body.encode()


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_in_a_route_is_refused_before_any_bid_is_sent(
    api, sim_buyer, simulator, number
):
    sim_buyer()
    body = '{"CallerId": "3035551234", "Score": NUMBER}'.replace("NUMBER", number)

    response = api.generic("POST", "/api/v1/route/", _raw(body), content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == "Score"
    assert response.json()["detail"].startswith(f"Score: {number} is not a finite number")
    assert simulator.requests() == []
    assert not Call.objects.exists()
    assert not BidLog.objects.exists()


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_in_a_test_bid_or_an_import_is_refused(api, sim_buyer, number):
    buyer = sim_buyer()
    test_bid = '{"CallerId": "3035551234", "Score": NUMBER}'.replace("NUMBER", number)
    record = (
        (
            '{"records": [{"external_id": "e1", "grid_id": "GRID", "caller_id": "3035551234",'
            ' "created_at": "2026-01-01T00:00:00Z", "code": 1000, "bid_amount": NUMBER,'
            ' "destination": "13035550000"}]}'
        )
        .replace("GRID", buyer.grid_id)
        .replace("NUMBER", number)
    )
    for url, body, field in [
        (f"/api/v1/buyers/{buyer.pk}/test-bid/", test_bid, "Score"),
        ("/api/v1/bids/import/", record, "bid_amount"),
        (
            "/api/v1/buyers/",
            '{"name": "x", "min_bid": NUMBER}'.replace("NUMBER", number),
            "min_bid",
        ),
    ]:
        response = api.generic("POST", url, _raw(body), content_type="application/json")

        assert response.status_code == 400, (url, response.content[:300])
        assert response.json()["field"] == field, url
        assert "not a finite number" in response.json()["detail"], url
    assert not BidLog.objects.exists()


@pytest.mark.parametrize("number", ["9" * 5000, "1" + "0" * 200, "1.5e" + "9" * 200])
def test_a_number_too_long_is_refused_before_it_is_converted(api, sim_buyer, simulator, number):
    sim_buyer()
    body = '{"CallerId": "3035551234", "Score": NUMBER}'.replace("NUMBER", number)

    response = api.generic("POST", "/api/v1/route/", _raw(body), content_type="application/json")

    assert response.status_code == 400
    assert response.json()["field"] == "Score"
    assert "longer than 100 characters" in response.json()["detail"]
    assert simulator.requests() == []


def test_ordinary_numbers_still_parse(api, sim_buyer):
    buyer = sim_buyer()
    body = '{"CallerId": "3035551234", "Score": 12.5, "Rank": -3, "Big": 1e10}'

    response = api.generic(
        "POST", f"/api/v1/buyers/{buyer.pk}/test-bid/", _raw(body), content_type="application/json"
    )

    assert response.status_code == 202, response.content[:300]
    assert BidLog.objects.get().request["Score"] == 12.5


# --- 3. API conventions --------------------------------------------------------------------


def _cursor(query: dict[str, str]) -> str:
    return base64.b64encode(urlencode(query).encode()).decode()


@pytest.mark.parametrize("url", ["/api/v1/bids/", "/api/v1/calls/"])
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "YQ",
        _cursor({"p": "not a date"}),
        _cursor({"p": "9999-12-31T23:59:59-14:00"}),
        _cursor({"o": "x"}),
        _cursor({"r": "1", "p": "a\u0000b"}),
    ],
)
def test_a_bad_cursor_is_a_400_naming_it(api, url, cursor):
    BidLogFactory()
    CallFactory()

    response = api.get(url, {"cursor": cursor})

    assert response.status_code == 400, response.content[:300]
    assert response.json() == {
        "detail": "cursor: Invalid cursor; follow the next or previous link of a page.",
        "field": "cursor",
        "errors": {"cursor": ["Invalid cursor; follow the next or previous link of a page."]},
    }


def test_a_real_cursor_still_pages(api):
    for _ in range(3):
        BidLogFactory()

    first = api.get("/api/v1/bids/", {"page_size": 2}).json()
    second = api.get(first["next"])

    assert second.status_code == 200
    assert len(second.json()["results"]) == 1


@pytest.mark.parametrize("body", ["[]", '["CallerId"]', '[{"CallerId": "3035551234"}]', "1", '"x"'])
def test_a_body_that_is_not_an_object_is_a_400(api, sim_buyer, body):
    buyer = sim_buyer()
    call = CallFactory(routed=True, winner=buyer, bid_amount="20.00")
    for method, url in [
        ("POST", f"/api/v1/buyers/{buyer.pk}/test-bid/"),
        ("POST", "/api/v1/route/"),
        ("POST", "/api/v1/bids/import/"),
        ("POST", "/api/v1/buyers/"),
        ("PATCH", f"/api/v1/buyers/{buyer.pk}/"),
        ("PATCH", f"/api/v1/calls/{call.pk}/"),
    ]:
        response = api.generic(method, url, _raw(body), content_type="application/json")

        assert response.status_code == 400, (url, response.content[:300])
        assert response.json()["detail"] == "Send a JSON object.", url
    assert not BidLog.objects.exists()


@pytest.mark.parametrize(
    ("url", "param", "allowed"),
    [
        ("/api/v1/calls/", "routed", "true, false"),
        ("/api/v1/calls/", "paid_out", "true, false"),
        ("/api/v1/calls/", "strategy", "waterfall, highest_bid"),
        ("/api/v1/calls/", "source", "live, test, health, import"),
        ("/api/v1/bids/", "source", "live, test, health, import"),
        ("/api/v1/bids/", "outcome_class", "bid, no_bid, blocked, error, pending"),
        ("/api/v1/buyers/", "status", "active, paused, disabled"),
        ("/api/v1/reports/summary/", "source", "live, test, health, import"),
        ("/api/v1/reports/timeseries/", "bucket", "hour, day"),
        ("/api/v1/alerts/", "status", "open, resolved"),
    ],
)
def test_an_unknown_filter_value_is_a_400_listing_the_allowed_ones(api, url, param, allowed):
    response = api.get(url, {param: "maybe"})

    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["field"] == param
    assert body["detail"] == f"{param}: 'maybe' is not one of: {allowed}."


def test_an_unknown_outcome_is_a_400_listing_every_outcome(api):
    response = api.get("/api/v1/bids/", {"outcome": "accepted,nope"})

    assert response.status_code == 400
    assert response.json()["field"] == "outcome"
    assert response.json()["detail"].startswith("outcome: 'nope' is not one of: accepted, ")
    assert "skipped_status" in response.json()["detail"]


@pytest.mark.parametrize("value", ["true", "false", "True", "1", "0"])
def test_boolean_filters_still_take_their_spellings(api, sim_buyer, value):
    CallFactory(routed=True, winner=sim_buyer(), bid_amount="20.00")
    CallFactory(routed=False)
    expected = value.lower() in ("true", "1")

    response = api.get("/api/v1/calls/", {"routed": value})

    assert response.status_code == 200
    assert [call["routed"] for call in response.json()["results"]] == [expected]


def test_the_api_root_is_a_json_index_of_the_endpoints(api):
    response = api.get("/api/v1/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["schema"] == "http://testserver/api/v1/schema/"
    assert body["endpoints"]["bids"] == "http://testserver/api/v1/bids/"
    assert body["endpoints"]["route"] == "http://testserver/api/v1/route/"
    assert body["endpoints"]["reports/summary"] == "http://testserver/api/v1/reports/summary/"


def test_the_api_root_needs_a_login_like_the_rest():
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/")

    assert response.status_code == 401
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/api/", "/api/v2/bids/", "/api/v1/nope/", "/api/v1/bids/1/x/", "/api/v1/x\u00e9/"]
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_an_unknown_path_under_the_api_is_a_json_404(api, path, method):
    response = api.generic(method, path, "{}", content_type="application/json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "No API endpoint at this path.", "field": None}


def test_a_path_missing_its_slash_is_still_redirected(api):
    response = api.get("/api/v1/bids")

    assert response.status_code == 301
    assert response["Location"] == "/api/v1/bids/"


def test_pages_outside_the_api_keep_the_html_404(bob):
    response = page_client(bob).get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_json_body_with_an_object_still_routes(api, sim_buyer, simulator):
    sim_buyer()
    body = json.dumps({"CallerId": "3035551234"})

    response = api.generic("POST", "/api/v1/route/", body, content_type="application/json")

    assert response.status_code == 200
    assert response.json()["routed"] is True
