"""Reports over the bid log: summary, time series and state table, shared by API, pages and CSV.

Every figure is defined once, in :meth:`Tally.figures` (and in the README's "Reports" section):

- ``attempts``: bid-log rows in the range, local skips included;
- ``bids``: attempts that sent a request to CallGrid (not a skip, not a queued test bid, not a
  caller ID refused before sending);
- ``accepted``: bids with outcome ``accepted`` (code 1000, at or above min bid, with a
  destination); ``acceptance_rate`` = accepted / bids;
- ``by_outcome``, ``by_class``: attempts per outcome and per outcome class; ``by_code``:
  attempts per CallGrid code, with the catalog's title and priority;
- ``latency_ms``: over bids: ``avg`` (exact), ``max`` (exact), ``p50``/``p95``/``p99``
  (nearest rank; from the latency histogram within 5 ms or 5 %, whichever is larger);
- ``timeouts``, ``timeout_rate`` = bids that timed out / bids;
- ``calls``: routing decisions in the range (with a buyer: the calls routed to that buyer);
  ``routed_calls``: calls that went to a buyer; ``revenue``: sum of the winning bid amounts of
  routed calls; ``revenue_per_call`` = revenue / calls.

Ranges are ``[since, until)``. Whole UTC hours and days are read from rollups when they are
built and fresh (``bidlog.reports.rollups``); the partial hours at both ends, and any hour not
rolled
up yet, are read from raw rows, so a report equals the same report over raw rows (percentiles
within the stated error). ``exact=True`` reads only raw rows and computes exact percentiles:
the reference the tests and the benchmark compare against.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, models
from django.db.models import Aggregate, Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from bidlog.choices import OUTCOME_CLASS, Outcome, OutcomeClass
from bidlog.models import (
    LATENCY_EDGES_MS,
    LATENCY_FIELDS,
    BidLog,
    BidOutcomeRollup,
    BidPerformanceRollup,
    BidStateRollup,
    Call,
    CallRollup,
    RollupBucket,
    RollupGrain,
)
from bidlog.reports.rollups import (
    DAY,
    HOUR,
    SENT,
    call_aggregates,
    ceil_hour,
    floor_hour,
    performance_aggregates,
    performance_rollup_sums,
)
from buyers.models import Buyer
from callgrid_portal.bidapi import codes

PERCENTILES = (50, 95, 99)
# Stated error of a histogram percentile: within this many ms, or this share of the value.
LATENCY_ERROR_MS = 5
LATENCY_ERROR_SHARE = 0.05
MAX_TIMEOUT_SECONDS = 10
TIMEOUT_HEADROOM = 1.5  # recommended timeout: measured p99 x this, rounded up to seconds
CENT = Decimal("0.01")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile_from_histogram(counts: list[int], percent: int, maximum: int) -> int | None:
    """The nearest-rank ``percent`` percentile estimated from histogram ``counts``.

    The estimate is the middle of the bucket holding the rank, never above the exact
    ``maximum``; the open-ended last bucket answers the maximum.
    """
    total = sum(counts)
    if not total:
        return None
    rank = -(-percent * total // 100)  # ceil without float error
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            if index + 1 == len(LATENCY_EDGES_MS):
                return maximum
            middle = (LATENCY_EDGES_MS[index] + LATENCY_EDGES_MS[index + 1] - 1) / 2
            return min(round(middle), maximum)
    return maximum


def nearest_rank(sorted_values: list[int], percent: int) -> int | None:
    """The exact nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = -(-percent * len(sorted_values) // 100)
    return sorted_values[max(rank, 1) - 1]


def recommended_timeout_seconds(p99_ms: int | None) -> int | None:
    """A buyer timeout from its measured p99 with headroom, in whole seconds, 1 to 10.

    Buyers are configured in whole seconds and CallGrid allows at most 10 s, so the p99 times
    ``TIMEOUT_HEADROOM`` is rounded up and capped.
    """
    if p99_ms is None:
        return None
    return max(1, min(MAX_TIMEOUT_SECONDS, math.ceil(p99_ms * TIMEOUT_HEADROOM / 1000)))


def _code_info(code: int) -> tuple[str, str]:
    """Title and priority of a CallGrid code from the catalog; blanks for unknown codes."""
    entry = codes.get(code)
    if entry is None:
        return "", ""
    return entry.title, str(entry.priority)


@dataclass
class Tally:
    """Additive measures of a set of bid-log rows and calls; :meth:`figures` derives the rest."""

    attempts: int = 0
    bids: int = 0
    accepted: int = 0
    timeouts: int = 0
    duration_sum: int = 0
    duration_max: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * len(LATENCY_FIELDS))
    by_outcome: Counter = field(default_factory=Counter)
    by_code: Counter = field(default_factory=Counter)
    calls: int = 0
    routed_calls: int = 0
    revenue: Decimal = Decimal("0.00")
    exact_percentiles: dict[int, int | None] | None = None

    def add_outcome(self, outcome: str, code: int | None, attempts: int) -> None:
        self.attempts += attempts
        self.by_outcome[outcome] += attempts
        if code:
            self.by_code[code] += attempts

    def add_performance(self, row: Mapping[str, Any]) -> None:
        self.bids += row["bids"] or 0
        self.accepted += row["accepted"] or 0
        self.timeouts += row["timeouts"] or 0
        self.duration_sum += row["duration_sum"] or 0
        self.duration_max = max(self.duration_max, row["duration_max"] or 0)
        for index, name in enumerate(LATENCY_FIELDS):
            self.histogram[index] += row[name] or 0

    def add_calls(self, row: Mapping[str, Any]) -> None:
        self.calls += row["calls"] or 0
        self.routed_calls += row["routed_calls"] or 0
        self.revenue += row["revenue"] or Decimal("0")

    def percentile(self, percent: int) -> int | None:
        if self.exact_percentiles is not None:
            return self.exact_percentiles.get(percent)
        return percentile_from_histogram(self.histogram, percent, self.duration_max)

    def latency(self) -> dict[str, int | None]:
        return {
            "avg": round(self.duration_sum / self.bids) if self.bids else None,
            **{f"p{p}": self.percentile(p) for p in PERCENTILES},
            "max": self.duration_max if self.bids else None,
        }

    def figures(self) -> dict[str, Any]:
        """Every figure of a report, each defined here and only here."""
        by_class: Counter = Counter()
        for outcome, count in self.by_outcome.items():
            by_class[OUTCOME_CLASS.get(outcome, OutcomeClass.ERROR)] += count
        revenue = self.revenue.quantize(CENT)
        return {
            "attempts": self.attempts,
            "bids": self.bids,
            "accepted": self.accepted,
            "acceptance_rate": _rate(self.accepted, self.bids),
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_class": {klass: by_class.get(klass, 0) for klass in OutcomeClass.values},
            "by_code": [
                {"code": code, "title": title, "priority": priority, "count": count}
                for code, count in sorted(self.by_code.items())
                for title, priority in [_code_info(code)]
            ],
            "latency_ms": self.latency(),
            "timeouts": self.timeouts,
            "timeout_rate": _rate(self.timeouts, self.bids),
            "calls": self.calls,
            "routed_calls": self.routed_calls,
            "revenue": revenue,
            "revenue_per_call": (revenue / self.calls).quantize(CENT) if self.calls else None,
        }


