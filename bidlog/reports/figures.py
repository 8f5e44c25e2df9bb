"""The report figures, each defined once: the tally of a set of bid-log rows and calls.

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
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from operator import add, itemgetter
from typing import Any

from bidlog.choices import OUTCOME_CLASS, OutcomeClass
from bidlog.models import LATENCY_EDGES_MS, LATENCY_FIELDS
from callgrid_portal.bidapi import codes

PERCENTILES = (50, 95, 99)
# Stated error of a histogram percentile: within this many ms, or this share of the value.
LATENCY_ERROR_MS = 5
LATENCY_ERROR_SHARE = 0.05
MAX_TIMEOUT_SECONDS = 10
TIMEOUT_HEADROOM = 1.5  # recommended timeout: measured p99 x this, rounded up to seconds
CENT = Decimal("0.01")
# Read once: a summary adds and shows these for each of its buyers.
CLASSES = tuple(OutcomeClass.values)
_CLASS_FIELDS = tuple((klass, f"class_{klass}") for klass in CLASSES)
_histogram_of = itemgetter(*LATENCY_FIELDS)
_LAST_BUCKET = len(LATENCY_EDGES_MS) - 1


def rate(part: int, whole: int) -> float | None:
    """``part / whole`` to four places, or ``None`` when there is no whole."""
    return round(part / whole, 4) if whole else None


def percentile_from_histogram(counts: list[int], percent: int, maximum: int) -> int | None:
    """The nearest-rank ``percent`` percentile estimated from histogram ``counts``.

    The estimate is the middle of the bucket holding the rank, never above the exact
    ``maximum``; the open-ended last bucket answers the maximum.
    """
    return percentiles_from_histogram(counts, (percent,), maximum)[percent]


def percentiles_from_histogram(
    counts: list[int], percents: tuple[int, ...], maximum: int
) -> dict[int, int | None]:
    """:func:`percentile_from_histogram` of each of ``percents`` (ascending), in one pass."""
    total = sum(counts)
    if not total:
        return dict.fromkeys(percents)
    found: dict[int, int | None] = {}
    ranks = [(percent, -(-percent * total // 100)) for percent in percents]  # ceil, no float
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        while ranks and seen >= ranks[0][1]:
            if index == _LAST_BUCKET:
                estimate = maximum
            else:
                middle = (LATENCY_EDGES_MS[index] + LATENCY_EDGES_MS[index + 1] - 1) / 2
                estimate = min(round(middle), maximum)
            found[ranks.pop(0)[0]] = estimate
        if not ranks:
            return found
    for percent, _rank in ranks:  # only reached for a percent over 100
        found[percent] = maximum
    return found


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
    # Attempts counted by class only (from the summary rollups), beside those in by_outcome.
    by_class_only: Counter = field(default_factory=Counter)

    def add_outcome(self, outcome: str, code: int | None, attempts: int) -> None:
        self.attempts += attempts
        self.by_outcome[outcome] += attempts
        if code:
            self.by_code[code] += attempts

    def add_classes(self, row: Mapping[str, Any]) -> None:
        for klass, name in _CLASS_FIELDS:
            count = row[name] or 0
            self.attempts += count
            self.by_class_only[klass] += count

    def add_performance(self, row: Mapping[str, Any]) -> None:
        self.bids += row["bids"] or 0
        self.accepted += row["accepted"] or 0
        self.timeouts += row["timeouts"] or 0
        self.duration_sum += row["duration_sum"] or 0
        self.duration_max = max(self.duration_max, row["duration_max"] or 0)
        counts = _histogram_of(row)
        if None in counts:
            counts = [count or 0 for count in counts]
        self.histogram = list(map(add, self.histogram, counts))

    def add_calls(self, row: Mapping[str, Any]) -> None:
        self.calls += row["calls"] or 0
        self.routed_calls += row["routed_calls"] or 0
        self.revenue += row["revenue"] or Decimal("0")

    def percentiles(self, percents: tuple[int, ...]) -> dict[int, int | None]:
        """The latency percentiles: exact when they were computed, else from the histogram."""
        if self.exact_percentiles is not None:
            return {p: self.exact_percentiles.get(p) for p in percents}
        return percentiles_from_histogram(self.histogram, percents, self.duration_max)

    def latency(self) -> dict[str, int | None]:
        found = self.percentiles(PERCENTILES)
        return {
            "avg": round(self.duration_sum / self.bids) if self.bids else None,
            **{f"p{p}": found[p] for p in PERCENTILES},
            "max": self.duration_max if self.bids else None,
        }

    def figures(self) -> dict[str, Any]:
        """Every figure of a report, each defined here and only here."""
        return {
            **self.buyer_figures(),
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_code": [
                {"code": code, "title": title, "priority": priority, "count": count}
                for code, count in sorted(self.by_code.items())
                for title, priority in [_code_info(code)]
            ],
            "revenue_per_call": (
                (self.revenue.quantize(CENT) / self.calls).quantize(CENT) if self.calls else None
            ),
        }

    def buyer_figures(self) -> dict[str, Any]:
        """The figures a summary's row of one buyer shows: those of :meth:`figures` but the
        outcome and code breakdowns (a summary of 200 buyers would otherwise sort and look up
        every buyer's codes to drop them) and the revenue per call."""
        by_class: Counter = Counter(self.by_class_only)
        for outcome, count in self.by_outcome.items():
            by_class[OUTCOME_CLASS.get(outcome, OutcomeClass.ERROR)] += count
        return {
            **self._counts(),
            "attempts": self.attempts,
            "by_class": {klass: by_class.get(klass, 0) for klass in CLASSES},
            "latency_ms": self.latency(),
            "timeout_rate": rate(self.timeouts, self.bids),
        }

    def series_figures(self) -> dict[str, Any]:
        """The figures of a time series' bucket: those of :meth:`figures` it shows, and the
        p95 latency alone (a series of 720 hours would otherwise work out every breakdown and
        percentile of every hour to drop them)."""
        return {**self._counts(), "p95_ms": self.percentiles((95,))[95]}

    def _counts(self) -> dict[str, Any]:
        # The figures a series bucket and a full report both show, defined once for both.
        return {
            "bids": self.bids,
            "accepted": self.accepted,
            "acceptance_rate": rate(self.accepted, self.bids),
            "timeouts": self.timeouts,
            "calls": self.calls,
            "routed_calls": self.routed_calls,
            "revenue": self.revenue.quantize(CENT),
        }
