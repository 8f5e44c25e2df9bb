"""Which rows a report reads: rollups for whole fresh buckets, raw rows for the rest.

Ranges are ``[since, until)``. Whole UTC hours and days are read from rollups when they are
built and fresh (``bidlog.reports.rollups``), and so is the hour still running up to the moment
it was rolled up to; the partial hours at the ends, the rest of the running hour and any hour
not rolled up yet are read from raw rows, so a report equals the same report over raw rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q

from bidlog.models import RollupBucket, RollupGrain, bid_calls_q
from bidlog.reports.fine_rollups import ceil_fine, floor_fine
from bidlog.reports.rollup_sql import EpochSeconds, adapt, from_epoch
from bidlog.reports.rollups import DAY, HOUR, ceil_hour, floor_hour

Span = tuple[datetime, datetime]
P = ParamSpec("P")
R = TypeVar("R")


def one_snapshot(report: Callable[P, R]) -> Callable[P, R]:
    """Run ``report``'s reads in one snapshot of the database, so the buckets its plan found
    and the rows it then reads agree.

    The beat task rebuilds the running hour every minute (``complete_until`` moves on): read
    in separate snapshots, a report that planned raw rows from the old moment could then read
    the new rollup rows too, and count a minute twice. On PostgreSQL the reads run in one
    ``REPEATABLE READ`` transaction (read only: it takes no lock). Inside a transaction
    already, and on SQLite (whose transactions here take the write lock, which would hold up
    every route), the reads run as they are.
    """

    @functools.wraps(report)
    def in_one_snapshot(*args: P.args, **kwargs: P.kwargs) -> R:
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return report(*args, **kwargs)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return report(*args, **kwargs)

    return in_one_snapshot


Tags = dict[str, str]


@dataclass
class Plan:
    """The range split into raw spans, fresh hour spans and fresh day spans; ``tags`` are the
    campaign and publisher a report is limited to."""

    raw: list[Span] = field(default_factory=list)
    hours: list[Span] = field(default_factory=list)
    days: list[Span] = field(default_factory=list)
    tags: Tags = field(default_factory=dict)
    # Five-minute spans, in the narrow summary rollups only (asked for with ``fine=True``).
    fine: list[Span] = field(default_factory=list)

    def raw_q(self, name: str = "created_at") -> Q | None:
        """Rows of the raw spans by their own ``name`` moment (calls; bids: :meth:`bids_q`)."""
        return spans_q(self.raw, name)

    def bids_q(self) -> Q | None:
        """Bid rows of the raw spans. Limited to tags, a bid is matched through its call, and
        the call's moment is bounded too (:func:`bidlog.models.bid_calls_q`)."""
        query = self.raw_q()
        if query is None or not self.tags:
            return query
        return query & bid_calls_q(self.raw)

    def rollup_spans(self) -> list[tuple[RollupGrain, datetime, datetime]]:
        """The rollup buckets the plan reads, as spans with their grain: hours, days, then
        five minutes."""
        return (
            [(RollupGrain.HOUR, start, end) for start, end in self.hours]
            + [(RollupGrain.DAY, start, end) for start, end in self.days]
            + [(RollupGrain.FIVE_MINUTES, start, end) for start, end in self.fine]
        )

    def rollup_q(self) -> Q | None:
        """Rollup rows of the plan's buckets (``None``: none to read)."""
        return _or(
            [
                Q(grain=grain, bucket_start__gte=start, bucket_start__lt=end)
                for grain, start, end in self.rollup_spans()
            ]
        )

    def rollup_where(self) -> tuple[str, list[Any]] | None:
        """:meth:`rollup_q` as an SQL condition on ``grain`` and ``bucket_start`` with its
        parameters, for the reads written in SQL (``None``: no bucket to read)."""
        spans = self.rollup_spans()
        if not spans:
            return None
        one = "(grain = %s AND bucket_start >= %s AND bucket_start < %s)"
        params: list[Any] = []
        for grain, start, end in spans:
            params.extend((grain, adapt(start), adapt(end)))
        return " OR ".join([one] * len(spans)), params


