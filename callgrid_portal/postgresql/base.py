"""PostgreSQL (psycopg 3) whose health check trusts a connection that has just worked.

With ``CONN_HEALTH_CHECKS``, Django sends ``SELECT 1`` before the first query of every request
on a persistent connection: one more round trip on every API call, the live route included,
although the previous request used the connection successfully a moment ago. Here a request
that ran queries and ended without a connection error vouches for its connection for
``DB_HEALTH_CHECK_IDLE_SECONDS``; only a connection idle for longer (when servers restart,
failovers and idle-connection timeouts leave dead ones behind) is checked first.

A connection that breaks inside that window fails the first query of the next request, as it
would have failed right after a successful ``SELECT 1``; Django then closes it when that
request ends, and the one after connects afresh.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    # When a request last finished having used this connection without an error.
    _vouched_at: float | None = None
    # Set by BaseDatabaseWrapper.__init__ (Django 4.1+); django-stubs does not declare it.
    # An annotation only: no class attribute is created.
    health_check_done: bool

    def connect(self) -> None:
        self._vouched_at = None
        super().connect()

    def close_if_unusable_or_obsolete(self) -> None:
        # Django calls this as a request starts and ends (and Celery around each task). At the
        # end, health_check_done says the request reached the database, and errors_occurred
        # whether the connection failed it.
        if self.connection is not None and self.health_check_done and not self.errors_occurred:
            self._vouched_at = time.monotonic()
        super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and not self.health_check_done
            and self._vouched_at is not None
            and time.monotonic() - self._vouched_at < settings.DB_HEALTH_CHECK_IDLE_SECONDS
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
