"""The live call log (``/live/``): calls and their bids, newest first, updating itself.

The page polls ``/live/rows/?after=<id>`` with htmx every :data:`POLL_SECONDS`; the answer is
only the calls newer than the last one shown (204 when there are none), so a page left open
costs one small indexed query per poll. Both reads are bounded in time as well as by id: an
old row that arrives late (an import) never floods the log.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import View

from bidlog.filters import MAX_ID
from bidlog.models import BidLog, Call
from bidlog.reports.call_pages import call_row
from callgrid_portal.pages import RoleRequiredMixin
from callgrid_portal.privacy import can_see_caller_ids
from callgrid_portal.text import whole_number_upto

POLL_SECONDS = 3
# The most rows one answer carries, and the page keeps (live.js drops the oldest beyond it).
ROWS = 50
# The page opens on the calls of the last day; a poll looks at the last few minutes only.
PAGE_WINDOW = timedelta(hours=24)
POLL_WINDOW = timedelta(minutes=15)


def live_calls(*, after: int = 0, window: timedelta) -> QuerySet[Call]:
    """The newest :data:`ROWS` calls with an id above ``after`` made within ``window``, each
    with its bids (one query for the calls, one for all their bids)."""
    since = timezone.now() - window
    bids = BidLog.objects.select_related("buyer").only(
        "id", "call_id", "buyer__name", "outcome", "code", "bid_amount", "duration_ms"
    )
    return (
        Call.objects.filter(pk__gt=after, created_at__gte=since)
        .select_related("winner")
        .prefetch_related(Prefetch("bids", queryset=bids.order_by("id")))
        # By time, on the created_at index: the range above bounds the scan even when no
        # call is recent (an id order would walk the whole table back to find none).
        .order_by("-created_at", "-id")[:ROWS]
    )


def live_row(call: Call, *, masked: bool) -> dict[str, Any]:
    """A call as the log shows it, with a chip per bid (buyer, outcome, amount)."""
    row = call_row(call, masked=masked)
    row["bids"] = [
        {
            "id": bid.pk,
            "buyer_name": bid.buyer.name,
            "outcome": bid.get_outcome_display(),
            "outcome_class": bid.outcome_class,
            "bid_amount": bid.bid_amount,
        }
        for bid in call.bids.all()
    ]
    return row


class LiveCallLogView(RoleRequiredMixin, View):
    """``/live/``: the latest calls, then new ones as they come, with a pause button."""

    def get(self, request: HttpRequest) -> HttpResponse:
        masked = not can_see_caller_ids(request.user)
        rows = [live_row(call, masked=masked) for call in live_calls(window=PAGE_WINDOW)]
        return render(
            request,
            "bidlog/live.html",
            {
                "rows": rows,
                "after": max((row["id"] for row in rows), default=0),
                "poll_seconds": POLL_SECONDS,
                "keep": ROWS * 4,
            },
        )


class LiveCallRowsView(RoleRequiredMixin, View):
    """``/live/rows/?after=<id>``: the rows of calls newer than ``after``; 204 when none."""

    def get(self, request: HttpRequest) -> HttpResponse:
        after_id = whole_number_upto(request.GET.get("after", "0"), MAX_ID)
        if after_id is None:
            return HttpResponse(
                "after: the id of the newest call shown, a whole number.",
                status=400,
                content_type="text/plain",
            )
        masked = not can_see_caller_ids(request.user)
        calls = live_calls(after=after_id, window=POLL_WINDOW)
        rows = [live_row(call, masked=masked) for call in calls]
        if not rows:
            return HttpResponse(status=204)
        return render(request, "bidlog/_live_rows.html", {"rows": rows, "fresh": True})
