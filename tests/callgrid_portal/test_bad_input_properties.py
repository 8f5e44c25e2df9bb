"""Property-based tests (Hypothesis) over every query parameter and body field of every
endpoint and every page form (issue 18, item 5).

Whatever one parameter or field holds, the answer is a success, or a 400 whose ``field``
names that parameter and whose ``detail`` says what is wrong; on pages, the form comes back
with the error on that field. Example counts are bounded so the suite stays fast.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bidlog.buyer_pages.api.serializers import BuyerSerializer
from bidlog.buyer_pages.views import BuyerPageFilter
from bidlog.ingest.records import FIELDS as IMPORT_FIELDS
from bidlog.models import BidLog
from bidlog.reports.call_pages import CallPageFilter
from bidlog.reports.forms import ReportRangeForm
from bidlog.reports.pages import BidPageFilter
from buyers.models import Buyer
from callgrid_portal.text import NUL_MESSAGE
from tests.buyer_data import page_fields
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

pytestmark = pytest.mark.django_db

EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text a client can put in a URL (no lone surrogates: they cannot be encoded at all).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
EDGES = [
    "",
    "0",
    "-1",
    "1e999",
    "NaN",
    "Infinity",
    "9" * 40,
    "maybe",
    "true",
    "a\u0000b",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+05:00",
    "2026-13-45",
    "2026-01-01",
    "[]",
]
QUERY_VALUE = st.one_of(
    st.sampled_from(EDGES),
    TEXT,
    st.integers().map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
# Any JSON value, strings with any code point (lone surrogates included: JSON can carry them).
JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(EDGES),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)

QUERY_PARAMS = {
    "/api/v1/bids/": [
        "buyer",
        "grid_id",
        "outcome",
        "outcome_class",
        "code",
        "source",
        "caller_id",
        "call",
        "campaign",
        "publisher",
        "since",
        "until",
        "cursor",
        "page_size",
    ],
    "/api/v1/calls/": [
        "routed",
        "paid_out",
        "winner",
        "grid_id",
        "strategy",
        "source",
        "caller_id",
        "campaign",
        "publisher",
        "since",
        "until",
        "cursor",
    ],
    "/api/v1/buyers/": ["status", "vertical", "caller_id_format", "q", "grid_id"],
    "/api/v1/buyers/eligibility/": ["caller_id", "state_code", "buyer"],
    "/api/v1/reports/summary/": ["since", "until", "buyer", "source", "format"],
    "/api/v1/reports/timeseries/": ["since", "until", "buyer", "source", "bucket", "tz"],
    "/api/v1/reports/states/": ["since", "until", "buyer", "source", "campaign", "publisher"],
    "/api/v1/reports/campaigns/": ["since", "until", "group", "campaign", "publisher"],
    "/api/v1/alerts/": ["status", "buyer"],
    "/api/v1/error-codes/": ["priority"],
}
CASES = [(url, name) for url, names in QUERY_PARAMS.items() for name in names]


@pytest.fixture
def api(admin_api):
    admin_api.raise_request_exception = False  # a crash must show as the 500 it would be
    return admin_api


@pytest.fixture
def data(db):
    buyer = BuyerFactory()
    BidLogFactory(buyer=buyer)
    CallFactory(routed=True, winner=buyer, bid_amount="20.00", destination="13035550000")
    return buyer


def assert_answered(response: Any, field: str, *also: str) -> None:
    """A success, or a JSON 400 naming ``field`` (or a field it depends on) with a message."""
    assert response.status_code < 300 or response.status_code == 400, (
        field,
        response.status_code,
        response.content[:300],
    )
    if response.status_code == 400:
        body = response.json()
        assert body["field"] in (field, *also), body
        assert isinstance(body["detail"], str) and body["detail"], body


@pytest.mark.parametrize(("url", "name"), CASES)
def test_any_query_value_is_answered_or_refused_naming_it(api, data, url, name):
    @EXAMPLES
    @given(value=QUERY_VALUE)
    def check(value: str) -> None:
        params = {name: value}
        if url.endswith("eligibility/") and name != "caller_id":
            params["caller_id"] = "3035551234"
        assert_answered(api.get(url, params), name)

    check()


ROUTE_FIELDS = ["CallerId", "InboundStateCode", "strategy", "buyers", "Extra"]


@pytest.mark.parametrize("name", ROUTE_FIELDS)
def test_any_route_or_test_bid_field_is_answered_or_refused_naming_it(api, data, name):
    # The buyer points at CallGrid: it is paused, so a route sends nothing anywhere.
    data.status = "paused"
    data.save()

    @EXAMPLES
    @given(value=JSON_VALUE)
    def check(value: Any) -> None:
        body = {"CallerId": "3035551234", name: value}
        assert_answered(api.post("/api/v1/route/", body, format="json"), name)
        if name in ("strategy", "buyers"):
            return  # routing controls; a test bid sends them on as parameters
        response = api.post(f"/api/v1/buyers/{data.pk}/test-bid/", body, format="json")
        assert_answered(response, name)

    check()


@pytest.mark.parametrize("name", sorted(IMPORT_FIELDS))
def test_any_import_field_is_imported_or_its_record_refused_naming_it(api, data, name):
    base = {
        "external_id": "e1",
        "grid_id": data.grid_id,
        "caller_id": "3035551234",
        "created_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "code": 2000,
    }

    @EXAMPLES
    @given(value=JSON_VALUE)
    def check(value: Any) -> None:
        response = api.post("/api/v1/bids/import/", {"records": [{**base, name: value}]}, "json")
        assert response.status_code in (200, 201, 400), response.content[:300]
        if response.status_code == 400:
            errors = response.json()["errors"]["records"]["0"]
            # A bad caller ID or outcome may follow from the field (a code 4003 keeps the
            # number as sent; a code decides the outcome).
            assert name in errors or set(errors) <= {"outcome", "caller_id"}, errors
            assert all(messages for messages in errors.values())

    check()


@pytest.mark.parametrize(
    ("value", "status"), [("200\x1f", 200), ("\x1c204", 204), (" 404\x1e", 404), ("0\x1f", None)]
)
def test_a_number_padded_with_separators_is_read_as_its_digits(api, data, value, status):
    # Found by the property above: "\x1f" is white space to the pattern, not to int().
    record = {
        "external_id": f"separators-{status}",
        "grid_id": data.grid_id,
        "caller_id": "3035551234",
        "created_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "code": 2000,
        "http_status": value,
    }

    response = api.post("/api/v1/bids/import/", {"records": [record]}, "json")

    if status is None:  # 0 is no HTTP status: refused, naming the field
        assert response.status_code == 400
        assert "http_status" in response.json()["errors"]["records"]["0"]
    else:
        assert response.status_code == 201, response.content[:300]
        assert BidLog.objects.get(external_id=record["external_id"]).http_status == status


# Health checks need a test caller ID: turning them on names the caller ID that is missing.
BUYER_DEPENDS = {"health_check_minutes": ("health_check_caller_id",)}


@pytest.mark.parametrize("name", [f for f in BuyerSerializer.Meta.fields if f != "id"])
def test_any_buyer_field_is_saved_or_refused_naming_it(api, data, name):
    @EXAMPLES
    @given(value=JSON_VALUE)
    def check(value: Any) -> None:
        response = api.patch(f"/api/v1/buyers/{data.pk}/", {name: value}, format="json")
        assert_answered(response, name, *BUYER_DEPENDS.get(name, ()))

    check()


def test_any_paid_out_value_is_saved_or_refused_naming_it(api, data):
    call = CallFactory(routed=True, winner=data, bid_amount="20.00", destination="1")

    @EXAMPLES
    @given(value=JSON_VALUE)
    def check(value: Any) -> None:
        response = api.patch(f"/api/v1/calls/{call.pk}/", {"paid_out": value}, format="json")
        assert_answered(response, "paid_out")

    check()


@given(text=st.text(max_size=30))
@EXAMPLES
def test_any_json_string_is_parsed_or_refused_as_a_whole(admin_api, text):
    admin_api.raise_request_exception = False
    body = json.dumps({"CallerId": "3035551234", "Note": text})

    response = admin_api.generic("POST", "/api/v1/route/", body, content_type="application/json")

    assert response.status_code in (200, 400), response.content[:300]


# --- pages ---------------------------------------------------------------------------------

RANGE = list(ReportRangeForm.base_fields)
PAGE_PARAMS = {
    "home": RANGE,
    "reports": [*RANGE, "export"],
    "bids:list": [*BidPageFilter.base_filters, "before"],
    "calls:list": [*CallPageFilter.base_filters, "before"],
}
# Errors a value may cause on another field than its own.
ALSO = {"range": {"since"}, "export": {"__all__"}, "until": {"since"}}
PAGE_CASES = [(name, param) for name, params in PAGE_PARAMS.items() for param in params]


@pytest.mark.parametrize(("page", "param"), PAGE_CASES)
def test_any_page_query_value_shows_the_page_with_the_error_on_its_field(bob, data, page, param):
    client = page_client(bob)
    client.raise_request_exception = False

    # Fewer: every overview and reports page computes its whole report.
    @settings(EXAMPLES, max_examples=5)
    @given(value=QUERY_VALUE)
    def check(value: str) -> None:
        response = client.get(reverse(page), {param: value})
        if "\x00" in value:
            # Refused at the door for every page (PostgreSQL cannot store it), naming it.
            assert response.status_code == 400
            assert response.content.decode() == f"Query parameter {param!r} {NUL_MESSAGE}."
            return
        if param == "export" and response.status_code == 200 and "form" not in response.context:
            return  # a CSV download
        assert response.status_code == 200, (param, value, response.status_code)
        context = response.context
        form = context["form"] if "form" in context else context["filter"].form
        assert set(form.errors) <= {param} | ALSO.get(param, set()), (value, form.errors)
        if param == "before" and value:
            assert "broken_link" in context

    check()


@pytest.mark.parametrize("param", [*BuyerPageFilter.base_filters])
def test_any_buyers_list_filter_value_shows_the_list_with_the_error_on_its_field(bob, data, param):
    client = page_client(bob)
    client.raise_request_exception = False

    @EXAMPLES
    @given(value=QUERY_VALUE)
    def check(value: str) -> None:
        response = client.get(reverse("buyers:list"), {param: value})
        if "\x00" in value:
            assert response.status_code == 400  # refused at the door, naming the parameter
            return
        assert response.status_code == 200, (param, value, response.status_code)
        assert set(response.context["filter"].form.errors) <= {param}, value

    check()


@pytest.mark.parametrize("param", ["caller_id", "state_code"])
def test_any_eligibility_check_value_shows_the_answer_or_the_error_on_its_field(bob, data, param):
    client = page_client(bob)
    client.raise_request_exception = False
    url = reverse("buyers:detail", args=[data.pk])

    @EXAMPLES
    @given(value=QUERY_VALUE)
    def check(value: str) -> None:
        query = {"caller_id": "3035551234", "state_code": "CO", param: value}
        response = client.get(url, query)
        if "\x00" in value:
            assert response.status_code == 400
            return
        assert response.status_code == 200, (param, value, response.status_code)
        form = response.context["eligibility_form"]
        assert set(form.errors) <= {param}, value
        assert form.errors or "eligibility" in response.context  # an answer, or the error

    check()


# --- the buyer page forms ------------------------------------------------------------------

FORM_TEXT = st.one_of(st.sampled_from(EDGES), TEXT, st.integers().map(str))
# The fields a person may type into, and the errors a value may cause on another field.
BUYER_FORM_ALSO = {
    "vertical": {"duplicate_window_days"},
    "duplicate_window_days": {"vertical"},
    "status": set(),
    "endpoint_url": set(),
    "health_check_minutes": {"health_check_caller_id"},
    "health_check_caller_id": {"health_check_minutes"},
    "timezone": {"operating_hours"},
    "operating_hours": {"timezone"},
}


def _buyer_form(**overrides: str) -> dict[str, str]:
    """The new-buyer page's fields for a valid buyer, with auto-pause unticked."""
    return page_fields(**{"name": "Property Buyer", "auto_pause": "", **overrides})


