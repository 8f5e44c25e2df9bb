"""The route's log write: retried on a fresh connection, spooled, replayed exactly once."""

from __future__ import annotations

import contextlib
import copy
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import psycopg
import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper

from bidlog import tasks
from bidlog.choices import Outcome, Source
from bidlog.models import BidLog, Call
from bidlog.routing import limits, spool
from bidlog.routing.eligibility import cap_counters
from bidlog.routing.record import bid_from_attempt
from bidlog.routing.strategies import call_route
from buyers.models import Buyer
from callgrid_portal.bidapi.client import BidAttempt
from tests.factories import BuyerFactory
from tests.servers import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

STARTED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _spool_in_tmp(settings, tmp_path):
    settings.ROUTE_SPOOL_DIR = tmp_path / "spool"


def _decision() -> tuple[Call, list[BidLog]]:
    """An unsaved routed call (one decline, then the winner's accept) with its route key."""
    loser, winner = cast(Buyer, BuyerFactory()), cast(Buyer, BuyerFactory())
    call = Call(
        created_at=STARTED,
        caller_id="3035551234",
        state_code="CO",
        params={"PublisherId": "pub1"},
        strategy="waterfall",
        winner=winner,
        bid_amount=Decimal("25.50"),
        destination="13035551234",
        routed=True,
        duration_ms=80,
        route_key=uuid.uuid4(),
    )
    rows = [
        bid_from_attempt(
            buyer=buyer,
            attempt=BidAttempt(
                attempt=1,
                outcome=outcome,
                started_at=STARTED,
                request={"CallerId": "3035551234", "InboundStateCode": "CO"},
                caller_id="3035551234",
                state_code="CO",
                http_status=200,
                code=code,
                bid_amount=amount,
                destination=destination,
                duration_ms=40,
            ),
            source=Source.LIVE,
            call=None,
        )
        for buyer, outcome, code, amount, destination in (
            (loser, Outcome.DECLINED, 2000, None, ""),
            (winner, Outcome.ACCEPTED, 1000, Decimal("25.50"), "13035551234"),
        )
    ]
    return call, rows


def _logged(call: Call) -> tuple[int, int]:
    """(calls, bid rows) in the log under ``call``'s route key."""
    return (
        Call.objects.filter(route_key=call.route_key).count(),
        BidLog.objects.filter(call__route_key=call.route_key).count(),
    )


def _pool_reopened() -> None:
    """Close the pool, if any: the next connection opens a new one from the settings."""
    if connection.vendor == "postgresql":
        postgresql = cast(PostgreSQLWrapper, connection)
        if postgresql.pool is not None:
            postgresql.close_pool()


@contextlib.contextmanager
def _pointed_at_nothing() -> Iterator[None]:
    """Point every thread's connections (and their pool) at a server that is not there."""
    params = connection.settings_dict
    saved = copy.deepcopy(params)
    if connection.vendor == "postgresql":
        _pool_reopened()  # the pool keeps the address it opened with
        params["PORT"] = str(free_port())
        if params["OPTIONS"].get("pool"):
            # A pool that cannot connect makes each request wait its timeout: keep it short.
            params["OPTIONS"]["pool"] = {**params["OPTIONS"]["pool"], "timeout": 0.5}
    else:
        params["NAME"] = "/nonexistent-callgrid-folder/portal.sqlite3"
    try:
        yield
    finally:
        connection.close()
        _pool_reopened()
        params.clear()
        params.update(saved)


@contextlib.contextmanager
def _database_away() -> Iterator[None]:
    """Point this thread's connection at a server that is not there, then back."""
    connection.close()
    with _pointed_at_nothing():
        yield


