"""The tag rollups: the bid figures of a report limited to a campaign or publisher.

A bid's tags are its call's, so a tagged report over raw rows joins every bid to its call.
These two tables do that join once, when an hour is rolled up:

- ``TagSummaryRollup``: bucket x buyer x source x campaign x publisher, with attempts by outcome
  class, the performance measures and the latency histogram of the buyer's bids, and the
  calls the buyer won (``buyer`` empty: calls no buyer won);
- ``TagOutcomeRollup``: bucket x source x campaign x publisher x outcome x code, for the
  outcome and code breakdowns and the codes chart.

Only tagged rows are kept (a bid with no call is untagged). Hours are grouped from raw rows,
days summed from their 24 hour rows, like every rollup (:mod:`bidlog.reports.rollups` calls
the builders here).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, F, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncHour

from bidlog.choices import OUTCOME_CLASS, OutcomeClass
from bidlog.models import (
    LATENCY_FIELDS,
    BidLog,
    Call,
    RollupGrain,
    TagOutcomeRollup,
    TagSummaryRollup,
    bid_calls_q,
)
from bidlog.reports.measures import SENT, performance_aggregates
from bidlog.reports.rollup_sql import insert_select

TAG_MODELS = (TagSummaryRollup, TagOutcomeRollup)
KEYS = ("bucket_start", "buyer_id", "source", "campaign", "publisher")
CLASS_FIELDS = tuple(f"class_{klass}" for klass in OutcomeClass.values)
BID_MEASURES = (
    *CLASS_FIELDS,
    "bids",
    "accepted",
    "timeouts",
    "duration_sum",
    "duration_max",
    *LATENCY_FIELDS,
)
CALL_MEASURES = ("calls", "routed_calls", "revenue")


def _class_counts() -> dict[str, Count]:
    """Attempts per outcome class; an outcome of no known class counts as an error."""
    known = [outcome for outcome, klass in OUTCOME_CLASS.items() if klass != OutcomeClass.ERROR]
    counts = {}
    for klass in OutcomeClass.values:
        if klass == OutcomeClass.ERROR:
            picked = ~Q(outcome__in=known)
        else:
            picked = Q(outcome__in=[o for o, k in OUTCOME_CLASS.items() if k == klass])
        counts[f"class_{klass}"] = Count("id", filter=picked)
    return counts


# Rows with no tag at all are never read (a report's tags are never empty), so none are kept:
# health checks, test bids, imports and untagged calls add nothing to these tables.
TAGGED = Q(campaign__gt="") | Q(publisher__gt="")


def _tagged_bids(start: datetime, end: datetime) -> QuerySet[BidLog]:
    """The bids of ``[start, end)`` whose call has a tag, with their hour and their call's
    tags (the calls read within :data:`bidlog.models.CALL_BIDS_WINDOW` of the range)."""
    return (
        BidLog.objects.filter(
            Q(call__campaign__gt="") | Q(call__publisher__gt=""),
            bid_calls_q([(start, end)]),
            created_at__gte=start,
            created_at__lt=end,
        )
        .order_by()
        .annotate(
            bucket_start=TruncHour("created_at", tzinfo=UTC),
            campaign=Coalesce("call__campaign", Value("")),
            publisher=Coalesce("call__publisher", Value("")),
        )
    )


def _summary_parts(start: datetime, end: datetime) -> tuple[QuerySet, QuerySet]:
    """The bid and call halves of the summary rows of ``[start, end)``, by column name."""
    bids = (
        _tagged_bids(start, end)
        .values(*KEYS)
        .annotate(**_class_counts(), **performance_aggregates(SENT))
    )
    calls = (
        Call.objects.filter(TAGGED, created_at__gte=start, created_at__lt=end)
        .order_by()
        .annotate(bucket_start=TruncHour("created_at", tzinfo=UTC), buyer_id=F("winner_id"))
        .values(*KEYS)
        .annotate(
            calls=Count("id"),
            routed_calls=Count("id", filter=Q(routed=True)),
            revenue=Coalesce(Sum("bid_amount", filter=Q(routed=True)), Value(Decimal("0"))),
        )
    )
    return bids, calls


def _hours_from_raw(start: datetime, end: datetime) -> None:
    """Insert the hour rows of both tag rollups of ``[start, end)``, grouped from raw rows.

    A summary row holds a buyer's bids and the calls it won: the two halves are stacked
    (``UNION ALL``, zeros for the other half's measures) and summed per key.
    """
    quote = connection.ops.quote_name
    keys = ", ".join(map(quote, KEYS))
    measures = [*BID_MEASURES, *CALL_MEASURES]

    def half(queryset: QuerySet, own: tuple[str, ...]) -> tuple[str, tuple[Any, ...]]:
        sql, params = queryset.query.sql_with_params()
        values = ", ".join(
            quote(name) if name in own else f"0 AS {quote(name)}" for name in measures
        )
        return f"SELECT {keys}, {values} FROM ({sql}) half", tuple(params)

    bids, calls = _summary_parts(start, end)
    bid_sql, bid_params = half(bids, BID_MEASURES)
    call_sql, call_params = half(calls, CALL_MEASURES)
    totals = ", ".join(
        f"{'MAX' if name == 'duration_max' else 'SUM'}({quote(name)})" for name in measures
    )
    columns = ", ".join(map(quote, ["grain", *KEYS, *measures]))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(TagSummaryRollup._meta.db_table)} ({columns}) "
            f"SELECT %s, {keys}, {totals} FROM ({bid_sql} UNION ALL {call_sql}) stacked "
            f"GROUP BY {keys}",
            [RollupGrain.HOUR, *bid_params, *call_params],
        )
    insert_select(
        TagOutcomeRollup,
        {"grain": RollupGrain.HOUR},
        _tagged_bids(start, end)
        .annotate(code_value=Coalesce("code", Value(0)))
        .values("bucket_start", "source", "campaign", "publisher", "outcome", "code_value")
        .annotate(attempts=Count("id")),
        rename={"code_value": "code"},
    )


def tag_rollups_build_hours(start: datetime, end: datetime) -> None:
    """Write the tag rollup rows of the hours ``[start, end)`` from raw rows (the caller has
    deleted the old ones, see :func:`bidlog.reports.rollups.rollup_build_hours`)."""
    _hours_from_raw(start, end)


def tag_rollups_build_day(day: datetime, end: datetime) -> None:
    """Write the tag rollup rows of the UTC day ``[day, end)`` as the sums of its hour rows."""
    fixed = {"grain": RollupGrain.DAY, "bucket_start": day}
    same = Q(grain=RollupGrain.HOUR, bucket_start__gte=day, bucket_start__lt=end)
    insert_select(
        TagSummaryRollup,
        fixed,
        TagSummaryRollup.objects.filter(same)
        .order_by()
        .values("buyer_id", "source", "campaign", "publisher")
        .annotate(**_summary_sums()),
    )
    insert_select(
        TagOutcomeRollup,
        fixed,
        TagOutcomeRollup.objects.filter(same)
        .order_by()
        .values("source", "campaign", "publisher", "outcome", "code")
        .annotate(attempts=Sum("attempts")),
    )


def _tag_rows(
    model: type[TagSummaryRollup | TagOutcomeRollup],
    rollup_q: Q,
    tags: Mapping[str, str],
    buyer_id: int | None,
    source: str | None,
) -> QuerySet:
    """``model`` rows in the buckets of ``rollup_q`` with ``tags``, ``source`` and (summary
    rows only) ``buyer_id``, the winner for calls."""
    filters: dict[str, Any] = dict(tags)
    if source:
        filters["source"] = source
    if buyer_id is not None:
        filters["buyer_id"] = buyer_id
    return model.objects.filter(rollup_q, **filters).order_by()


def _summary_sums() -> dict[str, Sum | Max]:
    sums: dict[str, Sum | Max] = {name: Sum(name) for name in (*BID_MEASURES, *CALL_MEASURES)}
    sums["duration_max"] = Max("duration_max")
    return sums


def tag_outcome_rows(rollup_q: Q, tags: Mapping[str, str], source: str | None) -> QuerySet:
    """Attempts per outcome and code (``n``) with ``tags`` in the buckets of ``rollup_q``."""
    rows = _tag_rows(TagOutcomeRollup, rollup_q, tags, None, source)
    return rows.values("outcome", "code").annotate(n=Sum("attempts"))


def tag_summary_rows(
    rollup_q: Q, tags: Mapping[str, str], source: str | None, buyer_id: int | None = None
) -> QuerySet:
    """Per buyer (``None``: calls no buyer won), the summed measures with ``tags``."""
    rows = _tag_rows(TagSummaryRollup, rollup_q, tags, buyer_id, source)
    return rows.values("buyer_id").annotate(**_summary_sums())


def tag_series_rows(
    hours: Q, tags: Mapping[str, str], buyer_id: int | None, source: str | None
) -> QuerySet:
    """Per hour (``bucket_start``), the summed measures with ``tags`` in the hours ``hours``."""
    rows = _tag_rows(TagSummaryRollup, hours & Q(grain=RollupGrain.HOUR), tags, buyer_id, source)
    return rows.values("bucket_start").annotate(**_summary_sums())


def tag_code_rows(rollup_q: Q, tags: Mapping[str, str], source: str | None, sent: Q) -> QuerySet:
    """Attempts per bucket and code (``n``) with ``tags``, of the outcomes ``sent`` picks."""
    rows = _tag_rows(TagOutcomeRollup, rollup_q, tags, None, source).filter(sent)
    return rows.values("bucket_start", "code").annotate(n=Sum("attempts"))
