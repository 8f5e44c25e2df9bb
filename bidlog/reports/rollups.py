"""Rollups: hour and day aggregates of the bid log that reports read instead of raw rows.

Grains (chosen so that no report reads more than ~100k rollup rows, see the README):

- ``BidOutcomeRollup``: bucket x buyer x source x outcome x code, for the outcome and code
  breakdowns;
- ``BidPerformanceRollup``: bucket x buyer x source with bids, acceptances, timeouts and the
  latency histogram, plus all-buyers rows on the hour grain for the portal-wide time series;
- ``BidStateRollup``: bucket x buyer x source x state, for the state table of one buyer, and
  ``BidStateTotalRollup`` (the same without the buyer) for that of every buyer;
- ``CallRollup``: bucket x winning buyer x source, for calls and revenue, and
  ``CallTotalRollup`` (the same without the winner) for the series of every buyer;
- and, derived from those of the same bucket, the narrow tables a summary of every source
  reads (:mod:`bidlog.reports.summary_rollups`), which the recent hours also have per five
  minutes (:mod:`bidlog.reports.fine_rollups`);
- ``CallTagRollup``: bucket x source x campaign x publisher, for calls and revenue per tag;
- the tag rollups a report limited to a campaign or publisher reads
  (:mod:`bidlog.reports.tag_rollups`).

An hour is built from raw rows in one transaction (delete its rows, ``INSERT ... SELECT`` the
new ones), so rebuilding it gives the same rows. A UTC day is the sum of its 24 hour rows, so
it never needs raw rows and survives retention. ``RollupBucket`` records what is built and
fresh; reports read raw rows for anything else.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncHour
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import (
    WHOLE_BUCKET,
    BidLog,
    BidOutcomeRollup,
    BidPerformanceRollup,
    BidStateRollup,
    Call,
    CallRollup,
    CallTagRollup,
    RollupBucket,
    RollupGrain,
)
from bidlog.reports.fine_rollups import fine_rollups_build
from bidlog.reports.measures import SENT, performance_aggregates, performance_rollup_sums
from bidlog.reports.rollup_sql import insert_select
from bidlog.reports.summary_rollups import summary_rollups_build, total_rollups_build
from bidlog.reports.tag_rollups import TAG_MODELS, tag_rollups_build_day, tag_rollups_build_hours
from bidlog.stale import floor_day, floor_hour, mark_stale

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ROLLUP_MODELS = (
    BidOutcomeRollup,
    BidPerformanceRollup,
    BidStateRollup,
    CallRollup,
    CallTagRollup,
    *TAG_MODELS,
)


def ceil_hour(moment: datetime) -> datetime:
    """The first UTC hour boundary at or after ``moment``."""
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def retention_floor(*, now: datetime | None = None) -> datetime:
    """The oldest hour whose raw rows retention keeps whole; older hours must not be rebuilt.

    Retention deletes whole hours only (see ``bidlog.ingest.retention``), so every hour from here on
    still has all its raw rows and every hour before it has none.
    """
    now = now or timezone.now()
    return floor_hour(now - timedelta(days=settings.BIDLOG_RETENTION_DAYS))


def _lock(grain: str, bucket_start: datetime) -> None:
    """Serialize rebuilds of one bucket, so two workers never interleave delete and insert.

    PostgreSQL takes a transaction-scoped advisory lock; SQLite already lets one writer in at a
    time (the settings open IMMEDIATE transactions).
    """
    if connection.vendor == "postgresql":
        key = int(bucket_start.timestamp()) // 60 * 2 + (grain == RollupGrain.DAY)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [4242, key % 2**31])


def _mark_built(grain: str, bucket_start: datetime, now: datetime) -> None:
    RollupBucket.objects.update_or_create(
        grain=grain, bucket_start=bucket_start, defaults={"built_at": now, "stale": False}
    )


def rollup_build_hour(
    *, hour: datetime, now: datetime | None = None, before_pruning: bool = False
) -> None:
    """Rebuild every rollup row of one UTC hour from its raw rows; its day becomes stale."""
    hour = floor_hour(hour)
    rollup_build_hours(start=hour, end=hour + HOUR, now=now, before_pruning=before_pruning)


def _hours_from_raw(start: datetime, end: datetime) -> None:
    """Insert the hour rows of the four rollups of ``[start, end)``, grouped from raw rows."""
    fixed = {"grain": RollupGrain.HOUR}
    hour = TruncHour("created_at", tzinfo=UTC)
    bids = (
        BidLog.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .annotate(bucket_start=hour)
    )
    insert_select(
        BidOutcomeRollup,
        fixed,
        bids.annotate(code_value=Coalesce("code", Value(0)))
        .values("bucket_start", "buyer_id", "source", "outcome", "code_value")
        .annotate(attempts=Count("id")),
        rename={"code_value": "code"},
    )
    sent = bids.filter(SENT)
    perf = performance_aggregates()
    insert_select(
        BidPerformanceRollup,
        fixed,
        sent.values("bucket_start", "buyer_id", "source").annotate(**perf),
    )
    insert_select(
        BidPerformanceRollup,
        {**fixed, "buyer": None},
        sent.values("bucket_start", "source").annotate(**perf),
    )
    insert_select(
        BidStateRollup,
        fixed,
        bids.values("bucket_start", "buyer_id", "source", "state_code").annotate(
            attempts=Count("id"),
            bids=Count("id", filter=SENT),
            accepted=Count("id", filter=Q(outcome=Outcome.ACCEPTED)),
        ),
    )
    calls = (
        Call.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .annotate(bucket_start=hour)
    )
    insert_select(
        CallRollup,
        fixed,
        calls.values("bucket_start", "winner_id", "source").annotate(
            calls=Count("id"),
            routed_calls=Count("id", filter=Q(routed=True)),
            revenue=Coalesce(Sum("bid_amount", filter=Q(routed=True)), Value(Decimal("0"))),
        ),
    )
    _tags_from_raw(calls, fixed)


def _tags_from_raw(calls: QuerySet, fixed: dict) -> None:
    """Calls, routed calls and revenue per campaign and publisher of the hours ``calls`` hold."""
    insert_select(
        CallTagRollup,
        fixed,
        calls.values("bucket_start", "source", "campaign", "publisher").annotate(
            calls=Count("id"),
            routed_calls=Count("id", filter=Q(routed=True)),
            revenue=Coalesce(Sum("bid_amount", filter=Q(routed=True)), Value(Decimal("0"))),
        ),
    )


@transaction.atomic
def rollup_build_hours(
    *,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    before_pruning: bool = False,
) -> int:
    """Rebuild the rollups of every UTC hour in ``[start, end)`` in one pass; return the count.

    Their days become stale. One grouped query per table covers the whole run of hours
    (grouping by the truncated hour), so a month of backfill reads each raw row once rather
    than one index range per hour. Refuses hours older than the retention floor, whose raw
    rows are gone (rebuilding would replace good aggregates with empty ones); retention
    passes ``before_pruning`` to roll up old hours whose rows it is about to delete.
    """
    now = now or timezone.now()
    start, end = floor_hour(start), ceil_hour(end)
    if start >= end:
        return 0
    if start < retention_floor(now=now) and not before_pruning:
        raise ValueError(f"hour {start:%Y-%m-%d %H:00} is older than retention; not rebuilt")
    fine = _rebuild_hours(start, end, raw_end=end, now=now)
    hours = []
    current = start
    while current < end:
        hours.append(current)
        current += HOUR
    _mark_hours_built(RollupGrain.HOUR, hours, now=now, complete_until=None)
    _mark_hours_built(RollupGrain.FIVE_MINUTES, fine, now=now, complete_until=None)
    mark_stale(RollupGrain.DAY, sorted({floor_day(h) for h in hours}))
    return len(hours)


def current_hour_settle() -> timedelta:
    """How far behind ``now`` the current hour is rolled up: a route writes its call and bids
    when it ends, at most ``ROUTING_DEADLINE_SECONDS`` after their ``created_at``, so every row
    created before ``now - settle`` is written by then (twice the deadline, at least a minute)."""
    return max(timedelta(minutes=1), timedelta(seconds=2 * settings.ROUTING_DEADLINE_SECONDS))


@transaction.atomic
def rollup_build_current_hour(*, now: datetime | None = None) -> datetime | None:
    """Roll up the hour still running, up to ``now`` minus :func:`current_hour_settle`.

    Its bucket records that moment (``complete_until``): a report ending in this hour reads
    these rows for the hour so far and raw rows only after that moment, instead of up to an
    hour of raw rows. The hour is built whole once it has ended (:func:`rollup_refresh`).
    Returns the moment, or ``None`` when the hour is younger than the settle time.
    """
    now = now or timezone.now()
    hour = floor_hour(now)
    until = now - current_hour_settle()
    if until <= hour:
        return None
    fine = _rebuild_hours(hour, hour + HOUR, raw_end=until, now=now)
    _mark_hours_built(RollupGrain.HOUR, [hour], now=now, complete_until=until)
    _mark_hours_built(RollupGrain.FIVE_MINUTES, fine, now=now, complete_until=until)
    return until


def _rebuild_hours(
    start: datetime, end: datetime, *, raw_end: datetime, now: datetime
) -> list[datetime]:
    """Replace the rollup rows of the whole hours ``[start, end)`` with those of the raw rows
    created in ``[start, raw_end)`` (``raw_end`` is ``end``, or a moment in the last hour).
    Returns the hours whose five-minute rows were built too (the recent ones)."""
    _lock(RollupGrain.HOUR, datetime(2000, 1, 1, tzinfo=UTC))  # one hour builder at a time
    if connection.vendor == "postgresql":
        # Each grouping of an hour's rows is estimated dear enough for PostgreSQL to compile
        # it (JIT), which took about 100 ms of a 1 s build: more than it saved.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
    for model in ROLLUP_MODELS:
        model.objects.filter(
            grain=RollupGrain.HOUR, bucket_start__gte=start, bucket_start__lt=end
        ).delete()
    _hours_from_raw(start, raw_end)
    tag_rollups_build_hours(start, raw_end)
    summary_rollups_build(grain=RollupGrain.HOUR, start=start, end=end)
    total_rollups_build(grain=RollupGrain.HOUR, start=start, end=end)
    return fine_rollups_build(start=start, end=end, raw_end=raw_end, now=now)


def _mark_hours_built(
    grain: str, hours: list[datetime], *, now: datetime, complete_until: datetime | None
) -> None:
    """Record ``hours`` as built: their hour buckets, or (``FIVE_MINUTES``) that the hours'
    five-minute rows belong to the same build."""
    RollupBucket.objects.bulk_create(
        [
            RollupBucket(
                grain=grain,
                bucket_start=h,
                built_at=now,
                stale=False,
                complete_until=complete_until,
            )
            for h in hours
        ],
        update_conflicts=True,
        unique_fields=["grain", "bucket_start"],
        update_fields=["built_at", "stale", "complete_until"],
    )


def _day_from_hours(day: datetime, end: datetime) -> None:
    """Insert the day rows of the five rollups of the day ``[day, end)``, summed from its
    hour rows (the all-buyers performance rows exist only per hour)."""
    fixed = {"grain": RollupGrain.DAY, "bucket_start": day}

    def hours(
        model: type[
            BidOutcomeRollup | BidPerformanceRollup | BidStateRollup | CallRollup | CallTagRollup
        ],
    ) -> QuerySet:
        return model.objects.filter(
            grain=RollupGrain.HOUR, bucket_start__gte=day, bucket_start__lt=end
        ).order_by()

    insert_select(
        BidOutcomeRollup,
        fixed,
        hours(BidOutcomeRollup)
        .values("buyer_id", "source", "outcome", "code")
        .annotate(attempts=Sum("attempts")),
    )
    insert_select(
        BidPerformanceRollup,
        fixed,
        hours(BidPerformanceRollup)
        .filter(buyer__isnull=False)
        .values("buyer_id", "source")
        .annotate(**performance_rollup_sums()),
    )
    insert_select(
        BidStateRollup,
        fixed,
        hours(BidStateRollup)
        .values("buyer_id", "source", "state_code")
        .annotate(attempts=Sum("attempts"), bids=Sum("bids"), accepted=Sum("accepted")),
    )
    insert_select(
        CallRollup,
        fixed,
        hours(CallRollup)
        .values("winner_id", "source")
        .annotate(calls=Sum("calls"), routed_calls=Sum("routed_calls"), revenue=Sum("revenue")),
    )
    insert_select(
        CallTagRollup,
        fixed,
        hours(CallTagRollup)
        .values("source", "campaign", "publisher")
        .annotate(calls=Sum("calls"), routed_calls=Sum("routed_calls"), revenue=Sum("revenue")),
    )


@transaction.atomic
def rollup_build_day(*, day: datetime, now: datetime | None = None) -> bool:
    """Rebuild one UTC day as the sum of its hour rows; ``False`` when an hour is not ready.

    Every hour of the day must be built and fresh, except hours older than the retention
    floor (they can no longer change). The all-buyers performance rows exist only per hour.
    """
    now = now or timezone.now()
    day = floor_day(day)
    end = day + DAY
    if end > floor_hour(now):
        return False
    floor = retention_floor(now=now)
    fresh = set(
        RollupBucket.objects.filter(
            WHOLE_BUCKET, grain=RollupGrain.HOUR, bucket_start__gte=day, bucket_start__lt=end
        ).values_list("bucket_start", flat=True)
    )
    needed = {day + i * HOUR for i in range(24)}
    if any(hour not in fresh and hour >= floor for hour in needed):
        return False
    _lock(RollupGrain.DAY, day)
    for model in ROLLUP_MODELS:
        model.objects.filter(grain=RollupGrain.DAY, bucket_start=day).delete()
    _day_from_hours(day, end)
    tag_rollups_build_day(day, end)
    summary_rollups_build(grain=RollupGrain.DAY, start=day, end=end)
    total_rollups_build(grain=RollupGrain.DAY, start=day, end=end)
    _mark_built(RollupGrain.DAY, day, now)
    return True


def rollup_build(*, start: datetime, end: datetime, now: datetime | None = None) -> int:
    """Rebuild every whole UTC hour in ``[start, end)`` that has ended, then their days.

    Hours older than the retention floor are left alone. Returns the number of hours built.
    Safe to run any number of times: each hour and day is replaced, never added to.
    """
    now = now or timezone.now()
    last = floor_hour(now)  # the current hour is still filling up
    first = max(floor_hour(start), retention_floor(now=now))
    stop = min(ceil_hour(end), last)
    if first >= stop:
        return 0
    built = rollup_build_hours(start=first, end=stop, now=now)
    day = floor_day(first)
    while day < stop:
        rollup_build_day(day=day, now=now)
        day += DAY
    return built


def hour_runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours joined into ``[start, end)`` runs, each built in one pass."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR)
        else:
            runs.append((hour, hour + HOUR))
    return runs


def rollup_refresh(
    *, now: datetime | None = None, recent_hours: int = 2, max_hours: int = 500
) -> int:
    """Bring the rollups up to date: build missing and stale hours, then their days, then
    the hour still running (:func:`rollup_build_current_hour`).

    The last ``recent_hours`` finished hours are always rebuilt, because bids are written when
    their attempt ends (up to a deadline after ``created_at``) and test bids are filled in by
    a worker. At most ``max_hours`` hours per run keep one run short when catching up.
    Returns the number of hours built.
    """
    now = now or timezone.now()
    last = floor_hour(now)
    floor = retention_floor(now=now)
    oldest = BidLog.objects.order_by("created_at").values_list("created_at", flat=True).first()
    start = max(floor, floor_hour(oldest)) if oldest else last - recent_hours * HOUR
    fresh = set(
        RollupBucket.objects.filter(
            WHOLE_BUCKET, grain=RollupGrain.HOUR, bucket_start__gte=start
        ).values_list("bucket_start", flat=True)
    )
    todo: list[datetime] = []
    hour = start
    while hour < last:
        if hour not in fresh or hour >= last - recent_hours * HOUR:
            todo.append(hour)
        hour += HOUR
    # Newest first: the hours people look at most; a long catch-up continues next run.
    todo = sorted(sorted(todo, reverse=True)[:max_hours])
    for run_start, run_end in hour_runs(todo):
        rollup_build_hours(start=run_start, end=run_end, now=now)
    stale_days = RollupBucket.objects.filter(grain=RollupGrain.DAY, stale=True).values_list(
        "bucket_start", flat=True
    )
    for day in list(stale_days):
        rollup_build_day(day=day, now=now)
    rollup_build_current_hour(now=now)
    if todo:
        logger.info("rolled up %d hours (%s to %s)", len(todo), todo[-1], todo[0])
    return len(todo)
