"""Buyer health: the one-word verdict shown for each buyer, from its latest answers and alerts.

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
from django.db.models import F, OuterRef, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from bidlog.choices import AlertStatus, Outcome, Source
from bidlog.models import Alert, BidLog
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


def buyers_health(buyers: list[Buyer]) -> dict[int, str]:
    """Each buyer's health badge by id, reading alerts and recent answers once for the list."""
    alerts = open_alert_priorities()
    outcomes = answer_outcomes_recent(buyer_ids=[buyer.pk for buyer in buyers])
    return {
        buyer.pk: buyer_health(buyer, open_alerts=alerts, outcomes=outcomes.get(buyer.pk, []))
        for buyer in buyers
    }
