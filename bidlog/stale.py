"""Which rollup hours and days are stale: marked by whoever writes rows into the past.

The route's spool replay and the import write rows into hours that may already be rolled up;
they mark those hours here, below every capability, and the rollup builder
(:mod:`bidlog.reports.rollups`) rebuilds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from bidlog.models import RollupBucket, RollupGrain


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour holding ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    """The start of the UTC day holding ``moment``."""
    return floor_hour(moment).replace(hour=0)


def mark_stale(grain: str, starts: Iterable[datetime]) -> None:
    RollupBucket.objects.bulk_create(
        [RollupBucket(grain=grain, bucket_start=start, stale=True) for start in starts],
        update_conflicts=True,
        unique_fields=["grain", "bucket_start"],
        update_fields=["stale"],
    )


def rollup_mark_stale(*, moments: Iterable[datetime]) -> int:
    """Mark the hours (and days) holding ``moments`` stale, after rows were added to them.

    Reports read raw rows for stale hours until ``rollup_refresh`` rebuilds them, so an
    import is visible at once. Returns the number of distinct hours marked.
    """
    hours = {floor_hour(moment) for moment in moments}
    if hours:
        mark_stale(RollupGrain.HOUR, sorted(hours))
        mark_stale(RollupGrain.DAY, sorted({floor_day(hour) for hour in hours}))
    return len(hours)
