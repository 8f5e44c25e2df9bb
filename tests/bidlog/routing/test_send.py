"""One way a bid leaves the portal: ``bid_send`` with the grid's limits inside it.

Over real HTTP to the simulator, with the shared limits in the test's cache: a grid at its
concurrency cap or rate limit is not asked, and says why; a 3000 answer cools the grid down
for every sender, the route included; the ``send_test_bid`` command goes the same way.
"""

from io import StringIO

import pytest
from django.core.management import call_command

from bidlog.choices import Outcome, Source
from bidlog.models import BidLog
from bidlog.routing import limits
from bidlog.routing.eligibility import Block
from bidlog.routing.send import bid_send
from bidlog.routing.strategies import call_route
from callgrid_portal.bidapi.client import BidResult

pytestmark = pytest.mark.django_db

CALLER = "3035551234"


def test_a_grid_with_every_slot_held_is_not_asked(sim_buyer, simulator):
    buyer = sim_buyer(max_concurrency=1)
    held = limits.concurrency_acquire(grid_id=buyer.grid_id, limit=1)
    assert held is not None

    sent = bid_send(buyer=buyer, caller_id=CALLER)

    assert isinstance(sent, Block) and sent.outcome == Outcome.SKIPPED_CONCURRENCY
    assert "all 1 simultaneous requests" in sent.reason
    assert simulator.requests(buyer.grid_id) == []
    limits.concurrency_release(held)
    assert isinstance(bid_send(buyer=buyer, caller_id=CALLER), BidResult)


def test_a_grid_out_of_rate_tokens_is_not_asked_and_its_slot_is_given_back(sim_buyer, simulator):
    buyer = sim_buyer(rate_limit_per_minute=1, max_concurrency=1)
    for _ in range(2):  # the burst: twice the per-minute rate
        assert isinstance(bid_send(buyer=buyer, caller_id=CALLER), BidResult)

    sent = bid_send(buyer=buyer, caller_id=CALLER)

    assert isinstance(sent, Block) and sent.outcome == Outcome.SKIPPED_RATE_LIMIT
    assert "rate limit of 1/min reached" in sent.reason
    assert len(simulator.requests(buyer.grid_id)) == 2
    assert limits.concurrency_in_flight(grid_id=buyer.grid_id) == 0


def test_headroom_keeps_tokens_for_live_calls(sim_buyer, simulator):
    buyer = sim_buyer(rate_limit_per_minute=2)  # four tokens

    sent = bid_send(buyer=buyer, caller_id=CALLER, rate_headroom=4)

    assert isinstance(sent, Block) and sent.outcome == Outcome.SKIPPED_RATE_LIMIT
    assert "kept for live calls" in sent.reason
    assert simulator.requests(buyer.grid_id) == []


def test_a_3000_cools_the_grid_down_for_the_route_too(sim_buyer, simulator):
    buyer = sim_buyer(respond="no_capacity", capacity_cooldown_seconds=60)

    answered = bid_send(buyer=buyer, caller_id=CALLER)
    cooling = bid_send(buyer=buyer, caller_id=CALLER, respect_cooldown=True)
    call = call_route(caller_id="7205550100", strategy="highest_bid")

    assert isinstance(answered, BidResult) and answered.outcome == Outcome.NO_CAPACITY
    assert isinstance(cooling, Block) and cooling.outcome == Outcome.SKIPPED_COOLDOWN
    assert "answered 3000 No Capacity; cooling down until" in cooling.reason
    assert [b.outcome for b in BidLog.objects.filter(call=call)] == [Outcome.SKIPPED_COOLDOWN]
    # A test bid ignores the cooldown on purpose: it asks what CallGrid says right now.
    assert isinstance(bid_send(buyer=buyer, caller_id=CALLER), BidResult)
    assert len(simulator.requests(buyer.grid_id)) == 2


def test_the_command_sends_within_the_limits_and_logs_the_skip(sim_buyer, simulator):
    buyer = sim_buyer(max_concurrency=1)
    held = limits.concurrency_acquire(grid_id=buyer.grid_id, limit=1)
    out = StringIO()

    call_command("send_test_bid", str(buyer.pk), stdout=out)

    assert simulator.requests(buyer.grid_id) == []
    bid = BidLog.objects.get()
    assert (bid.source, bid.outcome) == (Source.TEST, Outcome.SKIPPED_CONCURRENCY)
    assert "skipped_concurrency" in out.getvalue()
    limits.concurrency_release(held)
