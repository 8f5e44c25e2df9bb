"""The support request for one bid: everything CallGrid asks for, filled in from the log.

The error-code reference lists what a support request must carry (see
:func:`callgrid_portal.bidapi.codes.support_request_fields`); the bid page shows this text
ready to copy, so nobody has to gather it by hand while a buyer is failing.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.db.models import Avg
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import BidLog
from bidlog.routing.blocks import show_utc
from buyers.hours import hours_summary
from callgrid_portal.bidapi import codes


def _frequency(bid: BidLog, now: datetime) -> tuple[int, int, datetime | None]:
    """Bids to this buyer with the same code (or outcome, without one): 24 h, 7 d, first."""
    same = BidLog.objects.filter(buyer_id=bid.buyer_id)
    same = same.filter(code=bid.code) if bid.code is not None else same.filter(outcome=bid.outcome)
    day = same.filter(created_at__gt=now - timedelta(days=1), created_at__lte=now).count()
    week_rows = same.filter(created_at__gt=now - timedelta(days=7), created_at__lte=now)
    first = week_rows.order_by("created_at", "id").values_list("created_at", flat=True).first()
    return day, week_rows.count(), first


def support_request_text(bid: BidLog, *, now: datetime | None = None) -> str:
    """Plain text for CallGrid support: code, time, endpoint and payload, grid and settings,
    how often over 24 hours and 7 days, and an estimate of what it costs."""
    now = now or timezone.now()
    buyer = bid.buyer
    known = codes.get(bid.code)
    day, week, first = _frequency(bid, now)
    average = BidLog.objects.filter(
        buyer_id=buyer.pk,
        outcome=Outcome.ACCEPTED,
        created_at__gt=now - timedelta(days=7),
    ).aggregate(value=Avg("bid_amount"))["value"]
    if bid.code is not None:
        what = f"code {bid.code}" + (f" ({known.title})" if known else "")
    else:
        what = f"no CallGrid code (outcome {bid.outcome})"
    lines = [
        f"Subject: {buyer.name} (Grid {buyer.grid_id}) answered {what}",
        "",
        f"Error code: {bid.code if bid.code is not None else 'none'}"
        + (f", message as received: {bid.message!r}" if bid.message else ""),
        f"When: {show_utc(bid.created_at)} (bid #{bid.pk}, attempt {bid.attempt}, "
        f"HTTP {bid.http_status if bid.http_status is not None else 'none'}, "
        f"{bid.duration_ms} ms)",
        f"Endpoint: POST {buyer.as_bid_target().bid_url}",
        f"Payload: {json.dumps(bid.request, sort_keys=True)}",
        f"Grid and configuration: Grid ID {buyer.grid_id}, status {buyer.status}, "
        f"accepted states {', '.join(buyer.accepted_states or []) or 'all'}, "
        f"operating hours {hours_summary(buyer.operating_hours)} ({buyer.timezone}), "
        f"daily cap {buyer.daily_cap or 'none'}, monthly cap {buyer.monthly_cap or 'none'}, "
        f"duplicate window {buyer.duplicate_window_days} days, "
        f"minimum bid ${buyer.min_bid}",
        f"How often: {day} times in the last 24 hours, {week} in the last 7 days"
        + (f", first seen in that week on {show_utc(first)}" if first else ""),
    ]
    if average is not None:
        lost = average * day
        lines.append(
            f"Estimated impact: {day} bids in 24 hours at this buyer's average accepted bid "
            f"of the last 7 days (${average:.2f}) is about ${lost:.2f} of bids not placed."
        )
    else:
        lines.append(
            f"Estimated impact: {day} bids in 24 hours; this buyer accepted none in the "
            "last 7 days, so no revenue estimate."
        )
    if bid.error:
        lines.append(f"Our client's note: {bid.error}")
    return "\n".join(lines)