# --- Which rows to read: rollups for whole fresh buckets, raw rows for the rest ----------------

Span = tuple[datetime, datetime]


@dataclass
class Plan:
    """The range split into raw spans, fresh hour spans and fresh day spans."""

    raw: list[Span] = field(default_factory=list)
    hours: list[Span] = field(default_factory=list)
    days: list[Span] = field(default_factory=list)

    def raw_q(self, name: str = "created_at") -> Q | None:
        return _spans_q(self.raw, name)

    def rollup_q(self) -> Q | None:
        parts = []
        hours = _spans_q(self.hours, "bucket_start")
        if hours is not None:
            parts.append(Q(grain=RollupGrain.HOUR) & hours)
        days = _spans_q(self.days, "bucket_start")
        if days is not None:
            parts.append(Q(grain=RollupGrain.DAY) & days)
        return _or(parts)


def _or(parts: list[Q]) -> Q | None:
    if not parts:
        return None
    query = parts[0]
    for part in parts[1:]:
        query |= part
    return query


def _spans_q(spans: list[Span], name: str) -> Q | None:
    return _or([Q(**{f"{name}__gte": start, f"{name}__lt": end}) for start, end in spans])


def _add_span(spans: list[Span], start: datetime, end: datetime) -> None:
    # Merge touching spans so the query has as few ranges as possible.
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], end)
    else:
        spans.append((start, end))


