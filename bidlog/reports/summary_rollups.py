"""The narrow rollups a summary of every source reads: a few rows per day, and their build.

``BuyerSummaryRollup`` (a row per bucket and buyer) gives every per-buyer figure and the
totals but the breakdowns, which come from ``BidOutcomeTotalRollup`` (outcome and code
over all buyers) or, for one buyer, from that buyer's ``BidOutcomeRollup`` rows. Both are
derived from the outcome, performance and call rollups of the same bucket, never from raw
rows; :mod:`bidlog.reports.rollups` builds them with those. The five-minute rows of the
recent hours are the exception: no wide rollup has that grain, so
:mod:`bidlog.reports.fine_rollups` groups them from raw rows, through the same
:func:`buyer_summary_insert`. ``BidStateTotalRollup`` (the state table) and
``CallTotalRollup`` (calls and revenue) are ``BidStateRollup`` and ``CallRollup`` summed over
the buyers the same way, and ``SummaryTotalRollup`` is ``BuyerSummaryRollup`` summed over the
buyers.
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.db import connection, models
from django.db.models import Count, Max, Q, QuerySet, Sum

from bidlog.choices import OUTCOME_CLASS, OutcomeClass
from bidlog.models import (
    LATENCY_FIELDS,
    BidOutcomeRollup,
    BidOutcomeTotalRollup,
    BidPerformanceRollup,
    BidStateRollup,
    BidStateTotalRollup,
    BuyerSummaryRollup,
    CallRollup,
    CallTotalRollup,
    SummaryMeasures,
    SummaryTotalRollup,
)
from bidlog.reports.rollup_sql import adapt, insert_select

SUMMARY_MODELS = (BidOutcomeTotalRollup, BuyerSummaryRollup)
SUMMARY_CLASS_FIELDS = tuple(f"class_{klass}" for klass in OutcomeClass.values)
# Every measure a summary row holds (its class counts, bids, latency histogram, calls...).
SUMMARY_MEASURES = tuple(field.name for field in SummaryMeasures._meta.fields)


def _class_outcomes() -> list[tuple[str, list[str], bool]]:
    """Each outcome class with its outcomes, and whether it is every outcome *but* those: an
    outcome of no known class counts as an error, as in the reports' ``by_class``."""
    known = [outcome for outcome, klass in OUTCOME_CLASS.items() if klass != OutcomeClass.ERROR]
    return [
        (klass, known, True)
        if klass == OutcomeClass.ERROR
        else (klass, [o for o, k in OUTCOME_CLASS.items() if k == klass], False)
        for klass in OutcomeClass.values
    ]


def _class_columns() -> tuple[list[str], list[str]]:
    """``CASE`` columns splitting an outcome row's attempts by outcome class, and their params."""
    columns, params = [], []
    for _klass, outcomes, negated in _class_outcomes():
        marks = ", ".join(["%s"] * len(outcomes)) or "NULL"
        test = "NOT IN" if negated else "IN"
        columns.append(f"CASE WHEN outcome {test} ({marks}) THEN attempts ELSE 0 END")
        params.extend(outcomes)
    return columns, params


def class_counts() -> dict[str, Count]:
    """Raw bids counted by outcome class, named as the summary rollups' columns."""
    counts = {}
    for klass, outcomes, negated in _class_outcomes():
        picked = Q(outcome__in=outcomes)
        counts[f"class_{klass}"] = Count("id", filter=~picked if negated else picked)
    return counts


# The rows a summary rollup row adds up, as an SQL ``FROM`` clause and its parameters: rows
# shaped as outcome rollup rows (``bucket_start, buyer_id, outcome, attempts``, or with the
# ``class_...`` counts instead of the last two), as performance rollup rows of one buyer each,
# and as call rollup rows (``winner_id``).
SummarySource = tuple[str, list[Any]]


