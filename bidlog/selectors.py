"""Reads of the bid log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet

from bidlog.filters import BidLogFilter
from bidlog.models import CALL_BIDS_WINDOW, BidLog, Call


def _bids() -> QuerySet[BidLog]:
    # Every listing shows the buyer's name and Grid ID: join once instead of once per row.
    return with_call_winner(BidLog.objects.select_related("buyer"))


def with_call_winner(bids: QuerySet[BidLog]) -> QuerySet[BidLog]:
    """``bids`` with ``call_winner_id``: the buyer its call went to (``None`` without one).

    An accepted bid whose call went to another buyer lost the auction, and the pages say
    "outbid" rather than "Accepted"; one join on the call's primary key per listed row.
    """
    return bids.annotate(call_winner_id=F("call__winner_id"))


def bid_list(*, filters: Mapping[str, Any]) -> QuerySet[BidLog]:
    """Bids matching ``filters`` (the query parameters of ``BidLogFilter``), newest first.

    Raises ``ValidationError`` keyed by field when a filter value is bad, so callers can say
    which parameter to fix rather than showing every bid.
    """
    filterset = BidLogFilter(data=filters, queryset=_bids())
    if not filterset.is_valid():
        raise ValidationError(
            {field: errors.as_data() for field, errors in filterset.errors.items()}
        )
    return filterset.qs.order_by("-created_at", "-id")


def bid_get(bid_id: int | str) -> BidLog | None:
    """One bid with its buyer, or ``None`` when there is no such bid."""
    try:
        return _bids().get(pk=bid_id)
    except (BidLog.DoesNotExist, ValueError, TypeError):
        return None


def call_list() -> QuerySet[Call]:
    """Routing decisions, newest first, with the winner joined (every listing shows it)."""
    return Call.objects.select_related("winner").order_by("-created_at", "-id")


def call_bids(call: Call) -> QuerySet[BidLog]:
    """The bids behind ``call`` with their buyers, in the order they were made."""
    return (
        _bids()
        .filter(
            call=call,
            created_at__gte=call.created_at - CALL_BIDS_WINDOW,
            created_at__lte=call.created_at + CALL_BIDS_WINDOW,
        )
        .order_by("id")
    )
