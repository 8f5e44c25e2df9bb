"""Scheduled health-check bids: which buyers are due, claiming them once, sending the check.

Scheduling. Beat runs :func:`health_checks_claim` every minute. A buyer is due when checks are
on (``health_check_minutes`` > 0, a test caller ID set), it is active, and its
``next_health_check_at`` has passed (or was never set). Each due buyer is claimed with a
compare-and-set update that moves ``next_health_check_at`` one interval on, so the check is
queued once even when beat ticks twice or two beat processes run.

Checks follow SPEC §4: the buyer's ``health_check_caller_id`` (never a live caller, so no
duplicate window is burnt), counted against the grid's shared rate limit, and skipped (logged
``skipped_rate_limit``) when fewer than :data:`RATE_HEADROOM_SHARE` of the grid's tokens are
left: monitoring must never starve live traffic.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from bidlog.choices import Source
from bidlog.models import BidLog
from bidlog.monitoring.alerts import alerts_evaluate
from bidlog.monitoring.health import RATE_HEADROOM_SHARE
from bidlog.routing import limits
from bidlog.routing.eligibility import Block
from bidlog.routing.record import bid_result_record, bid_skip_record
from bidlog.routing.send import bid_send
from buyers.choices import BuyerStatus
from buyers.models import Buyer

logger = logging.getLogger(__name__)


def health_checks_due(*, now: datetime) -> list[Buyer]:
    """Active buyers with checks on whose next check time has come (or was never set)."""
    return list(
        Buyer.objects.filter(status=BuyerStatus.ACTIVE, health_check_minutes__gt=0)
        .exclude(health_check_caller_id="")
        .filter(Q(next_health_check_at__isnull=True) | Q(next_health_check_at__lte=now))
        .order_by("pk")
    )


def health_checks_claim(*, now: datetime | None = None) -> list[tuple[int, datetime]]:
    """Claim every due check; returns ``(buyer_id, due_at)`` for each one this caller won.

    The claim moves ``next_health_check_at`` from the value we read to the next due time in
    one UPDATE; a second tick (or a second beat) reading the same value finds it changed and
    claims nothing. The next time keeps the buyer's rhythm (due + interval) unless checks
    fell behind, when it restarts from now. ``update()`` skips the buyer's audit history on
    purpose: scheduling is not a change anyone made.
    """
    moment = now or timezone.now()
    claimed: list[tuple[int, datetime]] = []
    for buyer in health_checks_due(now=moment):
        due = buyer.next_health_check_at or moment
        interval = timedelta(minutes=buyer.health_check_minutes)
        following = due + interval
        if following <= moment:
            following = moment + interval
        won = Buyer.objects.filter(
            pk=buyer.pk, next_health_check_at=buyer.next_health_check_at
        ).update(next_health_check_at=following)
        if won:
            claimed.append((buyer.pk, due))
    return claimed


def health_check_run(*, buyer_id: int, due_at: datetime | None = None) -> BidLog | None:
    """Send ``buyer_id`` its health check now, log it with source ``health``, evaluate alerts.

    The check is one row, its final attempt's answer with every attempt in its trace.

    Nothing is sent (and ``None`` returned) when the buyer is gone, paused or disabled, has
    checks off, or already has a health row since ``due_at`` (a redelivered task). When the
    grid is near its rate limit, or busy, the check is logged as skipped instead of sent.
    """
    buyer = Buyer.objects.filter(pk=buyer_id).first()
    if (
        buyer is None
        or buyer.status != BuyerStatus.ACTIVE
        or not buyer.health_check_minutes
        or not buyer.health_check_caller_id
    ):
        return None
    if (
        due_at is not None
        and BidLog.objects.filter(
            buyer=buyer, source=Source.HEALTH, created_at__gte=due_at
        ).exists()
    ):
        return None
    sent = bid_send(
        buyer=buyer,
        caller_id=buyer.health_check_caller_id,
        rate_headroom=limits.bucket_shape(buyer.rate_limit_per_minute)[0] * RATE_HEADROOM_SHARE,
        respect_cooldown=True,
    )
    if isinstance(sent, Block):
        bid = bid_skip_record(
            buyer=buyer,
            outcome=sent.outcome,
            source=Source.HEALTH,
            caller_id=buyer.health_check_caller_id,
            reason=f"health check skipped: {sent.reason}",
        )
    else:
        bid = bid_result_record(buyer=buyer, result=sent, source=Source.HEALTH)
    alerts_evaluate(buyer=buyer)
    return bid
