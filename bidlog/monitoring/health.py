"""Buyer health: scheduled health-check bids and the one-word verdict shown for each buyer.

Scheduling. Beat runs :func:`health_checks_claim` every minute. A buyer is due when checks are
on (``health_check_minutes`` > 0, a test caller ID set), it is active, and its
``next_health_check_at`` has passed (or was never set). Each due buyer is claimed with a
compare-and-set update that moves ``next_health_check_at`` one interval on, so the check is
queued once even when beat ticks twice or two beat processes run.

Checks follow SPEC §4: the buyer's ``health_check_caller_id`` (never a live caller, so no
duplicate window is burnt), counted against the grid's shared rate limit, and skipped (logged
``skipped_rate_limit``) when fewer than :data:`RATE_HEADROOM_SHARE` of the grid's tokens are
left: monitoring must never starve live traffic.

Verdict (:func:`buyer_health`), from the buyer's latest answers of every source (live, test,
health; skips and pending rows are not answers):

- ``unknown``: no answer in the last :data:`HEALTH_WINDOW`;
- ``failing``: the latest :data:`FAILING_STREAK` answers all failed, or an immediate alert is
  open;
- ``degraded``: at least :data:`DEGRADED_SHARE` of the latest :data:`SAMPLE` answers failed,
  or any other alert is open;
- ``healthy``: otherwise.

A failure is an answer that means the buyer cannot take calls: an error (timeout, network,
5000, 5001, bad response, invalid request) or a blocking code (4001, 4002, 4004, 4006). A
decline, no capacity or duplicate is a working buyer saying no.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from bidlog.choices import AlertStatus, Outcome, Source
from bidlog.models import Alert, BidLog
from bidlog.monitoring.testbids import LimitSkip, limited_bid_send
from bidlog.routing import limits
from bidlog.routing.record import bid_result_record, bid_skip_record
from buyers.choices import BuyerStatus
from buyers.models import Buyer
from callgrid_portal.bidapi.codes import Priority
from callgrid_portal.bidapi.outcomes import LOCAL_OUTCOMES

logger = logging.getLogger(__name__)

HEALTHY = "healthy"
DEGRADED = "degraded"
FAILING = "failing"
UNKNOWN = "unknown"
HEALTH_STATUSES = (HEALTHY, DEGRADED, FAILING, UNKNOWN)

HEALTH_WINDOW = timedelta(hours=24)
SAMPLE = 10
FAILING_STREAK = 3
DEGRADED_SHARE = 0.2
# Health checks leave this share of the grid's rate-limit tokens to live calls.
RATE_HEADROOM_SHARE = 0.2

FAILURE_OUTCOMES = frozenset(
    {
        Outcome.INVALID_REQUEST,
        Outcome.SYSTEM_ERROR,
        Outcome.RATE_LIMITED,
        Outcome.TIMEOUT,
        Outcome.NETWORK_ERROR,
        Outcome.BAD_RESPONSE,
        Outcome.DISABLED,
        Outcome.PAUSED,
        Outcome.CAPACITY_CHECK_FAILED,
        Outcome.NO_NUMBERS,
    }
)
ANSWER_SOURCES = (Source.LIVE, Source.TEST, Source.HEALTH)


def _answers(moment: datetime) -> QuerySet[BidLog]:
    """Answers (sent bids of live, test and health sources) of the health window, newest first."""
    return (
        BidLog.objects.filter(
            source__in=ANSWER_SOURCES,
            created_at__gte=moment - HEALTH_WINDOW,
            created_at__lte=moment,
        )
        .exclude(outcome__in=LOCAL_OUTCOMES)
        .order_by("-created_at", "-id")
    )


def answers_recent(
    *, buyer: Buyer, now: datetime | None = None, limit: int = SAMPLE
) -> list[BidLog]:
    """The buyer's latest answers (sent bids of live, test and health sources), newest first."""
    return list(_answers(now or timezone.now()).filter(buyer=buyer)[:limit])


