"""Calls and revenue per campaign or publisher tag: which campaign sells, which loses money.

Read from the tag rollups (``CallTagRollup``) for whole fresh hours and days, and from raw
calls for the rest, like every report (``bidlog.reports.services``). The tag rollups have no
buyer: limited to one buyer, the report reads that buyer's raw calls.
Figures per tag value (the empty value is "untagged"):

- ``calls``: routing decisions; ``routed_calls``: calls sold to a buyer;
  ``unsold_calls`` = calls - routed_calls;
- ``acceptance_rate`` = routed_calls / calls: the share of the campaign's calls a buyer took;
- ``revenue``: the winning bids of routed calls; ``revenue_per_call`` = revenue / calls.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from bidlog.models import Call, CallTagRollup
from bidlog.reports.figures import CENT
from bidlog.reports.measures import call_aggregates
from bidlog.reports.plan import Plan, one_snapshot, plan_range

GROUPS = ("campaign", "publisher")


def _call_filters(
    *, source: str | None, campaign: str | None, publisher: str | None
) -> dict[str, Any]:
    given = {"source": source, "campaign": campaign, "publisher": publisher}
    return {name: value for name, value in given.items() if value}


@one_snapshot
def report_by_tag(
    *,
    since: datetime,
    until: datetime,
    group: str = "campaign",
    buyer_id: int | None = None,
    source: str | None = None,
    campaign: str | None = None,
    publisher: str | None = None,
) -> list[dict[str, Any]]:
    """One row per ``group`` tag value (``campaign`` or ``publisher``) over ``[since, until)``.

    Rows come highest revenue first, then most calls; the untagged calls are a row of their
    own with the tag ``""``.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(GROUPS)}")
    plan = plan_range(since, until) if buyer_id is None else Plan(raw=[(since, until)])
    filters = _call_filters(source=source, campaign=campaign, publisher=publisher)
    totals: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"calls": 0, "routed_calls": 0, "revenue": Decimal("0")}
    )
    rows: list[Any] = []
    rollup_q = plan.rollup_q()
    if rollup_q is not None:
        rows += (
            CallTagRollup.objects.filter(rollup_q, **filters)
            .values(group)
            .annotate(calls=Sum("calls"), routed_calls=Sum("routed_calls"), revenue=Sum("revenue"))
            .order_by()
        )
    raw_q = plan.raw_q()
    if raw_q is not None:
        raw = Call.objects.filter(raw_q, **filters)
        if buyer_id is not None:
            raw = raw.filter(winner_id=buyer_id)
        rows += raw.values(group).annotate(**call_aggregates()).order_by()
    for row in rows:
        total = totals[row[group]]
        total["calls"] += row["calls"] or 0
        total["routed_calls"] += row["routed_calls"] or 0
        total["revenue"] += row["revenue"] or Decimal("0")
    result = [_tag_row(group, tag, total) for tag, total in totals.items()]
    result.sort(key=lambda row: (-row["revenue"], -row["calls"], row[group]))
    return result


def _tag_row(group: str, tag: str, total: dict[str, Any]) -> dict[str, Any]:
    calls, routed = total["calls"], total["routed_calls"]
    revenue = total["revenue"].quantize(CENT)
    return {
        group: tag,
        "calls": calls,
        "routed_calls": routed,
        "unsold_calls": calls - routed,
        "acceptance_rate": round(routed / calls, 4) if calls else None,
        "revenue": revenue,
        "revenue_per_call": (revenue / calls).quantize(CENT) if calls else None,
    }
