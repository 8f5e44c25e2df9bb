"""GET /api/v1/error-codes/ and /api/v1/error-codes/{code}/."""

import pytest

from callgrid_portal.bidapi.codes import CATALOG

LIST_URL = "/api/v1/error-codes/"


def test_error_code_list_gives_viewer_all_twelve_codes_most_urgent_first(viewer_api):
    response = viewer_api.get(LIST_URL)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 12
    assert {row["code"] for row in body["results"]} == set(CATALOG)
    assert [row["code"] for row in body["results"][:2]] == [4001, 4006]
    assert [f["key"] for f in body["support_request_fields"]] == [
        "code",
        "timestamp",
        "request",
        "campaign",
        "frequency",
        "impact",
    ]


def test_error_code_list_filters_by_priority(viewer_api):
    response = viewer_api.get(LIST_URL, {"priority": "review"})
    assert response.status_code == 200
    assert sorted(row["code"] for row in response.json()["results"]) == [4002, 4004]


def test_error_code_list_refuses_unknown_priority_naming_the_field(viewer_api):
    response = viewer_api.get(LIST_URL, {"priority": "urgent"})
    assert response.status_code == 400
    assert response.json()["field"] == "priority"


def test_error_code_detail_shows_every_field(viewer_api):
    response = viewer_api.get(f"{LIST_URL}5001/")
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 5001
    assert body["http_status"] == 429
    assert body["callgrid_message"] == "Rate limit exceeded"
    assert body["priority"] == "normal"
    assert body["priority_label"] == "Normal operations"
    assert body["outcome"] == "rate_limited"
    assert body["outcome_class"] == "error"
    assert body["retry"] is True
    assert body["causes"] and body["fixes"]
    assert body["meaning"] and body["contact_support"] and body["title"]


@pytest.mark.parametrize("code", ["7777", "abc", "0"])
def test_error_code_detail_answers_json_404_for_unknown_code(viewer_api, code):
    response = viewer_api.get(f"{LIST_URL}{code}/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert code in response.json()["detail"]


@pytest.mark.parametrize("url", [LIST_URL, f"{LIST_URL}4001/"])
def test_error_codes_refuse_anonymous_visitor(api_client, db, url):
    response = api_client.get(url)
    assert response.status_code in (401, 403)
    assert "detail" in response.json()


def test_error_codes_refuse_user_without_a_role(api_client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="irrelevant-pass-1")
    api_client.force_authenticate(user)
    assert api_client.get(LIST_URL).status_code == 403


def test_error_codes_are_read_only(admin_api):
    assert admin_api.post(LIST_URL, {}, format="json").status_code == 405
    assert admin_api.delete(f"{LIST_URL}4001/").status_code == 405


def test_error_codes_appear_in_the_openapi_schema(viewer_api):
    response = viewer_api.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/error-codes/" in paths
    assert "/api/v1/error-codes/{code}/" in paths
