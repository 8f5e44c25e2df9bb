"""Routing over real HTTP to the simulator: winners, deadlines, skips and released slots."""

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing import limits
from bidlog.routing.strategies import RouteError, call_route
from tests.factories import BuyerFactory, CallFactory

CALLER = "3035551234"


def outcomes(call: Call) -> dict[str, list[str]]:
    """Each buyer's name and its outcomes for ``call``, in the order they were written."""
    rows: dict[str, list[str]] = {}
    for bid in BidLog.objects.filter(call=call).order_by("id").select_related("buyer"):
        rows.setdefault(bid.buyer.name, []).append(bid.outcome)
    return rows


# --- waterfall ----------------------------------------------------------------------------


def test_waterfall_stops_at_first_acceptable_bid_in_priority_order(sim_buyer, simulator):
    first = sim_buyer(name="first", priority=1, respond="decline")
    second = sim_buyer(name="second", priority=2, bid_amount="20.00")
    third = sim_buyer(name="third", priority=3, bid_amount="90.00")

    call = call_route(caller_id=CALLER, state_code="CO", strategy="waterfall")

    assert call.routed
    assert call.winner == second
    assert call.bid_amount == Decimal("20.00")
    assert call.destination == "13035551234"
    assert outcomes(call) == {"first": [Outcome.DECLINED], "second": [Outcome.ACCEPTED]}
    assert simulator.requests(third.grid_id) == []
    assert [r["grid_id"] for r in simulator.requests()] == [first.grid_id, second.grid_id]


def test_waterfall_passes_over_below_minimum_bid_and_missing_destination(sim_buyer):
    sim_buyer(name="cheap", priority=1, min_bid=Decimal("30.00"), bid_amount="29.99")
    sim_buyer(name="nowhere", priority=2, bid_amount="50.00", destination=None)
    last = sim_buyer(name="last", priority=3, min_bid=Decimal("15.00"), bid_amount="15.00")

    call = call_route(caller_id=CALLER, strategy="waterfall")

    assert call.winner == last
    assert call.bid_amount == Decimal("15.00")
    assert outcomes(call) == {
        "cheap": [Outcome.BELOW_MIN_BID],
        "nowhere": [Outcome.BAD_RESPONSE],
        "last": [Outcome.ACCEPTED],
    }


def test_waterfall_forwards_extra_params_and_normalized_caller(sim_buyer, simulator):
    buyer = sim_buyer(extra_params={"PublisherId": "pub123"})

    call_route(
        caller_id="+1 (303) 555-1234",
        state_code="co",
        params={"InboundZipCode": "80301", "CallerId": "ignored"},
    )

    (received,) = simulator.requests(buyer.grid_id)
    assert received["body"] == {
        "CallerId": "3035551234",
        "InboundStateCode": "CO",
        "PublisherId": "pub123",
        "InboundZipCode": "80301",
    }


def test_route_with_no_acceptable_bid_records_unrouted_call(sim_buyer):
    sim_buyer(name="a", respond="decline")
    sim_buyer(name="b", respond="no_capacity")

    call = call_route(caller_id=CALLER, strategy="waterfall")

    assert not call.routed
    assert call.winner is None
    assert outcomes(call) == {"a": [Outcome.DECLINED], "b": [Outcome.NO_CAPACITY]}


# --- highest bid --------------------------------------------------------------------------


def test_highest_bid_asks_everyone_and_the_best_acceptable_bid_wins(sim_buyer, simulator):
    sim_buyer(name="low", priority=1, bid_amount="20.00")
    high = sim_buyer(name="high", priority=2, bid_amount="31.00")
    sim_buyer(name="mid", priority=3, bid_amount="25.00")

    call = call_route(caller_id=CALLER, strategy="highest_bid")

    assert call.winner == high
    assert call.bid_amount == Decimal("31.00")
    assert len(simulator.requests()) == 3
    assert [b.outcome for b in call.route_bids] == [Outcome.ACCEPTED] * 3


