"""The hour still running is rolled up as far as its rows are written, and reports ending in it
read those rows for the hour so far and raw rows only after that moment."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.test import override_settings

from bidlog.models import BidLog, BidPerformanceRollup, BuyerSummaryRollup, RollupBucket
from bidlog.reports import services
from bidlog.reports.measures import SENT
from bidlog.reports.plan import Plan, plan_range
from bidlog.reports.rollups import (
    HOUR,
    current_hour_settle,
    rollup_build_current_hour,
    rollup_build_day,
    rollup_refresh,
)
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.stale import rollup_mark_stale
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, bid_log_dataset
from tests.report_checks import assert_same_summary

START = datetime(2025, 11, 1, tzinfo=UTC)
# 40 minutes into the hour: with the one-minute settle, rolled up to 10:39.
NOW = datetime(2025, 11, 2, 10, 40, tzinfo=UTC)
HOUR_START = datetime(2025, 11, 2, 10, tzinfo=UTC)
SINCE = NOW - timedelta(hours=24)


@pytest.fixture
def dataset(db):
    buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 10)]
    # Rows up to the very moment of the report, so the running hour has rows on both sides
    # of the moment it is rolled up to.
    bid_log_dataset(buyers=buyers, start=START, end=NOW, count=1500)
    return buyers


def _covered(spans: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    return any(first <= start and end <= last for first, last in spans)


def test_the_settle_time_covers_a_route_s_deadline():
    with override_settings(ROUTING_DEADLINE_SECONDS=10.0):
        assert current_hour_settle() == timedelta(minutes=1)
    with override_settings(ROUTING_DEADLINE_SECONDS=45.0):
        assert current_hour_settle() == timedelta(seconds=90)


def test_refresh_rolls_up_the_running_hour_up_to_the_settle_time(dataset):
    rollup_refresh(now=NOW)

    rolled = NOW - current_hour_settle()
    bucket = RollupBucket.objects.get(grain="hour", bucket_start=HOUR_START)
    assert not bucket.stale and bucket.complete_until == rolled
    sent = BidLog.objects.filter(SENT, created_at__gte=HOUR_START, created_at__lt=rolled)
    later = BidLog.objects.filter(SENT, created_at__gte=rolled, created_at__lt=NOW)
    assert sent.exists() and later.exists()
    counted = BidPerformanceRollup.objects.filter(
        grain="hour", bucket_start=HOUR_START, buyer__isnull=False
    ).aggregate(n=Sum("bids"))["n"]
    assert counted == sent.count()
    assert BuyerSummaryRollup.objects.filter(grain="hour", bucket_start=HOUR_START).exists()


def test_a_report_ending_now_reads_the_running_hour_from_its_rollup_then_raw(dataset):
    rollup_refresh(now=NOW)
    rolled = NOW - current_hour_settle()

    plan = plan_range(SINCE, NOW)

    assert plan.hours[-1][1] == rolled
    assert plan.raw[-1] == (rolled, NOW)  # one minute of raw rows, not forty
    assert plan.raw[0] == (SINCE, datetime(2025, 11, 1, 11, tzinfo=UTC))
    assert_same_summary(
        report_summary(since=SINCE, until=NOW), report_summary(since=SINCE, until=NOW, exact=True)
    )
    fast = report_timeseries(since=SINCE, until=NOW, bucket="hour", tz="UTC")
    exact = report_timeseries(since=SINCE, until=NOW, bucket="hour", tz="UTC", exact=True)
    assert [row["bids"] for row in fast] == [row["bids"] for row in exact]
    assert fast[-1]["bucket_start"] == HOUR_START and fast[-1]["bids"] > 0


def test_a_report_ending_before_the_rolled_up_moment_reads_that_hour_raw(dataset):
    rollup_refresh(now=NOW)
    until = HOUR_START + timedelta(minutes=15)

    plan = plan_range(SINCE - timedelta(hours=1), until)

    assert plan.raw[-1] == (HOUR_START, until)
    assert_same_summary(
        report_summary(since=SINCE, until=until),
        report_summary(since=SINCE, until=until, exact=True),
    )


def test_a_running_hour_is_never_taken_for_a_whole_one(dataset):
    rollup_refresh(now=NOW)
    later = NOW + HOUR  # the hour has ended, and no refresh has run since

    plan = plan_range(SINCE, later)

    assert _covered(plan.raw, HOUR_START, HOUR_START + HOUR)
    assert not rollup_build_day(day=datetime(2025, 11, 2, tzinfo=UTC), now=later + 14 * HOUR)
    assert_same_summary(
        report_summary(since=SINCE, until=later),
        report_summary(since=SINCE, until=later, exact=True),
    )


def test_the_next_refresh_after_the_hour_builds_it_whole(dataset):
    rollup_refresh(now=NOW)

    rollup_refresh(now=NOW + HOUR)

    bucket = RollupBucket.objects.get(grain="hour", bucket_start=HOUR_START)
    assert bucket.complete_until is None and not bucket.stale
    running = RollupBucket.objects.get(grain="hour", bucket_start=HOUR_START + HOUR)
    assert running.complete_until == NOW + HOUR - current_hour_settle()


def test_rows_written_into_the_rolled_up_part_make_it_stale_and_read_raw(dataset):
    rollup_refresh(now=NOW)
    buyer = dataset[0]
    late = BidLogFactory(buyer=buyer, created_at=HOUR_START + timedelta(minutes=5))

    rollup_mark_stale(moments=[late.created_at])  # as the import and the spool replay do

    assert _covered(plan_range(SINCE, NOW).raw, HOUR_START, NOW)
    assert_same_summary(
        report_summary(since=SINCE, until=NOW), report_summary(since=SINCE, until=NOW, exact=True)
    )


def test_a_campaign_s_summary_reads_the_running_hour_s_tag_rollups_then_raw(db):
    buyer = BuyerFactory()
    minutes = (5, 30, 38, 39, 39.5)  # rolled up to 10:39: the last two are read raw
    for index, minute in enumerate(minutes):
        moment = HOUR_START + timedelta(minutes=minute)
        call = CallFactory(
            created_at=moment,
            campaign="spring" if index % 2 == 0 else "autumn",
            winner=buyer,
            routed=True,
            bid_amount=Decimal("20.00"),
        )
        BidLogFactory(buyer=buyer, call=call, created_at=moment + timedelta(milliseconds=300))
    rollup_refresh(now=NOW)

    plan = plan_range(HOUR_START, NOW, tags={"campaign": "spring"})

    assert plan.hours == [(HOUR_START, NOW - current_hour_settle())]
    fast = report_summary(since=HOUR_START, until=NOW, campaign="spring")
    exact = report_summary(since=HOUR_START, until=NOW, campaign="spring", exact=True)
    assert_same_summary(fast, exact)
    assert (fast["attempts"], fast["calls"], fast["revenue"]) == (3, 3, Decimal("60.00"))


def test_an_hour_younger_than_the_settle_time_is_not_rolled_up(db):
    BidLogFactory(buyer=BuyerFactory(), created_at=HOUR_START + timedelta(seconds=10))

    assert rollup_build_current_hour(now=HOUR_START + timedelta(seconds=30)) is None
    assert not RollupBucket.objects.filter(bucket_start=HOUR_START).exists()


# --- one snapshot per report (PostgreSQL) ---------------------------------------------------

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite's transactions here take the write lock; its reads are not wrapped",
)


def _rebuilt_meanwhile(monkeypatch: pytest.MonkeyPatch, later: datetime) -> list[datetime | None]:
    """Make the summary's plan step commit a rebuild of the running hour (up to ``later``)
    from another connection right after it has read the buckets, as the beat task may."""
    real = services.report_plan
    moments: list[datetime | None] = []

    def plan_then_rebuild(*args: Any, **kwargs: Any) -> Plan:
        plan = real(*args, **kwargs)

        def rebuild() -> None:
            try:
                moments.append(rollup_build_current_hour(now=later))
            finally:
                connections.close_all()

        worker = threading.Thread(target=rebuild)
        worker.start()
        worker.join()
        return plan

    monkeypatch.setattr(services, "report_plan", plan_then_rebuild)
    return moments


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_summary_reads_one_snapshot_while_the_running_hour_is_rebuilt(monkeypatch):
    buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 10)]
    bid_log_dataset(buyers=buyers, start=START, end=NOW, count=1500)
    rollup_refresh(now=NOW - timedelta(minutes=10))  # the running hour up to 10:29
    exact = report_summary(since=SINCE, until=NOW, exact=True)
    moments = _rebuilt_meanwhile(monkeypatch, NOW)

    fast = report_summary(since=SINCE, until=NOW)

    assert moments == [NOW - current_hour_settle()]  # the rebuild did commit, to 10:39
    assert_same_summary(fast, exact)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_without_one_snapshot_the_rebuild_would_count_minutes_twice(monkeypatch):
    # The same race with the reads outside any snapshot: what one_snapshot prevents.
    buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 10)]
    bid_log_dataset(buyers=buyers, start=START, end=NOW, count=1500)
    rollup_refresh(now=NOW - timedelta(minutes=10))
    exact = report_summary(since=SINCE, until=NOW, exact=True)
    _rebuilt_meanwhile(monkeypatch, NOW)

    fast = report_summary.__wrapped__(since=SINCE, until=NOW)  # type: ignore[attr-defined]

    assert fast["attempts"] > exact["attempts"]