def plan_range(since: datetime, until: datetime, *, use_days: bool = True) -> Plan:
    """Split ``[since, until)`` into what rollups can answer and what raw rows must.

    Whole UTC days with a fresh day rollup come from the day grain (when ``use_days``), other
    whole hours with a fresh hour rollup from the hour grain, everything else from raw rows.
    """
    plan = Plan()
    first, last = ceil_hour(since), floor_hour(until)
    if first >= last:
        _add_span(plan.raw, since, until)
        return plan
    buckets = RollupBucket.objects.filter(
        stale=False, bucket_start__gte=first - DAY, bucket_start__lt=last
    ).values_list("grain", "bucket_start")
    fresh = {(grain, start) for grain, start in buckets}
    if since < first:
        _add_span(plan.raw, since, first)
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
        _add_span(plan.raw, last, until)
    return plan


# --- Exact percentiles over raw rows (the reference) ------------------------------------------


class _PercentilesDisc(Aggregate):
    """PostgreSQL's nearest-rank percentiles of an expression, as an array."""

    function = "PERCENTILE_DISC"
    template = "%(function)s(ARRAY[{}]::float8[]) WITHIN GROUP (ORDER BY %(expressions)s)".format(
        ", ".join(str(p / 100) for p in PERCENTILES)
    )
    output_field = models.Field()


def _exact_percentiles(
    sent: QuerySet[BidLog], key: str | None, key_expression: Any = None
) -> dict[Any, dict[int, int | None]]:
    """Exact percentiles of ``duration_ms`` per ``key`` (one group keyed ``None`` without)."""
    queryset = sent.order_by()
    if key_expression is not None:
        queryset = queryset.annotate(**{cast(str, key): key_expression})
    if connection.vendor == "postgresql":
        rows = (
            queryset.values(*([key] if key else [])).annotate(pcts=_PercentilesDisc("duration_ms"))
            if key
            else [queryset.aggregate(pcts=_PercentilesDisc("duration_ms"))]
        )
        return {
            (row[key] if key else None): dict(zip(PERCENTILES, row["pcts"] or [], strict=False))
            for row in rows
        }
    groups: dict[Any, list[int]] = defaultdict(list)
    fields = [key, "duration_ms"] if key else ["duration_ms"]
    for values in queryset.values_list(*fields):
        groups[values[0] if key else None].append(values[-1])
    result = {}
    for group, durations in groups.items():
        durations.sort()
        result[group] = {p: nearest_rank(durations, p) for p in PERCENTILES}
    return result


# --- Raw performance rows -----------------------------------------------------------------------


class _LatencyBucket(models.Func):
    """PostgreSQL's ``width_bucket`` over the histogram edges: bucket index + 1 of a latency."""

    template = "width_bucket(%(expressions)s, ARRAY[{}]::integer[])".format(
        ", ".join(str(edge) for edge in LATENCY_EDGES_MS)
    )
    output_field = models.IntegerField()