@pytest.mark.parametrize("name", sorted(_buyer_form()))
@pytest.mark.parametrize("page", ["buyers:create", "buyers:edit"])
def test_any_buyer_form_value_is_saved_or_shown_with_the_error_on_its_field(bob, data, page, name):
    client = page_client(bob)
    client.raise_request_exception = False
    url = reverse(page) if page == "buyers:create" else reverse(page, args=[data.pk])

    @EXAMPLES
    @given(value=FORM_TEXT)
    def check(value: str) -> None:
        response = client.post(url, _buyer_form(**{name: value}))
        if response.status_code == 302:
            if page == "buyers:create":  # the next example creates anew
                Buyer.objects.exclude(pk=data.pk).delete()
            return  # saved
        assert response.status_code == 200, (name, value, response.status_code)
        errors = response.context["form"].errors
        allowed = {name, "__all__"} | BUYER_FORM_ALSO.get(name, set())
        assert errors and set(errors) <= allowed, (value, errors)

    check()


@pytest.mark.parametrize("name", ["caller_id", "state_code"])
def test_any_test_bid_form_value_queues_the_bid_or_names_the_field(bob, data, broker_down, name):
    client = page_client(bob)
    client.raise_request_exception = False
    url = reverse("buyers:test_bid", args=[data.pk])

    @EXAMPLES
    @given(value=FORM_TEXT)
    def check(value: str) -> None:
        response = client.post(url, {f"test-{name}": value}, follow=True)
        if response.status_code == 400:
            # Refused on the buyer's page, the error on the field itself.
            assert response.context["test_bid_form"].errors.get(name), (name, value)
            return
        assert response.status_code == 200, (name, value, response.status_code)
        shown = [str(m) for m in response.context["messages"]]
        queued = "test_bid=" in response.redirect_chain[-1][0]
        # Queued (or refused by the task queue, if down).
        assert queued or any("task queue" in m for m in shown), shown

    check()
