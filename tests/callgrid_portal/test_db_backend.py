"""PostgreSQL through Django's own backend: its connection pool and psycopg's prepared statements.

Every test reads what the server or the pool itself reports: PostgreSQL's
``pg_prepared_statements`` for the connection, ``pg_stat_activity`` and the pool's
``get_stats()``. A dead connection is a real one, its server process ended with
``pg_terminate_backend``; a request is the real cycle Django runs (request_started, queries,
request_finished).
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper
from django.utils import timezone
from rest_framework.test import APIClient

from bidlog.models import BidLog, Call
from bidlog.routing import limits
from bidlog.routing.eligibility import buyers_with_last_paid
from bidlog.routing.strategies import call_route
from buyers.models import Buyer
from tests.conftest import _database_env
from tests.factories import BuyerFactory, CallFactory

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the pool and prepared statements are PostgreSQL's; SQLite has neither",
    ),
    pytest.mark.django_db(transaction=True),
]


def _request(work: Callable[[], object] = lambda: Buyer.objects.count()) -> int:
    """One request that reads the database; returns the server process that answered it."""
    request_started.send(sender=None)
    try:
        work()
        return connection.connection.info.backend_pid
    finally:
        request_finished.send(sender=None)


def _kill(pid: int) -> None:
    params = connection.get_connection_params()
    params.pop("context", None)
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.1)  # the server ends the process asynchronously


def _stats() -> dict[str, int]:
    return cast(PostgreSQLWrapper, connection).pool.get_stats()


def _lent() -> int:
    """Connections the pool has lent out and not had back."""
    stats = _stats()
    return stats.get("pool_size", 0) - stats.get("pool_available", 0)


def test_the_backend_is_django_s_with_its_pool_and_server_side_binding(settings):
    options = connection.settings_dict["OPTIONS"]
    assert connection.settings_dict["ENGINE"] == "django.db.backends.postgresql"
    assert options["pool"]["min_size"] == settings.DB_POOL_MIN_SIZE
    assert options["pool"]["max_size"] == settings.DB_POOL_MAX_SIZE
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5
    # Pooled connections go back to the pool at the end of a request; they are never kept.
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
    assert connection.pool is not None


def test_requests_borrow_a_pooled_connection_and_give_it_back():
    _request()  # the pool is open and holds a connection
    before = _stats()

    pids = {_request() for _ in range(5)}

    # Between requests the connection is back in the pool, and the next request borrows a
    # connection the pool already holds: no new server process per request.
    after = _stats()
    assert connection.connection is None
    assert _lent() == 0
    assert after["connections_num"] == before["connections_num"]
    assert after["requests_num"] == before["requests_num"] + 5
    assert len(pids) <= connection.pool.max_size


def test_a_pooled_connection_killed_while_idle_is_replaced_before_a_request_meets_it():
    connection.close()
    pid = _request()
    _kill(pid)

    # The pool checks a connection as it lends it: the dead one is dropped, no request fails.
    fresh = {_request() for _ in range(3)}

    assert pid not in fresh


# --- prepared statements ------------------------------------------------------------------


def _prepared() -> dict[str, int]:
    """The statements this connection prepared through the protocol, and how often each ran."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
            "WHERE NOT from_sql"
        )
        return dict(cursor.fetchall())


def _route_statements(prepared: dict[str, int]) -> dict[str, int]:
    return {
        sql: runs
        for sql, runs in prepared.items()
        if ("buyers_buyer" in sql and "bidlog_call" in sql)
        or sql.lstrip().startswith("WITH new_call AS (INSERT")
    }


def test_routes_prepare_their_buyers_read_and_log_insert_and_reuse_them(sim_buyer):
    for priority in (1, 2, 3):
        sim_buyer(priority=priority, duplicate_window_days=30)
    # One connection for every route, as a request keeps its own.
    connection.ensure_connection()
    for n in range(6):  # past psycopg's prepare_threshold (5)
        call_route(caller_id=f"303555{1000 + n}", strategy="highest_bid")
    first = _route_statements(_prepared())

    for n in range(3):
        last = call_route(caller_id=f"303555{2000 + n}", strategy="highest_bid")
    again = _route_statements(_prepared())

    assert len(first) == 2, first
    # The same two statements, run again as prepared: nothing new was prepared for them.
    assert again.keys() == first.keys()
    assert all(again[sql] == first[sql] + 3 for sql in first), (first, again)
    assert BidLog.objects.filter(call=last).count() == 3


