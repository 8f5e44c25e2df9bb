"""The report API: who may read it, its defaults, bad input, JSON money and CSV export."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bidlog.reports.rollups import rollup_build
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

AT = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
RANGE = {"since": "2025-11-02T00:00:00Z", "until": "2025-11-03T00:00:00Z"}


@pytest.fixture
def bids(db):
    buyer = BuyerFactory(name="Acme")
    BidLogFactory(buyer=buyer, created_at=AT, duration_ms=200)
    BidLogFactory(buyer=buyer, created_at=AT, outcome="declined", code=2000, bid_amount=None)
    CallFactory(created_at=AT, winner=buyer, routed=True, bid_amount=Decimal("25.50"))
    rollup_build(start=AT, end=AT, now=datetime(2025, 11, 4, tzinfo=UTC))
    return buyer


def test_viewer_reads_the_summary_with_money_as_strings(viewer_api, bids):
    response = viewer_api.get("/api/v1/reports/summary/", RANGE)

    assert response.status_code == 200
    body = response.json()
    assert (body["bids"], body["accepted"], body["acceptance_rate"]) == (2, 1, 0.5)
    assert body["revenue"] == "25.50"
    assert body["by_code"][1]["code"] == 2000 and body["by_code"][1]["title"]
    assert body["buyers"][0]["name"] == "Acme"


def test_anonymous_gets_no_report(api_client, db):
    response = api_client.get("/api/v1/reports/summary/")

    assert response.status_code in (401, 403)


def test_timeseries_buckets_in_the_asked_time_zone(viewer_api, bids):
    response = viewer_api.get(
        "/api/v1/reports/timeseries/", {**RANGE, "bucket": "day", "tz": "America/New_York"}
    )

    assert response.status_code == 200
    results = response.json()["results"]
    assert [row["bucket_start"] for row in results] == [
        "2025-11-01T00:00:00-04:00",
        "2025-11-02T00:00:00-04:00",
    ]
    assert [row["bids"] for row in results] == [0, 2]  # 05:30 UTC is 01:30 in New York


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"bucket": "week"}, "bucket"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-11-03T00:00:00Z", "until": "2025-11-02T00:00:00Z"}, "since"),
        ({"buyer": "999999"}, "buyer"),
        ({"source": "carrier-pigeon"}, "source"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
    ],
)
def test_bad_report_input_is_a_400_naming_the_field(viewer_api, db, params, field):
    response = viewer_api.get("/api/v1/reports/timeseries/", params)

    assert response.status_code == 400
    assert response.json()["field"] == field


def test_summary_exports_as_csv_with_a_row_per_buyer(viewer_api, bids):
    response = viewer_api.get("/api/v1/reports/summary/", {**RANGE, "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["name"] for row in rows] == ["All buyers", "Acme"]
    assert rows[1]["revenue"] == "25.50"
    assert rows[0]["bids"] == "2"


def test_timeseries_and_states_export_as_csv(viewer_api, bids):
    series = viewer_api.get("/api/v1/reports/timeseries/", {**RANGE, "format": "csv"})
    states = viewer_api.get("/api/v1/reports/states/", {**RANGE, "format": "csv"})

    series_rows = list(csv.DictReader(io.StringIO(series.content.decode())))
    assert len(series_rows) == 24
    assert sum(int(row["bids"]) for row in series_rows) == 2
    assert states.content.decode().splitlines() == [
        "state_code,attempts,bids,accepted,acceptance_rate",
        "CO,2,2,1,0.5",
    ]


def test_csv_error_is_still_a_400(viewer_api, db):
    response = viewer_api.get("/api/v1/reports/summary/", {"since": "nope", "format": "csv"})

    assert response.status_code == 400
    assert "ISO 8601" in response.content.decode()
