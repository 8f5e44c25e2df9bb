"""Alerts: notice when a buyer goes bad, tell people once, and stand down when it recovers.

The rules come from the error-code reference's advice on when to act (seeds/
callgrid-error-codes.txt, "Error Resolution Priority" and "When to Contact Support") and
SPEC §5. Each reads the buyer's latest answers (:func:`bidlog.monitoring.health.answers_recent`:
sent
bids of live, test and health sources, newest first):

============== ================================================ ==========================
rule           opens when                                       resolves when
============== ================================================ ==========================
disabled       the latest 3+ answers are all 4001 (immediate)    the latest answer is not
no_numbers     the latest 3+ answers are all 4006 (immediate)    the latest answer is not
capacity_check the latest answer is 4004 while the buyer is      it is not, or the buyer
               active here (review)                              is no longer active
rate_limited   3+ of the latest 10 answers are 5001/429          none of the latest 5 is
declines       90%+ of the latest 20 answers (10 at least) are   under 50% are 2000
               2000: review the buyer's criteria
timeouts       ALERT_TIMEOUT_RATE or more of the latest 20       under half that rate
               answers (5 at least) timed out: performance
health_failing the latest health check failed                    the latest one passed
============== ================================================ ==========================

An alert is opened once per buyer and rule (a partial unique constraint backs this up);
while open, a new matching answer raises ``occurrences``. Opening and resolving are sent by
email and webhook from tasks queued after the commit, so a slow mail server or webhook never
holds up a bid. When an ``immediate`` alert opens for a buyer with ``auto_pause`` on, the buyer
is paused (audited, the alert named as the reason) until an operator resumes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from bidlog.choices import AlertRule, AlertStatus, Outcome, Source
from bidlog.enqueue import ALERT_EMAIL, ALERT_WEBHOOK, task_enqueue
from bidlog.models import Alert, BidLog
from bidlog.monitoring.health import ANSWER_SOURCES, answers_recent, is_failure
from bidlog.monitoring.triage import buyer_muted_until, open_immediate_forget
from buyers.choices import BuyerStatus
from buyers.models import Buyer
from callgrid_portal.bidapi import codes
from callgrid_portal.bidapi.codes import Priority
from callgrid_portal.bidapi.outcomes import LOCAL_OUTCOMES

logger = logging.getLogger(__name__)

SAMPLE = 20
STREAK = 3
RATE_LIMIT_COUNT = 3
RATE_LIMIT_SAMPLE = 10
RATE_LIMIT_CLEAR = 5
DECLINE_SHARE = 0.9
DECLINE_CLEAR_SHARE = 0.5
DECLINE_MIN_SAMPLE = 10
TIMEOUT_MIN_SAMPLE = 5
# The periodic sweep (for live traffic) looks at buyers that answered within this window.
ACTIVE_WINDOW = timedelta(minutes=10)
# Resolved alerts stay in the list this long, so the team sees what just recovered.
RECENT_RESOLVED = timedelta(days=7)

OPENED = "opened"
REPEATED = "repeated"
RESOLVED = "resolved"


@dataclass(frozen=True)
class Verdict:
    """What one rule sees: firing (with the answer that shows it) or recovered, or neither."""

    firing: bool = False
    recovered: bool = False
    evidence: BidLog | None = None
    summary: str = ""


@dataclass(frozen=True)
class AlertChange:
    """One alert opened, repeated or resolved by an evaluation."""

    alert: Alert
    event: str


def _share(answers: list[BidLog], outcome: str) -> float:
    return sum(1 for bid in answers if bid.outcome == outcome) / len(answers) if answers else 0.0


def _streak(answers: list[BidLog], code: int) -> int:
    count = 0
    for bid in answers:
        if bid.code != code:
            break
        count += 1
    return count


def _streak_rule(code: int) -> Callable[[Buyer, list[BidLog], BidLog | None], Verdict]:
    def rule(buyer: Buyer, answers: list[BidLog], health: BidLog | None) -> Verdict:
        if not answers:
            return Verdict()
        streak = _streak(answers, code)
        if streak >= STREAK:
            return Verdict(
                firing=True,
                evidence=answers[0],
                summary=f"The latest {streak} answers were all {code}.",
            )
        return Verdict(recovered=streak == 0)

    return rule


def _capacity_check(buyer: Buyer, answers: list[BidLog], health: BidLog | None) -> Verdict:
    if not answers:
        return Verdict()
    if answers[0].code == 4004 and buyer.status == BuyerStatus.ACTIVE:
        return Verdict(
            firing=True,
            evidence=answers[0],
            summary="CallGrid answered 4004 although the buyer is active in the portal.",
        )
    return Verdict(recovered=True)


def _rate_limited(buyer: Buyer, answers: list[BidLog], health: BidLog | None) -> Verdict:
    if not answers:
        return Verdict()
    if not any(bid.outcome == Outcome.RATE_LIMITED for bid in answers[:RATE_LIMIT_CLEAR]):
        return Verdict(recovered=True)
    latest = answers[:RATE_LIMIT_SAMPLE]
    hits = [bid for bid in latest if bid.outcome == Outcome.RATE_LIMITED]
    if len(hits) >= RATE_LIMIT_COUNT:
        return Verdict(
            firing=True,
            evidence=hits[0],
            summary=f"{len(hits)} of the latest {len(latest)} answers were rate limited (5001).",
        )
    return Verdict()


def _declines(buyer: Buyer, answers: list[BidLog], health: BidLog | None) -> Verdict:
    share = _share(answers, Outcome.DECLINED)
    if len(answers) >= DECLINE_MIN_SAMPLE and share >= DECLINE_SHARE:
        return Verdict(
            firing=True,
            evidence=answers[0],
            summary=f"{share:.0%} of the latest {len(answers)} answers were declines (2000).",
        )
    return Verdict(recovered=bool(answers) and share < DECLINE_CLEAR_SHARE)


def _timeouts(buyer: Buyer, answers: list[BidLog], health: BidLog | None) -> Verdict:
    threshold = settings.ALERT_TIMEOUT_RATE
    share = _share(answers, Outcome.TIMEOUT)
    if len(answers) >= TIMEOUT_MIN_SAMPLE and share >= threshold:
        latest = next(bid for bid in answers if bid.outcome == Outcome.TIMEOUT)
        return Verdict(
            firing=True,
            evidence=latest,
            summary=(
                f"{share:.0%} of the latest {len(answers)} bids timed out "
                f"(threshold {threshold:.0%})."
            ),
        )
    return Verdict(recovered=bool(answers) and share < threshold / 2)


def _health_failing(buyer: Buyer, answers: list[BidLog], health: BidLog | None) -> Verdict:
    if health is None:
        return Verdict()
    if is_failure(health):
        what = f"code {health.code}" if health.code else health.get_outcome_display().lower()
        return Verdict(
            firing=True,
            evidence=health,
            summary=f"The latest health check failed ({what}).",
        )
    return Verdict(recovered=True)


@dataclass(frozen=True)
class RuleSpec:
    rule: str
    priority: str
    code: int | None
    check: Callable[[Buyer, list[BidLog], BidLog | None], Verdict]


RULES: tuple[RuleSpec, ...] = (
    RuleSpec(AlertRule.DISABLED, Priority.IMMEDIATE, 4001, _streak_rule(4001)),
    RuleSpec(AlertRule.NO_NUMBERS, Priority.IMMEDIATE, 4006, _streak_rule(4006)),
    RuleSpec(AlertRule.CAPACITY_CHECK, Priority.REVIEW, 4004, _capacity_check),
    RuleSpec(AlertRule.RATE_LIMITED, Priority.NORMAL, 5001, _rate_limited),
    # The catalog ranks 2000 as information; a buyer declining everything needs a person.
    RuleSpec(AlertRule.DECLINES, Priority.REVIEW, 2000, _declines),
    RuleSpec(AlertRule.TIMEOUTS, Priority.REVIEW, None, _timeouts),
    RuleSpec(AlertRule.HEALTH_FAILING, Priority.REVIEW, None, _health_failing),
)


def guidance(code: int | None) -> str:
    """The catalog's explanation of ``code``: meaning, numbered fixes, when to call support."""
    entry = codes.get(code) if code is not None else None
    if entry is None:
        return ""
    fixes = "\n".join(f"{n}. {fix}" for n, fix in enumerate(entry.fixes, start=1))
    return (
        f"{entry.code} {entry.title}: {entry.meaning}\n\n"
        f"What to do:\n{fixes}\n\n"
        f"When to contact CallGrid support: {entry.contact_support}"
    )


