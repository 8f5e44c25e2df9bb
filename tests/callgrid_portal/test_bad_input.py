"""Bad input never answers 500: a sweep of odd values over every endpoint that takes input.

Each request must be answered with a success or exactly a 400 in the API's JSON error shape,
with a message and the field at fault (the parameter or body field the sweep changed), never
Django's HTML error page. The values are the ones that broke endpoints before: the NUL
character PostgreSQL cannot store, numbers past a bigint (SQLite cannot even compare them),
lists and objects where a string belongs, and bodies that are not JSON at all.
"""

import itertools
import json

import pytest

from bidlog.buyer_pages.api.serializers import BuyerSerializer
from bidlog.ingest.records import FIELDS
from tests.factories import CallFactory

pytestmark = pytest.mark.django_db

ODD_VALUES: list[object] = [
    None,
    True,
    -1,
    0,
    2**63,
    1.5,
    "",
    "x" * 5000,
    "a\u0000b",
    "é😀",
    [],
    ["x"],
    {},
    {"a": {"b": []}},
    "2026-13-45",
    "NaN",
    "9" * 40,
]
ODD_QUERY_VALUES = [
    "",
    "x",
    "-1",
    "0",
    "9" * 40,
    "9" * 5000,
    "2026-13-45",
    "a\u0000b",
    "1e999",
    "[]",
    "²",
]

LIST_FILTERS = {
    "/api/v1/bids/": [
        "buyer",
        "grid_id",
        "outcome",
        "outcome_class",
        "code",
        "source",
        "caller_id",
        "call",
        "since",
        "until",
        "cursor",
    ],
    "/api/v1/calls/": [
        "routed",
        "paid_out",
        "winner",
        "grid_id",
        "strategy",
        "source",
        "caller_id",
        "since",
        "until",
        "cursor",
    ],
    "/api/v1/buyers/": ["status", "vertical", "q", "grid_id", "page"],
    "/api/v1/buyers/eligibility/": ["caller_id", "state_code", "buyer"],
    "/api/v1/reports/summary/": ["since", "until", "buyer", "grid_id", "source"],
    "/api/v1/reports/timeseries/": ["since", "until", "buyer", "interval"],
    "/api/v1/reports/states/": ["since", "until", "buyer"],
    "/api/v1/alerts/": ["status", "buyer"],
}
# Every field the API declares, read-only ones included (they must be ignored, not crash).
BUYER_FIELDS = [name for name in BuyerSerializer.Meta.fields if name != "id"]
IMPORT_FIELDS = sorted(FIELDS)
# Health checks need a test caller ID: turning them on names the caller ID that is missing.
BUYER_DEPENDS = {"health_check_minutes": ("health_check_caller_id",)}


@pytest.fixture
def api(admin_api):
    admin_api.raise_request_exception = False  # a crash must show as the 500 it would be
    return admin_api


def _refused_properly(response, fields: tuple[str, ...] | None = None) -> bool:
    """A success, or a JSON 400 with a message whose ``field`` is one of ``fields``."""
    if response.status_code in (200, 201, 202, 204):
        return True
    if response.status_code != 400 or not response["Content-Type"].startswith("application/json"):
        return False
    body = response.json()
    if not isinstance(body.get("detail"), str) or not body["detail"]:
        return False
    return fields is None or body.get("field") in fields


def _sweep(requests) -> list:
    """What was not answered properly, as ``(what, status, body)``.

    Each request is ``(what, response)`` or ``(what, response, fields at fault)``.
    """
    failures = []
    for what, response, *fields in requests:
        if not _refused_properly(response, fields[0] if fields else None):
            failures.append((what, response.status_code, response.content[:200]))
    return failures


