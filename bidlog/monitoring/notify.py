"""Alert notices: an email to ``ALERT_EMAILS`` and a JSON POST to ``ALERT_WEBHOOK_URL``.

Both run in worker tasks (``bidlog.tasks.alert_email`` / ``alert_webhook``), which retry with
backoff when these raise, so a failure here is logged and tried again without ever holding up
a bid. The webhook gets a fresh short-timeout request, never the Bid API's session: a slow
receiver must not take connections from buyers.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from bidlog.models import Alert

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0


class WebhookFailed(Exception):
    """The webhook receiver did not accept the notice (network error or non-2xx answer)."""


def alert_payload(alert: Alert, event: str) -> dict[str, Any]:
    """The JSON the webhook receives: the event and the alert with its buyer."""
    buyer = alert.buyer
    return {
        "event": f"alert.{event}",
        "alert": {
            "id": alert.pk,
            "rule": alert.rule,
            "code": alert.code,
            "priority": alert.priority,
            "status": alert.status,
            "title": alert.title,
            "detail": alert.detail,
            "occurrences": alert.occurrences,
            "opened_at": alert.opened_at.isoformat(),
            "last_seen_at": alert.last_seen_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
        "buyer": {
            "id": buyer.pk,
            "name": buyer.name,
            "grid_id": buyer.grid_id,
            "status": buyer.status,
        },
    }


def alert_email_send(*, alert: Alert, event: str) -> bool:
    """Email the alert to ``ALERT_EMAILS``; False when no address is configured."""
    recipients = list(settings.ALERT_EMAILS)
    if not recipients:
        return False
    buyer = alert.buyer
    verb = "resolved" if event == "resolved" else "opened"
    subject = f"[CallGrid Portal] {alert.priority} alert {verb}: {alert.title}"
    lines = [
        f"Alert #{alert.pk} {verb}.",
        "",
        f"Buyer:       {buyer.name} (Grid ID {buyer.grid_id}, {buyer.status})",
        f"Rule:        {alert.get_rule_display()}",
        f"Priority:    {alert.priority}",
        f"Code:        {alert.code if alert.code is not None else '-'}",
        f"Opened:      {alert.opened_at:%Y-%m-%d %H:%M:%S %Z}",
        f"Occurrences: {alert.occurrences}",
    ]
    if alert.resolved_at:
        lines.append(f"Resolved:    {alert.resolved_at:%Y-%m-%d %H:%M:%S %Z}")
    lines += ["", alert.detail]
    send_mail(subject, "\n".join(lines), settings.DEFAULT_FROM_EMAIL, recipients)
    _mark_notified(alert, event)
    return True


def alert_webhook_post(*, alert: Alert, event: str) -> bool:
    """POST the alert as JSON to ``ALERT_WEBHOOK_URL``; False when none is configured.

    Raises :class:`WebhookFailed` when the receiver cannot be reached or answers non-2xx.
    """
    url = settings.ALERT_WEBHOOK_URL
    if not url:
        return False
    with requests.Session() as session:
        # Proxy variables of the worker's environment must not redirect alerts.
        session.trust_env = False
        try:
            response = session.post(
                url,
                json=alert_payload(alert, event),
                timeout=WEBHOOK_TIMEOUT_SECONDS,
                headers={"User-Agent": settings.CALLGRID_USER_AGENT},
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise WebhookFailed(f"webhook {url} unreachable: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(f"webhook {url} answered HTTP {response.status_code}")
    _mark_notified(alert, event)
    return True


def _mark_notified(alert: Alert, event: str) -> None:
    if event == "opened" and alert.notified_at is None:
        alert.notified_at = timezone.now()
        Alert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(
            notified_at=alert.notified_at
        )