def summary_rollups_build(*, grain: str, start: datetime, end: datetime) -> None:
    """Rebuild the summary rollups of the ``grain`` buckets in ``[start, end)`` from the
    outcome, performance and call rollup rows of the same buckets (never from raw rows)."""
    for model in SUMMARY_MODELS:
        model.objects.filter(grain=grain, bucket_start__gte=start, bucket_start__lt=end).delete()
    same = Q(grain=grain, bucket_start__gte=start, bucket_start__lt=end)
    insert_select(
        BidOutcomeTotalRollup,
        {"grain": grain},
        BidOutcomeRollup.objects.filter(same)
        .order_by()
        .values("bucket_start", "source", "outcome", "code")
        .annotate(attempts=Sum("attempts")),
    )
    quote = connection.ops.quote_name
    where = "WHERE grain = %s AND bucket_start >= %s AND bucket_start < %s"
    params: list[Any] = [grain, adapt(start), adapt(end)]
    buyer_summary_insert(
        grain,
        outcomes=(f"{quote(BidOutcomeRollup._meta.db_table)} {where}", params),
        performance=(
            f"{quote(BidPerformanceRollup._meta.db_table)} {where} AND buyer_id IS NOT NULL",
            params,
        ),
        calls=(f"{quote(CallRollup._meta.db_table)} {where}", params),
    )


def buyer_summary_insert(
    grain: str,
    *,
    outcomes: SummarySource,
    performance: SummarySource,
    calls: SummarySource,
    classed: bool = False,
) -> None:
    """Insert ``BuyerSummaryRollup`` rows of ``grain``: one per bucket and buyer of the
    source rows. The three sources are stacked (``UNION ALL``, zeros for the others'
    columns) and summed per bucket and buyer, the outcomes' attempts split by class (or,
    ``classed``, already counted by class: :func:`class_counts`)."""
    quote = connection.ops.quote_name
    class_names = list(SUMMARY_CLASS_FIELDS)
    classes, class_params = (
        ([quote(name) for name in class_names], []) if classed else _class_columns()
    )
    perf = ["bids", "accepted", "timeouts", "duration_sum", "duration_max", *LATENCY_FIELDS]
    call_names = ["calls", "routed_calls", "revenue"]
    names = [*class_names, *perf, *call_names]

    def part(source: SummarySource, buyer: str, exprs: dict[str, str]) -> str:
        values = ", ".join(f"{exprs.get(name, '0')} AS {quote(name)}" for name in names)
        return f"SELECT bucket_start, {buyer} AS buyer_id, {values} FROM {source[0]}"

    stacked = " UNION ALL ".join(
        [
            part(outcomes, "buyer_id", dict(zip(class_names, classes, strict=True))),
            part(performance, "buyer_id", {name: quote(name) for name in perf}),
            part(calls, "winner_id", {name: quote(name) for name in call_names}),
        ]
    )
    totals = ", ".join(
        f"{'MAX' if name == 'duration_max' else 'SUM'}({quote(name)})" for name in names
    )
    table = quote(BuyerSummaryRollup._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (grain, bucket_start, buyer_id, {', '.join(map(quote, names))}) "
            f"SELECT %s, bucket_start, buyer_id, {totals} FROM ({stacked}) stacked "
            "GROUP BY bucket_start, buyer_id",
            [grain, *class_params, *outcomes[1], *performance[1], *calls[1]],
        )


def total_rollups_build(*, grain: str, start: datetime, end: datetime) -> None:
    """Rebuild the rows over every buyer of the ``grain`` buckets in ``[start, end)``: the
    state table's (``BidStateTotalRollup``), the calls' (``CallTotalRollup``) and the summary's
    (``SummaryTotalRollup``), each the per-buyer rows of the same buckets summed over the
    buyers (run after :func:`summary_rollups_build`, whose rows the last one sums)."""
    totals: tuple[tuple[type[models.Model], type[models.Model], dict[str, Sum | Max]], ...] = (
        (BidStateTotalRollup, BidStateRollup, _sums("attempts", "bids", "accepted")),
        (CallTotalRollup, CallRollup, _sums("calls", "routed_calls", "revenue")),
    )
    for total, per_buyer, measures in totals:
        _total_build(total, per_buyer, measures, grain=grain, start=start, end=end)
    summary_totals_build(grain=grain, start=start, end=end)


def summary_totals_build(*, grain: str, start: datetime, end: datetime) -> None:
    """Rebuild the ``SummaryTotalRollup`` rows of the ``grain`` buckets in ``[start, end)``:
    their ``BuyerSummaryRollup`` rows summed over the buyers."""
    _total_build(
        SummaryTotalRollup, BuyerSummaryRollup, summary_sums(), grain=grain, start=start, end=end
    )


