"""The PostgreSQL backend: its health check, and the route's prepared statements.

The health check is skipped for a connection that has just worked. Each request is the real
cycle Django runs (request_started, queries, request_finished); a dead connection is a real
one, its server process ended with ``pg_terminate_backend``.

The route's two statements are prepared on the server; the tests read what PostgreSQL itself
lists in ``pg_prepared_statements`` for the connection.
"""

import time

import psycopg
import pytest
from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bidlog.models import BidLog, Call
from bidlog.routing.eligibility import buyers_with_last_paid
from bidlog.routing.strategies import call_route
from buyers.models import Buyer
from tests.factories import BuyerFactory, CallFactory

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the backend is PostgreSQL's: SQLite has no health check or prepared statements",
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def checks(monkeypatch) -> list[bool]:
    """Every health check the connection runs (Django's ``SELECT 1``), and its answer."""
    wrapper = type(connections[DEFAULT_DB_ALIAS])
    real = wrapper.is_usable
    seen: list[bool] = []

    def is_usable(self):
        usable = real(self)
        seen.append(usable)
        return usable

    monkeypatch.setattr(wrapper, "is_usable", is_usable)
    return seen


def _request() -> int:
    """One request that reads the database; returns the server process that answered it."""
    request_started.send(sender=None)
    try:
        Buyer.objects.count()
        return connection.connection.info.backend_pid
    finally:
        request_finished.send(sender=None)


def _kill(pid: int) -> None:
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.1)  # the server ends the process asynchronously


def test_the_backend_is_django_s_postgresql_one_underneath():
    assert connection.vendor == "postgresql"
    assert connection.settings_dict["ENGINE"] == "callgrid_portal.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_a_connection_that_just_served_a_request_is_not_checked_again(settings, checks):
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 5
    first = _request()

    later = [_request() for _ in range(3)]

    assert later == [first] * 3  # the same persistent connection
    assert checks == []


def test_with_no_window_every_request_is_checked_as_django_does(settings, checks):
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 0
    _request()
    # Whether that first request found a connection to check depends on the tests run before
    # it in this process; the three that follow always do.
    checks.clear()

    for _ in range(3):
        _request()

    assert checks == [True, True, True]


def test_a_connection_idle_past_the_window_is_checked_and_replaced_when_dead(settings, checks):
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 0.2
    dead = _request()
    _kill(dead)
    time.sleep(0.3)

    fresh = _request()

    assert checks == [False]
    assert fresh != dead


def test_a_connection_that_dies_inside_the_window_fails_one_request_then_recovers(settings, checks):
    settings.DB_HEALTH_CHECK_IDLE_SECONDS = 5
    dead = _request()
    _kill(dead)

    # The one request the skipped check lets through: its first query fails, as it would
    # have if the connection had died just after a SELECT 1.
    with pytest.raises(OperationalError):
        _request()
    fresh = _request()

    assert fresh != dead
    assert checks == [False]  # the failed request's end found it dead and closed it


# --- prepared statements ------------------------------------------------------------------


def _prepared() -> list[str]:
    """The statements this connection has prepared through the protocol (not SQL PREPARE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        return [row[0] for row in cursor.fetchall()]


def test_a_route_prepares_its_buyers_read_and_its_log_insert_once(sim_buyer):
    for priority in (1, 2, 3):
        sim_buyer(priority=priority, duplicate_window_days=30)
    connection.close()  # a fresh connection: nothing prepared yet
    call_route(caller_id="3035551234", strategy="highest_bid")
    first = _prepared()

    with CaptureQueriesContext(connection) as queries:
        second = call_route(caller_id="3035551235", strategy="highest_bid")

    assert len(first) == 2, first
    assert any("buyers_buyer" in sql and "bidlog_call" in sql for sql in first)
    assert any(sql.lstrip().startswith("WITH new_call AS (INSERT") for sql in first)
    # The second route runs the same two prepared statements and prepares nothing new.
    assert sorted(_prepared()) == sorted(first)
    # Django still sees and logs them, like any other query, with their values.
    assert len(queries.captured_queries) == 2
    assert all("3035551235" in query["sql"] for query in queries.captured_queries)
    assert BidLog.objects.filter(call=second).count() == 3


def test_with_prepared_statements_off_nothing_is_prepared(settings, sim_buyer):
    settings.DB_PREPARED_STATEMENTS = False
    sim_buyer(priority=1)
    connection.close()

    call = call_route(caller_id="3035551234", strategy="highest_bid")

    assert _prepared() == []
    assert call.routed and BidLog.objects.filter(call=call).count() == 1


def test_prepared_reads_give_the_values_the_orm_gives():
    buyer = BuyerFactory(
        accepted_states=["CO", "TX"],
        extra_params={"Vertical": "auto"},
        min_bid="12.34",
        timezone="America/Denver",
        duplicate_window_days=30,
    )
    paid = CallFactory(winner=buyer, caller_id="3035551234", routed=True, paid_out=True)
    connection.close()

    # The first run prepares the statement; the second runs what was prepared.
    reads = [
        buyers_with_last_paid(buyer_ids=None, caller_id="3035551234", now=timezone.now())
        for _ in range(2)
    ]

    expected = Buyer.objects.get(pk=buyer.pk)
    fields = [f.attname for f in Buyer._meta.concrete_fields]
    for (read,) in reads:
        assert [getattr(read, f) for f in fields] == [getattr(expected, f) for f in fields]
        assert read.last_paid_at == Call.objects.get(pk=paid.pk).created_at
        assert read.last_paid_at.tzinfo is not None
