"""A report over 400 days combines day rollups with hour rollups and raw edges, and equals raw.

The data set spans 401 UTC days with a few rows a day; the report's range starts and ends
inside hours, so it reads a raw edge, hours of a partial day, whole days, and back again.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from bidlog.models import (
    BidLog,
    BidOutcomeRollup,
    BidPerformanceRollup,
    BidStateRollup,
    BidStateTotalRollup,
    BuyerSummaryRollup,
    Call,
    CallRollup,
    CallTotalRollup,
    RollupBucket,
    SummaryTotalRollup,
)
from bidlog.reports.compare import kpi_values
from bidlog.reports.plan import plan_range
from bidlog.reports.rollups import DAY, HOUR, ROLLUP_MODELS, rollup_build
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.reports.states import report_states
from bidlog.reports.summary_rollups import SUMMARY_MODELS
from bidlog.reports.totals import report_totals
from buyers.models import Buyer
from tests.factories import BuyerFactory, bid_log_dataset
from tests.report_checks import assert_same_summary, within_error

START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=401)
NOW = END + timedelta(hours=6)
SINCE = START + timedelta(hours=5, minutes=17, seconds=3)
UNTIL = SINCE + timedelta(days=399, hours=20)


@pytest.fixture(scope="module")
def _year(django_db_setup, django_db_blocker):
    # Built once for the module (rolling up 9,600 hours takes seconds), removed at its end.
    with django_db_blocker.unblock(), override_settings(BIDLOG_RETENTION_DAYS=500):
        buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 5, 10)]
        bid_log_dataset(buyers=buyers, start=START, end=END, count=2400)
        rollup_build(start=START, end=END, now=NOW)
        yield buyers
        derived = (*SUMMARY_MODELS, BidStateTotalRollup, CallTotalRollup, SummaryTotalRollup)
        for model in (*ROLLUP_MODELS, *derived, RollupBucket, BidLog, Call):
            model.objects.all().delete()
        Buyer.objects.filter(pk__in=[buyer.pk for buyer in buyers]).delete()


@pytest.fixture
def year(_year, db):
    return _year


def _span_count(spans: list[tuple[datetime, datetime]], unit: timedelta) -> int:
    return sum((end - start) // unit for start, end in spans)


def test_a_400_day_range_reads_days_and_only_the_edge_hours(year):
    plan = plan_range(SINCE, UNTIL)

    days, hours = _span_count(plan.days, DAY), _span_count(plan.hours, HOUR)
    assert days == 399
    # The rest of the first day after its partial hour, and the last day up to the last hour.
    assert hours == (24 - 6) + 1
    assert plan.raw == [
        (SINCE, START + timedelta(hours=6)),
        (UNTIL.replace(minute=0, second=0), UNTIL),
    ]
    # The buckets a report reads: a few hundred, whatever the number of raw rows.
    assert days + hours < 500
    q = plan.rollup_q()
    read = sum(
        model.objects.filter(q).count()
        for model in (BidOutcomeRollup, BidPerformanceRollup, BidStateRollup, CallRollup)
    )
    assert 0 < read < 10_000


@pytest.mark.parametrize("buyer_index", [None, 1])
def test_a_400_day_summary_equals_the_raw_group_by(year, buyer_index):
    buyer_id = None if buyer_index is None else year[buyer_index].pk

    fast = report_summary(since=SINCE, until=UNTIL, buyer_id=buyer_id)
    exact = report_summary(since=SINCE, until=UNTIL, buyer_id=buyer_id, exact=True)

    assert exact["attempts"] > 500 and exact["revenue"] > 0
    assert_same_summary(fast, exact)


def test_a_400_day_state_table_equals_the_raw_group_by(year):
    with CaptureQueriesContext(connection) as queries:
        fast = report_states(since=SINCE, until=UNTIL)

    assert fast == report_states(since=SINCE, until=UNTIL, exact=True)
    assert sum(row["attempts"] for row in fast) > 500
    # Every buyer's table reads the rows without the buyer, never the per-buyer ones.
    read = " ".join(query["sql"] for query in queries.captured_queries)
    assert BidStateTotalRollup._meta.db_table in read
    assert f'"{BidStateRollup._meta.db_table}"' not in read


@pytest.mark.parametrize("source", [None, "live", "test"])
def test_a_400_day_state_table_of_one_buyer_or_source_equals_the_raw_group_by(year, source):
    for buyer_id in (None, year[1].pk):
        fast = report_states(since=SINCE, until=UNTIL, buyer_id=buyer_id, source=source)
        exact = report_states(
            since=SINCE, until=UNTIL, buyer_id=buyer_id, source=source, exact=True
        )
        assert fast == exact
        assert sum(row["attempts"] for row in fast) > 0


def test_a_400_day_daily_series_equals_the_raw_group_by(year):
    with CaptureQueriesContext(connection) as queries:
        fast = report_timeseries(since=SINCE, until=UNTIL, bucket="day", tz="America/New_York")
    exact = report_timeseries(
        since=SINCE, until=UNTIL, bucket="day", tz="America/New_York", exact=True
    )

    assert len(fast) == len(exact) == 400
    for fast_row, exact_row in zip(fast, exact, strict=True):
        assert within_error(fast_row.pop("p95_ms"), exact_row.pop("p95_ms"))
        assert fast_row == exact_row
    assert sum(row["calls"] for row in fast) > 100
    # Every buyer's series reads the summary over every buyer, one row an hour, never the
    # per-buyer or per-winner rows.
    read = " ".join(query["sql"] for query in queries.captured_queries)
    assert f'"{SummaryTotalRollup._meta.db_table}"' in read
    for per_buyer in (CallRollup, CallTotalRollup, BidPerformanceRollup, BuyerSummaryRollup):
        assert f'"{per_buyer._meta.db_table}"' not in read


@pytest.mark.parametrize("source", [None, "live"])
def test_a_400_day_series_of_one_buyer_or_source_equals_the_raw_group_by(year, source):
    for buyer_id in (None, year[0].pk):
        args = {"since": SINCE, "until": UNTIL, "buyer_id": buyer_id, "source": source}
        fast = report_timeseries(**args, bucket="day", tz="UTC")
        exact = report_timeseries(**args, bucket="day", tz="UTC", exact=True)
        for fast_row, exact_row in zip(fast, exact, strict=True):
            assert within_error(fast_row.pop("p95_ms"), exact_row.pop("p95_ms"))
            assert fast_row == exact_row
        assert sum(row["calls"] for row in fast) > 0


def test_a_400_day_summary_of_one_source_equals_the_raw_group_by(year):
    fast = report_summary(since=SINCE, until=UNTIL, source="live")
    exact = report_summary(since=SINCE, until=UNTIL, source="live", exact=True)

    assert 0 < exact["attempts"] < report_summary(since=SINCE, until=UNTIL)["attempts"]
    assert_same_summary(fast, exact)


def test_a_summary_of_every_source_reads_the_narrow_rollups_a_row_per_buyer_and_day(year):
    since, until = UNTIL - timedelta(days=30), UNTIL
    plan = plan_range(since, until)
    q = plan.rollup_q()

    with CaptureQueriesContext(connection) as queries:
        report_summary(since=since, until=until)

    tables = " ".join(query["sql"] for query in queries.captured_queries)
    assert "bidlog_buyersummaryrollup" in tables and "bidlog_bidoutcometotalrollup" in tables
    for wide in ("bidlog_bidoutcomerollup", "bidlog_bidperformancerollup", "bidlog_callrollup"):
        assert wide not in tables
    buckets = _span_count(plan.days, DAY) + _span_count(plan.hours, HOUR)
    assert BuyerSummaryRollup.objects.filter(q).count() <= buckets * (len(year) + 1)
    # Each buyer's day is one row, whatever its sources, outcomes and codes.
    day_rows = BuyerSummaryRollup.objects.filter(q, grain="day")
    assert day_rows.count() == day_rows.values("bucket_start", "buyer").distinct().count() > 0


@pytest.mark.parametrize("buyer_index", [None, 2])
def test_a_400_day_total_equals_the_rollup_summary_and_every_buyers_reads_one_row_a_bucket(
    year, buyer_index
):
    buyer_id = None if buyer_index is None else year[buyer_index].pk
    with CaptureQueriesContext(connection) as queries:
        totals = report_totals(since=SINCE, until=UNTIL, buyer_id=buyer_id)
    summary = report_summary(since=SINCE, until=UNTIL, buyer_id=buyer_id)

    assert kpi_values(totals) == kpi_values(summary) and totals["calls"] > 0
    read = " ".join(query["sql"] for query in queries.captured_queries)
    if buyer_id is None:
        assert SummaryTotalRollup._meta.db_table in read
        assert f'"{BuyerSummaryRollup._meta.db_table}"' not in read
