"""The five-minute summary rollups: built from the same raw rows as their hour, read for the
ends of a summary's range while their hour is fresh, kept for the recent days only."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import F, Sum

from bidlog.models import (
    BidLog,
    BidOutcomeTotalRollup,
    BuyerSummaryRollup,
    Call,
    RollupBucket,
    SummaryTotalRollup,
)
from bidlog.reports.fine_rollups import FINE, FINE_WINDOW, floor_fine
from bidlog.reports.measures import SENT
from bidlog.reports.plan import plan_range
from bidlog.reports.rollups import current_hour_settle, rollup_build_hours, rollup_refresh
from bidlog.reports.services import report_summary
from bidlog.reports.totals import report_totals_periods
from bidlog.stale import rollup_mark_stale
from callgrid_portal.bidapi.outcomes import outcome_class
from tests.factories import BidLogFactory, BuyerFactory, bid_log_dataset
from tests.report_checks import assert_same_summary

START = datetime(2025, 11, 1, tzinfo=UTC)
NOW = datetime(2025, 11, 2, 10, 40, tzinfo=UTC)
# 24 hours back, two minutes after a five-minute boundary.
SINCE = datetime(2025, 11, 1, 10, 42, tzinfo=UTC)
EDGE_HOUR = datetime(2025, 11, 1, 10, tzinfo=UTC)


@pytest.fixture
def dataset(db):
    buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 10)]
    bid_log_dataset(buyers=buyers, start=START, end=NOW, count=2500)
    rollup_refresh(now=NOW)
    return buyers


def _spans_length(spans: list[tuple[datetime, datetime]]) -> timedelta:
    return sum((end - start for start, end in spans), timedelta())


def test_a_summary_reads_the_ends_of_its_range_from_five_minute_rows(dataset):
    rolled = NOW - current_hour_settle()

    plan = plan_range(SINCE, NOW, fine=True)

    assert plan.raw == [(SINCE, datetime(2025, 11, 1, 10, 45, tzinfo=UTC)), (rolled, NOW)]
    assert plan.fine == [
        (datetime(2025, 11, 1, 10, 45, tzinfo=UTC), EDGE_HOUR + timedelta(hours=1))
    ]
    assert _spans_length(plan.raw) < 2 * FINE
    # A range ending inside a finished hour: its whole five minutes too.
    until = datetime(2025, 11, 2, 9, 33, tzinfo=UTC)
    plan = plan_range(SINCE, until, fine=True)
    assert plan.fine[-1] == (datetime(2025, 11, 2, 9, tzinfo=UTC), floor_fine(until))
    assert plan.raw[-1] == (floor_fine(until), until)
    for end in (NOW, until, SINCE + timedelta(minutes=37)):
        assert_same_summary(
            report_summary(since=SINCE, until=end),
            report_summary(since=SINCE, until=end, exact=True),
        )


def test_only_a_summary_of_every_buyer_and_source_reads_them(dataset):
    assert plan_range(SINCE, NOW).fine == []
    # Five-minute rows made wrong on purpose: only the summary of every buyer and source sees it.
    before = report_summary(since=SINCE, until=NOW)["bids"]
    BuyerSummaryRollup.objects.filter(grain="5min").update(bids=F("bids") + 1000)
    assert report_summary(since=SINCE, until=NOW)["bids"] > before
    buyer = dataset[0]
    for kwargs in ({"buyer_id": buyer.pk}, {"source": "live"}, {"campaign": "campaign-1"}):
        assert_same_summary(
            report_summary(since=SINCE, until=NOW, **kwargs),
            report_summary(since=SINCE, until=NOW, exact=True, **kwargs),
        )


def test_five_minute_rows_hold_what_the_raw_rows_of_their_five_minutes_hold(dataset):
    rows = BuyerSummaryRollup.objects.filter(grain="5min")
    assert rows.count() > 200
    sent: Counter = Counter()
    attempts: Counter = Counter()
    classes: Counter = Counter()
    for created_at, buyer_id, outcome, is_sent in _bids():
        attempts[floor_fine(created_at), buyer_id] += 1
        sent[floor_fine(created_at), buyer_id] += is_sent
        classes[floor_fine(created_at), buyer_id, outcome_class(outcome)] += 1
    revenue: Counter = Counter()
    for created_at, winner_id, amount in Call.objects.filter(
        routed=True, created_at__lt=NOW - current_hour_settle()
    ).values_list("created_at", "winner_id", "bid_amount"):
        revenue[floor_fine(created_at), winner_id] += amount
    for row in rows:
        key = (row.bucket_start, row.buyer_id)
        assert row.bids == sent[key], key
        for klass in ("bid", "no_bid", "blocked", "error", "pending"):
            assert getattr(row, f"class_{klass}") == classes[(*key, klass)], (key, klass)
        assert row.revenue == revenue[key], key
    assert sum(r.bids for r in rows) == sum(sent.values())
    totals = SummaryTotalRollup.objects.filter(grain="5min")
    assert totals.aggregate(n=Sum("bids"))["n"] == sum(sent.values())
    outcomes = BidOutcomeTotalRollup.objects.filter(grain="5min").aggregate(n=Sum("attempts"))
    assert outcomes["n"] == sum(attempts.values())


def _bids() -> list[tuple[datetime, int, str, bool]]:
    """Every bid the running hour's rollup holds: (moment, buyer, outcome, whether it was
    sent)."""
    until = NOW - current_hour_settle()
    sent = set(BidLog.objects.filter(SENT, created_at__lt=until).values_list("id", flat=True))
    return [
        (created_at, buyer_id, outcome, pk in sent)
        for pk, created_at, buyer_id, outcome in BidLog.objects.filter(
            created_at__lt=until
        ).values_list("id", "created_at", "buyer_id", "outcome")
    ]


def test_a_stale_hour_s_five_minute_rows_are_not_read(dataset):
    # A bid imported into the edge hour after it was rolled up: the hour is marked stale.
    late = BidLogFactory(buyer=dataset[0], created_at=SINCE + timedelta(minutes=10))
    rollup_mark_stale(moments=[late.created_at])

    plan = plan_range(SINCE, NOW, fine=True)

    assert plan.fine == [] and plan.raw[0] == (SINCE, EDGE_HOUR + timedelta(hours=1))
    fast = report_summary(since=SINCE, until=NOW)
    assert_same_summary(fast, report_summary(since=SINCE, until=NOW, exact=True))
    rollup_refresh(now=NOW)
    assert plan_range(SINCE, NOW, fine=True).fine
    assert report_summary(since=SINCE, until=NOW)["attempts"] == fast["attempts"]


def test_an_hour_built_before_the_five_minute_grain_is_read_raw(dataset):
    # As after the upgrade: the hours' rollups are fresh, their five-minute rows missing.
    RollupBucket.objects.filter(grain="5min").delete()
    BuyerSummaryRollup.objects.filter(grain="5min").delete()

    plan = plan_range(SINCE, NOW, fine=True)

    assert plan.fine == []
    assert_same_summary(
        report_summary(since=SINCE, until=NOW),
        report_summary(since=SINCE, until=NOW, exact=True),
    )


def test_the_running_hour_s_five_minutes_serve_only_up_to_its_rolled_up_moment(dataset):
    rolled = NOW - current_hour_settle()  # 10:39
    until = datetime(2025, 11, 2, 10, 37, tzinfo=UTC)  # before it: the hour rollup cannot serve

    plan = plan_range(SINCE, until, fine=True)

    assert plan.fine[-1] == (datetime(2025, 11, 2, 10, tzinfo=UTC), floor_fine(until))
    # A range past the rolled-up moment reads the hour rollup up to it, then raw.
    assert plan_range(SINCE, NOW, fine=True).raw[-1] == (rolled, NOW)
    assert_same_summary(
        report_summary(since=SINCE, until=until),
        report_summary(since=SINCE, until=until, exact=True),
    )


def test_five_minute_rows_are_kept_for_the_recent_days_only(dataset):
    later = NOW + FINE_WINDOW + timedelta(hours=2)
    old = BuyerSummaryRollup.objects.filter(grain="5min", bucket_start__lt=later - FINE_WINDOW)
    assert old.exists()

    rollup_build_hours(start=later - timedelta(hours=1), end=later, now=later)

    assert not old.exists()
    assert not RollupBucket.objects.filter(
        grain="5min", bucket_start__lt=later - FINE_WINDOW - timedelta(hours=1)
    ).exists()
    # The hours outside the window are read from their hour rows and raw rows, as before.
    assert plan_range(SINCE, NOW, fine=True).fine == []


def test_the_totals_of_several_periods_read_them_too(dataset):
    periods = [
        (SINCE, NOW),
        (SINCE - timedelta(hours=3, minutes=7), NOW - timedelta(hours=5, minutes=1)),
    ]
    assert all(plan_range(since, until, fine=True).fine for since, until in periods)

    for (since, until), totals in zip(periods, report_totals_periods(periods), strict=True):
        exact = report_summary(since=since, until=until, exact=True)
        for name in ("bids", "accepted", "timeouts", "calls", "routed_calls", "revenue"):
            assert totals[name] == exact[name], name
        assert totals["latency_ms"]["max"] == exact["latency_ms"]["max"]
        assert totals["latency_ms"]["avg"] == exact["latency_ms"]["avg"]