def _timeout_guidance() -> str:
    return (
        "The buyer's endpoint often does not answer within its timeout, so calls wait and "
        "may go elsewhere. Check the buyer's response times in the reports, ask the buyer "
        "whether their system is overloaded, and lower its priority until it recovers."
    )


def _latest_health(buyer: Buyer) -> BidLog | None:
    return (
        BidLog.objects.filter(buyer=buyer, source=Source.HEALTH)
        .exclude(outcome__in=LOCAL_OUTCOMES)
        .order_by("-created_at", "-id")
        .first()
    )


def alerts_evaluate(*, buyer: Buyer, now: datetime | None = None) -> list[AlertChange]:
    """Run every rule for ``buyer``: open, count or resolve its alerts; returns the changes.

    Notifications for opened and resolved alerts are queued after the commit.
    """
    moment = now or timezone.now()
    buyer.refresh_from_db(fields=["status", "auto_pause"])
    answers = answers_recent(buyer=buyer, now=moment, limit=SAMPLE)
    health = _latest_health(buyer)
    changes: list[AlertChange] = []
    for spec in RULES:
        verdict = spec.check(buyer, answers, health)
        change: AlertChange | None = None
        if verdict.firing and verdict.evidence is not None:
            change = _alert_raise(buyer=buyer, spec=spec, verdict=verdict, now=moment)
        elif verdict.recovered:
            change = _alert_resolve(buyer=buyer, rule=spec.rule, now=moment)
        if change is not None:
            changes.append(change)
    return changes


