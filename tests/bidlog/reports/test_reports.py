"""Reports from rollups equal the same reports from raw rows, figure by figure.

The data set spans 2025-11-01 to 2025-11-04 UTC, across the end of daylight-saving time in
New York (2025-11-02, a 25-hour day), with rows on both sides of every hour boundary. Ranges
start and end inside hours, so each report reads raw edges, hour rollups and day rollups.
"""

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from bidlog.choices import Outcome, Source
from bidlog.models import LATENCY_EDGES_MS, LATENCY_FIELDS, Call
from bidlog.reports.figures import (
    Tally,
    nearest_rank,
    percentile_from_histogram,
    percentiles_from_histogram,
    recommended_timeout_seconds,
)
from bidlog.reports.plan import bucket_starts, plan_range
from bidlog.reports.rollups import rollup_build
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.reports.states import report_states
from bidlog.stale import rollup_mark_stale
from tests.factories import BidLogFactory, BuyerFactory, CallFactory, bid_log_dataset
from tests.report_checks import assert_same_summary, within_error

START = datetime(2025, 11, 1, tzinfo=UTC)
END = datetime(2025, 11, 4, tzinfo=UTC)
NOW = datetime(2025, 11, 5, 12, tzinfo=UTC)
SINCE = datetime(2025, 11, 1, 3, 17, 12, 345678, tzinfo=UTC)
UNTIL = datetime(2025, 11, 3, 21, 42, 5, tzinfo=UTC)


@pytest.fixture
def dataset(db):
    buyers = [BuyerFactory(timeout_seconds=t) for t in (2, 5, 10)]
    bid_log_dataset(buyers=buyers, start=START, end=END, count=3000)
    rollup_build(start=START, end=END, now=NOW)
    return buyers


def test_plan_reads_raw_edges_hours_and_whole_days(dataset):
    plan = plan_range(SINCE, UNTIL)

    assert plan.raw == [
        (SINCE, datetime(2025, 11, 1, 4, tzinfo=UTC)),
        (datetime(2025, 11, 3, 21, tzinfo=UTC), UNTIL),
    ]
    assert plan.days == [(datetime(2025, 11, 2, tzinfo=UTC), datetime(2025, 11, 3, tzinfo=UTC))]
    assert plan.hours == [
        (datetime(2025, 11, 1, 4, tzinfo=UTC), datetime(2025, 11, 2, tzinfo=UTC)),
        (datetime(2025, 11, 3, tzinfo=UTC), datetime(2025, 11, 3, 21, tzinfo=UTC)),
    ]


@pytest.mark.parametrize("source", [None, Source.LIVE])
def test_summary_from_rollups_equals_summary_from_raw_rows(dataset, source):
    fast = report_summary(since=SINCE, until=UNTIL, source=source)
    exact = report_summary(since=SINCE, until=UNTIL, source=source, exact=True)

    assert exact["bids"] > 1000 and exact["revenue"] > 0
    assert_same_summary(fast, exact)


def test_summary_for_one_buyer_equals_raw_rows(dataset):
    buyer = dataset[1]

    fast = report_summary(since=SINCE, until=UNTIL, buyer_id=buyer.pk)
    exact = report_summary(since=SINCE, until=UNTIL, buyer_id=buyer.pk, exact=True)

    assert [row["buyer"] for row in fast["buyers"]] == [buyer.pk]
    assert_same_summary(fast, exact)


def test_summary_figures_match_a_hand_count(db):
    buyer = BuyerFactory(timeout_seconds=3)
    at = datetime(2025, 11, 1, 10, 30, tzinfo=UTC)
    BidLogFactory(buyer=buyer, created_at=at, duration_ms=100)
    BidLogFactory(buyer=buyer, created_at=at, duration_ms=300)
    BidLogFactory(
        buyer=buyer,
        created_at=at,
        outcome=Outcome.TIMEOUT,
        code=None,
        http_status=None,
        bid_amount=None,
        duration_ms=3000,
    )
    BidLogFactory(
        buyer=buyer,
        created_at=at,
        outcome=Outcome.SKIPPED_CAP,
        code=None,
        http_status=None,
        bid_amount=None,
        duration_ms=0,
    )
    CallFactory(created_at=at, winner=buyer, routed=True, bid_amount=Decimal("30.00"))
    CallFactory(created_at=at, winner=buyer, routed=True, bid_amount=Decimal("12.50"))
    CallFactory(created_at=at, routed=False)

    summary = report_summary(since=at - timedelta(hours=1), until=at + timedelta(hours=1))

    assert summary["attempts"] == 4
    assert summary["bids"] == 3
    assert summary["accepted"] == 2
    assert summary["acceptance_rate"] == pytest.approx(0.6667)
    assert summary["timeout_rate"] == pytest.approx(0.3333)
    assert summary["by_class"] == {"bid": 2, "no_bid": 0, "blocked": 1, "error": 1, "pending": 0}
    assert summary["by_code"] == [
        {"code": 1000, "title": "Bid accepted", "priority": "info", "count": 2}
    ]
    assert summary["latency_ms"]["avg"] == 1133
    assert summary["latency_ms"]["max"] == 3000
    assert summary["revenue"] == Decimal("42.50")
    assert (summary["calls"], summary["routed_calls"]) == (3, 2)
    assert summary["revenue_per_call"] == Decimal("14.17")
    (row,) = summary["buyers"]
    assert row["timeout_seconds"] == 3
    assert row["cut_off_share"] == pytest.approx(0.3333)
    assert row["recommended_timeout_seconds"] == 5  # p99 about 3000 ms x 1.5, rounded up


