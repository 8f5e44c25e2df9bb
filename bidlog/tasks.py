"""Celery tasks of the bid log: thin wrappers that take ids and call the services.

Every task here is safe to run twice: a redelivered message (``acks_late``, a worker lost
mid-task) finds its work claimed or done and does nothing more. The periodic ones are in the
beat schedule (``callgrid_portal/celery.py``), with the reason for each.
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from bidlog.enqueue import ALERT_EMAIL, ALERT_WEBHOOK, SEND_TEST_BID
from bidlog.models import Alert
from bidlog.monitoring import alerts, checks, notify, testbids
from bidlog.routing import spool

logger = logging.getLogger(__name__)


@shared_task(name=SEND_TEST_BID, ignore_result=True)
def send_test_bid(bid_id: int) -> str | None:
    """Send the queued test bid ``bid_id`` and fill its row in; returns its outcome."""
    bid = testbids.test_bid_run(bid_id=bid_id)
    return bid.outcome if bid is not None else None


@shared_task(name="bidlog.test_bids_recover", ignore_result=True)
def test_bids_recover() -> int:
    """Queue again the test bids a lost message or a dead worker left pending."""
    stranded = testbids.test_bids_stranded()
    for bid_id in stranded:
        send_test_bid.delay(bid_id)
    if stranded:
        logger.warning("re-queued %d stranded test bids", len(stranded))
    return len(stranded)


@shared_task(name="bidlog.health_checks_enqueue", ignore_result=True)
def health_checks_enqueue(now: str | None = None) -> int:
    """Claim the due health checks and queue one task per buyer; returns how many.

    ``now`` (ISO 8601) exists for tests that drive the schedule's clock.
    """
    moment = datetime.fromisoformat(now) if now else timezone.now()
    with transaction.atomic():
        claimed = checks.health_checks_claim(now=moment)
        for buyer_id, due_at in claimed:
            # Queued after the claim commits, so a worker never sees an unclaimed buyer.
            def enqueue(b: int = buyer_id, d: datetime = due_at) -> None:
                run_health_check.delay(b, d.isoformat())

            transaction.on_commit(enqueue)
    return len(claimed)


@shared_task(name="bidlog.run_health_check", ignore_result=True)
def run_health_check(buyer_id: int, due_at: str | None = None) -> str | None:
    """Send one buyer its health check; returns the outcome (``None``: nothing to do)."""
    due = datetime.fromisoformat(due_at) if due_at else None
    bid = checks.health_check_run(buyer_id=buyer_id, due_at=due)
    return bid.outcome if bid is not None else None


@shared_task(name="bidlog.alerts_check", ignore_result=True)
def alerts_check() -> int:
    """Evaluate alert rules for buyers with recent traffic or open alerts (live calls)."""
    return alerts.alerts_evaluate_active()


@shared_task(
    name=ALERT_EMAIL,
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=6,
)
def alert_email(alert_id: int, event: str) -> bool:
    """Email one alert notice; retried with backoff when the mail server fails."""
    alert = Alert.objects.select_related("buyer").filter(pk=alert_id).first()
    if alert is None:
        return False
    return notify.alert_email_send(alert=alert, event=event)


@shared_task(
    name=ALERT_WEBHOOK,
    ignore_result=True,
    autoretry_for=(notify.WebhookFailed,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=6,
)
def alert_webhook(alert_id: int, event: str) -> bool:
    """POST one alert notice to the webhook; retried with backoff when it fails."""
    alert = Alert.objects.select_related("buyer").filter(pk=alert_id).first()
    if alert is None:
        return False
    try:
        return notify.alert_webhook_post(alert=alert, event=event)
    except notify.WebhookFailed as exc:
        logger.warning("alert %s webhook failed (will retry): %s", alert_id, exc)
        raise


@shared_task(name="bidlog.route_spool_replay", ignore_result=True)
def route_spool_replay() -> dict[str, int]:
    """Write the routes spooled while the database was away into the log, exactly once.

    Replays the spool of the machine it runs on (``ROUTE_SPOOL_DIR``); web processes also
    replay their own on their next route.
    """
    report = spool.spool_replay()
    if report.written or report.failed:
        logger.warning("route spool replay: %s", report.as_dict())
    return report.as_dict()
