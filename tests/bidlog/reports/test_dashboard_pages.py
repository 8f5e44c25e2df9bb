"""The overview and the reports pages: figures from the log, alerts, ranges and CSV exports."""

import csv
import io
import re
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import AlertRule, Outcome
from bidlog.models import Alert
from bidlog.reports.forms import ReportRangeForm
from buyers.models import Buyer
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory


@pytest.fixture
def day(db):
    """A small day of bidding: two buyers, one with an open alert, one idle buyer."""
    acme = BuyerFactory(name="Acme", priority=1)
    beta = BuyerFactory(name="Beta", priority=2)
    BuyerFactory(name="Idle", priority=3)
    now = timezone.now()
    for minutes in (5, 15, 25):
        BidLogFactory(
            buyer=acme,
            outcome=Outcome.ACCEPTED,
            code=1000,
            state_code="CO",
            created_at=now - timedelta(minutes=minutes),
        )
    BidLogFactory(
        buyer=beta,
        outcome=Outcome.DECLINED,
        code=2000,
        bid_amount=None,
        state_code="TX",
        created_at=now - timedelta(minutes=7),
    )
    BidLogFactory(
        buyer=beta,
        outcome=Outcome.CAPACITY_CHECK_FAILED,
        code=4004,
        bid_amount=None,
        http_status=400,
        created_at=now - timedelta(minutes=9),
    )
    # Outside the default 24 hours: only the 7-day range counts it.
    BidLogFactory(
        buyer=beta, outcome=Outcome.ACCEPTED, code=1000, created_at=now - timedelta(days=3)
    )
    CallFactory(
        winner=acme, routed=True, bid_amount=Decimal("25.50"), created_at=now - timedelta(minutes=5)
    )
    Alert.objects.create(
        buyer=beta,
        rule=AlertRule.CAPACITY_CHECK,
        code=4004,
        priority="review",
        title="Capacity check failing while active",
    )
    return acme, beta


def test_visitors_log_in_first(db):
    for name in ("home", "reports"):
        assert Client().get(reverse(name))["Location"].startswith(reverse("login"))


def test_overview_shows_the_last_24_hours_alerts_and_every_buyer(alice, day):
    response = page_client(alice).get(reverse("home"))
    page = response.content.decode()
    summary = response.context["summary"]
    assert (summary["bids"], summary["accepted"]) == (5, 3)
    assert '<strong class="figure-acceptance">60%</strong>' in page
    assert '<strong class="figure-revenue">$25.50</strong>' in page
    assert "Capacity check failing while active" in page
    assert "what 4004 means" in page
    names = [row["buyer"].name for row in response.context["buyers"]]
    assert names == ["Acme", "Beta", "Idle"]
    assert "no bids in this range" in page  # Idle
    # Volume and acceptance on one time axis: a focusable, named mark per hour.
    assert page.count('<g class="mark" tabindex="0" role="img"') >= 24
    assert 'aria-label="Bids and acceptance per hour (UTC)"' in page
    # Codes stacked over time: the hour with Beta's bids names both codes.
    assert 'aria-label="CallGrid codes per hour (UTC)"' in page
    assert "4004 " in page and "2000 " in page


