"""Health checks: due buyers claimed once per interval, sent with the test caller ID, verdicts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bidlog.choices import AlertRule, Outcome, Source
from bidlog.models import Alert, BidLog
from bidlog.monitoring import checks, health
from bidlog.routing import limits
from tests.factories import BidLogFactory, BuyerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def checked(simulator):
    """A buyer checked every 5 minutes with its own test caller ID, at the simulator."""
    buyer = BuyerFactory(
        endpoint_url=simulator.endpoint,
        health_check_minutes=5,
        health_check_caller_id="7205550100",
    )
    limits.limits_reset(grid_id=buyer.grid_id)
    return buyer


def test_due_buyer_is_claimed_once_per_interval_however_often_beat_ticks(checked):
    start = timezone.now()

    first = checks.health_checks_claim(now=start)
    same_tick = checks.health_checks_claim(now=start)
    a_minute_later = checks.health_checks_claim(now=start + timedelta(minutes=1))
    next_interval = checks.health_checks_claim(now=start + timedelta(minutes=5))

    assert [buyer_id for buyer_id, _ in first] == [checked.pk]
    assert same_tick == []
    assert a_minute_later == []
    assert next_interval == [(checked.pk, start + timedelta(minutes=5))]
    checked.refresh_from_db()
    assert checked.next_health_check_at == start + timedelta(minutes=10)


def test_checks_that_fell_behind_restart_from_now(checked):
    start = timezone.now()
    checks.health_checks_claim(now=start)

    late = start + timedelta(minutes=23)
    checks.health_checks_claim(now=late)

    checked.refresh_from_db()
    assert checked.next_health_check_at == late + timedelta(minutes=5)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "paused"},
        {"status": "disabled"},
        {"health_check_minutes": 0},
        {"health_check_caller_id": ""},
    ],
    ids=["paused", "disabled", "checks-off", "no-test-caller"],
)
def test_buyer_is_not_claimed_when_it_must_not_be_checked(checked, fields):
    for name, value in fields.items():
        setattr(checked, name, value)
    checked.save()

    assert checks.health_checks_claim(now=timezone.now()) == []


def test_check_uses_the_test_caller_id_and_is_logged_as_health(simulator, checked):
    simulator.configure(checked.grid_id, respond="decline")

    bid = checks.health_check_run(buyer_id=checked.pk)

    assert bid is not None
    assert (bid.source, bid.outcome, bid.caller_id) == (
        Source.HEALTH,
        Outcome.DECLINED,
        "7205550100",
    )
    [received] = simulator.requests(checked.grid_id)
    assert received["body"]["CallerId"] == "7205550100"


def test_check_near_the_rate_limit_is_skipped_and_logged(simulator, checked):
    checked.rate_limit_per_minute = 10
    checked.save()
    for _ in range(17):  # live traffic took most of the burst's 20 tokens
        limits.rate_limit_take(grid_id=checked.grid_id, per_minute=10)

    bid = checks.health_check_run(buyer_id=checked.pk)

    assert bid is not None
    assert bid.outcome == Outcome.SKIPPED_RATE_LIMIT
    assert bid.source == Source.HEALTH
    assert "kept for live calls" in bid.error
    assert simulator.requests(checked.grid_id) == []


def test_paused_buyer_is_not_checked_even_if_a_task_was_queued(simulator, checked):
    checked.status = "paused"
    checked.save()

    assert checks.health_check_run(buyer_id=checked.pk) is None
    assert simulator.requests(checked.grid_id) == []


def test_redelivered_check_sends_nothing_the_second_time(simulator, checked):
    due = timezone.now() - timedelta(seconds=1)

    checks.health_check_run(buyer_id=checked.pk, due_at=due)
    again = checks.health_check_run(buyer_id=checked.pk, due_at=due)

    assert again is None
    assert len(simulator.requests(checked.grid_id)) == 1


def _answers(buyer, outcomes: list[str]) -> None:
    """Write answers oldest first, a second apart, ending now."""
    now = timezone.now()
    for age, outcome in enumerate(reversed(outcomes)):
        BidLogFactory(buyer=buyer, outcome=outcome, created_at=now - timedelta(seconds=age))


def test_health_is_unknown_without_recent_answers():
    buyer = BuyerFactory()
    BidLogFactory(buyer=buyer, created_at=timezone.now() - timedelta(days=2))
    BidLogFactory(buyer=buyer, outcome=Outcome.SKIPPED_RATE_LIMIT)

    assert health.buyer_health(buyer) == "unknown"


def test_health_is_healthy_when_answers_work_declines_included():
    buyer = BuyerFactory()
    _answers(buyer, [Outcome.ACCEPTED, Outcome.DECLINED, Outcome.NO_CAPACITY] * 3)

    assert health.buyer_health(buyer) == "healthy"


def test_health_is_degraded_when_a_fifth_of_recent_answers_failed():
    buyer = BuyerFactory()
    _answers(buyer, [Outcome.TIMEOUT, Outcome.SYSTEM_ERROR] + [Outcome.ACCEPTED] * 8)

    assert health.buyer_health(buyer) == "degraded"


def test_health_is_failing_after_three_failures_in_a_row():
    buyer = BuyerFactory()
    _answers(
        buyer,
        [Outcome.ACCEPTED] * 5 + [Outcome.TIMEOUT, Outcome.NETWORK_ERROR] + [Outcome.DISABLED],
    )

    assert health.buyer_health(buyer) == "failing"


def test_health_is_failing_while_an_immediate_alert_is_open():
    buyer = BuyerFactory()
    _answers(buyer, [Outcome.ACCEPTED])
    Alert.objects.create(buyer=buyer, rule=AlertRule.NO_NUMBERS, priority="immediate", title="x")

    assert health.buyer_health(buyer) == "failing"


def test_buyer_api_shows_the_health_verdict(viewer_api):
    buyer = BuyerFactory()
    _answers(buyer, [Outcome.TIMEOUT] * 3)

    response = viewer_api.get(f"/api/v1/buyers/{buyer.pk}/")

    assert response.status_code == 200
    assert response.json()["health"] == "failing"


def test_buyers_list_reads_open_alerts_once_for_all_buyers(viewer_api):
    for n in range(6):
        buyer = BuyerFactory()
        _answers(buyer, [Outcome.ACCEPTED])
        if n % 2:
            Alert.objects.create(
                buyer=buyer, rule=AlertRule.NO_NUMBERS, priority="immediate", title="x"
            )

    with CaptureQueriesContext(connection) as queries:
        response = viewer_api.get("/api/v1/buyers/")

    statements = [q["sql"] for q in queries.captured_queries]
    assert len([sql for sql in statements if '"bidlog_alert"' in sql]) == 1
    # The latest answers of every buyer come in one query too.
    assert len([sql for sql in statements if '"bidlog_bidlog"' in sql]) == 1
    assert sorted(row["health"] for row in response.json()) == ["failing"] * 3 + ["healthy"] * 3


def test_answers_read_for_many_buyers_are_each_buyer_s_own_latest_answers():
    now = timezone.now()
    failing, degraded, stale, silent, busy = (BuyerFactory() for _ in range(5))
    _answers(failing, [Outcome.ACCEPTED] * 9 + [Outcome.TIMEOUT] * 3)
    _answers(degraded, [Outcome.TIMEOUT] * 2 + [Outcome.ACCEPTED] * 8)
    BidLogFactory(buyer=stale, outcome=Outcome.TIMEOUT, created_at=now - timedelta(days=2))
    _answers(busy, [Outcome.DECLINED, Outcome.SYSTEM_ERROR, Outcome.ACCEPTED] * 5)
    # Newer than every answer, yet not answers: skips are never sent.
    BidLogFactory(buyer=busy, outcome=Outcome.SKIPPED_RATE_LIMIT, created_at=now)
    buyers = [failing, degraded, stale, silent, busy]

    read = health.answer_outcomes_recent(buyer_ids=[b.pk for b in buyers])

    for buyer in buyers:
        own = [bid.outcome for bid in health.answers_recent(buyer=buyer)]
        assert read[buyer.pk] == own
        assert health.buyer_health(buyer, outcomes=read[buyer.pk]) == health.buyer_health(buyer)
    assert len(read[busy.pk]) == health.SAMPLE
    assert read[stale.pk] == read[silent.pk] == []
    verdicts = [health.buyer_health(b, outcomes=read[b.pk]) for b in buyers]
    assert verdicts == ["failing", "degraded", "unknown", "unknown", "degraded"]


def test_check_result_feeds_the_alert_rules(simulator, checked):
    simulator.configure(checked.grid_id, respond="no_numbers")

    checks.health_check_run(buyer_id=checked.pk)

    alert = Alert.objects.get(buyer=checked)
    assert alert.rule == AlertRule.HEALTH_FAILING
    assert alert.code == 4006
    assert BidLog.objects.filter(buyer=checked, source=Source.HEALTH).count() == 1
