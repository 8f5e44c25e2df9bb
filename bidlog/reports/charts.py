"""What the charts of the pages draw, read like the reports (rollups for whole fresh hours,
raw rows for the rest): codes over time, a buyer's latency histogram, and every buyer's bids
per hour for the buyers list's sparklines.

Belongs with the reports (``bidlog/reports/``); each function costs a fixed number of queries
whatever the number of buyers or buckets.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncHour, TruncMinute
from django.utils.safestring import SafeString

from bidlog.models import (
    LATENCY_EDGES_MS,
    LATENCY_FIELDS,
    BidLog,
    BidOutcomeRollup,
    BidOutcomeTotalRollup,
    BidPerformanceRollup,
    BuyerSummaryRollup,
    RollupGrain,
)
from bidlog.reports.figures import Tally
from bidlog.reports.measures import SENT
from bidlog.reports.plan import (
    Plan,
    Tags,
    bid_filters,
    bucket_starts,
    one_snapshot,
    plan_range,
    report_tags,
    spans_q,
)
from bidlog.reports.rollups import HOUR, floor_hour
from bidlog.reports.services import raw_performance_rows
from bidlog.reports.tag_rollups import tag_code_rows
from callgrid_portal import charts
from callgrid_portal.bidapi import codes as code_catalog
from callgrid_portal.bidapi.outcomes import LOCAL_OUTCOMES

# The series of a code chart for bids that got no CallGrid code (timeouts, transport errors).
NO_CODE = 0


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _code_rows(
    rollup_q: Q, sent: Q, buyer_id: int | None, source: str | None, tags: Tags
) -> QuerySet:
    """Attempts per bucket and code (``n``) in the rollup buckets of ``rollup_q``: over all
    buyers from the narrow outcome totals (or the tag rollups), one buyer's from its rows."""
    if tags:
        return tag_code_rows(rollup_q, tags, source, sent)
    model = BidOutcomeRollup if buyer_id is not None else BidOutcomeTotalRollup
    rows = model.objects.filter(rollup_q, sent, **bid_filters(buyer_id, source))
    return rows.values("bucket_start", "code").annotate(n=Sum("attempts")).order_by()


@one_snapshot
def report_codes_over_time(
    *,
    since: datetime,
    until: datetime,
    bucket: str = "hour",
    tz: str = "UTC",
    buyer_id: int | None = None,
    source: str | None = None,
    campaign: str | None = None,
    publisher: str | None = None,
) -> dict[str, Any]:
    """Bids sent per CallGrid code per ``hour`` or ``day`` bucket in zone ``tz``.

    Returns ``starts`` (the buckets' local starts, as :func:`report_timeseries` has them) and
    ``codes``: ``{code: [count per bucket]}``, most frequent code first; code ``0`` counts the
    bids that got no code (a timeout, a transport error). Local skips are not bids.
    """
    zone = ZoneInfo(tz)
    starts = bucket_starts(since, until, bucket, zone)
    aligned = all(start.minute == 0 and start.second == 0 for start in starts[1:])
    tags = report_tags(campaign, publisher)
    # The tag rollups have codes over all buyers only: one buyer's tagged chart reads raw rows.
    # Day buckets that are UTC days read day rollups: a 30-day chart then sums 30 rows per
    # code, not 720 (the overview's slowest read over 30 days on 5M bids).
    rollups = aligned and not (tags and buyer_id is not None)
    utc_days = bucket == "day" and all(_as_utc(start).hour == 0 for start in starts[1:])
    if rollups:
        plan = plan_range(since, until, use_days=utc_days, tags=tags)
    else:
        plan = Plan(raw=[(since, until)], tags=tags)
    counts: dict[int, list[int]] = defaultdict(lambda: [0] * len(starts))

    def add(moment: datetime, code: int | None, number: int) -> None:
        index = bisect.bisect_right(starts, _as_utc(moment)) - 1
        counts[code or NO_CODE][index] += number

    filters = bid_filters(buyer_id, source, tags)
    not_local = ~Q(outcome__in=LOCAL_OUTCOMES)
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        for row in _code_rows(rollup_q, not_local, buyer_id, source, tags):
            add(row["bucket_start"], row["code"], row["n"])
    raw = plan.bids_q()
    if raw is not None:
        trunc = (TruncHour if aligned else TruncMinute)("created_at", tzinfo=UTC)
        for raw_row in (
            BidLog.objects.filter(raw, SENT, **filters)
            .annotate(slot=trunc)
            .values("slot", "code")
            .annotate(n=Count("id"))
            .order_by()
        ):
            add(raw_row["slot"], raw_row["code"], raw_row["n"])
    ordered = sorted(counts.items(), key=lambda item: (-sum(item[1]), item[0]))
    return {"starts": [start.astimezone(zone) for start in starts], "codes": dict(ordered)}


