"""Caps and duplicate windows hold while routes run at once, in threads and in OS processes.

The database only knows calls already written; these tests route many calls at the same time
and check that the reservations taken at admission (bidlog.routing.limits) keep a cap of N at
exactly
N routed calls, sell one caller once, and never leak a place when a bid fails.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from django.db import DatabaseError, connection, connections

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing import limits
from bidlog.routing import strategies as routing
from bidlog.routing.eligibility import cap_counters
from bidlog.routing.record import call_paid_out_set
from bidlog.routing.route_admission import Candidate, Route, admit_candidates
from bidlog.routing.strategies import call_route
from tests.conftest import new_redis_prefix

REDIS_URL = os.environ.get("REDIS_URL", "")
ROOT = Path(__file__).resolve().parents[3]
CALLER = "3035551234"


def _callers(count: int, first: int = 100) -> list[str]:
    return [f"720555{n:04d}" for n in range(first, first + count)]


def _route_in_thread(**kwargs) -> Call:
    try:
        return call_route(**kwargs)
    finally:
        # Each thread opened its own connection; close it so the test database can be dropped.
        connections.close_all()


def _route_all_at_once(calls: list[dict]) -> list[Call]:
    barrier = threading.Barrier(len(calls))

    def run(kwargs: dict) -> Call:
        barrier.wait()
        return _route_in_thread(**kwargs)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _day_cap_key(buyer, now: datetime | None = None) -> str:
    (counter,) = cap_counters(buyer=buyer, now=now or datetime.now(UTC), counts=(0, 0))
    return counter.key


# --- caps under concurrency ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("strategy", ["waterfall", "highest_bid"])
def test_daily_cap_of_three_routes_exactly_three_of_eight_simultaneous_calls(
    sim_buyer, simulator, strategy
):
    # Slow enough that all eight are in flight together; limits that do not get in the way.
    buyer = sim_buyer(
        daily_cap=3, max_concurrency=50, rate_limit_per_minute=1000, sim={"latency_ms": 300}
    )

    calls = _route_all_at_once(
        [{"caller_id": caller, "strategy": strategy} for caller in _callers(8)]
    )

    assert sum(call.routed for call in calls) == 3
    assert Call.objects.filter(winner=buyer, routed=True).count() == 3
    skipped = BidLog.objects.filter(buyer=buyer, outcome=Outcome.SKIPPED_CAP)
    assert skipped.count() == 5
    assert len(simulator.requests(buyer.grid_id)) == 3
    assert limits.cap_reserved(buyer_id=buyer.pk, key=_day_cap_key(buyer)) == 3


@pytest.mark.django_db(transaction=True)
def test_monthly_cap_counts_calls_already_in_the_database_before_the_rush(sim_buyer):
    buyer = sim_buyer(
        monthly_cap=4, max_concurrency=50, rate_limit_per_minute=1000, sim={"latency_ms": 200}
    )
    for caller in _callers(2, first=900):
        assert call_route(caller_id=caller).routed

    calls = _route_all_at_once([{"caller_id": caller} for caller in _callers(6)])

    assert sum(call.routed for call in calls) == 2
    assert Call.objects.filter(winner=buyer, routed=True).count() == 4


# Each process waits for a common start, then routes its callers at once on threads.
_ROUTER = textwrap.dedent(
    """
    import json, sys, threading, time
    import django
    django.setup()
    from django.db import connections
    from bidlog.routing.strategies import call_route

    buyer_id, start_at = int(sys.argv[1]), float(sys.argv[2])
    callers = sys.argv[3].split(",")
    routed = []

    def one(caller):
        try:
            call = call_route(caller_id=caller, buyer_ids=[buyer_id], strategy="highest_bid")
            routed.append(call.routed)
        finally:
            connections.close_all()

    while time.time() < start_at:
        time.sleep(0.001)
    threads = [threading.Thread(target=one, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"routed": sum(routed), "calls": len(routed)}))
    """
)


def _child_env(store: str, data_dir: Path) -> dict[str, str]:
    """Point a child interpreter at this test's database, simulator and shared cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CACHE_URL")}
    params = connection.settings_dict
    if params["ENGINE"] == "django.db.backends.sqlite3":
        env["SQLITE_PATH"] = str(params["NAME"])
        env.pop("DATABASE_URL", None)
    else:
        auth = f"{params['USER']}@" if params.get("USER") else ""
        port = f":{params['PORT']}" if params.get("PORT") else ""
        env["DATABASE_URL"] = f"postgres://{auth}{params['HOST']}{port}/{params['NAME']}"
    env.update(
        DJANGO_SETTINGS_MODULE="callgrid_portal.settings",
        DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
        CALLGRID_ENDPOINT_ALLOWLIST="bid.callgrid.com,127.0.0.1,localhost",
        CALLGRID_INSECURE_HOSTS="127.0.0.1,localhost",
    )
    if store == "redis":
        env.update(
            REDIS_URL=REDIS_URL,
            CACHE_URL=REDIS_URL,
            CACHE_KEY_PREFIX=new_redis_prefix("test-cap"),
        )
    return env