def answer_outcomes_recent(
    *, buyer_ids: list[int], now: datetime | None = None, limit: int = SAMPLE
) -> dict[int, list[str]]:
    """The outcomes of each buyer's latest answers, newest first, in one query for all.

    On PostgreSQL each buyer's list is a correlated ``ARRAY(... LIMIT n)`` that walks the
    (buyer, created_at) index, so the cost stays per buyer however many rows the day holds.
    Elsewhere (the embedded SQLite) a window function ranks the window's answers per buyer.
    """
    moment = now or timezone.now()
    found: dict[int, list[str]] = {pk: [] for pk in buyer_ids}
    if not buyer_ids:
        return found
    answers = _answers(moment)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.expressions import ArraySubquery

        latest = answers.filter(buyer=OuterRef("pk")).values("outcome")[:limit]
        rows = (
            Buyer.objects.filter(pk__in=buyer_ids)
            .annotate(outcomes=ArraySubquery(latest))
            .values_list("pk", "outcomes")
        )
        found.update((pk, list(outcomes)) for pk, outcomes in rows)
        return found
    ranked = (
        answers.filter(buyer_id__in=buyer_ids)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=F("buyer_id"),
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(rank__lte=limit)
        .order_by("buyer_id", "rank")
        .values_list("buyer_id", "outcome")
    )
    for buyer_id, outcome in ranked:
        found[buyer_id].append(outcome)
    return found


def is_failure(bid: BidLog) -> bool:
    """Whether this answer means the buyer cannot take calls (see the module docstring)."""
    return bid.outcome in FAILURE_OUTCOMES


def open_alert_priorities(*, buyer_ids: list[int] | None = None) -> dict[int, set[str]]:
    """The priorities of the open alerts of each buyer that has any, in one query.

    Open alerts are few (one per buyer and rule at most), so a list of buyers reads them all
    at once (``buyer_ids`` None) instead of once per buyer.
    """
    alerts = Alert.objects.filter(status=AlertStatus.OPEN)
    if buyer_ids is not None:
        alerts = alerts.filter(buyer_id__in=buyer_ids)
    found: dict[int, set[str]] = {}
    for buyer_id, priority in alerts.values_list("buyer_id", "priority"):
        found.setdefault(buyer_id, set()).add(priority)
    return found


def buyer_health(
    buyer: Buyer,
    *,
    now: datetime | None = None,
    open_alerts: dict[int, set[str]] | None = None,
    outcomes: list[str] | None = None,
) -> str:
    """``healthy``, ``degraded``, ``failing`` or ``unknown``, from recent answers and alerts.

    When many buyers are judged at once, ``open_alerts`` (from :func:`open_alert_priorities`)
    and ``outcomes`` (this buyer's list from :func:`answer_outcomes_recent`) spare the queries
    this would otherwise make for the one buyer.
    """
    if outcomes is None:
        outcomes = [bid.outcome for bid in answers_recent(buyer=buyer, now=now)]
    if open_alerts is None:
        open_alerts = open_alert_priorities(buyer_ids=[buyer.pk])
    open_priorities = open_alerts.get(buyer.pk, set())
    if Priority.IMMEDIATE in open_priorities:
        return FAILING
    if not outcomes:
        return DEGRADED if open_priorities else UNKNOWN
    latest = outcomes[:FAILING_STREAK]
    if len(latest) == FAILING_STREAK and all(o in FAILURE_OUTCOMES for o in latest):
        return FAILING
    failures = sum(1 for outcome in outcomes if outcome in FAILURE_OUTCOMES)
    if open_priorities or failures / len(outcomes) >= DEGRADED_SHARE:
        return DEGRADED
    return HEALTHY


# --- scheduling ---------------------------------------------------------------------------


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
    sent = limited_bid_send(
        buyer=buyer,
        caller_id=buyer.health_check_caller_id,
        rate_headroom=limits.bucket_shape(buyer.rate_limit_per_minute)[0] * RATE_HEADROOM_SHARE,
        respect_cooldown=True,
    )
    if isinstance(sent, LimitSkip):
        bid = bid_skip_record(
            buyer=buyer,
            outcome=sent.outcome,
            source=Source.HEALTH,
            caller_id=buyer.health_check_caller_id,
            reason=f"health check skipped: {sent.reason}",
        )
    else:
        bid = bid_result_record(buyer=buyer, result=sent, source=Source.HEALTH)
    # Imported here: alerts read what health checks write.
    from bidlog.monitoring.alerts import alerts_evaluate

    alerts_evaluate(buyer=buyer)
    return bid
