"""Running a queued test bid (the body of ``send_test_bid``): claim once, fill in, recover."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import cast

import pytest
from django.utils import timezone

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog
from bidlog.monitoring import testbids
from bidlog.routing import limits
from tests.factories import BidLogFactory, BuyerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def buyer(simulator):
    made = BuyerFactory(endpoint_url=simulator.endpoint)
    limits.limits_reset(grid_id=made.grid_id)
    return made


def _pending(buyer, **fields) -> BidLog:
    defaults = {
        "buyer": buyer,
        "source": Source.TEST,
        "outcome": Outcome.PENDING,
        "http_status": None,
        "code": None,
        "message": "",
        "bid_amount": None,
        "destination": "",
        "duration_ms": 0,
        "request": {"CallerId": "3035551234", "InboundStateCode": "CO", "PublisherId": "p1"},
    }
    return cast(BidLog, BidLogFactory(**{**defaults, **fields}))


def test_run_sends_the_queued_request_and_fills_the_pending_row(simulator, buyer):
    simulator.configure(buyer.grid_id, respond="accept", bid_amount="42.00")
    bid = _pending(buyer)

    testbids.test_bid_run(bid_id=bid.pk)

    bid.refresh_from_db()
    assert bid.outcome == Outcome.ACCEPTED
    assert bid.code == 1000
    assert bid.bid_amount == Decimal("42.00")
    assert bid.duration_ms >= 0
    [received] = simulator.requests(buyer.grid_id)
    assert received["body"] == {
        "CallerId": "3035551234",
        "InboundStateCode": "CO",
        "PublisherId": "p1",
    }


def test_running_twice_sends_one_bid(simulator, buyer):
    bid = _pending(buyer)

    testbids.test_bid_run(bid_id=bid.pk)
    again = testbids.test_bid_run(bid_id=bid.pk)

    assert again is not None and again.outcome == Outcome.ACCEPTED
    assert len(simulator.requests(buyer.grid_id)) == 1
    assert BidLog.objects.count() == 1


def test_row_claimed_by_a_live_worker_is_left_alone(simulator, buyer):
    bid = _pending(buyer, claimed_at=timezone.now())

    result = testbids.test_bid_run(bid_id=bid.pk)

    assert result is not None and result.outcome == Outcome.PENDING
    assert simulator.requests(buyer.grid_id) == []


def test_row_claimed_by_a_dead_worker_is_sent_again_and_says_so(simulator, buyer, settings):
    settings.TEST_BID_STALE_SECONDS = 60
    lost_claim = timezone.now() - timedelta(seconds=61)
    bid = _pending(buyer, claimed_at=lost_claim)

    testbids.test_bid_run(bid_id=bid.pk)

    bid.refresh_from_db()
    assert bid.outcome == Outcome.ACCEPTED
    assert len(simulator.requests(buyer.grid_id)) == 1
    assert "sent again after the worker was lost" in bid.error
    lost, sent = bid.trace
    assert (lost["send"], lost["lost"], lost["outcome"], lost["attempt"]) == (1, True, "", None)
    assert lost["at"] == lost_claim.isoformat()
    assert "buyer may have received" in lost["error"]
    assert (sent["send"], sent["lost"], sent["outcome"], sent["code"]) == (
        2,
        False,
        Outcome.ACCEPTED,
        1000,
    )


def test_a_bid_lost_twice_keeps_both_lost_sends_in_its_trace(simulator, buyer, settings):
    settings.TEST_BID_STALE_SECONDS = 60
    first = timezone.now() - timedelta(seconds=200)
    bid = _pending(buyer, claimed_at=first)
    # A second worker took it over and was lost too: the row says so, and its claim is stale.
    second = timezone.now() - timedelta(seconds=100)
    lost = {"send": 1, "lost": True, "at": first.isoformat(), "outcome": "", "error": "lost"}
    BidLog.objects.filter(pk=bid.pk).update(claimed_at=second, trace=[lost])

    testbids.test_bid_run(bid_id=bid.pk)

    bid.refresh_from_db()
    assert [(e["send"], e["lost"]) for e in bid.trace] == [(1, True), (2, True), (3, False)]
    assert "send 3" in bid.error
    assert len(simulator.requests(buyer.grid_id)) == 1


def test_bid_answered_5000_5000_then_1000_is_one_accepted_row_with_every_attempt(simulator, buyer):
    simulator.configure(buyer.grid_id, respond="fail_then_accept", fail_times=2, bid_amount="31.00")
    bid = _pending(buyer)

    testbids.test_bid_run(bid_id=bid.pk)

    [row] = BidLog.objects.all()
    assert row.pk == bid.pk
    assert (row.outcome, row.code, row.bid_amount, row.attempt) == (
        Outcome.ACCEPTED,
        1000,
        Decimal("31.00"),
        3,
    )
    assert row.error == ""
    assert [(e["attempt"], e["code"], e["outcome"], e["http_status"]) for e in row.trace] == [
        (1, 5000, Outcome.SYSTEM_ERROR, 200),
        (2, 5000, Outcome.SYSTEM_ERROR, 200),
        (3, 1000, Outcome.ACCEPTED, 200),
    ]
    assert all(e["send"] == 1 and not e["lost"] for e in row.trace)
    assert all(e["duration_ms"] >= 0 and e["at"] for e in row.trace)
    assert row.trace[-1]["bid_amount"] == "31.00"
    assert row.created_at.isoformat() == row.trace[0]["at"]
    assert len(simulator.requests(buyer.grid_id)) == 3


def test_exhausted_rate_limit_records_a_skip_and_sends_nothing(simulator, buyer):
    buyer.rate_limit_per_minute = 1
    buyer.save()
    for _ in range(2):  # the burst of twice the rate
        limits.rate_limit_take(grid_id=buyer.grid_id, per_minute=1)
    bid = _pending(buyer)

    testbids.test_bid_run(bid_id=bid.pk)

    bid.refresh_from_db()
    assert bid.outcome == Outcome.SKIPPED_RATE_LIMIT
    assert "rate limit of 1/min" in bid.error
    assert simulator.requests(buyer.grid_id) == []


def test_missing_row_is_nothing_to_do(buyer):
    assert testbids.test_bid_run(bid_id=987654) is None


def test_stranded_lists_old_unclaimed_and_stale_claimed_rows_only(buyer, settings):
    settings.TEST_BID_STALE_SECONDS = 60
    now = timezone.now()
    old = now - timedelta(seconds=120)
    fresh = _pending(buyer, created_at=now)
    lost = _pending(buyer, created_at=old)
    dead = _pending(buyer, created_at=old, claimed_at=old)
    working = _pending(buyer, created_at=old, claimed_at=now)
    done = BidLogFactory(buyer=buyer, source=Source.TEST, created_at=old)

    stranded = testbids.test_bids_stranded(now=now)

    assert stranded == [lost.pk, dead.pk]
    assert fresh.pk not in stranded and working.pk not in stranded and done.pk not in stranded


def test_bid_lost_with_its_worker_then_refused_by_the_rate_limit_keeps_the_lost_send(
    simulator, buyer, settings
):
    settings.TEST_BID_STALE_SECONDS = 60
    buyer.rate_limit_per_minute = 1
    buyer.save()
    # The bucket holds a burst of twice the rate: take both tokens.
    limits.rate_limit_take(grid_id=buyer.grid_id, per_minute=1)
    limits.rate_limit_take(grid_id=buyer.grid_id, per_minute=1)
    bid = _pending(buyer, claimed_at=timezone.now() - timedelta(seconds=61))

    testbids.test_bid_run(bid_id=bid.pk)

    bid.refresh_from_db()
    assert bid.outcome == Outcome.SKIPPED_RATE_LIMIT
    assert "an earlier send was lost with its worker" in bid.error
    assert [(e["send"], e["lost"]) for e in bid.trace] == [(1, True)]
    assert simulator.requests(buyer.grid_id) == []