def _or(parts: list[Q]) -> Q | None:
    if not parts:
        return None
    query = parts[0]
    for part in parts[1:]:
        query |= part
    return query


def spans_q(spans: list[Span], name: str) -> Q | None:
    """Rows whose ``name`` falls in any of ``spans`` (``None``: no span at all)."""
    return _or([Q(**{f"{name}__gte": start, f"{name}__lt": end}) for start, end in spans])


def _add_span(spans: list[Span], start: datetime, end: datetime) -> None:
    # Merge touching spans so the query has as few ranges as possible.
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((start, end))


class _FreshBuckets:
    """The fresh rollup buckets around a range, as :func:`plan_range` reads them: of the
    ``grains`` the plan can use only (a series reads neither days nor five minutes, and a
    month has some 200 five-minute buckets)."""

    def __init__(self, start: datetime, end: datetime, grains: list[str]) -> None:
        self.fresh: set[tuple[str, datetime]] = set()
        self.partial: dict[datetime, datetime] = {}
        self.fine: dict[datetime, datetime | None] = {}
        buckets = RollupBucket.objects.filter(
            stale=False, bucket_start__gte=start, bucket_start__lte=end, grain__in=grains
        ).annotate(start_seconds=EpochSeconds("bucket_start"))
        for grain, seconds, complete_until in buckets.values_list(
            "grain", "start_seconds", "complete_until"
        ):
            bucket = from_epoch(seconds)
            if grain == RollupGrain.FIVE_MINUTES:
                self.fine[bucket] = complete_until
            elif complete_until is None:
                self.fresh.add((grain, bucket))
            elif grain == RollupGrain.HOUR:
                self.partial[bucket] = complete_until

    def fine_until(self, hour: datetime) -> datetime | None:
        """Up to when the five-minute rows of ``hour`` hold every raw row (``None``: they
        cannot serve): built with the hour's fresh rollup, up to where that reaches."""
        if hour not in self.fine:
            return None
        complete_until = self.fine[hour]
        if complete_until is None:
            return hour + HOUR if (RollupGrain.HOUR, hour) in self.fresh else None
        return complete_until if self.partial.get(hour) == complete_until else None


def _add_edge(plan: Plan, start: datetime, end: datetime, fine_until: datetime | None) -> None:
    """Plan ``[start, end)``, part of one hour: its whole five-minute buckets up to
    ``fine_until`` from the five-minute rollups, the rest raw."""
    first = ceil_fine(start)
    last = min(floor_fine(end), floor_fine(fine_until)) if fine_until else first
    if first >= last:
        _add_span(plan.raw, start, end)
        return
    if start < first:
        _add_span(plan.raw, start, first)
    _add_span(plan.fine, first, last)
    if last < end:
        _add_span(plan.raw, last, end)


def plan_range(
    since: datetime,
    until: datetime,
    *,
    use_days: bool = True,
    tags: Tags | None = None,
    fine: bool = False,
) -> Plan:
    """Split ``[since, until)`` into what rollups can answer and what raw rows must.

    Whole UTC days with a fresh day rollup come from the day grain (when ``use_days``), other
    whole hours with a fresh hour rollup from the hour grain, the hour ``until`` falls in from
    its rollup up to the moment it was rolled up to (``complete_until``, the hour still
    running). With ``fine`` (a reader of the narrow summary rollups only), the parts of hours
    at the ends come from the five-minute rollups where they are built
    (:mod:`bidlog.reports.fine_rollups`). Everything else from raw rows.
    """
    plan = Plan(tags=tags or {})
    first, last = ceil_hour(since), floor_hour(until)
    grains: list[str] = [
        RollupGrain.HOUR,
        *([RollupGrain.DAY] if use_days else []),
        *([RollupGrain.FIVE_MINUTES] if fine else []),
    ]
    buckets = _FreshBuckets(first - DAY, last, grains)

    def fine_until(hour: datetime) -> datetime | None:
        return buckets.fine_until(hour) if fine else None

    if first > last:  # inside one hour, after its start
        _add_edge(plan, since, until, fine_until(last))
        return plan
    fresh, partial = buckets.fresh, buckets.partial
    if since < first:
        _add_edge(plan, since, first, fine_until(first - HOUR))
    hour = first
    while hour < last:
        day_end = hour + DAY
        if use_days and hour.hour == 0 and day_end <= last and (RollupGrain.DAY, hour) in fresh:
            _add_span(plan.days, hour, day_end)
            hour = day_end
            continue
        target = plan.hours if (RollupGrain.HOUR, hour) in fresh else plan.raw
        _add_span(target, hour, hour + HOUR)
        hour += HOUR
    if last < until:
        # The hour still running, rolled up to some moment: its rows up to there, raw after.
        rolled = partial.get(last)
        if rolled is not None and last < rolled <= until:
            _add_span(plan.hours, last, rolled)
            last = rolled
        if last < until:
            _add_edge(plan, last, until, fine_until(floor_hour(last)))
    return plan