def alerts_evaluate_active(*, now: datetime | None = None) -> int:
    """Evaluate every buyer that answered lately or has an open alert; returns how many."""
    moment = now or timezone.now()
    answered = BidLog.objects.filter(
        created_at__gte=moment - ACTIVE_WINDOW, source__in=ANSWER_SOURCES
    ).values_list("buyer_id", flat=True)
    buyer_ids = set(answered.distinct()) | set(
        Alert.objects.filter(status=AlertStatus.OPEN).values_list("buyer_id", flat=True)
    )
    for buyer in Buyer.objects.filter(pk__in=buyer_ids):
        alerts_evaluate(buyer=buyer, now=moment)
    return len(buyer_ids)


def _title(buyer: Buyer, spec: RuleSpec) -> str:
    return f"{buyer.name}: {AlertRule(spec.rule).label}"


def _detail(spec: RuleSpec, verdict: Verdict, health_code: int | None) -> str:
    code = spec.code if spec.code is not None else health_code
    advice = _timeout_guidance() if spec.rule == AlertRule.TIMEOUTS else guidance(code)
    return f"{verdict.summary}\n\n{advice}".strip()


def _alert_raise(
    *, buyer: Buyer, spec: RuleSpec, verdict: Verdict, now: datetime
) -> AlertChange | None:
    evidence = verdict.evidence
    assert evidence is not None
    seen_at = evidence.created_at
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .filter(buyer=buyer, rule=spec.rule, status=AlertStatus.OPEN)
            .first()
        )
        if alert is not None:
            if seen_at <= alert.last_seen_at:
                return None  # nothing new since the last evaluation
            alert.occurrences += 1
            alert.last_seen_at = seen_at
            alert.detail = _detail(spec, verdict, evidence.code)
            alert.save(update_fields=["occurrences", "last_seen_at", "detail"])
            return AlertChange(alert, REPEATED)
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    buyer=buyer,
                    rule=spec.rule,
                    code=spec.code if spec.code is not None else evidence.code,
                    priority=spec.priority,
                    title=_title(buyer, spec),
                    detail=_detail(spec, verdict, evidence.code),
                    opened_at=now,
                    last_seen_at=seen_at,
                )
        except IntegrityError:
            # Another worker opened it a moment ago; its alert stands and will be counted next.
            return None
        if spec.priority == Priority.IMMEDIATE and buyer.auto_pause:
            _auto_pause(buyer=buyer, alert=alert)
        transaction.on_commit(lambda: _queue_notice(alert, OPENED))
    logger.warning("alert opened: %s", alert)
    return AlertChange(alert, OPENED)