def test_highest_bid_tie_goes_to_priority(sim_buyer):
    sim_buyer(name="later", priority=5, bid_amount="30.00")
    earlier = sim_buyer(name="earlier", priority=2, bid_amount="30.00")

    call = call_route(caller_id=CALLER, strategy="highest_bid")

    assert call.winner == earlier


def test_highest_bid_ignores_bids_below_minimum_or_without_destination(sim_buyer):
    sim_buyer(name="below", priority=1, min_bid=Decimal("100.00"), bid_amount="99.00")
    sim_buyer(name="nowhere", priority=2, bid_amount="80.00", destination=None)
    fair = sim_buyer(name="fair", priority=3, bid_amount="12.00")

    call = call_route(caller_id=CALLER, strategy="highest_bid")

    assert call.winner == fair
    assert outcomes(call)["below"] == [Outcome.BELOW_MIN_BID]
    assert outcomes(call)["nowhere"] == [Outcome.BAD_RESPONSE]


def test_default_strategy_comes_from_settings(sim_buyer, simulator, settings):
    settings.ROUTING_DEFAULT_STRATEGY = "highest_bid"
    sim_buyer(priority=1, bid_amount="20.00")
    sim_buyer(priority=2, bid_amount="40.00")

    call = call_route(caller_id=CALLER)

    assert call.strategy == "highest_bid"
    assert call.bid_amount == Decimal("40.00")


def test_route_restricted_to_named_buyers_asks_only_them(sim_buyer, simulator):
    sim_buyer(priority=1, bid_amount="50.00")
    chosen = sim_buyer(priority=2, bid_amount="20.00")

    call = call_route(caller_id=CALLER, strategy="highest_bid", buyer_ids=[chosen.pk])

    assert call.winner == chosen
    assert [r["grid_id"] for r in simulator.requests()] == [chosen.grid_id]


# --- the deadline -------------------------------------------------------------------------


