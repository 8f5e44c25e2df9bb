"""Campaign and publisher tags: the route stores them, the lists and reports filter and group
by them, and a bad tag is a 400 naming its field."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bidlog.models import BidLog, Call, CallTagRollup
from bidlog.reports.campaigns import report_by_tag
from bidlog.reports.rollups import rollup_build
from bidlog.tags import TAG_MAX_LENGTH
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

ROUTE = "/api/v1/route/"


def test_route_stores_the_tags_on_the_call_and_never_sends_them_to_buyers(
    operator_api, sim_buyer, simulator
):
    sim_buyer(bid_amount="31.00")

    response = operator_api.post(
        ROUTE,
        {"CallerId": "3035551234", "campaign": "auto-2026/tv", "publisher": "Acme Media"},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["campaign"], body["publisher"]) == ("auto-2026/tv", "Acme Media")
    call = Call.objects.get(pk=body["call"])
    assert (call.campaign, call.publisher) == ("auto-2026/tv", "Acme Media")
    sent = BidLog.objects.get(call=call).request
    assert "campaign" not in sent and "publisher" not in sent
    detail = operator_api.get(f"/api/v1/calls/{call.pk}/").json()
    assert (detail["campaign"], detail["publisher"]) == ("auto-2026/tv", "Acme Media")


def test_route_without_tags_stores_empty_tags(operator_api, sim_buyer, simulator):
    sim_buyer()
    body = operator_api.post(ROUTE, {"CallerId": "3035551234"}, format="json").json()
    assert (body["campaign"], body["publisher"]) == ("", "")


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("campaign", "x" * (TAG_MAX_LENGTH + 1), f"at most {TAG_MAX_LENGTH} characters"),
        ("campaign", "<script>", "characters not allowed"),
        ("campaign", 12, "must be a string"),
        ("publisher", None, "must be a string"),
        ("publisher", "-leading", "characters not allowed"),
        ("publisher", "tab\there", "characters not allowed"),
    ],
)
def test_a_bad_tag_answers_400_naming_the_field_and_routes_nothing(
    operator_api, sim_buyer, simulator, field, value, words
):
    sim_buyer()
    response = operator_api.post(ROUTE, {"CallerId": "3035551234", field: value}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field
    assert words in body["message"]
    assert simulator.requests() == []
    assert not Call.objects.exists()


@pytest.fixture
def tagged(db):
    """Two campaigns from two publishers and an untagged call, with a bid behind each."""
    acme = BuyerFactory(name="Acme")
    now = timezone.now()
    calls = [
        ("auto", "pub-a", True, "40.00"),
        ("auto", "pub-b", False, None),
        ("solar", "pub-a", True, "12.50"),
        ("", "", True, "5.00"),
    ]
    made = []
    for minutes, (campaign, publisher, routed, amount) in enumerate(calls, start=5):
        call = CallFactory(
            campaign=campaign,
            publisher=publisher,
            routed=routed,
            winner=acme if routed else None,
            bid_amount=Decimal(amount) if amount else None,
            created_at=now - timedelta(minutes=minutes),
        )
        BidLogFactory(buyer=acme, call=call, created_at=call.created_at)
        made.append(call)
    return made


def test_calls_and_bids_api_filter_by_campaign_and_publisher(viewer_api, tagged):
    calls = viewer_api.get("/api/v1/calls/", {"campaign": "auto"}).json()["results"]
    assert sorted(c["publisher"] for c in calls) == ["pub-a", "pub-b"]
    calls = viewer_api.get("/api/v1/calls/", {"publisher": "pub-a"}).json()["results"]
    assert sorted(c["campaign"] for c in calls) == ["auto", "solar"]
    bids = viewer_api.get("/api/v1/bids/", {"campaign": "solar"}).json()["results"]
    assert [b["call"] for b in bids] == [tagged[2].pk]


@pytest.mark.parametrize("url", ["/api/v1/calls/", "/api/v1/bids/", "/api/v1/reports/summary/"])
@pytest.mark.parametrize("field", ["campaign", "publisher"])
def test_a_bad_tag_filter_answers_400_naming_the_field(viewer_api, db, url, field):
    response = viewer_api.get(url, {field: "'; drop table"})
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert "characters not allowed" in str(response.json())


def test_report_summary_counts_only_the_campaigns_calls_and_bids(viewer_api, tagged):
    summary = viewer_api.get("/api/v1/reports/summary/", {"campaign": "auto"}).json()
    assert (summary["calls"], summary["routed_calls"], summary["revenue"]) == (2, 1, "40.00")
    assert summary["bids"] == 2
    assert summary["campaign"] == "auto"
    both = viewer_api.get(
        "/api/v1/reports/summary/", {"campaign": "auto", "publisher": "pub-b"}
    ).json()
    assert (both["calls"], both["routed_calls"], both["bids"]) == (1, 0, 1)


def test_reports_group_calls_revenue_and_acceptance_by_campaign_and_publisher(viewer_api, tagged):
    body = viewer_api.get("/api/v1/reports/campaigns/").json()
    assert body["group"] == "campaign"
    rows = {row["campaign"]: row for row in body["results"]}
    assert rows["auto"] == {
        "campaign": "auto",
        "calls": 2,
        "routed_calls": 1,
        "unsold_calls": 1,
        "acceptance_rate": 0.5,
        "revenue": "40.00",
        "revenue_per_call": "20.00",
    }
    assert rows[""]["calls"] == 1  # untagged calls are a row of their own
    by_publisher = viewer_api.get("/api/v1/reports/campaigns/", {"group": "publisher"}).json()
    assert [(r["publisher"], r["revenue"]) for r in by_publisher["results"]] == [
        ("pub-a", "52.50"),
        ("", "5.00"),
        ("pub-b", "0.00"),
    ]
    csv = viewer_api.get("/api/v1/reports/campaigns/", {"format": "csv"}).content.decode()
    assert csv.splitlines()[0].startswith("campaign,calls,routed_calls")


def test_a_bad_group_answers_400_naming_it(viewer_api, db):
    response = viewer_api.get("/api/v1/reports/campaigns/", {"group": "buyer"})
    assert response.status_code == 400
    assert response.json()["field"] == "group"


def test_grouped_report_reads_the_call_rollups_with_their_tags(tagged):
    now = timezone.now()
    hour_ago = now - timedelta(hours=3)
    for call in tagged:
        Call.objects.filter(pk=call.pk).update(created_at=call.created_at - timedelta(hours=3))
    rollup_build(start=hour_ago - timedelta(hours=2), end=now, now=now)
    assert set(CallTagRollup.objects.values_list("campaign", flat=True)) == {"auto", "solar", ""}
    # Raw rows gone from the rolled-up hours: the report must come from the rollups alone.
    Call.objects.update(campaign="changed")
    rows = report_by_tag(since=now - timedelta(days=1), until=now)
    assert {row["campaign"]: row["calls"] for row in rows} == {"auto": 2, "solar": 1, "": 1}