def _total_build(
    total: type[models.Model],
    per_buyer: type[models.Model],
    measures: dict[str, Sum | Max],
    *,
    grain: str,
    start: datetime,
    end: datetime,
) -> None:
    same = Q(grain=grain, bucket_start__gte=start, bucket_start__lt=end)
    # Its keys are the total's other columns: the per-buyer table's, less the buyer.
    keys = [
        field.name
        for field in total._meta.concrete_fields
        if not field.primary_key and field.name not in ("grain", *measures)
    ]
    total._default_manager.filter(same).delete()
    insert_select(
        total,
        {"grain": grain},
        per_buyer._default_manager.filter(same).order_by().values(*keys).annotate(**measures),
    )


def _sums(*names: str) -> dict[str, Sum | Max]:
    return {name: Sum(name) for name in names}


def outcome_total_rows(rollup_q: Q, buyer_id: int | None) -> QuerySet:
    """Attempts per outcome and code (``n``) in the rollup buckets of ``rollup_q``."""
    rows: QuerySet = (
        BidOutcomeTotalRollup.objects.filter(rollup_q)
        if buyer_id is None
        else BidOutcomeRollup.objects.filter(rollup_q, buyer_id=buyer_id)
    )
    return rows.values("outcome", "code").annotate(n=Sum("attempts")).order_by()


def buyer_summary_rows(where: tuple[str, list[Any]], buyer_id: int | None) -> list[dict[str, Any]]:
    """Per buyer (``None``: calls no buyer won), the summed ``BuyerSummaryRollup`` measures of
    the buckets ``where`` picks (an SQL condition and its parameters, as
    :meth:`bidlog.reports.plan.Plan.rollup_where` gives).

    Written in SQL, with every sum a whole number (revenue in cents): over 200 buyers, building
    the forty sums through the ORM and converting each value cost more than the database
    takes to add them up.
    """
    condition, params = where
    if buyer_id is not None:
        condition, params = f"({condition}) AND buyer_id = %s", [*params, buyer_id]
    sums = _summary_sums_sql(BuyerSummaryRollup)
    return _summary_read(
        f"SELECT buyer_id, {sums} WHERE {condition} GROUP BY buyer_id", params, "buyer_id"
    )


def summary_total_rows(wheres: list[tuple[str, list[Any]] | None]) -> list[dict[str, Any]]:
    """The ``SummaryTotalRollup`` measures summed over the buckets each of ``wheres`` picks
    (``None``: no bucket), in one statement; each row carries the index of its condition as
    ``period``. Written in SQL as :func:`buyer_summary_rows` is."""
    sums = _summary_sums_sql(SummaryTotalRollup)
    parts, params = [], []
    for index, where in enumerate(wheres):
        if where is not None:
            parts.append(f"SELECT {index}, {sums} WHERE {where[0]}")
            params.extend(where[1])
    if not parts:
        return []
    return _summary_read(" UNION ALL ".join(parts), params, "period")


def _summary_read(sql: str, params: list[Any], key: str) -> list[dict[str, Any]]:
    """The rows of a read of :func:`_summary_sums_sql`'s sums after one ``key`` column, with
    revenue back in dollars and cents (sums over no row are ``None``)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    names = (key, *SUMMARY_MEASURES)
    found = []
    for row in rows:
        measures = dict(zip(names, row, strict=True))
        if measures["revenue"] is not None:
            measures["revenue"] = Decimal(measures["revenue"]).scaleb(-2)
        found.append(measures)
    return found


@functools.cache
def _summary_sums_sql(model: type[models.Model]) -> str:
    """:func:`summary_sums` over ``model``'s rows in SQL, ``FROM`` its table: whole numbers,
    revenue in cents."""
    quote = connection.ops.quote_name
    aggregates = summary_sums()
    sums = []
    for name in SUMMARY_MEASURES:
        field = cast(models.Field, model._meta.get_field(name))
        column = quote(cast(str, field.column))
        if isinstance(aggregates[name], Max):
            sums.append(f"MAX({column})")
        elif name == "revenue":
            sums.append(f"CAST(ROUND(SUM({column}) * 100) AS BIGINT)")
        else:
            sums.append(f"CAST(SUM({column}) AS BIGINT)")
    return f"{', '.join(sums)} FROM {quote(model._meta.db_table)}"


def summary_sums() -> dict[str, Sum | Max]:
    """Every summary measure summed over rows, the longest duration kept as a maximum."""
    sums: dict[str, Sum | Max] = {name: Sum(name) for name in SUMMARY_MEASURES}
    sums["duration_max"] = Max("duration_max")
    return sums
