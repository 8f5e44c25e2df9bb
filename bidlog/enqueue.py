"""Queue a Celery task by its name, so services never import ``bidlog.tasks`` (which imports them).

Names are the ones ``bidlog.tasks`` registers; a message goes to the broker exactly as
``task.delay(*args)`` would send it.
"""

from __future__ import annotations

from typing import Any

from celery import current_app

SEND_TEST_BID = "bidlog.send_test_bid"
ALERT_EMAIL = "bidlog.alert_email"
ALERT_WEBHOOK = "bidlog.alert_webhook"


def task_enqueue(name: str, *args: Any) -> None:
    """Send one message for the task called ``name``; broker errors reach the caller."""
    current_app.send_task(name, args=args)