@pytest.mark.parametrize(
    ("bucket", "tz"),
    [
        ("hour", "UTC"),
        ("day", "UTC"),
        ("hour", "America/New_York"),
        ("day", "America/New_York"),
        ("hour", "Asia/Kolkata"),
        ("day", "Asia/Kolkata"),
    ],
)
def test_timeseries_from_rollups_equals_timeseries_from_raw_rows(dataset, bucket, tz):
    fast = report_timeseries(since=SINCE, until=UNTIL, bucket=bucket, tz=tz)
    exact = report_timeseries(since=SINCE, until=UNTIL, bucket=bucket, tz=tz, exact=True)

    assert [row["bucket_start"] for row in fast] == [row["bucket_start"] for row in exact]
    assert sum(row["bids"] for row in exact) > 1000
    for fast_row, exact_row in zip(fast, exact, strict=True):
        assert within_error(fast_row.pop("p95_ms"), exact_row.pop("p95_ms"))
        assert fast_row == exact_row


def test_timeseries_for_one_buyer_equals_raw_rows(dataset):
    buyer = dataset[0]
    kwargs = {"since": SINCE, "until": UNTIL, "bucket": "hour", "buyer_id": buyer.pk}

    fast = report_timeseries(**kwargs)
    exact = report_timeseries(**kwargs, exact=True)

    for fast_row, exact_row in zip(fast, exact, strict=True):
        assert within_error(fast_row.pop("p95_ms"), exact_row.pop("p95_ms"))
        assert fast_row == exact_row


def test_timeseries_totals_equal_the_summary(dataset):
    series = report_timeseries(since=SINCE, until=UNTIL, bucket="day", tz="America/New_York")
    summary = report_summary(since=SINCE, until=UNTIL)

    assert sum(row["bids"] for row in series) == summary["bids"]
    assert sum(row["accepted"] for row in series) == summary["accepted"]
    assert sum(row["revenue"] for row in series) == summary["revenue"]


def test_day_buckets_follow_local_days_across_daylight_saving():
    zone = ZoneInfo("America/New_York")
    since = datetime(2025, 11, 1, 12, tzinfo=UTC)
    until = datetime(2025, 11, 4, tzinfo=UTC)

    starts = bucket_starts(since, until, "day", zone)

    assert [start.astimezone(zone).isoformat() for start in starts] == [
        "2025-11-01T00:00:00-04:00",
        "2025-11-02T00:00:00-04:00",
        "2025-11-03T00:00:00-05:00",
    ]
    assert starts[2] - starts[1] == timedelta(hours=25)


def test_hour_buckets_keep_the_repeated_fall_back_hour_apart():
    zone = ZoneInfo("America/New_York")
    since = datetime(2025, 11, 2, 4, tzinfo=UTC)  # 00:00 EDT
    until = datetime(2025, 11, 2, 8, tzinfo=UTC)  # 03:00 EST

    starts = bucket_starts(since, until, "hour", zone)

    local = [start.astimezone(zone).isoformat() for start in starts]

    assert local == [
        "2025-11-02T00:00:00-04:00",
        "2025-11-02T01:00:00-04:00",
        "2025-11-02T01:00:00-05:00",
        "2025-11-02T02:00:00-05:00",
    ]


def test_spring_forward_day_has_23_hours_of_data(db):
    buyer = BuyerFactory()
    zone = ZoneInfo("America/New_York")
    for hour in range(0, 30):
        BidLogFactory(
            buyer=buyer, created_at=datetime(2025, 3, 9, 5, tzinfo=UTC) + timedelta(hours=hour)
        )
    rollup_build(
        start=datetime(2025, 3, 9, tzinfo=UTC),
        end=datetime(2025, 3, 11, tzinfo=UTC),
        now=datetime(2025, 3, 12, tzinfo=UTC),
    )

    series = report_timeseries(
        since=datetime(2025, 3, 9, 5, tzinfo=UTC),
        until=datetime(2025, 3, 10, 11, tzinfo=UTC),
        bucket="day",
        tz="America/New_York",
    )

    assert [row["bucket_start"].isoformat() for row in series] == [
        "2025-03-09T00:00:00-05:00",
        "2025-03-10T00:00:00-04:00",
    ]
    assert [row["bids"] for row in series] == [23, 7]
    assert series[0]["bucket_start"].tzinfo == zone