def _alert_resolve(*, buyer: Buyer, rule: str, now: datetime) -> AlertChange | None:
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .filter(buyer=buyer, rule=rule, status=AlertStatus.OPEN)
            .first()
        )
        if alert is None:
            return None
        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = now
        alert.save(update_fields=["status", "resolved_at"])
        transaction.on_commit(lambda: _queue_notice(alert, RESOLVED))
    logger.info("alert resolved: %s", alert)
    return AlertChange(alert, RESOLVED)


def _auto_pause(*, buyer: Buyer, alert: Alert) -> None:
    """Pause ``buyer`` because ``alert`` opened; the audit history names the alert."""
    locked = Buyer.objects.select_for_update().get(pk=buyer.pk)
    if locked.status != BuyerStatus.ACTIVE:
        return
    locked.status = BuyerStatus.PAUSED
    # django-simple-history stores this as the change reason of the history row.
    locked._change_reason = (  # type: ignore[attr-defined]
        f"Auto-paused by alert #{alert.pk}: {alert.title}"
    )
    locked.save(update_fields=["status", "updated_at"])
    buyer.status = locked.status
    logger.warning("buyer %s auto-paused by alert %s", buyer.pk, alert.pk)


def _queue_notice(alert: Alert, event: str) -> None:
    """Queue the email and webhook for an alert, unless its buyer is muted; a broker outage
    is logged, never raised."""
    if alert.priority == Priority.IMMEDIATE:
        open_immediate_forget()
    muted_until = buyer_muted_until(buyer_id=alert.buyer_id)
    if muted_until is not None:
        logger.info("alert %s %s: no notice, buyer muted until %s", alert.pk, event, muted_until)
        return
    for task in (ALERT_EMAIL, ALERT_WEBHOOK):
        try:
            task_enqueue(task, alert.pk, event)
        except Exception:
            # Never let a notice break the evaluation that raised it: the alert is saved and
            # shown in the API and on the dashboard either way.
            logger.exception("could not queue %s for alert %s", task, alert.pk)


# --- reads -------------------------------------------------------------------------------


def alert_list(*, status_filter: str | None = None, buyer_id: int | None = None) -> QuerySet[Alert]:
    """Open alerts and those resolved in the last week, newest first."""
    since = timezone.now() - RECENT_RESOLVED
    queryset = Alert.objects.select_related("buyer", "buyer__alert_mute", "acknowledged_by").filter(
        Q(status=AlertStatus.OPEN) | Q(resolved_at__gte=since)
    )
    if status_filter:
        queryset = queryset.filter(status=status_filter)
    if buyer_id is not None:
        queryset = queryset.filter(buyer_id=buyer_id)
    return queryset.order_by("-opened_at", "-id")