def reads_fine_rollups(buyer_id: int | None, source: str | None, tags: Tags) -> bool:
    """Whether a report may read the five-minute rollups: one of every buyer and source, not
    limited to a tag (they have no buyer's outcomes, no source and no tags)."""
    return buyer_id is None and not source and not tags


def report_tags(campaign: str | None, publisher: str | None) -> Tags:
    """The campaign and publisher tags a report is limited to (none given: every call)."""
    return {
        name: value for name, value in (("campaign", campaign), ("publisher", publisher)) if value
    }


def report_plan(
    since: datetime,
    until: datetime,
    *,
    exact: bool,
    tags: Tags,
    tag_rollups: bool = False,
    fine: bool = False,
) -> Plan:
    """The rows a report of ``[since, until)`` reads: raw rows alone when it must be exact, or
    is limited to tags and its figures are not in the tag rollups (``tag_rollups``: they are,
    see :mod:`bidlog.reports.tag_rollups`), else :func:`plan_range` (``fine``: the report
    reads only the narrow summary rollups, which have five-minute rows)."""
    if exact or (tags and not tag_rollups):
        return Plan(raw=[(since, until)], tags=tags)
    return plan_range(since, until, tags=tags, fine=fine)


def _filters(buyer_field: str, buyer_id: int | None, source: str | None) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if buyer_id is not None:
        filters[buyer_field] = buyer_id
    if source:
        filters["source"] = source
    return filters


def bid_filters(
    buyer_id: int | None, source: str | None, tags: Tags | None = None
) -> dict[str, Any]:
    """The bid-log (and bid rollup) filters of a report's ``buyer``, ``source`` and tags.

    A bid carries its call's tags: on raw rows a tag is its call's (a join); the tag rollups
    (:mod:`bidlog.reports.tag_rollups`) are filtered with ``tags`` themselves.
    """
    filters = _filters("buyer_id", buyer_id, source)
    filters.update({f"call__{name}": value for name, value in (tags or {}).items()})
    return filters


def call_filters(
    buyer_id: int | None, source: str | None, tags: Tags | None = None
) -> dict[str, Any]:
    """The call (and call rollup) filters of a report's ``buyer`` (the winner), ``source`` and
    tags."""
    return {**_filters("winner_id", buyer_id, source), **(tags or {})}


def bucket_starts(since: datetime, until: datetime, bucket: str, zone: ZoneInfo) -> list[datetime]:
    """UTC starts of the ``hour`` or ``day`` buckets in ``zone`` that overlap ``[since, until)``.

    Days are local calendar days, so a daylight-saving day lasts 23 or 25 hours. Hours are
    absolute hours starting on local hour boundaries, so the repeated hour of a fall-back day
    is two buckets.
    """
    starts: list[datetime] = []
    local = since.astimezone(zone)
    if bucket == "hour":
        current = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        while current < until:
            starts.append(current)
            current += HOUR
        return starts
    day: date = local.date()
    while True:
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        if start >= until:
            return starts
        starts.append(start)
        day += timedelta(days=1)
