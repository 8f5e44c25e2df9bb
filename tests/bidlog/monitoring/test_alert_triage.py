"""Acknowledging and muting alerts: services, the API by role, the page's forms, the header."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bidlog.choices import AlertRule, AlertStatus, Outcome
from bidlog.models import Alert, AlertMute
from bidlog.monitoring import triage
from tests.alert_clock import Clock
from tests.broker_queue import queued_messages
from tests.conftest import page_client
from tests.factories import BuyerFactory

pytestmark = pytest.mark.django_db


def _alert(buyer, rule: str = AlertRule.DISABLED, **fields) -> Alert:
    return Alert.objects.create(
        buyer=buyer,
        rule=rule,
        code=fields.pop("code", 4001),
        priority=fields.pop("priority", "immediate"),
        title=fields.pop("title", f"{buyer.name}: campaign disabled"),
        **fields,
    )


# --- API ------------------------------------------------------------------------------------


def test_operator_acknowledges_an_alert_and_the_api_shows_who_and_when(operator_api, bob):
    alert = _alert(BuyerFactory(name="Acme"))

    response = operator_api.post(f"/api/v1/alerts/{alert.pk}/acknowledge/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["acknowledged_by"] == "bob"
    assert body["acknowledged_at"] is not None
    alert.refresh_from_db()
    assert alert.acknowledged_by == bob
    assert alert.status == AlertStatus.OPEN  # acknowledged is not resolved


def test_second_acknowledgement_is_a_conflict_naming_the_first(operator_api, bob):
    alert = _alert(BuyerFactory())
    triage.alert_acknowledge(alert=alert, user=bob)

    response = operator_api.post(f"/api/v1/alerts/{alert.pk}/acknowledge/")

    assert response.status_code == 409
    assert "already acknowledged by bob" in response.json()["detail"]


def test_a_resolved_alert_cannot_be_acknowledged(operator_api):
    alert = _alert(BuyerFactory(), status=AlertStatus.RESOLVED, resolved_at=timezone.now())
    response = operator_api.post(f"/api/v1/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 409
    assert "resolved" in response.json()["detail"]


def test_viewer_may_read_but_not_acknowledge_or_mute(viewer_api):
    buyer = BuyerFactory()
    alert = _alert(buyer)

    assert viewer_api.post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code == 403
    muted = viewer_api.post("/api/v1/alerts/mutes/", {"buyer": buyer.pk, "minutes": 60})
    assert muted.status_code == 403
    assert viewer_api.get("/api/v1/alerts/mutes/").status_code == 200
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None
    assert not AlertMute.objects.exists()


def test_unknown_alert_is_a_json_404(operator_api):
    response = operator_api.post("/api/v1/alerts/999999/acknowledge/")
    assert response.status_code == 404
    assert response["content-type"].startswith("application/json")


def test_operator_mutes_a_buyer_and_its_alerts_show_muted(operator_api):
    buyer = BuyerFactory(name="Acme")
    _alert(buyer)

    response = operator_api.post(
        "/api/v1/alerts/mutes/", {"buyer": buyer.pk, "minutes": 240}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["muted_by"] == "bob"
    [row] = operator_api.get("/api/v1/alerts/").json()
    assert row["muted_until"] is not None
    until = AlertMute.objects.get(buyer=buyer).until
    assert timedelta(minutes=239) < until - timezone.now() <= timedelta(minutes=240)
    [listed] = operator_api.get("/api/v1/alerts/mutes/").json()
    assert listed["buyer"] == buyer.pk


def test_mute_until_a_time_and_unmute(operator_api):
    buyer = BuyerFactory()
    until = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)

    response = operator_api.post(
        "/api/v1/alerts/mutes/", {"buyer": buyer.pk, "until": until.isoformat()}, format="json"
    )
    assert response.status_code == 201, response.content
    assert AlertMute.objects.get(buyer=buyer).until == until

    assert operator_api.delete(f"/api/v1/alerts/mutes/{buyer.pk}/").status_code == 204
    assert not AlertMute.objects.exists()
    again = operator_api.delete(f"/api/v1/alerts/mutes/{buyer.pk}/")
    assert again.status_code == 404
    assert again.json()["field"] == "buyer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"minutes": 60}, "buyer"),
        ({"buyer": 999999, "minutes": 60}, "buyer"),
        ({"buyer": "{buyer}", "minutes": 0}, "minutes"),
        ({"buyer": "{buyer}", "minutes": 10**30}, "minutes"),
        ({"buyer": "{buyer}", "minutes": 43201}, "minutes"),
        ({"buyer": "{buyer}"}, "minutes"),
        ({"buyer": "{buyer}", "minutes": 5, "until": "2030-01-01T00:00"}, "minutes"),
        ({"buyer": "{buyer}", "until": "yesterday"}, "until"),
        ({"buyer": "{buyer}", "until": "2001-01-01T00:00:00Z"}, "until"),
        ({"buyer": "{buyer}", "until": "9999-12-31T23:59:59"}, "until"),
    ],
)
def test_bad_mute_input_is_a_400_naming_the_field(operator_api, body, field):
    buyer = BuyerFactory()
    sent = {key: buyer.pk if value == "{buyer}" else value for key, value in body.items()}

    response = operator_api.post("/api/v1/alerts/mutes/", sent, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not AlertMute.objects.exists()


# --- Notices and the header count ----------------------------------------------------------


def test_a_muted_buyer_opens_alerts_but_queues_no_notice(
    bob, celery_broker, django_capture_on_commit_callbacks
):
    clock = Clock(BuyerFactory(name="Muted Co"))
    triage.alert_mute_set(buyer=clock.buyer, span=triage.mute_span(minutes=60), user=bob)
    clock.answer(*[Outcome.DISABLED] * 3)

    with django_capture_on_commit_callbacks(execute=True):
        [change] = clock.evaluate()

    assert change.alert.status == AlertStatus.OPEN
    assert queued_messages(celery_broker.queue) == []


def test_an_expired_mute_notifies_again(bob, celery_broker, django_capture_on_commit_callbacks):
    clock = Clock(BuyerFactory(name="Was Muted"))
    AlertMute.objects.create(
        buyer=clock.buyer,
        muted_at=timezone.now() - timedelta(hours=2),
        until=timezone.now() - timedelta(hours=1),
    )
    clock.answer(*[Outcome.DISABLED] * 3)
    with django_capture_on_commit_callbacks(execute=True):
        clock.evaluate()
    assert len(queued_messages(celery_broker.queue)) == 2


def test_header_counts_open_immediate_alerts_nobody_took(
    bob, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    acme, beta, gamma = BuyerFactory(), BuyerFactory(), BuyerFactory()
    _alert(acme)
    _alert(beta)
    _alert(gamma, rule=AlertRule.DECLINES, priority="review")
    _alert(acme, rule=AlertRule.NO_NUMBERS, status=AlertStatus.RESOLVED)
    triage.open_immediate_forget()
    client = page_client(bob)

    page = client.get("/troubleshooting/").content.decode()
    assert "2 immediate alerts" in page

    taken = Alert.objects.get(buyer=beta)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/alerts/{taken.pk}/acknowledge/")
    assert "1 immediate alert<" in client.get("/troubleshooting/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/alerts/mute/", {"buyer": acme.pk, "duration": "1h"})
    assert "0 immediate alerts" in client.get("/troubleshooting/").content.decode()
    # Cached: a second page does not count again.
    with django_assert_max_num_queries(20) as counted:
        client.get("/troubleshooting/")
    assert not any("bidlog_alert" in q["sql"] for q in counted.captured_queries)


def test_no_count_for_a_visitor_or_a_user_without_a_role(client):
    page = client.get("/accounts/login/").content.decode()
    assert "immediate alert" not in page


# --- The page's forms ------------------------------------------------------------------------


def test_page_lists_open_and_resolved_alerts_in_tabs_with_severity_words(alice):
    buyer = BuyerFactory(name="Acme")
    _alert(buyer, title="Acme: campaign disabled")
    _alert(
        buyer,
        rule=AlertRule.TIMEOUTS,
        priority="review",
        title="Acme: timeouts",
        status=AlertStatus.RESOLVED,
        resolved_at=timezone.now(),
    )
    client = page_client(alice)

    open_tab = client.get("/alerts/").content.decode()
    assert "Immediate action" in open_tab and "sev-immediate" in open_tab
    assert "Acme: campaign disabled" in open_tab and "Acme: timeouts" not in open_tab
    assert f"/buyers/{buyer.pk}/" in open_tab
    assert f"/bids/?buyer={buyer.pk}&amp;since=" in open_tab
    assert ">Acknowledge</button>" not in open_tab  # a viewer reads only

    resolved = client.get("/alerts/?status=resolved").content.decode()
    assert "Acme: timeouts" in resolved and "Review and adjust" in resolved


def test_unknown_tab_says_so_and_shows_open_alerts(alice):
    response = page_client(alice).get("/alerts/?status=closed")
    assert response.status_code == 200
    assert "Status: choose open or resolved" in response.content.decode()


def test_viewer_posts_are_refused(alice):
    alert = _alert(BuyerFactory())
    client = page_client(alice)
    assert client.post(f"/alerts/{alert.pk}/acknowledge/").status_code == 403
    assert (
        client.post("/alerts/mute/", {"buyer": alert.buyer_id, "duration": "1h"}).status_code == 403
    )


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"duration": "2h"}, "Mute for: Select a valid choice"),
        ({"duration": "custom", "until": ""}, "Mute until: give the time the mute ends"),
        ({"duration": "custom", "until": "tomorrow"}, "Mute until:"),
        ({"duration": "custom", "until": "2001-01-01T10:00"}, "must be in the future"),
        ({"duration": "custom", "until": "2099-12-31T10:00"}, "within 30 days"),
        ({"duration": "custom", "until": "9999-12-31T23:59:59"}, "Mute until:"),
        ({"buyer": "999999", "duration": "1h"}, "Buyer: Select a valid choice"),
        ({"buyer": "x" * 5000, "duration": "1h"}, "Buyer: Select a valid choice"),
    ],
)
def test_bad_mute_form_says_which_field(bob, form, message):
    buyer = BuyerFactory()
    response = page_client(bob).post("/alerts/mute/", {"buyer": buyer.pk, **form}, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not AlertMute.objects.exists()


def test_acknowledging_an_unknown_alert_is_a_404_page(bob):
    assert page_client(bob).post("/alerts/999999/acknowledge/").status_code == 404


def test_custom_mute_and_unmute_from_the_page(bob):
    buyer = BuyerFactory(name="Acme")
    until = (timezone.now() + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")
    client = page_client(bob)

    page = client.post(
        "/alerts/mute/", {"buyer": buyer.pk, "duration": "custom", "until": until}, follow=True
    ).content.decode()
    assert "Acme&#x27;s alerts are muted until" in page
    assert AlertMute.objects.get(buyer=buyer).muted_by == bob

    page = client.post(f"/alerts/mute/{buyer.pk}/unmute/", follow=True).content.decode()
    assert "Acme&#x27;s alerts notify again." in page
    assert not AlertMute.objects.exists()