def test_stale_hours_are_read_from_raw_rows(dataset):
    buyer = dataset[0]
    late = datetime(2025, 11, 2, 13, 5, tzinfo=UTC)
    BidLogFactory(buyer=buyer, created_at=late, duration_ms=50)
    rollup_mark_stale(moments=[late])

    fast = report_summary(since=SINCE, until=UNTIL)
    exact = report_summary(since=SINCE, until=UNTIL, exact=True)

    assert (datetime(2025, 11, 2, 13, tzinfo=UTC), datetime(2025, 11, 2, 14, tzinfo=UTC)) in (
        plan_range(SINCE, UNTIL).raw
    )
    assert_same_summary(fast, exact)


def test_states_from_rollups_equal_states_from_raw_rows(dataset):
    fast = report_states(since=SINCE, until=UNTIL)
    exact = report_states(since=SINCE, until=UNTIL, exact=True)

    assert fast == exact
    assert {row["state_code"] for row in fast} == {"CO", "TX", "FL", "NY", "CA", ""}


def test_histogram_percentile_is_within_the_stated_error_for_every_value():
    for duration in range(0, 13_000, 7):
        counts = [0] * len(LATENCY_EDGES_MS)
        index = max(i for i, edge in enumerate(LATENCY_EDGES_MS) if edge <= duration)
        counts[index] = 1

        estimate = percentile_from_histogram(counts, 50, duration)

        assert within_error(estimate, duration), duration


def test_the_percentiles_of_a_histogram_in_one_pass_are_each_its_nearest_rank_bucket():
    # Against the definition: expand the histogram to one value per bid (its bucket's
    # middle, the last bucket the maximum) and take each nearest rank from the sorted list.
    generator = random.Random(21)
    for _ in range(300):
        counts = [generator.choice((0, 0, 1, 2, 7, 40)) for _ in LATENCY_EDGES_MS]
        maximum = generator.randrange(0, 20_000)
        middles = [
            min(round((low + high - 1) / 2), maximum)
            for low, high in itertools.pairwise(LATENCY_EDGES_MS)
        ] + [maximum]
        expanded = [middles[index] for index, count in enumerate(counts) for _ in range(count)]

        found = percentiles_from_histogram(counts, (50, 95, 99, 100), maximum)

        assert found == {p: nearest_rank(expanded, p) for p in (50, 95, 99, 100)}
        assert found[95] == percentile_from_histogram(counts, 95, maximum)
    assert percentiles_from_histogram([0] * len(LATENCY_EDGES_MS), (50, 95), 10) == {
        50: None,
        95: None,
    }


@pytest.mark.parametrize("exact", [False, True])
def test_a_series_bucket_shows_the_figures_of_the_full_report(exact):
    rng = random.Random(5)
    tally = Tally()
    for _ in range(3):
        tally.add_performance(
            {
                "bids": 40,
                "accepted": rng.randint(0, 40),
                "timeouts": rng.randint(0, 5),
                "duration_sum": 9000,
                "duration_max": 2900,
                **{name: rng.randint(0, 9) for name in LATENCY_FIELDS},
            }
        )
        tally.add_calls({"calls": 7, "routed_calls": 5, "revenue": Decimal("12.345")})
    if exact:
        tally.exact_percentiles = {50: 120, 95: 2400, 99: 2800}
    full = tally.figures()

    series = tally.series_figures()

    assert series.pop("p95_ms") == full["latency_ms"]["p95"] is not None
    assert series == {name: full[name] for name in series}
    assert set(series) == {
        "bids",
        "accepted",
        "acceptance_rate",
        "timeouts",
        "calls",
        "routed_calls",
        "revenue",
    }


def test_recommended_timeout_adds_headroom_and_never_exceeds_ten_seconds():
    assert recommended_timeout_seconds(None) is None
    assert recommended_timeout_seconds(200) == 1
    assert recommended_timeout_seconds(2100) == 4
    assert recommended_timeout_seconds(9000) == 10


def test_empty_range_gives_zeros_and_no_rates(db):
    summary = report_summary(since=START, until=END)

    assert summary["bids"] == 0
    assert summary["acceptance_rate"] is None
    assert summary["latency_ms"] == {
        "avg": None,
        "p50": None,
        "p95": None,
        "p99": None,
        "max": None,
    }
    assert summary["revenue"] == Decimal("0.00")
    assert summary["revenue_per_call"] is None
    assert Call.objects.count() == 0
