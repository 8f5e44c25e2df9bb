"""Retention: remove raw bid logs older than ``BIDLOG_RETENTION_DAYS``, keeping the rollups.

Whole UTC hours are removed, never part of one, so every hour either has all its raw rows or
none, and its rollup stays exact. Before removing, any hour not yet rolled up (or stale) is
rolled up, so reports over old ranges keep their numbers. On PostgreSQL the bid log is
partitioned by month: months wholly before the cutoff are detached and dropped (a catalog
change, milliseconds however many rows), and only the rows before the cutoff in the month at
the edge (and in the default partition) are deleted. SQLite deletes; the same function runs
on both. Calls are kept: duplicate windows reach back up to 180 days, longer than the default
retention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from bidlog.models import WHOLE_BUCKET, BidLog, RollupBucket, RollupGrain
from bidlog.partitions import partitions_drop_before
from bidlog.reports.rollups import (
    HOUR,
    floor_hour,
    hour_runs,
    retention_floor,
    rollup_build_day,
    rollup_build_hours,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionResult:
    """What one run removed: rows deleted one by one, and month partitions dropped whole."""

    deleted: int = 0
    dropped: list[str] = field(default_factory=list)


def _roll_up_before(cutoff: datetime, now: datetime) -> bool:
    """Roll up every hour before ``cutoff`` not rolled up yet; ``False`` when no row is old."""
    oldest = (
        BidLog.objects.filter(created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if oldest is None:
        return False
    fresh = set(
        RollupBucket.objects.filter(
            WHOLE_BUCKET, grain=RollupGrain.HOUR, bucket_start__gte=floor_hour(oldest)
        ).values_list("bucket_start", flat=True)
    )
    hour, todo = floor_hour(oldest), []
    while hour < cutoff:
        if hour not in fresh:
            todo.append(hour)
        hour += HOUR
    for start, end in hour_runs(todo):
        rollup_build_hours(start=start, end=end, now=now, before_pruning=True)
    for day in sorted({hour.replace(hour=0) for hour in todo}):
        rollup_build_day(day=day, now=now)
    return True


def retention_prune(*, now: datetime | None = None, batch_size: int = 10_000) -> RetentionResult:
    """Remove bid logs from hours older than the retention period: drop whole months, delete
    the rest in batches.

    Each batch is its own short statement, so a large backlog never holds a long lock or one
    huge transaction; a run that stops half-way is finished by the next one.
    """
    now = now or timezone.now()
    cutoff = retention_floor(now=now)
    if not _roll_up_before(cutoff, now):
        return RetentionResult()
    dropped = partitions_drop_before(table=BidLog._meta.db_table, cutoff=cutoff)
    old = BidLog.objects.filter(created_at__lt=cutoff)
    deleted = 0
    while True:
        ids = list(old.order_by().values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        # The time range lets PostgreSQL look in the edge partitions only.
        count, _ = old.filter(id__in=ids).delete()
        deleted += count
    logger.info(
        "retention deleted %d bid logs and dropped %s, older than %s",
        deleted,
        ", ".join(dropped) or "no partition",
        cutoff,
    )
    return RetentionResult(deleted=deleted, dropped=dropped)
