"""Alert rules: each opens once, counts repeats and resolves itself; email and webhook notices."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail

from bidlog.choices import AlertRule, AlertStatus, Outcome, Source
from bidlog.models import Alert
from bidlog.monitoring import notify
from tests.alert_clock import Clock
from tests.broker_queue import queued_messages
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock() -> Clock:
    return Clock(BuyerFactory(name="Acme Insurance"))


def _open(buyer, rule: str) -> Alert | None:
    return Alert.objects.filter(buyer=buyer, rule=rule, status=AlertStatus.OPEN).first()


# (rule, answers that open it, one more that repeats it, answers that resolve it)
RULE_CASES = [
    (
        AlertRule.DISABLED,
        [Outcome.DISABLED] * 3,
        [Outcome.DISABLED],
        [Outcome.ACCEPTED],
    ),
    (
        AlertRule.NO_NUMBERS,
        [Outcome.NO_NUMBERS] * 3,
        [Outcome.NO_NUMBERS],
        [Outcome.DECLINED],
    ),
    (
        AlertRule.CAPACITY_CHECK,
        [Outcome.CAPACITY_CHECK_FAILED],
        [Outcome.CAPACITY_CHECK_FAILED],
        [Outcome.ACCEPTED],
    ),
    (
        AlertRule.RATE_LIMITED,
        [Outcome.RATE_LIMITED, Outcome.ACCEPTED, Outcome.RATE_LIMITED, Outcome.RATE_LIMITED],
        [Outcome.RATE_LIMITED],
        [Outcome.ACCEPTED] * 5,
    ),
    (
        AlertRule.DECLINES,
        [Outcome.DECLINED] * 10,
        [Outcome.DECLINED],
        [Outcome.ACCEPTED] * 11,  # 9 declines in the latest 20: under half
    ),
    (
        AlertRule.TIMEOUTS,
        [Outcome.ACCEPTED] * 3 + [Outcome.TIMEOUT] * 2,
        [Outcome.TIMEOUT],
        [Outcome.ACCEPTED] * 20,
    ),
]


@pytest.mark.parametrize(
    ("rule", "opening", "repeat", "recovery"), RULE_CASES, ids=[c[0] for c in RULE_CASES]
)
def test_rule_opens_once_counts_repeats_and_resolves(clock, rule, opening, repeat, recovery):
    clock.answer(*opening[:-1])
    clock.evaluate()
    assert _open(clock.buyer, rule) is None  # one answer short of the rule

    clock.answer(opening[-1])
    clock.evaluate()
    alert = _open(clock.buyer, rule)
    assert alert is not None and alert.occurrences == 1

    clock.evaluate()  # nothing new: nothing counted
    clock.answer(*repeat)
    clock.evaluate()
    alert.refresh_from_db()
    assert alert.occurrences == 2
    assert Alert.objects.filter(buyer=clock.buyer, rule=rule).count() == 1

    clock.answer(*recovery)
    clock.evaluate()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert alert.resolved_at is not None


def test_failing_health_check_opens_and_a_passing_one_resolves(clock):
    clock.answer(Outcome.ACCEPTED)  # live traffic is fine
    clock.answer(Outcome.TIMEOUT, source=Source.HEALTH)
    clock.evaluate()
    alert = _open(clock.buyer, AlertRule.HEALTH_FAILING)
    assert alert is not None
    assert "latest health check failed" in alert.detail

    clock.answer(Outcome.DECLINED, source=Source.HEALTH)
    clock.evaluate()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED


def test_alert_carries_the_guidance_of_its_code(clock):
    clock.answer(*[Outcome.NO_NUMBERS] * 3)
    clock.evaluate()

    alert = _open(clock.buyer, AlertRule.NO_NUMBERS)
    assert alert.priority == "immediate"
    assert alert.code == 4006
    assert alert.title == "Acme Insurance: No available numbers (repeated 4006)"
    assert "The latest 3 answers were all 4006." in alert.detail
    assert "What to do:" in alert.detail
    assert "1. " in alert.detail


def test_4004_on_a_buyer_paused_here_opens_nothing(clock):
    clock.buyer.status = "paused"
    clock.buyer.save()
    clock.answer(Outcome.CAPACITY_CHECK_FAILED)

    clock.evaluate()

    assert _open(clock.buyer, AlertRule.CAPACITY_CHECK) is None


def test_immediate_alert_pauses_a_buyer_with_auto_pause_and_records_why(clock):
    clock.buyer.auto_pause = True
    clock.buyer.save()
    clock.answer(*[Outcome.DISABLED] * 3)

    clock.evaluate()

    alert = _open(clock.buyer, AlertRule.DISABLED)
    clock.buyer.refresh_from_db()
    assert clock.buyer.status == "paused"
    latest = clock.buyer.history.order_by("-history_date").first()
    assert latest.status == "paused"
    assert latest.history_change_reason == f"Auto-paused by alert #{alert.pk}: {alert.title}"

    clock.answer(Outcome.ACCEPTED)  # recovery resolves the alert but never resumes the buyer
    clock.evaluate()
    clock.buyer.refresh_from_db()
    assert clock.buyer.status == "paused"


def test_immediate_alert_leaves_a_buyer_without_auto_pause_active(clock):
    clock.answer(*[Outcome.DISABLED] * 3)

    clock.evaluate()

    clock.buyer.refresh_from_db()
    assert clock.buyer.status == "active"


def test_alert_email_goes_to_alert_emails_with_the_guidance(clock, settings):
    settings.ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    clock.answer(*[Outcome.DISABLED] * 3)
    [change] = clock.evaluate()

    sent = notify.alert_email_send(alert=change.alert, event="opened")

    assert sent is True
    [message] = mail.outbox
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert message.subject == (
        "[CallGrid Portal] immediate alert opened: "
        "Acme Insurance: Campaign disabled (repeated 4001)"
    )
    assert clock.buyer.grid_id in message.body
    assert "4001" in message.body
    assert "What to do:" in message.body
    change.alert.refresh_from_db()
    assert change.alert.notified_at is not None


def test_no_alert_emails_configured_sends_nothing(clock, settings):
    settings.ALERT_EMAILS = []
    clock.answer(*[Outcome.DISABLED] * 3)
    [change] = clock.evaluate()

    assert notify.alert_email_send(alert=change.alert, event="opened") is False
    assert mail.outbox == []


class _Receiver(BaseHTTPRequestHandler):
    status = 200
    received: list[dict] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[type[_Receiver]]:
    """A local HTTP server that records the JSON posted to it."""
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/callgrid"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def test_webhook_receives_the_alert_as_json(clock, settings, webhook):
    settings.ALERT_WEBHOOK_URL = webhook.url
    clock.answer(*[Outcome.NO_NUMBERS] * 3)
    [change] = clock.evaluate()

    assert notify.alert_webhook_post(alert=change.alert, event="opened") is True

    [payload] = webhook.received
    assert payload["event"] == "alert.opened"
    assert payload["alert"]["rule"] == "no_numbers"
    assert payload["alert"]["code"] == 4006
    assert payload["alert"]["priority"] == "immediate"
    assert payload["buyer"] == {
        "id": clock.buyer.pk,
        "name": "Acme Insurance",
        "grid_id": clock.buyer.grid_id,
        "status": "active",
    }


def test_webhook_refusal_raises_so_the_task_retries(clock, settings, webhook):
    settings.ALERT_WEBHOOK_URL = webhook.url
    webhook.status = 500
    clock.answer(*[Outcome.NO_NUMBERS] * 3)
    [change] = clock.evaluate()

    with pytest.raises(notify.WebhookFailed, match="HTTP 500"):
        notify.alert_webhook_post(alert=change.alert, event="opened")


def test_opening_queues_email_and_webhook_notices_after_commit(
    clock, celery_broker, django_capture_on_commit_callbacks
):
    clock.answer(*[Outcome.DISABLED] * 3)

    with django_capture_on_commit_callbacks(execute=True):
        [change] = clock.evaluate()

    assert sorted(queued_messages(celery_broker.queue)) == [
        ("bidlog.alert_email", [change.alert.pk, "opened"]),
        ("bidlog.alert_webhook", [change.alert.pk, "opened"]),
    ]
