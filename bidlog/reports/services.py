"""Reports over the bid log: summary and time series, shared by API, pages and CSV.

The figures are defined in :mod:`bidlog.reports.figures` (and the README's "Reports"
section); which rows each report reads, rollups or raw rows, in :mod:`bidlog.reports.plan`.
``exact=True`` reads only raw rows and computes exact percentiles: the reference the tests
and the benchmark compare against. The state table is :mod:`bidlog.reports.states`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, models
from django.db.models import Aggregate, Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from bidlog.models import (
    BidLog,
    BidOutcomeRollup,
    BidPerformanceRollup,
    BuyerSummaryRollup,
    Call,
    CallRollup,
    CallTotalRollup,
    RollupGrain,
    SummaryTotalRollup,
)
from bidlog.reports.figures import (
    LATENCY_ERROR_MS,
    LATENCY_ERROR_SHARE,
    PERCENTILES,
    Tally,
    nearest_rank,
    recommended_timeout_seconds,
)
from bidlog.reports.measures import (
    SENT,
    call_aggregates,
    latency_histogram_from_buckets,
    performance_aggregates,
    performance_bucket_aggregates,
    performance_rollup_sums,
)
from bidlog.reports.plan import (
    Plan,
    Tags,
    bid_filters,
    bucket_starts,
    call_filters,
    one_snapshot,
    plan_range,
    reads_fine_rollups,
    report_plan,
    report_tags,
    spans_q,
)
from bidlog.reports.rollup_sql import EpochSeconds, from_epoch
from bidlog.reports.summary_rollups import (
    SUMMARY_CLASS_FIELDS,
    SUMMARY_MEASURES,
    buyer_summary_rows,
    outcome_total_rows,
)
from bidlog.reports.tag_rollups import tag_outcome_rows, tag_series_rows, tag_summary_rows
from buyers.models import Buyer

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


def raw_performance_rows(sent: QuerySet[BidLog], key: str) -> list[dict[str, Any]]:
    """Performance measures (as in ``BidPerformanceRollup``) of raw sent bids per ``key``.

    On PostgreSQL one ``GROUP BY key`` gives the measures and, per group, the array of its
    bids' ``width_bucket`` (``ArrayAgg``), counted here: one scan and a row per group, where a
    row per group and bucket (or one filtered ``COUNT`` per bucket, what SQLite gets) made
    Python read tens of thousands of rows for one busy hour.
    """
    if connection.vendor != "postgresql":
        return list(sent.values(key).annotate(**performance_aggregates()).order_by())
    rows = list(sent.values(key).annotate(**performance_bucket_aggregates()).order_by())
    for row in rows:
        latency_histogram_from_buckets(row)
    return rows


# --- Summary ------------------------------------------------------------------------------------


def _outcome_rows(plan: Plan, filters: dict[str, Any]) -> Iterator[Mapping[str, Any]]:
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        yield from (
            BidOutcomeRollup.objects.filter(rollup_q, **filters)
            .values("buyer_id", "outcome", "code")
            .annotate(n=Sum("attempts"))
            .order_by()
        )
    raw_q = plan.bids_q()
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
    raw_q = plan.bids_q()
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
    figures = tally.buyer_figures()
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


def _add_summary_rollups(
    outcomes: Iterable[Mapping[str, Any]],
    summaries: Iterable[Mapping[str, Any]],
    total: Tally,
    per_buyer: dict[int, Tally],
) -> None:
    """Outcome and code totals, and per buyer the summary measures, of narrow rollup rows."""
    for row in outcomes:
        total.add_outcome(row["outcome"], row["code"], row["n"])
    for row in summaries:
        total.add_performance(row)
        total.add_calls(row)
        if row["buyer_id"] is not None:
            tally = per_buyer[row["buyer_id"]]
            tally.add_classes(row)
            tally.add_performance(row)
            tally.add_calls(row)


def _narrow_rollups(
    plan: Plan,
    buyer_id: int | None,
    source: str | None,
    tags: Tags,
    total: Tally,
    per_buyer: dict[int, Tally],
) -> Plan:
    """Add what the narrow rollups give of ``plan``'s rollup buckets (limited to tags: the tag
    rollups; every source: the summary rollups); returns what is left to read."""
    rollup_q, where = plan.rollup_q(), plan.rollup_where()
    if rollup_q is None or where is None or (source and not tags):
        return plan
    if tags:
        outcomes = tag_outcome_rows(rollup_q, tags, source)
        _add_summary_rollups(outcomes, tag_summary_rows(rollup_q, tags, source), total, per_buyer)
    else:
        # Every source together: a row per buyer and day; the raw edges are read after.
        summaries = buyer_summary_rows(where, buyer_id)
        _add_summary_rollups(outcome_total_rows(rollup_q, buyer_id), summaries, total, per_buyer)
    return Plan(raw=plan.raw, tags=plan.tags)


@one_snapshot
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
    tags = report_tags(campaign, publisher)
    # The tag rollups have outcomes and codes over all buyers only: one buyer's reads raw rows.
    plan = report_plan(
        since,
        until,
        exact=exact,
        tags=tags,
        tag_rollups=buyer_id is None,
        fine=reads_fine_rollups(buyer_id, source, tags),
    )
    filters = bid_filters(buyer_id, source, tags)
    total = Tally()
    per_buyer: dict[int, Tally] = defaultdict(Tally)
    plan = _narrow_rollups(plan, buyer_id, source, tags, total, per_buyer)
    for row in _outcome_rows(plan, filters):
        total.add_outcome(row["outcome"], row["code"], row["n"])
        per_buyer[row["buyer_id"]].add_outcome(row["outcome"], row["code"], row["n"])
    for row in _performance_rows(plan, filters):
        total.add_performance(row)
        per_buyer[row["buyer_id"]].add_performance(row)
    for row in _call_rows(plan, call_filters(buyer_id, source, tags)):
        total.add_calls(row)
        if row["winner_id"] is not None:
            per_buyer[row["winner_id"]].add_calls(row)
    if exact:
        sent = BidLog.objects.filter(SENT, created_at__gte=since, created_at__lt=until)
        sent = sent.filter(**filters)
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


# --- Time series --------------------------------------------------------------------------------


def _trunc_for_raw(aligned: bool) -> Any:
    return (TruncHour if aligned else TruncMinute)("created_at", tzinfo=UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Buckets:
    """The time series' buckets: their UTC starts and a tally for each."""

    def __init__(self, starts: list[datetime]) -> None:
        self.starts = starts
        self.tallies = [Tally() for _ in starts]
        # Every bucket edge a UTC hour: rows group by UTC hour (else by minute, for zones
        # at :30 or :45) and are placed in their bucket here.
        self.aligned = all(start.minute == 0 and start.second == 0 for start in starts[1:])

    def tally_for(self, moment: datetime) -> Tally:
        """The tally of the bucket holding ``moment``."""
        return self.tallies[bisect.bisect_right(self.starts, _as_utc(moment)) - 1]