def raw_performance_rows(sent: QuerySet[BidLog], key: str) -> list[dict[str, Any]]:
    """Performance measures (as in ``BidPerformanceRollup``) of raw sent bids per ``key``.

    On PostgreSQL the histogram is one ``GROUP BY key, width_bucket(...)`` pivoted here, which
    is several times cheaper than one filtered ``COUNT`` per bucket (what SQLite gets).
    """
    if connection.vendor != "postgresql":
        return list(sent.values(key).annotate(**performance_aggregates()).order_by())
    measures = {
        name: aggregate
        for name, aggregate in performance_aggregates().items()
        if name not in LATENCY_FIELDS
    }
    rows = {row[key]: row for row in sent.values(key).annotate(**measures).order_by()}
    for row in rows.values():
        row.update(dict.fromkeys(LATENCY_FIELDS, 0))
    buckets = (
        sent.annotate(latency_bucket=_LatencyBucket("duration_ms"))
        .values(key, "latency_bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in buckets:
        rows[row[key]][LATENCY_FIELDS[row["latency_bucket"] - 1]] = row["n"]
    return list(rows.values())


# --- Summary ------------------------------------------------------------------------------------


Tags = dict[str, str]


def _tags(campaign: str | None, publisher: str | None) -> Tags:
    """The campaign and publisher tags a report is limited to (none given: every call)."""
    return {
        name: value for name, value in (("campaign", campaign), ("publisher", publisher)) if value
    }


def _bid_filters(
    buyer_id: int | None, source: str | None, tags: Tags | None = None
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if buyer_id is not None:
        filters["buyer_id"] = buyer_id
    if source:
        filters["source"] = source
    # A bid carries its call's tags; bid rollups have no tag dimension, so a tagged report
    # reads raw rows (see the plans below).
    filters.update({f"call__{name}": value for name, value in (tags or {}).items()})
    return filters


def _call_filters(
    buyer_id: int | None, source: str | None, tags: Tags | None = None
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if buyer_id is not None:
        filters["winner_id"] = buyer_id
    if source:
        filters["source"] = source
    filters.update(tags or {})
    return filters


def _outcome_rows(plan: Plan, filters: dict[str, Any]) -> Iterator[Mapping[str, Any]]:
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        yield from (
            BidOutcomeRollup.objects.filter(rollup_q, **filters)
            .values("buyer_id", "outcome", "code")
            .annotate(n=Sum("attempts"))
            .order_by()
        )
    raw_q = plan.raw_q()
    if raw_q is not None:
        yield from (
            BidLog.objects.filter(raw_q, **filters)
            .values("buyer_id", "outcome", "code")
            .annotate(n=Count("id"))
            .order_by()
        )


def _performance_rows(
    plan: Plan, filters: dict[str, Any], key: str = "buyer_id"
) -> Iterator[Mapping[str, Any]]:
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        yield from (
            BidPerformanceRollup.objects.filter(rollup_q, buyer__isnull=False, **filters)
            .values(key)
            .annotate(**performance_rollup_sums())
            .order_by()
        )
    raw_q = plan.raw_q()
    if raw_q is not None:
        yield from raw_performance_rows(BidLog.objects.filter(raw_q, SENT, **filters), key)


def _call_rows(plan: Plan, filters: dict[str, Any]) -> Iterator[Mapping[str, Any]]:
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        yield from (
            CallRollup.objects.filter(rollup_q, **filters)
            .values("winner_id")
            .annotate(calls=Sum("calls"), routed_calls=Sum("routed_calls"), revenue=Sum("revenue"))
            .order_by()
        )
    raw_q = plan.raw_q()
    if raw_q is not None:
        yield from (
            Call.objects.filter(raw_q, **filters)
            .values("winner_id")
            .annotate(**call_aggregates())
            .order_by()
        )


def _buyer_row(buyer: Mapping[str, Any], tally: Tally) -> dict[str, Any]:
    figures = tally.figures()
    p99 = figures["latency_ms"]["p99"]
    return {
        "buyer": buyer["id"],
        "name": buyer["name"],
        "grid_id": buyer["grid_id"],
        **{
            name: figures[name]
            for name in (
                "attempts",
                "bids",
                "accepted",
                "acceptance_rate",
                "by_class",
                "latency_ms",
                "timeouts",
                "timeout_rate",
                "routed_calls",
                "revenue",
            )
        },
        "timeout_seconds": buyer["timeout_seconds"],
        "recommended_timeout_seconds": recommended_timeout_seconds(p99),
        # Bids that ran into the configured timeout: the share the current timeout cuts off.
        "cut_off_share": figures["timeout_rate"],
    }


def report_summary(
    *,
    since: datetime,
    until: datetime,
    buyer_id: int | None = None,
    source: str | None = None,
    exact: bool = False,
    campaign: str | None = None,
    publisher: str | None = None,
) -> dict[str, Any]:
    """The summary of ``[since, until)``: totals, breakdowns and one row per buyer."""
    tags = _tags(campaign, publisher)
    plan = Plan(raw=[(since, until)]) if exact or tags else plan_range(since, until)
    bid_filters = _bid_filters(buyer_id, source, tags)
    total = Tally()
    per_buyer: dict[int, Tally] = defaultdict(Tally)
    for row in _outcome_rows(plan, bid_filters):
        total.add_outcome(row["outcome"], row["code"], row["n"])
        per_buyer[row["buyer_id"]].add_outcome(row["outcome"], row["code"], row["n"])
    for row in _performance_rows(plan, bid_filters):
        total.add_performance(row)
        per_buyer[row["buyer_id"]].add_performance(row)
    for row in _call_rows(plan, _call_filters(buyer_id, source, tags)):
        total.add_calls(row)
        if row["winner_id"] is not None:
            per_buyer[row["winner_id"]].add_calls(row)
    if exact:
        sent = BidLog.objects.filter(SENT, created_at__gte=since, created_at__lt=until)
        sent = sent.filter(**bid_filters)
        total.exact_percentiles = _exact_percentiles(sent, None).get(None, {})
        for buyer, pcts in _exact_percentiles(sent, "buyer_id").items():
            per_buyer[buyer].exact_percentiles = pcts
        for tally in per_buyer.values():
            if tally.exact_percentiles is None:
                tally.exact_percentiles = {}
    buyers = Buyer.objects.filter(id__in=list(per_buyer)).values(
        "id", "name", "grid_id", "timeout_seconds"
    )
    rows = [_buyer_row(buyer, per_buyer[buyer["id"]]) for buyer in buyers]
    rows.sort(key=lambda row: (-row["bids"], row["name"]))
    return {
        "since": since,
        "until": until,
        "buyer": buyer_id,
        "source": source or None,
        "campaign": campaign or None,
        "publisher": publisher or None,
        **total.figures(),
        "latency_error": {"ms": LATENCY_ERROR_MS, "share": LATENCY_ERROR_SHARE},
        "buyers": rows,
    }


def report_totals(
    *,
    since: datetime,
    until: datetime,
    buyer_id: int | None = None,
    source: str | None = None,
    campaign: str | None = None,
    publisher: str | None = None,
) -> dict[str, Any]:
    """The totals of :func:`report_summary` without the outcome breakdowns and buyer rows:
    bids, acceptance, latency, timeouts, calls and revenue, in two reads instead of three."""
    tags = _tags(campaign, publisher)
    plan = Plan(raw=[(since, until)]) if tags else plan_range(since, until)
    total = Tally()
    for row in _performance_rows(plan, _bid_filters(buyer_id, source, tags)):
        total.add_performance(row)
    for row in _call_rows(plan, _call_filters(buyer_id, source, tags)):
        total.add_calls(row)
    return total.figures()


# --- Time series --------------------------------------------------------------------------------


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


def _trunc_for_raw(aligned: bool) -> Any:
    # When every bucket edge is a UTC hour, raw rows group by UTC hour and are placed in their
    # bucket in Python; otherwise (zones at :30 or :45) by minute.
    return (TruncHour if aligned else TruncMinute)("created_at", tzinfo=UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def report_timeseries(
    *,
    since: datetime,
    until: datetime,
    bucket: str = "hour",
    tz: str | None = None,
    buyer_id: int | None = None,
    source: str | None = None,
    exact: bool = False,
    campaign: str | None = None,
    publisher: str | None = None,
) -> list[dict[str, Any]]:
    """Bids, acceptance, revenue and p95 latency per hour or day bucket in time zone ``tz``.

    ``bucket_start`` is the bucket's local start (the first bucket may begin before
    ``since``; only rows from ``since`` on count).
    """
    zone = ZoneInfo(tz or settings.TIME_ZONE)
    starts = bucket_starts(since, until, bucket, zone)
    aligned = all(start.minute == 0 and start.second == 0 for start in starts[1:])
    tallies = [Tally() for _ in starts]

    def tally_for(moment: datetime) -> Tally:
        return tallies[bisect.bisect_right(starts, _as_utc(moment)) - 1]

    tags = _tags(campaign, publisher)
    if exact or not aligned or tags:
        plan = Plan(raw=[(since, until)])
    else:
        plan = plan_range(since, until, use_days=False)
    bid_filters = _bid_filters(buyer_id, source, tags)
    row: Mapping[str, Any]
    hours = _spans_q(plan.hours, "bucket_start")
    if hours is not None:
        performance = BidPerformanceRollup.objects.filter(
            hours, grain=RollupGrain.HOUR, **bid_filters
        )
        if buyer_id is None:
            performance = performance.filter(buyer__isnull=True)
        for row in (
            performance.values("bucket_start").annotate(**performance_rollup_sums()).order_by()
        ):
            tally_for(row["bucket_start"]).add_performance(row)
        for row in (
            CallRollup.objects.filter(
                hours, grain=RollupGrain.HOUR, **_call_filters(buyer_id, source, tags)
            )
            .values("bucket_start")
            .annotate(calls=Sum("calls"), routed_calls=Sum("routed_calls"), revenue=Sum("revenue"))
            .order_by()
        ):
            tally_for(row["bucket_start"]).add_calls(row)
    raw_q = plan.raw_q()
    if raw_q is not None:
        trunc = _trunc_for_raw(aligned)
        sent: QuerySet[BidLog] = BidLog.objects.filter(raw_q, SENT, **bid_filters).annotate(
            slot=trunc
        )
        for row in raw_performance_rows(sent, "slot"):
            tally_for(row["slot"]).add_performance(row)
        for row in (
            Call.objects.filter(raw_q, **_call_filters(buyer_id, source, tags))
            .annotate(slot=trunc)
            .values("slot")
            .annotate(**call_aggregates())
            .order_by()
        ):
            tally_for(row["slot"]).add_calls(row)
    if exact:
        sent = BidLog.objects.filter(SENT, created_at__gte=since, created_at__lt=until)
        if bucket == "day":
            key_expression: Any = TruncDay("created_at", tzinfo=zone)
        else:
            key_expression = TruncHour("created_at", tzinfo=UTC if aligned else zone)
        for tally in tallies:
            tally.exact_percentiles = {}
        exact_rows = _exact_percentiles(sent.filter(**bid_filters), "slot", key_expression)
        for slot, pcts in exact_rows.items():
            tally_for(slot).exact_percentiles = pcts
    return [
        _series_row(start.astimezone(zone), tally)
        for start, tally in zip(starts, tallies, strict=True)
    ]


def _series_row(start: datetime, tally: Tally) -> dict[str, Any]:
    figures = tally.figures()
    return {
        "bucket_start": start,
        "bids": figures["bids"],
        "accepted": figures["accepted"],
        "acceptance_rate": figures["acceptance_rate"],
        "timeouts": figures["timeouts"],
        "calls": figures["calls"],
        "routed_calls": figures["routed_calls"],
        "revenue": figures["revenue"],
        "p95_ms": figures["latency_ms"]["p95"],
    }


# --- States -------------------------------------------------------------------------------------


def report_states(
    *,
    since: datetime,
    until: datetime,
    buyer_id: int | None = None,
    source: str | None = None,
    exact: bool = False,
    campaign: str | None = None,
    publisher: str | None = None,
) -> list[dict[str, Any]]:
    """Attempts, bids and acceptance per inbound state (empty state code: not given)."""
    tags = _tags(campaign, publisher)
    plan = Plan(raw=[(since, until)]) if exact or tags else plan_range(since, until)
    filters = _bid_filters(buyer_id, source, tags)
    totals: dict[str, Counter] = defaultdict(Counter)
    measures: tuple[Literal["attempts", "bids", "accepted"], ...] = ("attempts", "bids", "accepted")
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        for row in (
            BidStateRollup.objects.filter(rollup_q, **filters)
            .values("state_code")
            .annotate(attempts=Sum("attempts"), bids=Sum("bids"), accepted=Sum("accepted"))
            .order_by()
        ):
            totals[row["state_code"]].update({name: row[name] for name in measures})
    raw_q = plan.raw_q()
    if raw_q is not None:
        for row in (
            BidLog.objects.filter(raw_q, **filters)
            .values("state_code")
            .annotate(
                attempts=Count("id"),
                bids=Count("id", filter=SENT),
                accepted=Count("id", filter=Q(outcome=Outcome.ACCEPTED)),
            )
            .order_by()
        ):
            totals[row["state_code"]].update({name: row[name] for name in measures})
    result: list[dict[str, Any]] = []
    for state, counts in totals.items():
        result.append(
            {
                "state_code": state,
                "attempts": counts["attempts"],
                "bids": counts["bids"],
                "accepted": counts["accepted"],
                "acceptance_rate": _rate(counts["accepted"], counts["bids"]),
            }
        )
    result.sort(key=lambda row: (-row["bids"], row["state_code"]))
    return result


__all__ = [
    "LATENCY_ERROR_MS",
    "LATENCY_ERROR_SHARE",
    "Plan",
    "Tally",
    "bucket_starts",
    "plan_range",
    "recommended_timeout_seconds",
    "report_states",
    "report_summary",
    "report_timeseries",
    "report_totals",
]