def test_with_prepared_statements_off_nothing_is_prepared_and_values_bind_on_the_client():
    BuyerFactory(priority=1)
    script = (
        "import django, json; django.setup()\n"
        "from django.db import connection\n"
        "from django.utils import timezone\n"
        "from bidlog.routing.eligibility import buyers_with_last_paid\n"
        "for _ in range(8):\n"
        "    buyers = buyers_with_last_paid(buyer_ids=None, caller_id='3035551234',"
        " now=timezone.now())\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SELECT count(*) FROM pg_prepared_statements')\n"
        "    prepared = cursor.fetchone()[0]\n"
        "options = connection.settings_dict['OPTIONS']\n"
        "print(json.dumps({'prepared': prepared, 'buyers': len(buyers),"
        " 'threshold': options['prepare_threshold'],"
        " 'server_side': options['server_side_binding']}))\n"
    )
    env = {**os.environ, **_database_env(), "DB_PREPARED_STATEMENTS": "false"}

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"prepared": 0, "buyers": 1, "threshold": None, "server_side": False}


def test_prepared_reads_give_the_values_the_orm_gives():
    buyer = BuyerFactory(
        accepted_states=["CO", "TX"],
        extra_params={"Vertical": "auto"},
        min_bid="12.34",
        timezone="America/Denver",
        duplicate_window_days=30,
    )
    paid = CallFactory(winner=buyer, caller_id="3035551234", routed=True, paid_out=True)
    connection.ensure_connection()

    # The first runs bind on the server; from the sixth, the read runs prepared.
    reads = [
        buyers_with_last_paid(buyer_ids=None, caller_id="3035551234", now=timezone.now())
        for _ in range(7)
    ]

    expected = Buyer.objects.get(pk=buyer.pk)
    fields = [f.attname for f in Buyer._meta.concrete_fields]
    assert any("bidlog_call" in sql for sql in _prepared())
    for (read,) in (reads[0], reads[-1]):
        assert [getattr(read, f) for f in fields] == [getattr(expected, f) for f in fields]
        assert read.last_paid_at == Call.objects.get(pk=paid.pk).created_at
        assert read.last_paid_at.tzinfo is not None


# --- the pool under load ------------------------------------------------------------------


def _route_from_a_thread(caller_id: str) -> Call:
    """What a server thread does for one route: a request around it, then nothing held."""
    request_started.send(sender=None)
    try:
        return call_route(caller_id=caller_id, strategy="highest_bid")
    finally:
        request_finished.send(sender=None)


def test_many_routes_from_many_threads_give_every_connection_back(sim_buyer):
    for priority in (1, 2, 3):
        sim_buyer(priority=priority, sim={"latency_ms": 20})
    connection.close()
    close_old_connections()
    baseline = _stats()
    threads = 16  # more than the pool holds: some wait their turn, none times out

    with ThreadPoolExecutor(max_workers=threads) as workers:
        calls = list(
            workers.map(_route_from_a_thread, [f"720555{n:04d}" for n in range(4 * threads)])
        )

    assert all(call.routed for call in calls)
    assert Call.objects.filter(pk__in=[c.pk for c in calls]).count() == len(calls)
    connection.close()  # this thread's own, borrowed for the count above
    deadline = time.monotonic() + 5
    while _lent() and time.monotonic() < deadline:
        time.sleep(0.05)
    after = _stats()
    assert _lent() == 0, after
    assert after.get("requests_waiting", 0) == 0
    assert after.get("pool_size", 0) <= connection.pool.max_size
    # Waiting threads were served by connections given back, not by timeouts.
    assert after.get("requests_errors", 0) == baseline.get("requests_errors", 0)


def test_a_step_run_after_the_answer_gives_back_the_connection_it_took(sim_buyer, monkeypatch):
    # The step after a route's answer runs in the response's close(). Should it ever read
    # the database, the connection it borrows must go back to the pool when the request
    # ends, or every such route would keep one more lent.
    sim_buyer(priority=1)
    settle = limits.admission_settle
    reads: list[int] = []

    def settle_and_read(**kwargs):
        reads.append(Buyer.objects.count())
        settle(**kwargs)

    monkeypatch.setattr(limits, "admission_settle", settle_and_read)
    # A superuser: the role groups a migration makes do not outlive a transactional test.
    client = APIClient()
    client.force_authenticate(User.objects.create_superuser("root", "root@example.com", "x"))
    connection.close()

    for n in range(3):
        response = client.post("/api/v1/route/", {"CallerId": f"720555{n:04d}"}, format="json")
        assert response.status_code == 200, response.content

    assert reads == [1, 1, 1]
    connection.close()
    assert _lent() == 0, _stats()
