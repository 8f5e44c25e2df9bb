"""The narrow rollups a summary reads when it spans all sources: a few rows per day.

``BuyerSummaryRollup`` (a row per bucket and buyer) gives every per-buyer figure and the
totals but the breakdowns, which come from ``BidOutcomeTotalRollup`` (outcome and code
over all buyers) or, for one buyer, from that buyer's ``BidOutcomeRollup`` rows. Both are
built in :mod:`bidlog.reports.rollups` with the rollups they are derived from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.db.models import Max, Q, QuerySet, Sum

from bidlog.models import (
    LATENCY_FIELDS,
    BidOutcomeRollup,
    BidOutcomeTotalRollup,
    BuyerSummaryRollup,
)
from bidlog.reports.rollups import SUMMARY_CLASS_FIELDS


def outcome_total_rows(rollup_q: Q, buyer_id: int | None) -> QuerySet:
    """Attempts per outcome and code (``n``) in the rollup buckets of ``rollup_q``."""
    rows: QuerySet = (
        BidOutcomeTotalRollup.objects.filter(rollup_q)
        if buyer_id is None
        else BidOutcomeRollup.objects.filter(rollup_q, buyer_id=buyer_id)
    )
    return rows.values("outcome", "code").annotate(n=Sum("attempts")).order_by()


def buyer_summary_rows(rollup_q: Q, buyer_id: int | None) -> Iterator[Mapping[str, Any]]:
    """Per buyer (``None``: calls no buyer won), the summed ``BuyerSummaryRollup`` measures."""
    rows = BuyerSummaryRollup.objects.filter(rollup_q)
    if buyer_id is not None:
        rows = rows.filter(buyer_id=buyer_id)
    sums: dict[str, Sum | Max] = {
        name: Sum(name)
        for name in (
            *SUMMARY_CLASS_FIELDS,
            "bids",
            "accepted",
            "timeouts",
            "duration_sum",
            *LATENCY_FIELDS,
            "calls",
            "routed_calls",
            "revenue",
        )
    }
    sums["duration_max"] = Max("duration_max")
    yield from rows.values("buyer_id").annotate(**sums).order_by()
