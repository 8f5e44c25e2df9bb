"""Retention: delete raw bid logs older than ``BIDLOG_RETENTION_DAYS``, keeping the rollups.

Whole UTC hours are deleted, never part of one, so every hour either has all its raw rows or
none, and its rollup stays exact. Before deleting, any hour not yet rolled up (or stale) is
rolled up, so reports over old ranges keep their numbers. Calls are kept: duplicate windows
reach back up to 180 days, longer than the default retention.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from bidlog.models import BidLog, RollupBucket, RollupGrain
from bidlog.reports.rollups import (
    HOUR,
    floor_hour,
    hour_runs,
    retention_floor,
    rollup_build_day,
    rollup_build_hours,
)

logger = logging.getLogger(__name__)


def retention_prune(*, now: datetime | None = None, batch_size: int = 10_000) -> int:
    """Delete bid logs from hours older than the retention period, in batches; return the count.

    Each batch is its own short statement, so a large backlog never holds a long lock or one
    huge transaction; a run that stops half-way is finished by the next one.
    """
    now = now or timezone.now()
    cutoff = retention_floor(now=now)
    oldest = (
        BidLog.objects.filter(created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if oldest is None:
        return 0
    fresh = set(
        RollupBucket.objects.filter(
            grain=RollupGrain.HOUR, stale=False, bucket_start__gte=floor_hour(oldest)
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
    deleted = 0
    while True:
        ids = list(
            BidLog.objects.filter(created_at__lt=cutoff)
            .order_by()
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            break
        count, _ = BidLog.objects.filter(id__in=ids).delete()
        deleted += count
    logger.info("retention deleted %d bid logs older than %s", deleted, cutoff)
    return deleted
