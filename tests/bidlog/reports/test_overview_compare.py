"""The overview's comparisons and the range control every ranged page shares."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.reports.compare import KPIS, change_of, kpi_values
from bidlog.reports.forms import RangeForm
from bidlog.reports.rollups import rollup_build
from bidlog.reports.services import report_summary
from bidlog.reports.totals import report_totals
from callgrid_portal import numbers
from tests.conftest import page_client
from tests.factories import BidLogFactory, BuyerFactory, CallFactory

KPI = {kpi.key: kpi for kpi in KPIS}
NOW = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "key, current, base, text, verdict, arrow",
    [
        ("calls", 120, 100, "+20.0%", "better", "▲"),
        ("calls", 80, 100, "-20.0%", "worse", "▼"),
        ("revenue", Decimal("50.00"), Decimal("0.00"), "n/a", "n/a", ""),
        ("revenue", Decimal("10.00"), None, "n/a", "n/a", ""),
        ("p95_ms", 300, 200, "+50.0%", "worse", "▲"),
        ("timeout_rate", 0.05, 0.02, "+3.0 pts", "worse", "▲"),
        ("acceptance_rate", 0.5, 0.0, "+50.0 pts", "better", "▲"),
        ("acceptance_rate", 0.5, None, "n/a", "n/a", ""),
        ("calls", 100, 100, "±0%", "same", "▶"),
    ],
)
def test_a_change_is_signed_arrowed_and_judged_by_the_figures_direction(
    key, current, base, text, verdict, arrow
):
    change = change_of(KPI[key], current, base, against="yesterday")
    assert (change.text, change.verdict, change.arrow) == (text, verdict, arrow)
    if verdict in ("better", "worse"):
        assert change.words.endswith(f"on yesterday, {verdict}")


def test_numbers_are_shown_with_separators_currency_and_percent():
    assert numbers.fmt_count(1234567) == "1,234,567"
    assert numbers.fmt_money(Decimal("12345.5")) == "$12,345.50"
    assert numbers.fmt_money(Decimal("-3")) == "-$3.00"
    assert numbers.fmt_rate(0.4526) == "45.3%"
    assert numbers.fmt_rate(0.6) == "60%"
    assert numbers.fmt_ms(1250) == "1,250 ms"
    assert numbers.fmt_rate(None) == numbers.NONE_SHOWN


def _clean(data, **kwargs):
    form = RangeForm(data, now=NOW, **kwargs)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def test_quick_ranges_run_from_midnight_and_compare_with_the_day_before(settings):
    settings.TIME_ZONE = "UTC"
    today = _clean({"range": "today"})
    assert (today["since"], today["until"]) == (datetime(2026, 12, 4, tzinfo=UTC), NOW)
    assert today["period"] == timedelta(days=1)
    yesterday = _clean({"range": "yesterday"})
    assert yesterday["since"] == datetime(2026, 12, 3, tzinfo=UTC)
    assert yesterday["until"] == datetime(2026, 12, 4, tzinfo=UTC)
    week = _clean({"range": "7d"})
    assert week["since"] == datetime(2026, 11, 27, 15, tzinfo=UTC) and week["until"] == NOW
    assert (week["period"], week["bucket"]) == (timedelta(days=7), "day")
    assert _clean({})["label"] == "Last 24 hours"


def test_rolling_ranges_start_on_the_hour_so_reports_read_whole_rollup_hours():
    day = _clean({"range": "24h"})
    assert day["since"] == (NOW - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    assert day["since"].minute == 0 and NOW - day["since"] <= timedelta(hours=25)
    assert (day["until"], day["period"], day["bucket"]) == (NOW, timedelta(hours=24), "hour")
    month = _clean({"range": "30d"})
    assert month["since"] == datetime(2026, 11, 4, 15, tzinfo=UTC)


def test_days_picked_include_the_last_day_and_stop_at_now(settings):
    settings.TIME_ZONE = "America/New_York"
    picked = _clean({"from_date": "2026-12-01", "to_date": "2026-12-02"})
    assert picked["since"] == datetime(2026, 12, 1, 5, tzinfo=UTC)  # midnight in New York
    assert picked["until"] == datetime(2026, 12, 3, 5, tzinfo=UTC)
    assert (picked["period"], picked["label"]) == (timedelta(days=2), "2026-12-01 to 2026-12-02")
    # The dates win over a quick range carried by the form.
    assert _clean({"range": "30d", "from_date": "2026-12-04"})["until"] == NOW


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"from_date": "2026-12-05"}, "from_date", "Must not be in the future."),
        ({"from_date": "2026-12-03", "to_date": "2026-12-01"}, "to_date", "on or after"),
        ({"from_date": "1969-12-31"}, "from_date", "Must be between 1970-01-01"),
        ({"from_date": "2026-13-45"}, "from_date", "Enter a valid date."),
        ({"from_date": "2024-01-01"}, "from_date", "at most 400 days"),
        ({"range": "forever"}, "range", "Select a valid choice"),
        ({"range": "custom"}, "since", "Give the start of the range"),
    ],
)
def test_a_bad_range_is_an_error_on_its_field(data, field, message):
    form = RangeForm(data, now=NOW)
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


def test_quick_range_links_keep_the_pages_other_filters(rf):
    form = RangeForm(rf.get("/calls/", {"routed": "true", "range": "7d", "before": "x"}).GET)
    links = {link.key: link for link in form.quick_ranges()}
    assert links["today"].query == "routed=true&range=today"
    assert links["7d"].current and not links["today"].current


@pytest.fixture
def three_periods(db):
    """Calls and bids in the last hour, and about the same hour yesterday and last week."""
    acme = BuyerFactory(name="Acme")
    now = timezone.now()
    for back, calls, amount in ((0, 3, "20.00"), (1, 2, "20.00"), (7, 4, "20.00")):
        # Earlier periods an hour and a half further back: "24 hours" starts on the hour, so
        # it reaches up to 25 hours back.
        moment = now - timedelta(days=back, minutes=30 if back == 0 else 90)
        for _ in range(calls):
            CallFactory(winner=acme, routed=True, bid_amount=Decimal(amount), created_at=moment)
            BidLogFactory(buyer=acme, outcome=Outcome.ACCEPTED, created_at=moment)
    return acme


def test_overview_compares_each_figure_with_yesterday_and_last_week(alice, three_periods):
    response = page_client(alice).get(reverse("home"), {"range": "24h"})
    kpis = {kpi["key"]: kpi for kpi in response.context["kpis"]}
    calls = kpis["calls"]
    assert calls["shown"] == "3"
    (previous, last_week) = calls["changes"]
    assert (previous.against, previous.text, previous.verdict) == ("yesterday", "+50.0%", "better")
    assert (last_week.against, last_week.text, last_week.verdict) == (
        "the same time last week",
        "-25.0%",
        "worse",
    )
    assert kpis["revenue"]["shown"] == "$60.00"
    page = response.content.decode()
    assert '<strong class="figure-calls">3</strong>' in page
    assert "+50.0%" in page and "better" in page and "vs yesterday" in page


def test_overview_shows_n_a_when_the_earlier_period_had_nothing(alice, db):
    acme = BuyerFactory()
    CallFactory(winner=acme, routed=True, bid_amount=Decimal("9.00"))
    response = page_client(alice).get(reverse("home"), {"range": "today"})
    revenue = {kpi["key"]: kpi for kpi in response.context["kpis"]}["revenue"]
    assert [change.text for change in revenue["changes"]] == ["n/a", "n/a"]


def test_overview_puts_the_campaign_losing_money_first(alice, db):
    acme = BuyerFactory()
    now = timezone.now()
    for campaign, today, yesterday in (("solar", "30.00", "10.00"), ("auto", "5.00", "50.00")):
        for amount, back in ((today, 0), (yesterday, 1)):
            CallFactory(
                winner=acme,
                routed=True,
                bid_amount=Decimal(amount),
                campaign=campaign,
                created_at=now - timedelta(days=back, minutes=10 if back == 0 else 90),
            )
    response = page_client(alice).get(reverse("home"), {"range": "24h"})
    rows = response.context["tag_rows"]
    assert [row["campaign"] for row in rows] == ["auto", "solar"]
    assert rows[0]["revenue_change"].text == "-90.0%"
    assert rows[0]["revenue_change"].verdict == "worse"
    by_publisher = page_client(alice).get(reverse("home"), {"group": "publisher"})
    assert [row["publisher"] for row in by_publisher.context["tag_rows"]] == [""]


def test_overview_and_reports_filter_by_campaign(alice, db):
    acme = BuyerFactory()
    CallFactory(winner=acme, routed=True, bid_amount=Decimal("7.00"), campaign="auto")
    CallFactory(winner=acme, routed=True, bid_amount=Decimal("3.00"), campaign="solar")
    for name in ("home", "reports"):
        response = page_client(alice).get(reverse(name), {"campaign": "auto"})
        assert response.context["summary"]["revenue"] == Decimal("7.00"), name
    bad = page_client(alice).get(reverse("home"), {"campaign": "<b>"})
    assert bad.status_code == 200
    assert "campaign" in bad.context["form"].errors


def test_the_lists_take_the_range_control_and_the_tags(alice, db):
    now = timezone.now()
    recent = CallFactory(campaign="auto", created_at=now - timedelta(minutes=5))
    CallFactory(campaign="solar", created_at=now - timedelta(minutes=5))
    old = CallFactory(campaign="auto", created_at=now - timedelta(days=3))
    client = page_client(alice)
    today = client.get(reverse("calls:list"), {"range": "24h", "campaign": "auto"})
    assert [row["id"] for row in today.context["rows"]] == [recent.pk]
    page = today.content.decode()
    assert 'type="date"' in page and 'aria-current="true"' in page
    picked = client.get(
        reverse("calls:list"),
        {"from_date": (now - timedelta(days=3)).date().isoformat(), "campaign": "auto"},
    )
    assert [row["id"] for row in picked.context["rows"]] == [recent.pk, old.pk]
    # The bids list has the same range control, with the tags and the same bounds on a day.
    bids = client.get(reverse("bids:list"), {"from_date": "1900-01-01", "campaign": "auto"})
    assert "Must be between 1970-01-01" in " ".join(bids.context["range_form"].errors["from_date"])


def test_the_earlier_periods_totals_equal_the_full_summarys(three_periods):
    now = timezone.now()
    rollup_build(start=now - timedelta(days=9), end=now, now=now)
    for back in (0, 1, 7):
        span = {"since": now - timedelta(days=back + 1), "until": now - timedelta(days=back)}
        assert kpi_values(report_totals(**span)) == kpi_values(report_summary(**span))
        assert report_totals(**span)["calls"] > 0
