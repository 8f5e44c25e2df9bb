"""The OpenAPI document says what the API really answers (issue 18, item 4): nullable fields
are declared nullable, and every status an endpoint returns is documented for it (the answers
themselves are checked against the document by
tests/callgrid_portal/test_schema_conformance.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(viewer_api):
    return viewer_api.get("/api/v1/schema/?format=json").json()


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ("Call", "winner"),
        ("Call", "winner_name"),
        ("Call", "grid_id"),
        ("Call", "bid_amount"),
        ("Call", "paid_out"),
        ("CallDetail", "winner_name"),
        ("CallDetail", "paid_out"),
        ("RouteOutput", "buyer"),
        ("RouteOutput", "grid_id"),
        ("RouteOutput", "bid_amount"),
        ("RouteBid", "code"),
        ("BidLog", "code"),
        ("BidLog", "call"),
        ("Error", "field"),
    ],
)
def test_fields_that_can_be_null_are_declared_nullable(document, component, field):
    assert document["components"]["schemas"][component]["properties"][field].get("nullable")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("delete", "/api/v1/buyers/{id}/", "409"),
        ("post", "/api/v1/buyers/{id}/test-bid/", "503"),
        ("post", "/api/v1/buyers/{id}/test-bid/", "415"),
        ("post", "/api/v1/bids/import/", "415"),
        ("patch", "/api/v1/calls/{id}/", "415"),
        ("get", "/api/v1/bids/", "429"),
        ("get", "/api/v1/bids/{id}/", "404"),
        ("get", "/api/v1/health/", "503"),
    ],
)
def test_every_status_an_endpoint_returns_is_documented(document, method, path, status):
    responses = document["paths"][path][method]["responses"]

    assert status in responses
    if status not in ("200", "503") or "test-bid" in path:
        content = responses[status]["content"]["application/json"]["schema"]
        assert content == {"$ref": "#/components/schemas/Error"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/api/v1/route/", "429"),  # live calls are never throttled per user
        ("get", "/api/v1/health/", "401"),  # no login needed
        ("get", "/api/v1/bids/", "415"),  # no body
    ],
)
def test_no_status_is_documented_that_an_endpoint_cannot_return(document, method, path, status):
    assert status not in document["paths"][path][method]["responses"]


def test_the_index_is_in_the_document(document):
    assert "/api/v1/" in document["paths"]
