"""One definition per report table: the report API's CSV and the reports page's CSV download
and table are the same columns, with the same values (bidlog/reports/tables.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from bidlog.reports.rollups import rollup_build
from bidlog.reports.tables import BUYERS, REPORT_TABLES, STATES, TIMESERIES
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

AT = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)
API_RANGE = {"since": "2025-11-02T00:00:00Z", "until": "2025-11-03T00:00:00Z"}
PAGE_RANGE = {"range": "custom", "since": "2025-11-02T00:00", "until": "2025-11-03T00:00"}


@pytest.fixture
def bids(db):
    buyer = BuyerFactory(name="Acme")
    BidLogFactory(buyer=buyer, created_at=AT, duration_ms=200, state_code="CO")
    BidLogFactory(buyer=buyer, created_at=AT, outcome="declined", code=2000, bid_amount=None)
    CallFactory(created_at=AT, winner=buyer, routed=True, bid_amount=Decimal("25.50"))
    rollup_build(start=AT, end=AT, now=datetime(2025, 11, 4, tzinfo=UTC))
    return buyer


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    ("api", "table"),
    [("summary", BUYERS), ("timeseries", TIMESERIES), ("states", STATES)],
)
def test_the_api_and_the_page_download_the_same_table(viewer_api, alice, bids, api, table):
    from_api = viewer_api.get(f"/api/v1/reports/{api}/", {**API_RANGE, "format": "csv"})
    from_page = page_client(alice).get(reverse("reports"), {**PAGE_RANGE, "export": table.name})

    assert from_api.status_code == from_page.status_code == 200
    api_rows = _rows(from_api.content.decode())
    assert api_rows[0] == table.header()
    assert _rows(from_page.content.decode()) == api_rows


def test_the_page_shows_every_column_of_each_table(alice, bids):
    response = page_client(alice).get(reverse("reports"), PAGE_RANGE)
    page = response.content.decode()

    for name, table in REPORT_TABLES.items():
        section = page[page.index(f'id="{name}"') :]
        section = section[: section.index("</section>")]
        titles = "".join(f"<th>{column.title}</th>" for column in table.columns)
        assert titles in section, name
        assert response.context["tables"][name][0] == table.header()
    # Money to the cent on the page too, and the day's total before the buyer's own row.
    buyers = response.context["tables"]["buyers"][1]
    assert [row[1] for row in buyers] == ["All buyers", "Acme"]
    assert "<td>$25.50</td>" in page
