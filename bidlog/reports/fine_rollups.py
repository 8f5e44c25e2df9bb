"""Five-minute summary rollups of the recent hours: the ends of a summary's range.

A summary from ``now - 24 h`` begins inside an hour, and that hour's part of the range is not
in the hour rollups: read raw, half an hour of bids took more time than the other 23 hours
together. So for the hours of the last ``FINE_WINDOW`` the hour builder also writes the
narrow summary rollups (``BidOutcomeTotalRollup``, ``BuyerSummaryRollup``,
``SummaryTotalRollup``) per five minutes, grouped from the same raw rows in the same
transaction, and a summary of every buyer and source reads them for the ends of its range
(:func:`bidlog.reports.plan.plan_range`): what is left to read raw is under five minutes at
each end.

Only those three tables: a five-minute row of the wide rollups (per buyer, source, outcome and
code) holds about one raw row, the narrow ones about ten. A ``RollupBucket`` of this grain,
one per hour, written with its hour's, records that the hour's five-minute rows exist and
belong to that build; its hour's bucket says whether they are fresh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from bidlog.models import (
    BidLog,
    BidOutcomeTotalRollup,
    BuyerSummaryRollup,
    Call,
    RollupBucket,
    RollupGrain,
    SummaryTotalRollup,
)
from bidlog.reports.measures import SENT, performance_aggregates
from bidlog.reports.rollup_sql import insert_select
from bidlog.reports.summary_rollups import (
    buyer_summary_insert,
    class_counts,
    summary_totals_build,
)
from bidlog.stale import floor_hour

FINE = timedelta(minutes=5)
# How far back the five-minute rows are kept: a week and a day, so a summary of the last 24
# hours, 7 days and the periods the overview compares them with all find them.
FINE_WINDOW = timedelta(days=8)
FINE_MODELS = (BidOutcomeTotalRollup, BuyerSummaryRollup, SummaryTotalRollup)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def floor_fine(moment: datetime) -> datetime:
    """The start of the five-minute bucket holding ``moment``."""
    return moment - (moment - _EPOCH) % FINE


def ceil_fine(moment: datetime) -> datetime:
    """The first five-minute boundary at or after ``moment``."""
    floor = floor_fine(moment)
    return floor if floor == moment else floor + FINE


def fine_floor(now: datetime) -> datetime:
    """The oldest hour whose five-minute rows are built and kept."""
    return floor_hour(now - FINE_WINDOW)


class FiveMinutes(models.Func):
    """The start of the five-minute bucket of a moment, in SQL (UTC)."""

    output_field = models.DateTimeField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="date_bin('5 minutes', %(expressions)s, TIMESTAMPTZ '2000-01-01 00:00Z')",
            **extra,
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # SQLite keeps a moment as UTC text, 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
        return self.as_sql(
            compiler,
            connection,
            template=(
                "strftime('%%Y-%%m-%%d %%H:', %(expressions)s) || "
                "printf('%%02d:00', CAST(strftime('%%M', %(expressions)s) AS INTEGER) / 5 * 5)"
            ),
            **extra,
        )


def fine_rollups_build(
    *, start: datetime, end: datetime, raw_end: datetime, now: datetime
) -> list[datetime]:
    """Replace the five-minute rows of the hours ``[start, end)`` with those of the raw rows
    created in ``[start, raw_end)``; only hours from :func:`fine_floor` on are built, and
    older rows are dropped. Returns the hours built (their buckets are written by the caller,
    with the hours')."""
    floor = fine_floor(now)
    _delete(Q(bucket_start__lt=floor))
    RollupBucket.objects.filter(grain=RollupGrain.FIVE_MINUTES, bucket_start__lt=floor).delete()
    start = max(start, floor)
    if start >= end:
        return []
    grain = RollupGrain.FIVE_MINUTES
    _delete(Q(bucket_start__gte=start, bucket_start__lt=end))
    bids = _bucketed(BidLog.objects.filter(created_at__gte=start, created_at__lt=raw_end))
    insert_select(
        BidOutcomeTotalRollup,
        {"grain": grain},
        bids.annotate(code_value=Coalesce("code", Value(0)))
        .values("bucket_start", "source", "outcome", "code_value")
        .annotate(attempts=Count("id")),
        rename={"code_value": "code"},
    )
    calls = _bucketed(Call.objects.filter(created_at__gte=start, created_at__lt=raw_end))
    buyer_summary_insert(
        grain,
        # Counted by class here: a row per bucket and buyer, not per outcome too.
        outcomes=_from(bids.values("bucket_start", "buyer_id").annotate(**class_counts())),
        classed=True,
        performance=_from(
            bids.filter(SENT)
            .values("bucket_start", "buyer_id")
            .annotate(**performance_aggregates())
        ),
        calls=_from(
            calls.values("bucket_start", "winner_id").annotate(
                calls=Count("id"),
                routed_calls=Count("id", filter=Q(routed=True)),
                revenue=Coalesce(Sum("bid_amount", filter=Q(routed=True)), Value(Decimal("0"))),
            )
        ),
    )
    summary_totals_build(grain=grain, start=start, end=end)
    hours = []
    while start < end:
        hours.append(start)
        start += timedelta(hours=1)
    return hours


def _bucketed(rows: QuerySet) -> QuerySet:
    return rows.order_by().annotate(bucket_start=FiveMinutes("created_at"))


def _from(rows: QuerySet) -> tuple[str, list[Any]]:
    """A grouped queryset as an SQL ``FROM`` source with its parameters."""
    sql, params = rows.query.sql_with_params()
    return f"({sql}) AS grouped", list(params)


def _delete(where: Q) -> None:
    for model in FINE_MODELS:
        model._default_manager.filter(where, grain=RollupGrain.FIVE_MINUTES).delete()
