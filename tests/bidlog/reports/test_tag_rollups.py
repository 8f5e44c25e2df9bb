"""Reports limited to a campaign or publisher read the tag rollups, and equal the raw GROUP BY.

The data set's calls carry campaigns and publishers (some untagged, some bids without a call);
ranges start and end inside hours, so a report reads raw edges, hour rows and a whole day.
"""

import importlib
import random
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from bidlog.models import Call, RollupBucket, TagOutcomeRollup, TagSummaryRollup
from bidlog.reports.charts import report_codes_over_time
from bidlog.reports.rollups import rollup_build
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.reports.tag_rollups import TAG_MODELS
from bidlog.reports.totals import report_totals, report_totals_periods
from tests.factories import BuyerFactory, bid_log_dataset
from tests.report_checks import assert_same_summary, within_error

START = datetime(2025, 11, 1, tzinfo=UTC)
END = datetime(2025, 11, 4, tzinfo=UTC)
NOW = datetime(2025, 11, 5, 12, tzinfo=UTC)
SINCE = datetime(2025, 11, 1, 3, 17, 12, 345678, tzinfo=UTC)
UNTIL = datetime(2025, 11, 3, 21, 42, 5, tzinfo=UTC)
TAGS = [
    {"campaign": "spring"},
    {"campaign": "autumn"},
    {"publisher": "pub-a"},
    {"campaign": "spring", "publisher": "pub-b"},
]


@pytest.fixture
def tagged(db):
    buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 5, 10)]
    bid_log_dataset(buyers=buyers, start=START, end=END, count=3000)
    rng = random.Random(11)
    calls = list(Call.objects.all())
    for call in calls:
        call.campaign = rng.choice(["spring", "autumn", ""])
        call.publisher = rng.choice(["pub-a", "pub-b", ""])
    Call.objects.bulk_update(calls, ["campaign", "publisher"])
    rollup_build(start=START, end=END, now=NOW)
    return buyers


def _snapshot() -> dict:
    return {
        model.__name__: sorted(
            tuple(sorted((k, str(v)) for k, v in model_to_dict(row, exclude=["id"]).items()))
            for row in model.objects.all()
        )
        for model in TAG_MODELS
    }


@pytest.mark.parametrize("tags", TAGS)
def test_a_tagged_summary_equals_the_raw_group_by(tagged, tags):
    fast = report_summary(since=SINCE, until=UNTIL, **tags)
    exact = report_summary(since=SINCE, until=UNTIL, exact=True, **tags)

    assert exact["attempts"] > 100 and exact["revenue"] > 0
    assert exact["attempts"] < report_summary(since=SINCE, until=UNTIL)["attempts"]
    assert_same_summary(fast, exact)


def test_a_tagged_summary_of_one_source_equals_the_raw_group_by(tagged):
    fast = report_summary(since=SINCE, until=UNTIL, source="live", campaign="spring")
    exact = report_summary(since=SINCE, until=UNTIL, source="live", campaign="spring", exact=True)

    assert exact["bids"] > 0
    assert_same_summary(fast, exact)


@pytest.mark.parametrize("tags", TAGS)
def test_a_tagged_hourly_series_equals_the_raw_group_by(tagged, tags):
    fast = report_timeseries(since=SINCE, until=UNTIL, **tags)
    exact = report_timeseries(since=SINCE, until=UNTIL, exact=True, **tags)

    assert sum(row["bids"] for row in exact) > 50
    for fast_row, exact_row in zip(fast, exact, strict=True):
        assert within_error(fast_row.pop("p95_ms"), exact_row.pop("p95_ms"))
        assert fast_row == exact_row


@pytest.mark.parametrize("tags", [*TAGS, {}])
@pytest.mark.parametrize("bucket", ["hour", "day"])
def test_tagged_codes_over_time_equal_the_raw_rows(tagged, tags, bucket):
    fast = report_codes_over_time(since=SINCE, until=UNTIL, bucket=bucket, **tags)
    RollupBucket.objects.update(stale=True)  # every bucket read from raw rows

    raw = report_codes_over_time(since=SINCE, until=UNTIL, bucket=bucket, **tags)

    # Outcome rollups cannot tell a 4003 refused locally (nothing sent) from CallGrid's own,
    # so the chart counts both from rollups, as it always has without tags; every other code
    # must match the raw rows.
    for chart in (fast, raw):
        chart["codes"].pop(4003, None)
    assert fast == raw and sum(map(sum, raw["codes"].values())) > 50


@pytest.mark.parametrize("tags", [*TAGS, {}, {"source": "live"}])
def test_the_totals_of_overlapping_periods_equal_each_periods_raw_summary(tagged, tags):
    week = timedelta(days=1, hours=5)
    periods = [(SINCE, UNTIL), (SINCE + week, UNTIL), (SINCE, UNTIL - week), (SINCE, UNTIL)]

    with CaptureQueriesContext(connection) as queries:
        totals = report_totals_periods(periods, **tags)

    # A handful of statements for every period at once, whatever their number.
    assert len(queries.captured_queries) <= 8
    for (since, until), figures in zip(periods, totals, strict=True):
        exact = report_summary(since=since, until=until, exact=True, **tags)
        latency, exact_latency = figures["latency_ms"], exact["latency_ms"]
        assert within_error(latency["p95"], exact_latency["p95"])
        assert latency["avg"] == exact_latency["avg"] and latency["max"] == exact_latency["max"]
        for name in ("bids", "accepted", "timeouts", "calls", "routed_calls", "revenue"):
            assert figures[name] == exact[name], name
    buyer = tagged[1].pk
    one = report_totals(since=SINCE, until=UNTIL, buyer_id=buyer, **tags)
    exact = report_summary(since=SINCE, until=UNTIL, buyer_id=buyer, exact=True, **tags)
    assert (one["bids"], one["revenue"]) == (exact["bids"], exact["revenue"])


def test_a_tagged_summary_reads_the_tag_rollups_for_whole_hours(tagged):
    with CaptureQueriesContext(connection) as queries:
        report_summary(since=SINCE, until=UNTIL, campaign="spring")

    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "bidlog_tagsummaryrollup" in sql and "bidlog_tagoutcomerollup" in sql
    # Whole hours and the day come from the tag rollups: the raw join reads the edges only.
    day = TagSummaryRollup.objects.filter(grain="day", campaign="spring")
    assert day.exists() and TagOutcomeRollup.objects.filter(grain="hour").exists()


def test_rebuilding_the_tag_rollups_gives_the_same_rows(tagged):
    first = _snapshot()

    rollup_build(start=START, end=END, now=NOW)

    assert _snapshot() == first and first["TagSummaryRollup"]


def test_the_migration_fills_the_tag_rollups_of_a_database_with_rollups(tagged):
    built = _snapshot()
    # As before the migration: the other rollups exist, the tag tables are empty.
    for model in TAG_MODELS:
        model.objects.all().delete()
    migration = importlib.import_module("bidlog.migrations.0013_tag_rollups")

    migration.backfill(django_apps, None)

    assert _snapshot() == built
    assert built["TagSummaryRollup"] and built["TagOutcomeRollup"]
