"""The OpenAPI document describes every endpoint, with our error shape, and has no warnings."""

import io

import pytest
from django.core.management import call_command

EVERY_PATH = [
    "/api/v1/buyers/",
    "/api/v1/buyers/{id}/",
    "/api/v1/buyers/{id}/test-bid/",
    "/api/v1/buyers/eligibility/",
    "/api/v1/bids/",
    "/api/v1/bids/{id}/",
    "/api/v1/bids/import/",
    "/api/v1/route/",
    "/api/v1/calls/",
    "/api/v1/calls/{id}/",
    "/api/v1/reports/summary/",
    "/api/v1/reports/timeseries/",
    "/api/v1/reports/states/",
    "/api/v1/reports/campaigns/",
    "/api/v1/error-codes/",
    "/api/v1/error-codes/{code}/",
    "/api/v1/alerts/",
    "/api/v1/health/",
]


def test_schema_generates_without_warnings():
    # --fail-on-warn turns a view the generator cannot describe (and silently drops) into an
    # error instead of a hole in the document.
    out, err = io.StringIO(), io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=err)
    assert out.getvalue().startswith("openapi: 3")
    assert "/api/v1/route/:" in out.getvalue()
    assert err.getvalue() == ""


@pytest.mark.django_db
def test_schema_lists_every_endpoint_with_the_error_shape(viewer_api):
    # The schema needs a signed-in user unless API_DOCS_PUBLIC opens it.
    schema = viewer_api.get("/api/v1/schema/?format=json").json()

    assert sorted(EVERY_PATH) == sorted(path for path in schema["paths"] if path in EVERY_PATH)
    buyers_post = schema["paths"]["/api/v1/buyers/"]["post"]["responses"]
    assert buyers_post["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert {"401", "403"} <= set(buyers_post)
    assert "404" in schema["paths"]["/api/v1/buyers/{id}/"]["get"]["responses"]
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {
        "detail",
        "field",
        "errors",
    }


@pytest.mark.django_db
def test_schema_shows_the_campaign_and_publisher_tags(viewer_api):
    schema = viewer_api.get("/api/v1/schema/?format=json").json()
    components = schema["components"]["schemas"]
    for name in ("RouteInput", "RouteOutput", "Call", "CallDetail"):
        assert {"campaign", "publisher"} <= set(components[name]["properties"]), name
    assert components["RouteInput"]["properties"]["campaign"]["maxLength"] == 64
    for path in (
        "/api/v1/calls/",
        "/api/v1/bids/",
        "/api/v1/reports/summary/",
        "/api/v1/reports/timeseries/",
        "/api/v1/reports/states/",
        "/api/v1/reports/campaigns/",
    ):
        params = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert {"campaign", "publisher"} <= params, path
    grouped = schema["paths"]["/api/v1/reports/campaigns/"]["get"]["parameters"]
    group = next(p for p in grouped if p["name"] == "group")
    assert group["schema"]["enum"] == ["campaign", "publisher"]