@pytest.fixture(params=["redis", "file"])
def store(request) -> str:
    if request.param == "redis" and not REDIS_URL:
        pytest.skip(
            "REDIS_URL is not set: two processes sharing Redis need a Redis server; "
            "the file-cache variant of this test still runs"
        )
    return request.param


@pytest.mark.django_db(transaction=True)
def test_two_processes_routing_at_once_stay_within_the_daily_cap(
    store, sim_buyer, simulator, tmp_path
):
    buyer = sim_buyer(
        daily_cap=4, max_concurrency=50, rate_limit_per_minute=1000, sim={"latency_ms": 300}
    )
    env = _child_env(store, tmp_path)
    start_at = time.time() + 3.0  # both interpreters have imported Django by then
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _ROUTER, str(buyer.pk), str(start_at), ",".join(callers)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for callers in (_callers(5, first=100), _callers(5, first=200))
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=90)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    assert [r["calls"] for r in results] == [5, 5]
    assert sum(r["routed"] for r in results) == 4
    assert Call.objects.filter(winner=buyer, routed=True).count() == 4
    assert len(simulator.requests(buyer.grid_id)) == 4


# --- nothing leaks ------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["waterfall", "highest_bid"])
@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [
        ({"respond": "decline"}, Outcome.DECLINED),
        ({"respond": "system_error"}, Outcome.SYSTEM_ERROR),
        ({"respond": "accept", "latency_ms": 3000}, Outcome.TIMEOUT),
    ],
    ids=["declined", "failed", "timeout"],
)
def test_cap_place_comes_back_after_a_bid_that_did_not_win(
    sim_buyer, simulator, strategy, behaviour, outcome
):
    buyer = sim_buyer(daily_cap=1, duplicate_window_days=30)
    simulator.configure(buyer.grid_id, **behaviour)

    lost = call_route(caller_id=CALLER, strategy=strategy, deadline_seconds=0.5)

    assert not lost.routed
    assert BidLog.objects.filter(call=lost).first().outcome == outcome
    assert limits.cap_reserved(buyer_id=buyer.pk, key=_day_cap_key(buyer)) == 0
    simulator.configure(buyer.grid_id, respond="accept", latency_ms=0)
    # The one place of the cap, and the caller, are both free for the next route.
    assert call_route(caller_id=CALLER, strategy=strategy).winner == buyer


@pytest.mark.parametrize("strategy", ["waterfall", "highest_bid"])
def test_reservations_come_back_when_the_log_cannot_be_written(sim_buyer, strategy):
    buyer = sim_buyer(daily_cap=1, duplicate_window_days=30)

    with (
        mock.patch.object(
            routing, "_record", autospec=True, side_effect=DatabaseError("disk full")
        ) as record,
        pytest.raises(DatabaseError),
    ):
        call_route(caller_id=CALLER, strategy=strategy)

    assert record.call_args.kwargs["winner"].buyer == buyer  # it had won, then failed
    assert limits.cap_reserved(buyer_id=buyer.pk, key=_day_cap_key(buyer)) == 0
    again = call_route(caller_id=CALLER, strategy=strategy)
    assert again.winner == buyer
    assert limits.cap_reserved(buyer_id=buyer.pk, key=_day_cap_key(buyer)) == 1


def test_cap_counter_follows_the_buyers_calendar_across_midnight(sim_buyer):
    buyer = sim_buyer(daily_cap=1, timezone="America/Denver")
    evening = datetime(2026, 6, 11, 5, 59, tzinfo=UTC)  # 23:59 in Denver
    midnight = datetime(2026, 6, 11, 6, 0, tzinfo=UTC)

    first = call_route(caller_id=CALLER, now=evening)
    capped = call_route(caller_id="7205550100", now=evening)
    next_day = call_route(caller_id="7205550101", now=midnight)

    assert first.winner == buyer
    assert BidLog.objects.get(call=capped).outcome == Outcome.SKIPPED_CAP
    assert next_day.winner == buyer
    assert _day_cap_key(buyer, evening) != _day_cap_key(buyer, midnight)


