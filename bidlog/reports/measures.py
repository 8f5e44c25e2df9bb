"""The measures rollups keep, defined once over raw rows and once over rollup rows.

Which bids "sent a request" (:data:`SENT`), the performance measures of sent bids with the
latency histogram, and calls with revenue: the hour rollups group raw rows with these
aggregates, reports read raw edges with the same ones, and the day rollups and reports sum
rollup rows with :func:`performance_rollup_sums`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import models
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce

from bidlog.choices import Outcome
from bidlog.models import LATENCY_EDGES_MS, LATENCY_FIELDS
from callgrid_portal.bidapi.outcomes import LOCAL_OUTCOMES

# A bid "sent a request" unless the portal decided locally: the skips, a queued test bid, and
# a caller ID refused before sending (local 4003 has no HTTP status; CallGrid's own 4003 has).
SENT = ~Q(outcome__in=LOCAL_OUTCOMES) & ~Q(
    outcome=Outcome.INVALID_CALLER_ID, http_status__isnull=True
)


def _only(condition: Q | None, where: Q | None) -> Q | None:
    """``condition`` and ``where`` together; ``None`` when neither limits anything."""
    parts = [part for part in (condition, where) if part is not None and part]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def latency_histogram_aggregates(where: Q | None = None) -> dict[str, Count]:
    """One ``COUNT`` per histogram bucket of ``duration_ms``, for a query over sent bids
    (or over any bids, counting those ``where`` picks)."""
    aggregates = {}
    last = len(LATENCY_EDGES_MS) - 1
    for index, name in enumerate(LATENCY_FIELDS):
        bounds = Q()
        if index > 0:
            bounds &= Q(duration_ms__gte=LATENCY_EDGES_MS[index])
        if index < last:
            bounds &= Q(duration_ms__lt=LATENCY_EDGES_MS[index + 1])
        aggregates[name] = Count("id", filter=_only(bounds, where))
    return aggregates


def performance_aggregates(where: Q | None = None) -> dict[str, Count | Coalesce]:
    """The measures of ``BidPerformanceRollup`` over raw bids that sent a request; over any
    bids with ``where=SENT``, which then picks the sent ones."""
    return {
        "bids": Count("id", filter=_only(None, where)),
        "accepted": Count("id", filter=_only(Q(outcome=Outcome.ACCEPTED), where)),
        "timeouts": Count("id", filter=_only(Q(outcome=Outcome.TIMEOUT), where)),
        "duration_sum": Coalesce(Sum("duration_ms", filter=_only(None, where)), 0),
        "duration_max": Coalesce(Max("duration_ms", filter=_only(None, where)), 0),
        **latency_histogram_aggregates(where),
    }


def performance_rollup_sums() -> dict[str, Sum | Max]:
    """The same measures summed over ``BidPerformanceRollup`` rows."""
    sums: dict[str, Sum | Max] = {
        name: Sum(name)
        for name in ("bids", "accepted", "timeouts", "duration_sum", *LATENCY_FIELDS)
    }
    sums["duration_max"] = Max("duration_max")
    return sums


def call_aggregates() -> dict[str, Count | Sum]:
    """Calls, routed calls and revenue (winning bids of routed calls) over raw calls."""
    return {
        "calls": Count("id"),
        "routed_calls": Count("id", filter=Q(routed=True)),
        "revenue": Sum("bid_amount", filter=Q(routed=True)),
    }


class LatencyBucket(models.Func):
    """PostgreSQL's ``width_bucket`` over the histogram edges: bucket index + 1 of a latency."""

    template = "width_bucket(%(expressions)s, ARRAY[{}]::integer[])".format(
        ", ".join(str(edge) for edge in LATENCY_EDGES_MS)
    )
    output_field = models.IntegerField()


# The row key of the bucket array :func:`performance_bucket_aggregates` adds.
LATENCY_BUCKETS = "latency_buckets"


def performance_bucket_aggregates() -> dict[str, Any]:
    """PostgreSQL: :func:`performance_aggregates` with the histogram as the bucket of every
    bid of a group (``width_bucket``, from 1) in one array, which
    :func:`latency_histogram_from_buckets` counts: one row per group instead of one per group
    and bucket, from the same scan as the other measures."""
    aggregates: dict[str, Any] = {
        name: aggregate
        for name, aggregate in performance_aggregates().items()
        if name not in LATENCY_FIELDS
    }
    aggregates[LATENCY_BUCKETS] = ArrayAgg(LatencyBucket("duration_ms"))
    return aggregates


def latency_histogram_from_buckets(row: dict[str, Any]) -> None:
    """Replace the row's ``latency_buckets`` array with one count per histogram field."""
    counts = Counter(row.pop(LATENCY_BUCKETS) or ())
    row.update({name: counts.get(index, 0) for index, name in enumerate(LATENCY_FIELDS, 1)})
