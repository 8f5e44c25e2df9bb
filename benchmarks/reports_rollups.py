"""Rollup timings for benchmarks/reports.py: the full build, one new hour, a day, rows read."""

from __future__ import annotations

import time
from datetime import datetime

from django.db import connection

from benchmarks.timing import timed
from bidlog.reports.plan import plan_range
from bidlog.reports.rollups import (
    DAY,
    HOUR,
    rollup_build,
    rollup_build_day,
    rollup_build_hour,
    rollup_build_hours,
)
from bidlog.reports.summary_rollups import SUMMARY_MODELS
from bidlog.stale import floor_day

ROLLUP_TABLES = (
    "bidoutcomerollup",
    "bidperformancerollup",
    "bidstaterollup",
    "callrollup",
    "bidoutcometotalrollup",
    "buyersummaryrollup",
)


def build_benchmark(start: datetime, end: datetime, rows: int) -> tuple[int, float]:
    """Build every rollup of ``[start, end)`` at once; print the rows of each rollup table and
    return the hours built and the seconds it took."""
    started = time.perf_counter()
    hours = rollup_build(start=start, end=end)
    elapsed = time.perf_counter() - started
    print(f"rollup build: {hours} hours in {elapsed:.1f} s ({rows / elapsed:,.0f} rows/s)")
    with connection.cursor() as cursor:
        for table in ROLLUP_TABLES:
            cursor.execute(f"SELECT count(*) FROM bidlog_{table}")
            print(f"  bidlog_{table}: {cursor.fetchone()[0]:,} rows")
    return hours, elapsed


def incremental_benchmark(end: datetime) -> tuple[float, float, float, float]:
    """The work of one new hour as the beat task does it: the hour before ``end`` from raw
    rows, then the day before it from its 24 hour rows (not from raw rows); each timed over 5
    runs. Returns the hour's p50 and max, and the day's p50 and max, in ms."""
    hour = end - HOUR
    day = floor_day(hour) - DAY
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM bidlog_bidlog WHERE created_at >= %s AND created_at < %s",
            [hour, end],
        )
        rows = cursor.fetchone()[0]
    p50, top, _ = timed(lambda: rollup_build_hour(hour=hour), 5)
    if not rollup_build_day(day=day):
        # On reused data an earlier import left hours of that day stale: refresh them first.
        rollup_build_hours(start=day, end=day + DAY)
    day_p50, day_top, built = timed(lambda: rollup_build_day(day=day), 5)
    assert built, f"the day {day:%Y-%m-%d} was not built from its hours"
    print(
        f"incremental: one new hour ({rows:,} bid rows) built in {p50:.0f} ms p50, {top:.0f} ms "
        f"max; a day from its 24 hours in {day_p50:.0f} ms p50, {day_top:.0f} ms max"
    )
    return p50, top, day_p50, day_top


def rollup_rows_read(since: datetime, until: datetime) -> int:
    """Rollup rows a summary of every source over ``[since, until)`` reads: the narrow
    summary rollups of the buckets its plan covers (five-minute rows at the ends included)."""
    q = plan_range(since, until, fine=True).rollup_q()
    if q is None:
        return 0
    return sum(model._default_manager.filter(q).count() for model in SUMMARY_MODELS)
