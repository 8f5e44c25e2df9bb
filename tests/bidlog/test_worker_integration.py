"""Test bids and health checks through a real Celery worker process and a real broker.

The broker is whatever the environment configures (Redis in CI, the filesystem transport by
default); the worker is ``celery -A callgrid_portal worker`` in a subprocess on this test's
own queue and database, and the buyer's endpoint is the CallGrid simulator over real HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bidlog import tasks
from bidlog.choices import Outcome, Source
from bidlog.models import BidLog
from bidlog.monitoring import testbids
from bidlog.routing import limits
from tests.factories import BuyerFactory

pytestmark = pytest.mark.integration


def _wait_for(condition: Callable[[], object], *, timeout: float = 20.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _finished(bid_id: int) -> bool:
    return BidLog.objects.filter(pk=bid_id).exclude(outcome=Outcome.PENDING).exists()


@pytest.fixture
def buyer(simulator):
    made = BuyerFactory(endpoint_url=simulator.endpoint, health_check_caller_id="7205550100")
    limits.limits_reset(grid_id=made.grid_id)
    return made


# "configured" is Redis in CI; "filesystem" is the embedded default's server-less broker.
@pytest.mark.parametrize("celery_broker", ["configured", "filesystem"], indirect=True)
def test_queued_test_bid_reaches_the_simulator_and_fills_its_row(
    celery_broker, celery_worker_factory, simulator, buyer
):
    simulator.configure(buyer.grid_id, respond="accept", bid_amount="31.25")
    worker = celery_worker_factory()
    if celery_broker.env.get("CELERY_BROKER_URL") == "":
        # The embedded default's transport: kombu's filesystem one, writing atomically.
        assert any("callgrid_portal.broker:Transport://" in line for line in worker.log), worker.log

    bid = testbids.test_bid_queue(buyer=buyer, caller_id="(303) 555-1234", state_code="CO")

    _wait_for(lambda: _finished(bid.pk), what="the worker to fill the test bid")
    bid.refresh_from_db()
    assert bid.outcome == Outcome.ACCEPTED
    assert bid.source == Source.TEST
    assert str(bid.bid_amount) == "31.25"
    assert bid.claimed_at is not None
    [received] = simulator.requests(buyer.grid_id)
    assert received["body"] == {"CallerId": "3035551234", "InboundStateCode": "CO"}


def test_task_delivered_three_times_sends_one_bid(celery_worker_factory, simulator, buyer):
    simulator.configure(buyer.grid_id, respond="decline")
    celery_worker_factory()

    bid = testbids.test_bid_queue(buyer=buyer, caller_id="3035551234")
    for _ in range(2):  # the same message again, as a broker redelivery would
        time.sleep(0.01)
        tasks.send_test_bid.delay(bid.pk)
    # A second test bid queued last: once it is done, the worker has taken every message
    # before it (one process, one message at a time, in order).
    time.sleep(0.01)
    marker = testbids.test_bid_queue(buyer=buyer, caller_id="3035551234")

    _wait_for(lambda: _finished(marker.pk), what="every message to be processed")
    bid.refresh_from_db()
    assert bid.outcome == Outcome.DECLINED
    assert len(simulator.requests(buyer.grid_id)) == 2  # one per row, none for the repeats
    assert BidLog.objects.filter(buyer=buyer).count() == 2


def test_worker_killed_mid_bid_sends_it_again_and_the_row_says_so(
    celery_worker_factory, simulator, buyer, settings
):
    # The first answer takes long enough for the worker to be killed while it waits.
    simulator.configure(buyer.grid_id, respond="accept", latency_ms=4000)
    settings.TEST_BID_STALE_SECONDS = 1
    first = celery_worker_factory(TEST_BID_STALE_SECONDS="1")

    bid = testbids.test_bid_queue(buyer=buyer, caller_id="3035551234")
    _wait_for(lambda: simulator.requests(buyer.grid_id), what="the bid to reach the simulator")
    first.kill()

    bid.refresh_from_db()
    assert bid.outcome == Outcome.PENDING
    assert bid.claimed_at is not None  # claimed by a worker that is gone

    simulator.configure(buyer.grid_id, respond="accept", latency_ms=0)
    celery_worker_factory(TEST_BID_STALE_SECONDS="1")
    time.sleep(1.1)  # the dead worker's claim goes stale
    assert tasks.test_bids_recover() == 1  # beat's sweep, driven here

    _wait_for(lambda: _finished(bid.pk), what="the next worker to finish the bid")
    bid.refresh_from_db()
    assert bid.outcome == Outcome.ACCEPTED
    # The killed worker's request went out but its answer was lost with it; the bid was sent
    # again, recorded once, and the row says it went out twice.
    assert len(simulator.requests(buyer.grid_id)) == 2
    assert BidLog.objects.filter(buyer=buyer).count() == 1
    assert "sent again after the worker was lost" in bid.error
    assert [(e["send"], e["lost"], e["outcome"]) for e in bid.trace] == [
        (1, True, ""),
        (2, False, Outcome.ACCEPTED),
    ]


def test_beat_tick_twice_queues_one_health_check(celery_worker_factory, simulator, buyer):
    buyer.health_check_minutes = 5
    buyer.save()
    simulator.configure(buyer.grid_id, respond="decline")
    celery_worker_factory()

    tasks.health_checks_enqueue()  # what beat sends every minute, ticked here twice
    tasks.health_checks_enqueue()

    _wait_for(
        lambda: BidLog.objects.filter(buyer=buyer, source=Source.HEALTH).exists(),
        what="the health check",
    )
    # A marker test bid after the checks: when it is done, nothing else is on its way.
    marker = testbids.test_bid_queue(buyer=buyer, caller_id="3035551234")
    _wait_for(lambda: _finished(marker.pk), what="the queue to drain")
    health = BidLog.objects.get(buyer=buyer, source=Source.HEALTH)
    assert health.caller_id == "7205550100"
    assert health.outcome == Outcome.DECLINED
    assert [r["body"]["CallerId"] for r in simulator.requests(buyer.grid_id)] == [
        "7205550100",
        "3035551234",
    ]


def test_admin_send_test_bid_action_is_answered_by_the_worker(
    celery_worker_factory, simulator, buyer, admin_client
):
    simulator.configure(buyer.grid_id, respond="decline")
    celery_worker_factory()

    response = admin_client.post(
        "/admin/buyers/buyer/",
        {"action": "send_test_bid", "_selected_action": [buyer.pk]},
        follow=True,
    )

    assert response.status_code == 200
    bid = BidLog.objects.get(buyer=buyer, source=Source.TEST)
    assert f"/admin/bidlog/bidlog/{bid.pk}/change/" in response.content.decode()
    _wait_for(lambda: _finished(bid.pk), what="the worker to answer the admin's test bid")
    bid.refresh_from_db()
    assert bid.outcome == Outcome.DECLINED
    [received] = simulator.requests(buyer.grid_id)
    assert received["body"]["CallerId"] == "7205550100"  # the buyer's test number, not a caller
