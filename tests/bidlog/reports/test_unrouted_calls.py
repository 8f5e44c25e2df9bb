"""Calls that were not routed show no paid-out mark; every outcome is documented (item 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from bidlog.choices import Outcome, outcome_class
from tests.conftest import page_client
from tests.factories import BuyerFactory, CallFactory

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.fixture
def calls(db):
    buyer = BuyerFactory()
    routed = CallFactory(routed=True, winner=buyer, bid_amount="20.00", destination="1303")
    unrouted = CallFactory(routed=False)
    return routed, unrouted


def test_the_api_shows_paid_out_only_for_routed_calls(viewer_api, calls):
    routed, unrouted = calls

    listed = {c["id"]: c["paid_out"] for c in viewer_api.get("/api/v1/calls/").json()["results"]}
    detail = viewer_api.get(f"/api/v1/calls/{unrouted.pk}/").json()

    assert listed == {routed.pk: True, unrouted.pk: None}
    assert detail["paid_out"] is None


@pytest.mark.parametrize(("value", "expected"), [("true", "routed"), ("false", None)])
def test_the_paid_out_filter_matches_routed_calls_only(viewer_api, calls, value, expected):
    routed, _ = calls

    results = viewer_api.get("/api/v1/calls/", {"paid_out": value}).json()["results"]

    assert [c["id"] for c in results] == ([routed.pk] if expected else [])


@pytest.mark.parametrize("value", [True, False])
def test_paid_out_cannot_be_set_on_an_unrouted_call(operator_api, calls, value):
    _, unrouted = calls

    response = operator_api.patch(
        f"/api/v1/calls/{unrouted.pk}/", {"paid_out": value}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["field"] == "paid_out"
    assert response.json()["detail"] == "paid_out: Only a routed call can be marked paid out."


def test_the_pages_show_no_paid_out_for_an_unrouted_call(bob, calls):
    routed, unrouted = calls
    client = page_client(bob)

    listing = client.get(reverse("calls:list"))
    detail = client.get(reverse("calls:detail", args=[unrouted.pk]))

    rows = {row["id"]: row["paid_out"] for row in listing.context["rows"]}
    assert rows == {routed.pk: True, unrouted.pk: None}
    assert detail.context["call"]["paid_out"] is None
    assert "Paid out" not in detail.content.decode()
    assert "Mark " not in detail.content.decode()


def test_the_call_schema_declares_paid_out_nullable(viewer_api):
    schema = viewer_api.get("/api/v1/schema/?format=json").json()

    paid_out = schema["components"]["schemas"]["Call"]["properties"]["paid_out"]
    assert paid_out["nullable"] is True
    assert paid_out["readOnly"] is True


def test_readme_lists_every_outcome_with_its_class():
    text = README.read_text()
    listed = dict(re.findall(r"^\| `([a-z_]+)` \| `([a-z_]+)` \|", text, flags=re.MULTILINE))

    assert listed == {outcome.value: outcome_class(outcome) for outcome in Outcome}


def test_the_schema_lists_skipped_status_among_the_outcomes(viewer_api):
    schema = viewer_api.get("/api/v1/schema/?format=json").json()

    enums = [
        s["enum"]
        for s in schema["components"]["schemas"].values()
        if "accepted" in s.get("enum", [])
    ]
    assert enums and all(set(enum) == set(Outcome.values) for enum in enums)