def test_write_is_retried_on_a_fresh_connection_when_the_server_drops_it():
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's; SQLite has no server to drop")
    call, rows = _decision()
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or 5432,
        user=params["USER"],
        dbname=params["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])

    saved, written = spool.call_write(call=call, bids=rows)

    assert saved.pk is not None and all(row.pk for row in written)
    assert _logged(call) == (1, 2)
    assert spool.spool_pending() == []


def test_a_write_whose_commit_went_through_is_not_made_twice():
    # As after a connection lost between PostgreSQL's commit and its answer: the retry finds
    # the route key taken and returns the rows already written.
    call, rows = _decision()
    first, rows = spool.call_write(call=call, bids=rows)
    again = Call(**{f.attname: getattr(call, f.attname) for f in Call._meta.concrete_fields})
    again.pk = None
    _, copies = _decision()

    saved, written = spool.call_write(call=again, bids=copies)

    assert saved.pk == first.pk
    assert sorted(row.pk for row in written) == sorted(row.pk for row in rows)
    assert _logged(call) == (1, 2)


def test_with_the_database_away_the_decision_is_spooled_then_replayed(settings):
    settings.ROUTE_WRITE_ATTEMPTS = 2
    call, rows = _decision()

    with _database_away():
        returned = spool.call_write(call=call, bids=rows)

    assert returned == (call, rows) and call.pk is None
    [path] = spool.spool_pending()
    assert path.name == f"{call.route_key}.json"
    assert _logged(call) == (0, 0)

    report = spool.spool_replay()

    assert report.as_dict() == {"written": 1, "already": 0, "failed": 0, "left": 0}
    assert spool.spool_pending() == []
    stored = Call.objects.get(route_key=call.route_key)
    assert (stored.winner_id, stored.bid_amount, stored.created_at) == (
        call.winner_id,
        Decimal("25.50"),
        STARTED,
    )
    assert sorted(BidLog.objects.filter(call=stored).values_list("code", flat=True)) == [
        1000,
        2000,
    ]


def test_replay_while_the_database_is_still_away_keeps_the_file():
    call, rows = _decision()
    spool.spool_write(call=call, bids=rows)

    with _database_away():
        report = spool.spool_replay()

    assert report.left == 1 and report.written == 0
    assert len(spool.spool_pending()) == 1


def test_two_replayers_at_once_write_the_decision_once():
    call, rows = _decision()
    spool.spool_write(call=call, bids=rows)
    start = threading.Barrier(2)
    reports: list[spool.ReplayReport] = []

    def replayer() -> None:
        start.wait()
        try:
            reports.append(spool.spool_replay())
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=replayer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(reports) == 2
    assert sum(r.written for r in reports) == 1
    assert _logged(call) == (1, 2)
    assert spool.spool_pending() == []


def test_a_file_replayed_again_is_not_written_twice(tmp_path):
    # Whatever the locks do, the route key decides: the same file replayed twice (a replayer
    # that died after the commit, before removing it) writes nothing the second time.
    call, rows = _decision()
    path = spool.spool_write(call=call, bids=rows)
    kept = tmp_path / "copy.json"
    shutil.copy(path, kept)
    assert spool.spool_replay().written == 1
    shutil.copy(kept, path)

    report = spool.spool_replay()

    assert report.as_dict() == {"written": 0, "already": 1, "failed": 0, "left": 0}
    assert _logged(call) == (1, 2)
    assert spool.spool_pending() == []


def test_an_unreadable_file_is_set_aside_not_deleted():
    folder = spool.spool_dir() / "routes"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text('[{"model": "bidlog.call", "fields": {')

    report = spool.spool_replay()

    assert report.failed == 1
    assert (spool.spool_dir() / "failed" / "broken.json").exists()
    assert spool.spool_pending() == []


def test_the_beat_task_replays_the_spool():
    call, rows = _decision()
    spool.spool_write(call=call, bids=rows)

    assert tasks.route_spool_replay() == {"written": 1, "already": 0, "failed": 0, "left": 0}
    assert _logged(call) == (1, 2)


def test_every_route_is_written_with_its_own_route_key(sim_buyer):
    sim_buyer(bid_amount="20.00")
    first = call_route(caller_id="3035551234", strategy="waterfall")
    second = call_route(caller_id="3035551235", strategy="waterfall")

    assert first.route_key and second.route_key and first.route_key != second.route_key
    assert Call.objects.get(route_key=first.route_key).pk == first.pk


def test_a_spooled_winner_keeps_its_cap_place_and_its_caller(sim_buyer, simulator, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs a server that can drop the routing thread's connection mid-route")
    settings.ROUTE_WRITE_ATTEMPTS = 2
    buyer = sim_buyer(daily_cap=1, duplicate_window_days=30, sim={"latency_ms": 600})
    (day_cap,) = cap_counters(buyer=buyer, now=datetime.now(UTC), counts=(0, 0))
    routed: dict[str, Call] = {}

    def route() -> None:
        try:
            routed["call"] = call_route(caller_id="3035551234", strategy="waterfall")
        finally:
            connection.close()  # this thread's own

    thread = threading.Thread(target=route)
    thread.start()
    deadline = time.monotonic() + 60
    while not simulator.requests(buyer.grid_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    # While the buyer thinks: the routing thread's connection is dropped, and new ones find
    # no server (every thread's connection reads the same settings).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with _pointed_at_nothing():
        thread.join(timeout=60)

    call = routed["call"]
    assert call.pk is None and call.routed and call.winner_id == buyer.pk
    # The winner's reservation is kept as for a written call: the cap's one place is taken
    # and the caller is held, though the database does not know the call yet.
    assert limits.cap_reserved(buyer_id=buyer.pk, key=day_cap.key) == 1
    assert limits.duplicate_in_flight(
        limits.duplicate_holder(buyer_id=buyer.pk, caller_id="3035551234")
    )
    simulator.configure(buyer.grid_id, respond="accept", latency_ms=0)
    blocked = call_route(caller_id="7205550123", strategy="waterfall")
    assert not blocked.routed
    assert [b.outcome for b in blocked.route_bids] == [Outcome.SKIPPED_CAP]  # type: ignore[attr-defined]

    assert spool.spool_replay().written == 1
    assert Call.objects.get(routed=True).route_key == call.route_key
