"""The PostgreSQL backend's health check: skipped for a connection that has just worked.

Each request is the real cycle Django runs (request_started, queries, request_finished); a dead
connection is a real one, its server process ended with ``pg_terminate_backend``.
"""

import time

import psycopg
import pytest
from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections

from buyers.models import Buyer

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the backend is PostgreSQL's; SQLite has no connection to check",
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