def test_list_filters_and_lookups_never_answer_500(api, sim_buyer):
    sim_buyer()
    requests = []
    for url, names in LIST_FILTERS.items():
        for name, value in itertools.product(names, ODD_QUERY_VALUES):
            params = {name: value}
            if url.endswith("eligibility/") and name != "caller_id":
                params["caller_id"] = "3035551234"
            requests.append(((url, params), api.get(url, params), (name,)))
    assert _sweep(requests) == []
    for code in ["x", "-1", "9" * 40]:
        response = api.get(f"/api/v1/error-codes/{code}/")
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"CallGrid has no documented code {code!r}.",
            "field": None,
        }


def test_buyer_writes_never_answer_500(api, sim_buyer):
    buyer = sim_buyer()
    requests = []
    for field, value in itertools.product(BUYER_FIELDS, ODD_VALUES):
        what = (field, repr(value)[:30])
        requests.append(
            (
                ("patch", *what),
                api.patch(f"/api/v1/buyers/{buyer.pk}/", {field: value}, format="json"),
                (field, *BUYER_DEPENDS.get(field, ())),
            )
        )
        body = {
            "name": "New",
            "grid_id": "cm97s8hmv000ijt06r4djmiz1",
            "endpoint_url": buyer.endpoint_url,
            field: value,
        }
        # Every create after the first repeats the name and Grid ID, refused on their own.
        requests.append(
            (
                ("create", *what),
                api.post("/api/v1/buyers/", body, format="json"),
                (field, "name", "grid_id", *BUYER_DEPENDS.get(field, ())),
            )
        )
    assert _sweep(requests) == []


def test_route_test_bid_and_call_writes_never_answer_500(api, sim_buyer):
    buyer = sim_buyer()
    call = CallFactory()
    requests = []
    for key, value in itertools.product(
        ["CallerId", "InboundStateCode", "strategy", "buyers", "Extra"], ODD_VALUES
    ):
        body = {"CallerId": "3035551234", key: value}
        what = (key, repr(value)[:30])
        # Extra parameters are checked by name: the error names the key that was sent.
        requests.append((("route", *what), api.post("/api/v1/route/", body, format="json"), (key,)))
        requests.append(
            (
                ("test bid", *what),
                api.post(f"/api/v1/buyers/{buyer.pk}/test-bid/", body, format="json"),
                (key,),
            )
        )
    for value in ODD_VALUES:
        requests.append(
            (
                ("paid_out", repr(value)[:30]),
                api.patch(f"/api/v1/calls/{call.pk}/", {"paid_out": value}, format="json"),
                ("paid_out",),
            )
        )
        requests.append(
            (("route body", repr(value)[:30]), api.post("/api/v1/route/", value, format="json"))
        )
    assert _sweep(requests) == []


def test_imports_never_answer_500(api, sim_buyer):
    buyer = sim_buyer()
    record = {
        "external_id": "e1",
        "grid_id": buyer.grid_id,
        "caller_id": "3035551234",
        "created_at": "2026-11-29T10:00:00Z",
        "code": 1000,
    }
    requests = []
    for value in ODD_VALUES:
        requests.append(
            (
                ("records", repr(value)[:30]),
                api.post("/api/v1/bids/import/", {"records": value}, format="json"),
                ("records",),
            )
        )
    for field, value in itertools.product(IMPORT_FIELDS, ODD_VALUES):
        requests.append(
            (
                (field, repr(value)[:30]),
                api.post(
                    "/api/v1/bids/import/", {"records": [{**record, field: value}]}, format="json"
                ),
                ("records",),
            )
        )
    assert _sweep(requests) == []


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"{", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"", "application/json"),
        (b"a=1", "application/x-www-form-urlencoded"),
        (b"[1,2", "text/plain"),
    ],
)
def test_bodies_that_are_not_json_never_answer_500(api, sim_buyer, raw, content_type):
    buyer = sim_buyer()
    urls = [
        "/api/v1/route/",
        "/api/v1/buyers/",
        f"/api/v1/buyers/{buyer.pk}/test-bid/",
        "/api/v1/bids/import/",
    ]
    for url in urls:
        response = api.generic("POST", url, raw, content_type=content_type)
        if content_type == "text/plain":
            assert response.status_code == 415, url
            assert response.json() == {
                "detail": 'Unsupported media type "text/plain" in request.',
                "field": None,
            }
        else:
            assert _refused_properly(response), (url, response.content[:200])


