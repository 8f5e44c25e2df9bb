"""The key figures of several periods at once: what the overview compares its range with.

:func:`report_totals_periods` gives, for each ``[since, until)`` period, the totals of
:func:`bidlog.reports.services.report_summary` without its breakdowns and buyer rows (bids,
acceptance, latency, timeouts, calls, revenue), reading each kind of row of every period in
one statement (a ``UNION ALL`` of one aggregate per period: periods may overlap, so a row is
counted in each period that holds it). Whole fresh buckets come from the narrow rollups (a
row per buyer and bucket; limited to a tag, the tag rollups), the rest from raw rows, as
:mod:`bidlog.reports.plan` splits every report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet, Sum, Value

from bidlog.models import (
    BidLog,
    BidPerformanceRollup,
    BuyerSummaryRollup,
    Call,
    CallRollup,
    TagSummaryRollup,
)
from bidlog.reports.figures import Tally
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
    call_filters,
    one_snapshot,
    reads_fine_rollups,
    report_plan,
    report_tags,
)
from bidlog.reports.summary_rollups import summary_total_rows

Period = tuple[datetime, datetime]
CALL_SUMS = {"calls": Sum("calls"), "routed_calls": Sum("routed_calls"), "revenue": Sum("revenue")}


class _Measures(dict[str, Any]):
    """A result row where the measures another kind of row holds read as none."""

    def __missing__(self, key: str) -> None:
        return None


def _union(rows: QuerySet, queries: list[Q | None], sums: Mapping[str, Any]) -> Iterator[Any]:
    """``sums`` of ``rows`` for each query of ``queries`` (``None``: nothing to read), in one
    statement; each result row carries the index of its query as ``period``."""
    parts = [
        rows.filter(query).annotate(period=Value(index)).values("period").annotate(**sums)
        for index, query in enumerate(queries)
        if query is not None
    ]
    if parts:
        yield from parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]


def _rollup_rows(
    plans: list[Plan], buyer_id: int | None, source: str | None, tags: Tags
) -> Iterator[Any]:
    """Performance and call sums per period from the rollups of each plan."""
    queries = [plan.rollup_q() for plan in plans]
    both = {**performance_rollup_sums(), **CALL_SUMS}
    if tags:
        # The tag rollups hold the bids of a buyer and the calls it won: both on one row.
        tagged = TagSummaryRollup.objects.filter(**tags, **bid_filters(buyer_id, source))
        yield from _union(tagged.order_by(), queries, both)
    elif not source and buyer_id is None:
        # Every buyer: the summary rows summed over the buyers, one row a bucket.
        yield from summary_total_rows([plan.rollup_where() for plan in plans])
    elif not source:
        narrow = BuyerSummaryRollup.objects.filter(**bid_filters(buyer_id, None))
        yield from _union(narrow.order_by(), queries, both)
    else:
        performance = BidPerformanceRollup.objects.filter(
            buyer__isnull=False, **bid_filters(buyer_id, source)
        )
        yield from _union(performance.order_by(), queries, performance_rollup_sums())
        calls = CallRollup.objects.filter(**call_filters(buyer_id, source))
        yield from _union(calls.order_by(), queries, CALL_SUMS)


def _raw_rows(
    plans: list[Plan], buyer_id: int | None, source: str | None, tags: Tags
) -> Iterator[Any]:
    """Performance and call measures per period from the raw rows of each plan."""
    queries = [plan.bids_q() for plan in plans]
    sent = BidLog.objects.filter(SENT, **bid_filters(buyer_id, source, tags)).order_by()
    if connection.vendor != "postgresql":
        yield from _union(sent, queries, performance_aggregates())
    else:
        # As in raw_performance_rows: each period's bids' histogram buckets in one array.
        for row in _union(sent, queries, performance_bucket_aggregates()):
            latency_histogram_from_buckets(row)
            yield row
    calls = Call.objects.filter(**call_filters(buyer_id, source, tags)).order_by()
    yield from _union(calls, [plan.raw_q() for plan in plans], call_aggregates())


@one_snapshot
def report_totals_periods(
    periods: list[Period],
    *,
    buyer_id: int | None = None,
    source: str | None = None,
    campaign: str | None = None,
    publisher: str | None = None,
) -> list[dict[str, Any]]:
    """The totals of each ``[since, until)`` period of ``periods``, in that order."""
    tags = report_tags(campaign, publisher)
    unique = list(dict.fromkeys(periods))
    fine = reads_fine_rollups(buyer_id, source, tags)
    plans = [
        report_plan(since, until, exact=False, tags=tags, tag_rollups=True, fine=fine)
        for since, until in unique
    ]
    tallies = [Tally() for _ in unique]
    for row in (
        *_rollup_rows(plans, buyer_id, source, tags),
        *_raw_rows(plans, buyer_id, source, tags),
    ):
        measures = _Measures(row)
        tallies[row["period"]].add_performance(measures)
        tallies[row["period"]].add_calls(measures)
    figures = {period: tally.figures() for period, tally in zip(unique, tallies, strict=True)}
    return [figures[period] for period in periods]


def report_totals(
    *,
    since: datetime,
    until: datetime,
    buyer_id: int | None = None,
    source: str | None = None,
    campaign: str | None = None,
    publisher: str | None = None,
) -> dict[str, Any]:
    """The totals of :func:`bidlog.reports.services.report_summary` over ``[since, until)``,
    without its breakdowns and buyer rows."""
    return report_totals_periods(
        [(since, until)], buyer_id=buyer_id, source=source, campaign=campaign, publisher=publisher
    )[0]