@one_snapshot
def buyer_latency_histogram(*, buyer_id: int, since: datetime, until: datetime) -> list[int]:
    """Bids of one buyer per latency bucket (``LATENCY_EDGES_MS``) in ``[since, until)``."""
    plan = plan_range(since, until)
    tally = Tally()
    rollups = plan.rollup_q()
    if rollups is not None:
        sums: dict[str, Any] = {name: Sum(name) for name in LATENCY_FIELDS}
        for field in ("bids", "accepted", "timeouts", "duration_sum"):
            sums[field] = Sum(field)
        row = BidPerformanceRollup.objects.filter(rollups, buyer_id=buyer_id).aggregate(
            duration_max=Max("duration_max"), **sums
        )
        tally.add_performance(row)
    raw = plan.bids_q()
    if raw is not None:
        sent = BidLog.objects.filter(raw, SENT, buyer_id=buyer_id)
        for row in raw_performance_rows(sent, "buyer_id"):
            tally.add_performance(row)
    return tally.histogram


@one_snapshot
def buyers_hourly_bids(
    *, buyer_ids: Iterable[int], until: datetime, hours: int = 24
) -> dict[int, list[int]]:
    """Bids sent per buyer per UTC hour over the ``hours`` hours up to ``until`` (the last
    one partial): one rollup query (the buyers' summary rollup rows) and one raw query for
    every buyer of a page together."""
    wanted = list(buyer_ids)
    end = floor_hour(until) + HOUR
    starts = [end - HOUR * (hours - index) for index in range(hours)]
    series = {buyer: [0] * hours for buyer in wanted}
    if not wanted:
        return series
    plan = plan_range(starts[0], min(end, until), use_days=False)
    covered = spans_q(plan.hours, "bucket_start")
    if covered is not None:
        # One row per buyer, its hours summed side by side (a filtered SUM each): the rows of
        # 200 buyers' 24 hours would each bring a moment to convert back in Python.
        by_hour = {
            f"hour_{index}": Sum("bids", filter=Q(bucket_start=start))
            for index, start in enumerate(starts)
        }
        rows: QuerySet = (
            BuyerSummaryRollup.objects.filter(covered, grain=RollupGrain.HOUR, buyer_id__in=wanted)
            .values("buyer_id")
            .annotate(**by_hour)
            .order_by()
        )
        for row in rows:
            counts = series[row["buyer_id"]]
            for index, name in enumerate(by_hour):
                counts[index] += row[name] or 0
    raw = plan.bids_q()
    if raw is not None:
        for raw_row in (
            BidLog.objects.filter(raw, SENT, buyer_id__in=wanted)
            .annotate(slot=TruncHour("created_at", tzinfo=UTC))
            .values("buyer_id", "slot")
            .annotate(n=Count("id"))
            .order_by()
        ):
            index = bisect.bisect_right(starts, _as_utc(raw_row["slot"])) - 1
            series[raw_row["buyer_id"]][index] += raw_row["n"]
    return series


# --- The charts themselves, as the pages show them ----------------------------------------------


def bucket_label(start: datetime, bucket: str) -> str:
    """A bucket's start as an axis label: ``12-03 14:00`` for hours, ``2026-12-03`` for days."""
    return start.strftime("%m-%d %H:%M" if bucket == "hour" else "%Y-%m-%d")


def code_name(code: int) -> str:
    """``1000 Accepted``; ``no code`` for bids that got none."""
    if code == NO_CODE:
        return "no code"
    entry = code_catalog.get(code)
    return f"{code} {entry.title}" if entry else str(code)


def volume_chart(series: list[dict[str, Any]], *, bucket: str, tz: str) -> SafeString:
    """Bids per bucket with the acceptance rate, from :func:`report_timeseries` rows."""
    return charts.combo_chart(
        title=f"Bids and acceptance per {bucket} ({tz})",
        labels=[bucket_label(row["bucket_start"], bucket) for row in series],
        bars=[row["bids"] for row in series],
        line=[row["acceptance_rate"] for row in series],
        x_unit=f"{bucket} ({tz})",
    )


def codes_chart(over_time: dict[str, Any], *, bucket: str, tz: str) -> SafeString:
    """Codes stacked per bucket, from :func:`report_codes_over_time`."""
    return charts.stacked_bars(
        title=f"CallGrid codes per {bucket} ({tz})",
        labels=[bucket_label(start, bucket) for start in over_time["starts"]],
        series=[(code_name(code), counts) for code, counts in over_time["codes"].items()],
        x_unit=f"{bucket} ({tz})",
    )


def latency_chart(histogram: list[int], *, timeout_seconds: int, title: str) -> SafeString:
    """A buyer's response times against its timeout."""
    return charts.histogram(
        title=title,
        edges=LATENCY_EDGES_MS,
        counts=histogram,
        marker=timeout_seconds * 1000,
        marker_label=f"timeout {timeout_seconds} s",
    )


__all__ = [
    "NO_CODE",
    "bucket_label",
    "buyer_latency_histogram",
    "buyers_hourly_bids",
    "code_name",
    "codes_chart",
    "latency_chart",
    "report_codes_over_time",
    "volume_chart",
]