def test_overview_buyer_rows_show_each_buyers_figures_escaped(alice, day):
    acme, _beta = day
    BuyerFactory(name="<Idle & co>", priority=4)

    page = page_client(alice).get(reverse("home")).content.decode()

    rows = re.findall(r"<tr><td><a href=.*?</tr>", re.sub(r">\s+<", "><", page), flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert cells[0] == [
        f'<a href="{reverse("buyers:detail", args=[acme.pk])}">Acme</a>',
        '<span class="badge healthy">healthy</span>',
        "Active",
        "3",
        "100%",
        cells[0][5],  # the p95 of the factory's random durations
        "0",
        "$25.50",
    ]
    assert re.fullmatch(r"[\d,]+ ms", cells[0][5])
    assert cells[1][1:5] == ['<span class="badge degraded">degraded</span>', "Active", "2", "0%"]
    assert cells[1][7] == "$0.00"
    assert cells[3] == [
        f'<a href="{reverse("buyers:detail", args=[Buyer.objects.get(priority=4).pk])}">'
        "&lt;Idle &amp; co&gt;</a>",
        '<span class="badge unknown">unknown</span>',
        "Active",
        "no bids in this range",
    ]


def test_a_wider_range_counts_older_bids(alice, day):
    response = page_client(alice).get(reverse("home"), {"range": "7d"})
    assert response.context["summary"]["bids"] == 6
    assert response.context["form"].cleaned_data["bucket"] == "day"


@pytest.mark.parametrize(
    "query, field, message",
    [
        ({"range": "custom"}, "since", "Give the start of the range"),
        (
            {"range": "custom", "since": "2026-01-02", "until": "2026-01-01"},
            "since",
            "Must be before until.",
        ),
        (
            {"range": "custom", "since": "2020-01-01", "until": "2026-01-01"},
            "since",
            "at most 400 days",
        ),
        ({"since": "soon"}, "since", "Enter an ISO 8601 date-time"),
        ({"range": "forever"}, "range", "Select a valid choice"),
        ({"buyer": "abc"}, "buyer", "Select a valid choice"),
    ],
)
def test_bad_ranges_are_named_on_the_page(alice, day, query, field, message):
    for name in ("home", "reports"):
        response = page_client(alice).get(reverse(name), query)
        assert response.status_code == 200
        assert field in response.context["form"].errors
        assert message in response.content.decode()


def test_reports_break_down_codes_buyers_states_and_time(alice, day):
    response = page_client(alice).get(reverse("reports"))
    tables = response.context["tables"]
    assert [row[0] for row in tables["codes"][1]] == [1000, 2000, 4004]
    # Every buyer's together first, then each buyer (the report API's summary CSV rows).
    assert tables["buyers"][1][0][1] == "All buyers"
    assert {row[1] for row in tables["buyers"][1]} == {"All buyers", "Acme", "Beta"}
    assert {row[0]: row[2] for row in tables["states"][1]} == {"CO": 4, "TX": 1}
    assert sum(row[1] for row in tables["timeseries"][1]) == 5


def test_reports_state_column_names_the_state(alice, day):
    """The state column was blank: a date filter was applied to the state code."""
    page = page_client(alice).get(reverse("reports")).content.decode()
    states = page[page.index('id="states"') : page.index('id="timeseries"')]
    assert "<tr><td>CO</td><td>4</td>" in states
    assert "<tr><td>TX</td><td>1</td>" in states


def test_reports_separate_answers_from_errors_with_a_chart_beside_every_table(alice, day):
    response = page_client(alice).get(reverse("reports"))
    page = response.content.decode()
    (_, answers, _), (_, errors, _) = response.context["code_tables"]
    assert [row[0] for row in answers] == [1000, 2000]
    assert [row[0] for row in errors] == [4004]
    answers_table = page[
        page.index('<table class="answers">') : page.index('<table class="errors">')
    ]
    assert "#code-1000" in answers_table and "#code-4004" not in answers_table
    for name in ("codes", "buyers", "states", "timeseries"):
        section = page[page.index(f'id="{name}"') :]
        section = section[: section.index("</section>")]
        assert "<table" in section and '<svg class="chart-svg"' in section, name
    # Errors are drawn in the error colour, answers in the answer colour.
    assert 'aria-label="4004 Capacity' in page


def test_each_report_table_downloads_as_csv(alice, day):
    client = page_client(alice)
    page = client.get(reverse("reports"), {"range": "24h"}).content.decode()
    assert "export=codes" in page
    response = client.get(reverse("reports"), {"range": "24h", "export": "codes"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["code", "title", "priority", "count"]
    assert [row[0] for row in rows[1:]] == ["1000", "2000", "4004"]
    buyers = client.get(reverse("reports"), {"export": "buyers"}).content.decode()
    # The same columns as the report API's summary CSV (bidlog/reports/tables.py).
    assert buyers.splitlines()[0].startswith("buyer,name,grid_id,attempts,bids")


def test_time_buckets_read_as_times_on_the_page_and_iso_8601_in_the_csv(alice, day):
    client = page_client(alice)
    response = client.get(reverse("reports"), {"range": "24h"})
    last = response.context["tables"]["timeseries"][1][-1][0]
    page = response.content.decode()
    assert f"<td>{last:%Y-%m-%d %H:%M}</td>" in page
    assert last.isoformat() not in page
    week = client.get(reverse("reports"), {"range": "7d"})
    assert f"<td>{week.context['tables']['timeseries'][1][-1][0]:%Y-%m-%d}</td>" in (
        week.content.decode()
    )
    exported = client.get(reverse("reports"), {"range": "24h", "export": "timeseries"})
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[0][0] == "bucket_start"
    assert rows[-1][0] == last.isoformat()


def test_an_unknown_export_is_named_not_a_crash(alice, day):
    response = page_client(alice).get(reverse("reports"), {"export": "everything"})
    assert response.status_code == 200
    assert "export must be one of codes, buyers, states, timeseries" in response.content.decode()


@override_settings(TIME_ZONE="Asia/Tokyo")
def test_day_buckets_of_another_time_zone_show_their_utc_hour(alice, day):
    response = page_client(alice).get(reverse("reports"), {"range": "7d"})
    last = response.context["tables"]["timeseries"][1][-1][0]
    # Tokyo's midnight is 15:00 UTC the day before: the date alone would name the wrong day.
    assert f"<td>{last.astimezone(UTC):%Y-%m-%d %H:%M}</td>" in response.content.decode()
    assert last.astimezone(UTC).hour == 15


def test_the_buyer_filter_lists_every_buyer_by_priority_reading_only_what_it_shows(day):
    acme = Buyer.objects.get(name="Acme")
    form = ReportRangeForm({"buyer": str(acme.pk)})
    assert form.is_valid(), form.errors

    with CaptureQueriesContext(connection) as queries:
        html = str(form["buyer"])

    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', html)
    assert [(label, bool(selected)) for _value, selected, label in options] == [
        ("Every buyer", False),
        (str(acme), True),
        (str(Buyer.objects.get(name="Beta")), False),
        (str(Buyer.objects.get(name="Idle")), False),
    ]
    assert form.cleaned_data["buyer"].pk == acme.pk
    # One query of the three columns an option shows, not every column of 200 buyers.
    [query] = queries.captured_queries
    assert "grid_id" in query["sql"] and "endpoint_url" not in query["sql"]