def _series_from_rollups(
    buckets: _Buckets, hours: Q, buyer_id: int | None, source: str | None
) -> None:
    performance = BidPerformanceRollup.objects.filter(
        hours, grain=RollupGrain.HOUR, **bid_filters(buyer_id, source)
    )
    if buyer_id is None:
        performance = performance.filter(buyer__isnull=True)
    for row in performance.values("bucket_start").annotate(**performance_rollup_sums()).order_by():
        buckets.tally_for(row["bucket_start"]).add_performance(row)
    # Over every buyer, the calls summed per bucket without the winner: a few rows an hour.
    calls = CallRollup if buyer_id is not None else CallTotalRollup
    for row in (
        calls.objects.filter(hours, grain=RollupGrain.HOUR, **call_filters(buyer_id, source))
        .values("bucket_start")
        .annotate(calls=Sum("calls"), routed_calls=Sum("routed_calls"), revenue=Sum("revenue"))
        .order_by()
    ):
        buckets.tally_for(row["bucket_start"]).add_calls(row)


# What a series bucket adds up from a summary rollup row: all but the attempts by class.
SERIES_MEASURES = tuple(name for name in SUMMARY_MEASURES if name not in SUMMARY_CLASS_FIELDS)


def _series_from_summaries(buckets: _Buckets, hours: Q, buyer_id: int | None) -> None:
    """Every source's series from the summary rollups: one row an hour, already summed over
    the buyers (``SummaryTotalRollup``) or the buyer's own (``BuyerSummaryRollup``), where the
    performance and call rollups need a ``GROUP BY`` over their sources. A series of one
    source reads those (:func:`_series_from_rollups`): the summary rollups have no source."""
    rows: QuerySet = (
        SummaryTotalRollup.objects.filter(hours, grain=RollupGrain.HOUR)
        if buyer_id is None
        else BuyerSummaryRollup.objects.filter(hours, grain=RollupGrain.HOUR, buyer_id=buyer_id)
    )
    for row in rows.values(*SERIES_MEASURES, start_seconds=EpochSeconds("bucket_start")).order_by():
        tally = buckets.tally_for(from_epoch(row["start_seconds"]))
        tally.add_performance(row)
        tally.add_calls(row)


