"""Rollups are idempotent, built incrementally and cover what the raw rows hold."""

import importlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.models import Sum
from django.forms.models import model_to_dict

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
from bidlog.reports.fine_rollups import FINE_MODELS
from bidlog.reports.plan import Plan
from bidlog.reports.rollup_sql import EpochSeconds, from_epoch
from bidlog.reports.rollups import (
    SENT,
    rollup_build,
    rollup_build_day,
    rollup_refresh,
)
from bidlog.reports.summary_rollups import (
    SUMMARY_MODELS,
    buyer_summary_rows,
    summary_sums,
    summary_total_rows,
)
from tests.factories import BidLogFactory, BuyerFactory, bid_log_dataset

START = datetime(2025, 11, 1, tzinfo=UTC)
END = datetime(2025, 11, 2, 6, tzinfo=UTC)
NOW = datetime(2025, 11, 3, tzinfo=UTC)
MODELS = (
    BidOutcomeRollup,
    BidPerformanceRollup,
    BidStateRollup,
    BidStateTotalRollup,
    CallRollup,
    CallTotalRollup,
    SummaryTotalRollup,
    *SUMMARY_MODELS,
)


def _snapshot() -> dict:
    return {
        model.__name__: sorted(
            tuple(sorted((k, str(v)) for k, v in model_to_dict(row, exclude=["id"]).items()))
            for row in model.objects.all()
        )
        for model in MODELS
    }


@pytest.fixture
def dataset(db):
    buyers = [BuyerFactory() for _ in range(2)]
    bid_log_dataset(buyers=buyers, start=START, end=END, count=800)
    return buyers


@pytest.mark.django_db
def test_bucket_starts_read_as_seconds_are_the_moments_stored():
    # Reports read bucket starts as seconds since 1970 (a C loader, not Django's Python one
    # for timestamptz); on either database they must be the very moments stored.
    starts = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 0, tzinfo=UTC),  # a leap day
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # New York's spring-forward hour, in UTC
        datetime(2026, 12, 5, 21, 55, tzinfo=UTC),  # a five-minute bucket
    ]
    for grain, start in zip(("day", "hour", "hour", "5min"), starts, strict=True):
        RollupBucket.objects.create(grain=grain, bucket_start=start)

    read = RollupBucket.objects.annotate(seconds=EpochSeconds("bucket_start")).order_by(
        "bucket_start"
    )

    assert [row.seconds for row in read] == [int(start.timestamp()) for start in starts]
    assert [from_epoch(row.seconds) for row in read] == [row.bucket_start for row in read]
    assert all(from_epoch(row.seconds).tzinfo is UTC for row in read)


def test_rebuilding_gives_the_same_rows(dataset):
    rollup_build(start=START, end=END, now=NOW)
    first = _snapshot()

    rollup_build(start=START, end=END, now=NOW)

    assert _snapshot() == first
    assert first["BidOutcomeRollup"]


def test_hour_rollups_add_up_to_the_raw_rows(dataset):
    rollup_build(start=START, end=END, now=NOW)

    hours = BidOutcomeRollup.objects.filter(grain="hour")
    assert hours.aggregate(n=Sum("attempts"))["n"] == BidLog.objects.count()
    per_buyer = BidPerformanceRollup.objects.filter(grain="hour", buyer__isnull=False)
    everyone = BidPerformanceRollup.objects.filter(grain="hour", buyer__isnull=True)
    sent = BidLog.objects.filter(SENT).count()
    assert per_buyer.aggregate(n=Sum("bids"))["n"] == sent
    assert everyone.aggregate(n=Sum("bids"))["n"] == sent


def test_a_day_is_the_sum_of_its_hours(dataset):
    rollup_build(start=START, end=END, now=NOW)

    day = BidPerformanceRollup.objects.filter(grain="day", bucket_start=START)
    hours = BidPerformanceRollup.objects.filter(
        grain="hour", buyer__isnull=False, bucket_start__lt=START + timedelta(days=1)
    )
    assert day.aggregate(n=Sum("h20"))["n"] == hours.aggregate(n=Sum("h20"))["n"]
    assert day.aggregate(n=Sum("bids"))["n"] == hours.aggregate(n=Sum("bids"))["n"] > 0


