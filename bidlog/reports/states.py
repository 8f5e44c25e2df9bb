"""The state table report: attempts, bids and acceptance per inbound state, for API and pages.

Reads rollups or raw rows as :mod:`bidlog.reports.plan` says, like every report
(:mod:`bidlog.reports.services`); ``exact=True`` reads raw rows only.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any, Literal

from django.db.models import Count, Q, Sum

from bidlog.choices import Outcome
from bidlog.models import BidLog, BidStateRollup, BidStateTotalRollup
from bidlog.reports.figures import rate
from bidlog.reports.measures import SENT
from bidlog.reports.plan import bid_filters, one_snapshot, report_plan, report_tags


@one_snapshot
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
    tags = report_tags(campaign, publisher)
    plan = report_plan(since, until, exact=exact, tags=tags)
    filters = bid_filters(buyer_id, source, tags)
    totals: dict[str, Counter] = defaultdict(Counter)
    measures: tuple[Literal["attempts", "bids", "accepted"], ...] = ("attempts", "bids", "accepted")
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        # Over every buyer, the rows summed per bucket without the buyer: a few hundred a day.
        model = BidStateRollup if buyer_id is not None else BidStateTotalRollup
        for row in (
            model.objects.filter(rollup_q, **filters)
            .values("state_code")
            .annotate(attempts=Sum("attempts"), bids=Sum("bids"), accepted=Sum("accepted"))
            .order_by()
        ):
            totals[row["state_code"]].update({name: row[name] for name in measures})
    raw_q = plan.bids_q()
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
                "acceptance_rate": rate(counts["accepted"], counts["bids"]),
            }
        )
    result.sort(key=lambda row: (-row["bids"], row["state_code"]))
    return result