# --- duplicate window ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("strategy", ["waterfall", "highest_bid"])
def test_two_simultaneous_routes_for_one_caller_sell_it_once(sim_buyer, simulator, strategy):
    buyer = sim_buyer(duplicate_window_days=30, max_concurrency=50, sim={"latency_ms": 300})

    calls = _route_all_at_once([{"caller_id": CALLER, "strategy": strategy}] * 4)

    assert sum(call.routed for call in calls) == 1
    assert len(simulator.requests(buyer.grid_id)) == 1
    outcomes = sorted(BidLog.objects.filter(buyer=buyer).values_list("outcome", flat=True))
    assert outcomes == [Outcome.ACCEPTED] + [Outcome.SKIPPED_DUPLICATE] * 3


def test_paid_out_false_frees_the_caller_for_the_next_route(sim_buyer, simulator):
    buyer = sim_buyer(duplicate_window_days=30)
    sold = call_route(caller_id=CALLER)
    blocked = call_route(caller_id=CALLER)
    assert BidLog.objects.get(call=blocked).outcome == Outcome.SKIPPED_DUPLICATE

    call_paid_out_set(call=sold, paid_out=False)
    again = call_route(caller_id=CALLER)

    assert again.winner == buyer
    assert len(simulator.requests(buyer.grid_id)) == 2


def test_winner_hold_blocks_a_route_that_read_the_database_before_the_call_was_written(
    sim_buyer, simulator
):
    buyer = sim_buyer(duplicate_window_days=30)
    sold = call_route(caller_id=CALLER)
    # A route that read the database before `sold` was written sees no paid call; only the
    # hold left in the cache stands between it and a second sale.
    stale = Route(caller_id=CALLER, moment=sold.created_at, lease_ttl=60, held=[])
    candidate = Candidate(buyer, None, None)

    ((lease, reservation, block),) = admit_candidates([candidate], stale)

    assert lease is None and reservation is None
    assert block.outcome == Outcome.SKIPPED_DUPLICATE
    assert "already paid out" in block.reason


# --- the reservation itself, on both stores ------------------------------------------------


def _request(grid_id: str, *, cap: int, seed: int, dup: str) -> limits.AdmissionRequest:
    return limits.AdmissionRequest(
        grid_id=grid_id,
        max_concurrency=100,
        per_minute=1000,
        reserve=limits.ReservationRequest(
            buyer_id=7,
            caps=(
                limits.CapCounter(
                    key="limits:cap:7:d2026-06-10", limit=cap, seed=seed, ttl_seconds=3600
                ),
            ),
            duplicate_key=dup,
        ),
    )


def test_reservation_release_and_keep_are_each_counted_once(any_store):
    grid_id = uuid.uuid4().hex[:24]
    key = "limits:cap:7:d2026-06-10"
    first, second, third = limits.admit(
        requests=[_request(grid_id, cap=3, seed=1, dup=f"dup-{n}") for n in range(3)]
    )

    assert first.admitted and second.admitted
    assert third.refused == "cap" and third.cap_total == 3  # 1 written + 2 in flight
    limits.admission_settle(leases=[second.lease], release=[second.reservation])
    limits.admission_settle(release=[second.reservation])  # twice is harmless
    limits.admission_settle(leases=[first.lease], keep=[first.reservation])
    limits.admission_settle(keep=[first.reservation])
    assert limits.cap_reserved(buyer_id=7, key=key) == 2

    # A kept place whose call could not be written goes back, once.
    limits.admission_settle(release=[first.reservation])
    limits.admission_settle(release=[first.reservation])
    assert limits.cap_reserved(buyer_id=7, key=key) == 1


def test_duplicate_key_refuses_a_second_route_until_released(any_store):
    grid_id = uuid.uuid4().hex[:24]
    dup = limits.duplicate_key(buyer_id=7, caller_id=CALLER)
    (held,) = limits.admit(requests=[_request(grid_id, cap=10, seed=0, dup=dup)])
    (refused,) = limits.admit(requests=[_request(grid_id, cap=10, seed=0, dup=dup)])

    assert held.admitted
    assert refused.refused == "duplicate"
    assert limits.duplicate_holder_call(refused.holder) is None  # in flight, not sold
    limits.admission_settle(leases=[held.lease], release=[held.reservation])
    (again,) = limits.admit(requests=[_request(grid_id, cap=10, seed=0, dup=dup)])
    assert again.admitted