def test_an_unfinished_day_is_not_built(dataset):
    rollup_build(start=START, end=END, now=NOW)

    assert not rollup_build_day(day=END, now=NOW)
    day = RollupBucket.objects.get(grain="day", bucket_start=END - timedelta(hours=6))
    assert day.stale and day.built_at is None


def test_the_current_hour_is_never_built(db):
    buyer = BuyerFactory()
    now = datetime(2025, 11, 1, 10, 20, tzinfo=UTC)
    BidLogFactory(buyer=buyer, created_at=now - timedelta(minutes=5))

    built = rollup_build(start=now - timedelta(hours=2), end=now + timedelta(hours=2), now=now)

    assert built == 2
    assert not RollupBucket.objects.filter(bucket_start=datetime(2025, 11, 1, 10, tzinfo=UTC))


def test_refresh_catches_up_then_rebuilds_only_recent_and_stale_hours(dataset):
    assert rollup_refresh(now=NOW) == 48  # every hour from the first row up to now

    assert rollup_refresh(now=NOW) == 2
    assert RollupBucket.objects.filter(grain="day", stale=False).count() == 2


def test_a_day_is_built_from_its_hour_rows_not_from_raw_rows(dataset):
    rollup_build(start=START, end=END, now=NOW)
    built = _snapshot()
    day_end = START + timedelta(days=1)
    # The raw rows of the day are gone (as after retention); the day is marked to rebuild.
    BidLog.objects.filter(created_at__lt=day_end).delete()
    Call.objects.filter(created_at__lt=day_end).delete()
    RollupBucket.objects.filter(grain="day", bucket_start=START).update(stale=True)

    assert rollup_build_day(day=START, now=NOW)

    assert _snapshot() == built
    day = {
        (row.buyer_id, row.source, row.outcome, row.code): row.attempts
        for row in BidOutcomeRollup.objects.filter(grain="day", bucket_start=START)
    }
    hours: dict[tuple, int] = {}
    for row in BidOutcomeRollup.objects.filter(grain="hour", bucket_start__lt=day_end):
        key = (row.buyer_id, row.source, row.outcome, row.code)
        hours[key] = hours.get(key, 0) + row.attempts
    assert day == hours and sum(day.values()) > 100


def test_the_migration_fills_the_summary_rollups_of_a_database_with_rollups(dataset):
    rollup_build(start=START, end=END, now=NOW)
    built = _snapshot()
    # As before the migration: the wide rollups exist, the summary tables are empty, and
    # there is no five-minute grain (a later migration's; the builder writes it from then on).
    for model in SUMMARY_MODELS:
        model.objects.all().delete()
    for model in FINE_MODELS:
        model.objects.filter(grain="5min").delete()
    built = {
        name: [row for row in rows if ("grain", "5min") not in row] for name, rows in built.items()
    }
    migration = importlib.import_module("bidlog.migrations.0009_rollup_summary")

    migration.backfill(django_apps, None)

    assert _snapshot() == built
    assert built["BuyerSummaryRollup"] and built["BidOutcomeTotalRollup"]


@pytest.mark.parametrize(
    ("total", "per_buyer", "keys", "measures"),
    [
        (BidStateTotalRollup, BidStateRollup, ("source", "state_code"), ("attempts", "bids")),
        (CallTotalRollup, CallRollup, ("source",), ("calls", "routed_calls", "revenue")),
    ],
)  # fmt: skip
def test_the_totals_are_the_per_buyer_rows_summed_over_the_buyers(
    dataset, total, per_buyer, keys, measures
):
    rollup_build(start=START, end=END, now=NOW)

    for grain in ("hour", "day"):
        summed: dict[tuple, list] = {}
        for row in per_buyer.objects.filter(grain=grain):
            key = (row.bucket_start, *(getattr(row, name) for name in keys))
            sums = summed.setdefault(key, [0] * len(measures))
            for i, name in enumerate(measures):
                sums[i] += getattr(row, name)
        totals = {
            (row.bucket_start, *(getattr(row, name) for name in keys)): [
                getattr(row, name) for name in measures
            ]
            for row in total.objects.filter(grain=grain)
        }
        assert totals == summed and totals