@pytest.mark.parametrize("depth", [40, 100_000])
def test_json_nested_too_deeply_is_a_400_naming_the_problem(api, depth):
    # 100,000 levels crash Python's parser (RecursionError); 40 parse, but every walk over the
    # value (validators, the encoder that stores it) would meet the same limit sooner or later.
    body = "[" * depth + "]" * depth
    urls = ["/api/v1/route/", "/api/v1/buyers/", "/api/v1/bids/import/"]

    for url in urls:
        response = api.generic("POST", url, body, content_type="application/json")

        assert response.status_code == 400, url
        assert "nested more than 32 levels" in response.json()["detail"]


def test_json_nested_within_the_limit_still_parses(api):
    body = {"records": [{"request": json.loads("[" * 20 + "]" * 20)}]}

    response = api.post("/api/v1/bids/import/", body, format="json")

    assert response.status_code == 400  # the record is incomplete, not the JSON refused
    assert "nested" not in response.content.decode()


def test_the_admin_form_refuses_json_nested_too_deeply():
    from django import forms

    from buyers.forms import JSONObjectField

    field = JSONObjectField(example='{"PublisherId": "pub1"}')
    for depth in (40, 100_000):
        with pytest.raises(forms.ValidationError, match="nested more than 32 levels"):
            field.clean("[" * depth + "]" * depth)
    assert field.clean('{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}


def test_a_body_past_the_upload_limit_is_a_json_400_saying_so(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"CallerId": "3035551234", "Note": "x" * 5000})

    for url in ["/api/v1/route/", "/api/v1/bids/import/", "/api/v1/buyers/"]:
        response = api.generic("POST", url, body, content_type="application/json")

        assert response.status_code == 400, url
        assert response.json()["detail"].startswith("The request body is larger than 1,000 bytes")


def test_too_many_query_fields_is_a_json_400_saying_so(api):
    response = api.get("/api/v1/bids/?" + "&".join(["outcome=accepted"] * 1500))

    assert response.status_code == 400
    assert "more than 1,000 query or form fields" in response.json()["detail"]


def test_outside_the_api_django_answers_its_own_400_page(rf):
    from django.core.exceptions import RequestDataTooBig

    from callgrid_portal.api import bad_request

    page = bad_request(rf.get("/admin/"), RequestDataTooBig())
    api_answer = bad_request(rf.get("/api/v1/bids/"), RequestDataTooBig())

    assert page.status_code == api_answer.status_code == 400
    assert page["Content-Type"].startswith("text/html")
    assert api_answer["Content-Type"] == "application/json"


@pytest.mark.parametrize("token", ["é", "a\u0000b", "x" * 5000])
def test_a_malformed_token_is_a_401_not_a_crash(token):
    from rest_framework.test import APIClient

    client = APIClient(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")
    for method, url in [("POST", "/api/v1/route/"), ("GET", "/api/v1/bids/")]:
        response = client.generic(method, url, "{}", content_type="application/json")

        assert response.status_code == 401, (url, response.content[:120])
        assert response.json()["detail"] == "Invalid token."


def test_a_query_parameter_holding_a_nul_is_a_json_400_naming_it(api):
    for url in ["/api/v1/bids/", "/api/v1/reports/summary/", "/api/v1/buyers/eligibility/"]:
        response = api.get(url, {"caller_id": "3035551234", "grid_id": "a\u0000b"})

        assert response.status_code == 400, url
        assert response.json()["field"] == "grid_id"
        assert "NUL" in response.json()["detail"]