def test_highest_bid_answers_by_the_deadline_and_logs_the_slow_buyer_as_timeout(sim_buyer):
    slow = sim_buyer(name="slow", priority=1, bid_amount="99.00", sim={"latency_ms": 3000})
    fast = sim_buyer(name="fast", priority=2, bid_amount="20.00")

    call = call_route(caller_id=CALLER, strategy="highest_bid", deadline_seconds=1.0)

    # Not waited for: the slow buyer (3 s) is a timeout; benchmarks/deadlines.py measures it.
    assert call.winner == fast
    assert outcomes(call) == {"slow": [Outcome.TIMEOUT], "fast": [Outcome.ACCEPTED]}
    # The slot of the slow request comes back once its thread gives up.
    deadline = time.monotonic() + 3
    while limits.concurrency_in_flight(grid_id=slow.grid_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limits.concurrency_in_flight(grid_id=slow.grid_id) == 0


# --- the auction's fan-out ----------------------------------------------------------------


def test_an_auction_asks_every_buyer_at_once_and_answers_by_the_deadline(sim_buyer, simulator):
    sim = {"latency_ms": 100}
    sim_buyer(name="low", priority=1, bid_amount="20.00", sim=sim)
    high = sim_buyer(name="high", priority=2, bid_amount="31.00", sim=sim)
    slow = sim_buyer(name="slow", priority=3, bid_amount="99.00", sim=sim)
    # Answered at the same time, the first auction leaves a connection per buyer open.
    call_route(caller_id="7205550100", strategy="highest_bid")
    simulator.configure(slow.grid_id, bid_amount="99.00", latency_ms=3000)

    call = call_route(caller_id=CALLER, strategy="highest_bid", deadline_seconds=1.0)

    assert call.winner == high
    assert outcomes(call) == {
        "low": [Outcome.ACCEPTED],
        "high": [Outcome.ACCEPTED],
        "slow": [Outcome.TIMEOUT],
    }


def _flaky_and_steady(sim_buyer, simulator, **flaky_behaviour):
    """Two buyers with a kept-alive connection each; then the first answers as told."""
    flaky = sim_buyer(name="flaky", priority=1, sim={"latency_ms": 100})
    sim_buyer(name="steady", priority=2, sim={"latency_ms": 100})
    # Answered at the same time, the first auction leaves a connection per buyer open.
    call_route(caller_id="7205550100", strategy="highest_bid")
    simulator.reset()
    simulator.configure(flaky.grid_id, **flaky_behaviour)
    return flaky


def test_a_retry_in_an_auction_carries_on_from_the_first_attempt(sim_buyer, simulator):
    flaky = _flaky_and_steady(sim_buyer, simulator, respond="fail_then_accept", fail_times=1)

    call = call_route(caller_id=CALLER, strategy="highest_bid")

    assert call.winner == flaky  # the retry's acceptance, on a tie the better priority
    assert outcomes(call) == {
        "flaky": [Outcome.SYSTEM_ERROR, Outcome.ACCEPTED],
        "steady": [Outcome.ACCEPTED],
    }
    assert [b.attempt for b in call.route_bids if b.buyer == flaky] == [1, 2]
    assert len(simulator.requests(flaky.grid_id)) == 2


def test_a_retry_cut_off_by_the_deadline_keeps_the_first_answer_in_the_log(sim_buyer, simulator):
    flaky = _flaky_and_steady(sim_buyer, simulator, respond="system_error")

    def slow_down_the_retry() -> None:
        # Once the first 5000 has gone out, the retry (0.25 s later) hangs past the deadline.
        until = time.monotonic() + 5
        while not simulator.requests(flaky.grid_id) and time.monotonic() < until:
            time.sleep(0.01)
        simulator.configure(flaky.grid_id, respond="accept", latency_ms=3000)

    watcher = threading.Thread(target=slow_down_the_retry)
    watcher.start()
    call = call_route(caller_id=CALLER, strategy="highest_bid", deadline_seconds=0.8)
    watcher.join()

    rows = [b for b in call.route_bids if b.buyer == flaky]
    assert [(b.attempt, b.outcome) for b in rows] == [
        (1, Outcome.SYSTEM_ERROR),
        (2, Outcome.TIMEOUT),
    ]
    assert rows[0].code == 5000
    assert call.winner is not None and call.winner.name == "steady"


def test_waterfall_deadline_covers_the_whole_call_not_each_buyer(sim_buyer, simulator):
    sim_buyer(name="slow", priority=1, sim={"latency_ms": 3000})
    later = sim_buyer(name="later", priority=2)

    call = call_route(caller_id=CALLER, strategy="waterfall", deadline_seconds=1.0)

    assert not call.routed
    assert outcomes(call) == {"slow": [Outcome.TIMEOUT], "later": [Outcome.TIMEOUT]}
    assert simulator.requests(later.grid_id) == []


def test_deadline_never_exceeds_the_largest_buyer_timeout(sim_buyer):
    sim_buyer(name="slow", timeout_seconds=1, sim={"latency_ms": 3000})

    call = call_route(caller_id=CALLER, strategy="highest_bid", deadline_seconds=10)

    # Waiting the asked 10 s would have seen the 3 s answer: the buyer's 1 s timeout ruled.
    assert outcomes(call) == {"slow": [Outcome.TIMEOUT]}


def test_retries_stop_at_the_call_deadline(sim_buyer, simulator):
    buyer = sim_buyer(respond="system_error")

    call = call_route(caller_id=CALLER, strategy="waterfall", deadline_seconds=0.3)

    rows = outcomes(call)[buyer.name]
    assert rows[0] == Outcome.SYSTEM_ERROR
    # Backoff is 0.25 s then 0.5 s: only the retries that fit in 0.3 s were made.
    assert len(simulator.requests(buyer.grid_id)) == len(rows) <= 2


# --- skips: nothing reaches the simulator -------------------------------------------------


def _skip_paused(sim_buyer):
    return sim_buyer(status="paused"), {}


def _skip_state(sim_buyer):
    return sim_buyer(accepted_states=["TX", "FL"]), {"state_code": "CO"}


def _skip_hours(sim_buyer):
    # Open only on Sundays; the call is routed on a Wednesday.
    buyer = sim_buyer(timezone="America/Denver", operating_hours={"sun": [["00:00", "24:00"]]})
    return buyer, {"now": datetime(2026, 3, 4, 18, 0, tzinfo=UTC)}


def _skip_cap(sim_buyer):
    buyer = sim_buyer(daily_cap=1)
    CallFactory(winner=buyer, routed=True, caller_id="7205550100")
    return buyer, {}


def _skip_duplicate(sim_buyer):
    buyer = sim_buyer(vertical="insurance", duplicate_window_days=30)
    CallFactory(
        winner=buyer,
        routed=True,
        caller_id=CALLER,
        created_at=timezone.now() - timedelta(days=29),
    )
    return buyer, {}


def _skip_cooldown(sim_buyer):
    buyer = sim_buyer(capacity_cooldown_seconds=120)
    limits.cooldown_start(grid_id=buyer.grid_id, seconds=120)
    return buyer, {}


def _skip_rate_limit(sim_buyer):
    buyer = sim_buyer(rate_limit_per_minute=1)
    for _ in range(2):  # the burst of twice the rate
        assert limits.rate_limit_take(grid_id=buyer.grid_id, per_minute=1).allowed
    return buyer, {}


def _skip_concurrency(sim_buyer):
    buyer = sim_buyer(max_concurrency=1)
    assert limits.concurrency_acquire(grid_id=buyer.grid_id, limit=1) is not None
    return buyer, {}


@pytest.mark.parametrize("strategy", ["waterfall", "highest_bid"])
@pytest.mark.parametrize(
    ("arrange", "outcome"),
    [
        (_skip_paused, Outcome.SKIPPED_STATUS),
        (_skip_state, Outcome.SKIPPED_STATE),
        (_skip_hours, Outcome.SKIPPED_HOURS),
        (_skip_cap, Outcome.SKIPPED_CAP),
        (_skip_duplicate, Outcome.SKIPPED_DUPLICATE),
        (_skip_cooldown, Outcome.SKIPPED_COOLDOWN),
        (_skip_rate_limit, Outcome.SKIPPED_RATE_LIMIT),
        (_skip_concurrency, Outcome.SKIPPED_CONCURRENCY),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_skipped_buyer_is_logged_and_never_receives_a_request(
    sim_buyer, simulator, arrange, outcome, strategy
):
    buyer, route_args = arrange(sim_buyer)

    call = call_route(caller_id=CALLER, strategy=strategy, **route_args)

    assert not call.routed
    (bid,) = BidLog.objects.filter(call=call)
    assert bid.buyer == buyer
    assert bid.outcome == outcome
    assert bid.error  # the reason in plain words
    assert bid.http_status is None
    assert simulator.requests() == []


def test_no_capacity_starts_the_cooldown_for_the_next_call(sim_buyer, simulator):
    buyer = sim_buyer(respond="no_capacity", capacity_cooldown_seconds=60)

    first = call_route(caller_id=CALLER)
    second = call_route(caller_id="7205550100")

    assert outcomes(first) == {buyer.name: [Outcome.NO_CAPACITY]}
    assert outcomes(second) == {buyer.name: [Outcome.SKIPPED_COOLDOWN]}
    assert len(simulator.requests(buyer.grid_id)) == 1


def test_waterfall_logs_no_skip_for_buyers_after_the_winner(sim_buyer):
    sim_buyer(name="winner", priority=1)
    sim_buyer(name="paused", priority=2, status="paused")

    call = call_route(caller_id=CALLER, strategy="waterfall")

    assert outcomes(call) == {"winner": [Outcome.ACCEPTED]}


# --- duplicate window over time -----------------------------------------------------------


def test_duplicate_window_blocks_the_caller_until_it_has_passed(sim_buyer, simulator):
    buyer = sim_buyer(vertical="home_services", duplicate_window_days=7)
    monday = timezone.now()

    first = call_route(caller_id=CALLER, now=monday)
    inside = call_route(caller_id=CALLER, now=monday + timedelta(days=6, hours=23))
    after = call_route(caller_id=CALLER, now=monday + timedelta(days=7, seconds=1))

    assert first.winner == buyer
    assert not inside.routed
    assert outcomes(inside) == {buyer.name: [Outcome.SKIPPED_DUPLICATE]}
    assert after.winner == buyer
    assert len(simulator.requests(buyer.grid_id)) == 2


def test_caller_marked_not_paid_out_can_be_sent_again(sim_buyer):
    buyer = sim_buyer(duplicate_window_days=30)
    first = call_route(caller_id=CALLER)
    Call.objects.filter(pk=first.pk).update(paid_out=False)

    again = call_route(caller_id=CALLER)

    assert again.winner == buyer


def test_duplicate_window_is_per_buyer(sim_buyer):
    first_buyer = sim_buyer(name="one", priority=1)
    second_buyer = sim_buyer(name="two", priority=2)

    first = call_route(caller_id=CALLER, strategy="waterfall")
    second = call_route(caller_id=CALLER, strategy="waterfall")

    assert first.winner == first_buyer
    assert second.winner == second_buyer
    assert outcomes(second) == {"one": [Outcome.SKIPPED_DUPLICATE], "two": [Outcome.ACCEPTED]}


# --- failures release their slots --------------------------------------------------------


@pytest.mark.parametrize("strategy", ["waterfall", "highest_bid"])
def test_slots_are_released_after_errors_and_network_failures(sim_buyer, db, strategy):
    broken = sim_buyer(name="broken", priority=1, respond="system_error")
    unreachable = BuyerFactory(
        name="unreachable", priority=2, endpoint_url="http://127.0.0.1:9/api/bid/"
    )
    garbled = sim_buyer(name="garbled", priority=3, respond="malformed")

    call = call_route(caller_id=CALLER, strategy=strategy, deadline_seconds=3)

    assert not call.routed
    assert outcomes(call)["unreachable"] == [Outcome.NETWORK_ERROR]
    assert outcomes(call)["garbled"] == [Outcome.BAD_RESPONSE]
    for buyer in (broken, unreachable, garbled):
        assert limits.concurrency_in_flight(grid_id=buyer.grid_id) == 0


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("caller_id", ["123", "0035551234", "(303) 155-1234", "", None, "+44 20"])
def test_invalid_caller_id_is_refused_before_anything_is_sent_or_recorded(
    sim_buyer, simulator, caller_id
):
    sim_buyer()

    with pytest.raises(RouteError) as refused:
        call_route(caller_id=caller_id)

    assert refused.value.code == 4003
    assert refused.value.field == "CallerId"
    assert Call.objects.count() == 0
    assert BidLog.objects.count() == 0
    assert simulator.requests() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state_code": "XX"}, "InboundStateCode"),
        ({"strategy": "cheapest"}, "strategy"),
        ({"buyer_ids": [987654]}, "buyers"),
        ({"params": {"Nested": {"a": 1}}}, "Nested"),
    ],
)
def test_bad_route_input_names_the_field_and_records_nothing(sim_buyer, kwargs, field):
    sim_buyer()

    with pytest.raises(RouteError) as refused:
        call_route(caller_id=CALLER, **kwargs)

    assert refused.value.code == 4000
    assert refused.value.field == field
    assert Call.objects.count() == 0


def test_route_without_buyers_records_an_unrouted_call(db):
    call = call_route(caller_id=CALLER)

    assert not call.routed
    assert call.route_bids == []


def test_a_grid_takes_a_burst_of_twice_its_rate_then_is_skipped(sim_buyer, simulator):
    # The error-code reference: "Burst Allowance: 2x rate for short periods" (SPEC §3).
    buyer = sim_buyer(name="bursty", rate_limit_per_minute=3)

    calls = [call_route(caller_id=f"30355512{n:02d}", strategy="waterfall") for n in range(7)]

    assert [c.routed for c in calls] == [True] * 6 + [False]
    assert len(simulator.requests(buyer.grid_id)) == 6
    assert outcomes(calls[-1]) == {"bursty": [Outcome.SKIPPED_RATE_LIMIT]}