def _series_from_raw(
    buckets: _Buckets, plan: Plan, buyer_id: int | None, source: str | None
) -> None:
    bids_q, calls_q = plan.bids_q(), plan.raw_q()
    if bids_q is None or calls_q is None:
        return
    trunc = _trunc_for_raw(buckets.aligned)
    sent: QuerySet[BidLog] = BidLog.objects.filter(
        bids_q, SENT, **bid_filters(buyer_id, source, plan.tags)
    ).annotate(slot=trunc)
    for performance in raw_performance_rows(sent, "slot"):
        buckets.tally_for(performance["slot"]).add_performance(performance)
    for row in (
        Call.objects.filter(calls_q, **call_filters(buyer_id, source, plan.tags))
        .annotate(slot=trunc)
        .values("slot")
        .annotate(**call_aggregates())
        .order_by()
    ):
        buckets.tally_for(row["slot"]).add_calls(row)


def _series_exact_percentiles(
    buckets: _Buckets, sent: QuerySet[BidLog], bucket: str, zone: ZoneInfo
) -> None:
    if bucket == "day":
        key_expression: Any = TruncDay("created_at", tzinfo=zone)
    else:
        key_expression = TruncHour("created_at", tzinfo=UTC if buckets.aligned else zone)
    for tally in buckets.tallies:
        tally.exact_percentiles = {}
    for slot, pcts in _exact_percentiles(sent, "slot", key_expression).items():
        buckets.tally_for(slot).exact_percentiles = pcts


@one_snapshot
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
    buckets = _Buckets(bucket_starts(since, until, bucket, zone))
    tags = report_tags(campaign, publisher)
    if exact or not buckets.aligned:
        plan = Plan(raw=[(since, until)], tags=tags)
    else:
        plan = plan_range(since, until, use_days=False, tags=tags)
    hours = spans_q(plan.hours, "bucket_start")
    if hours is not None and tags:
        for row in tag_series_rows(hours, tags, buyer_id, source):
            buckets.tally_for(row["bucket_start"]).add_performance(row)
            buckets.tally_for(row["bucket_start"]).add_calls(row)
    elif hours is not None and source is None:
        _series_from_summaries(buckets, hours, buyer_id)
    elif hours is not None:
        _series_from_rollups(buckets, hours, buyer_id, source)
    _series_from_raw(buckets, plan, buyer_id, source)
    if exact:
        sent = BidLog.objects.filter(SENT, created_at__gte=since, created_at__lt=until)
        _series_exact_percentiles(
            buckets, sent.filter(**bid_filters(buyer_id, source, tags)), bucket, zone
        )
    return [
        _series_row(start.astimezone(zone), tally)
        for start, tally in zip(buckets.starts, buckets.tallies, strict=True)
    ]


def _series_row(start: datetime, tally: Tally) -> dict[str, Any]:
    return {"bucket_start": start, **tally.series_figures()}