@pytest.mark.parametrize(
    ("module", "total"),
    [
        ("0015_state_total_rollup", BidStateTotalRollup),
        ("0016_call_total_rollup", CallTotalRollup),
        ("0017_summary_total_rollup", SummaryTotalRollup),
    ],
)
def test_each_migration_fills_its_totals_in_a_database_with_rollups(dataset, module, total):
    rollup_build(start=START, end=END, now=NOW)
    built = _snapshot()
    # As before the migration: the per-buyer rows exist, their totals do not.
    total.objects.all().delete()
    migration = importlib.import_module(f"bidlog.migrations.{module}")

    # The backfill reads only the schema editor's connection.
    migration.backfill(django_apps, SimpleNamespace(connection=connection))

    assert _snapshot() == built
    assert built[total.__name__]


def test_the_summary_totals_are_the_buyer_summaries_summed(dataset):
    rollup_build(start=START, end=END, now=NOW)
    for grain in ("hour", "day"):
        for total in SummaryTotalRollup.objects.filter(grain=grain):
            rows = BuyerSummaryRollup.objects.filter(grain=grain, bucket_start=total.bucket_start)
            assert total.bids == sum(row.bids for row in rows)
            assert total.revenue == sum(row.revenue for row in rows)
            assert total.h20 == sum(row.h20 for row in rows)
            assert total.duration_max == max(row.duration_max for row in rows)
    assert SummaryTotalRollup.objects.filter(grain="day").count() == 1  # the whole day
    assert SummaryTotalRollup.objects.filter(grain="hour").count() == 30


@pytest.mark.parametrize("one_buyer", [False, True])
def test_the_buyer_summary_read_equals_the_orm_sums(dataset, one_buyer):
    # The summary's read of BuyerSummaryRollup is written in SQL: every measure must equal
    # the ORM's sums, with revenue exact to the cent and a duration sum past 32 bits.
    rollup_build(start=START, end=END, now=NOW)
    row = BuyerSummaryRollup.objects.get(
        grain="hour", buyer=dataset[0], bucket_start=START + timedelta(hours=25)
    )
    row.duration_sum, row.revenue = 5_000_000_000, Decimal("12345678.91")
    row.save()
    plan = Plan(
        hours=[(START + timedelta(hours=3), START + timedelta(hours=29))],
        days=[(START, START + timedelta(days=1))],
    )
    buyer = dataset[0].pk if one_buyer else None
    where = plan.rollup_where()
    assert where is not None

    read = {found["buyer_id"]: found for found in buyer_summary_rows(where, buyer)}

    expected = BuyerSummaryRollup.objects.filter(plan.rollup_q())
    if one_buyer:
        expected = expected.filter(buyer_id=buyer)
    expected = {
        sums["buyer_id"]: sums
        for sums in expected.values("buyer_id").annotate(**summary_sums()).order_by()
    }
    assert read == expected
    assert len(read) == (1 if one_buyer else 3)  # two buyers and the calls no buyer won
    assert all(
        type(value) is int
        for found in read.values()
        for value in found.values()
        if not isinstance(value, Decimal) and value is not None
    )
    assert read[dataset[0].pk]["duration_sum"] > 2**32


def test_the_summary_total_read_equals_the_orm_sums_of_each_period(dataset):
    # The totals' read of SummaryTotalRollup is written in SQL, one statement for all the
    # periods: each period's sums equal the ORM's, and a period without rows sums to none.
    rollup_build(start=START, end=END, now=NOW)
    plans = [
        Plan(hours=[(START + timedelta(hours=2), START + timedelta(hours=9))]),
        Plan(),  # nothing rolled up to read
        Plan(
            hours=[(START + timedelta(hours=24), START + timedelta(hours=30))],
            days=[(START, START + timedelta(days=1))],
        ),
        Plan(hours=[(NOW, NOW + timedelta(hours=3))]),  # no rows there
    ]

    read = summary_total_rows([plan.rollup_where() for plan in plans])

    expected = []
    for index, plan in enumerate(plans):
        if plan.rollup_q() is not None:
            sums = SummaryTotalRollup.objects.filter(plan.rollup_q()).aggregate(**summary_sums())
            expected.append({"period": index, **sums})
    assert sorted(read, key=lambda row: row["period"]) == expected
    assert [row["period"] for row in expected] == [0, 2, 3]
    assert expected[1]["bids"] > expected[0]["bids"] > 0
    assert expected[2]["bids"] is None and expected[2]["revenue"] is None
