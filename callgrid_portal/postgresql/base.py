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

It also gives the live route's statements a cursor that keeps them prepared on the server
(:meth:`DatabaseWrapper.prepared_cursor`).
"""

from __future__ import annotations

import time
from typing import Any, Self, cast

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorWrapper
from django.utils.asyncio import async_unsafe
from psycopg.abc import Params, Query
from psycopg.pq import Format

_TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid
# Django turns psycopg's automatic preparation off (prepare_threshold None) so that poolers in
# transaction mode keep working. Preparing on demand needs it on; at this count psycopg never
# prepares a statement by itself, and Django's own cursors bind on the client and never do.
_PREPARE_ONLY_WHEN_ASKED = 2**31 - 1


class PreparedCursor(psycopg.Cursor[Any]):
    """Binds its parameters on the server and prepares each statement it runs.

    PostgreSQL then parses and plans a statement once per connection; later runs only bind
    the values. psycopg names and tracks the prepared statements (``prepared_max`` of them
    per connection) and forgets them when the connection does.
    """

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        # The implementation's signature; its overloads split templates from the rest.
        return super().execute(
            cast(Any, query), params, prepare=True if prepare is None else prepare, binary=binary
        )


class DatabaseOperations(PostgresOperations):
    """Django's PostgreSQL operations; the query log also reads :class:`PreparedCursor`."""

    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        if isinstance(cursor, PreparedCursor):
            # The server bound the values; Django's query log gets them composed here, as
            # it does for server-side binding.
            try:
                return self.compose_sql(sql, params)
            except psycopg.errors.DataError:
                return sql
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    # When a request last finished having used this connection without an error.
    _vouched_at: float | None = None
    # Set by BaseDatabaseWrapper.__init__ (Django 4.1+); django-stubs does not declare it.
    # An annotation only: no class attribute is created.
    health_check_done: bool

    @async_unsafe
    def prepared_cursor(self) -> CursorWrapper:
        """A cursor for the few statements every route runs: prepared once per connection.

        The same wrapper as :meth:`cursor` (errors, debug logging, execute wrappers), over a
        :class:`PreparedCursor`. With ``DB_PREPARED_STATEMENTS`` off (a pooler in transaction
        mode that does not keep prepared statements), it is :meth:`cursor`.
        """
        if not settings.DB_PREPARED_STATEMENTS:
            return self.cursor()
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            raw = self.connection
            if raw.prepare_threshold is None:
                raw.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
            cursor = PreparedCursor(raw)
            # As create_cursor does: read timestamps in this connection's time zone.
            loader = raw.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
            if self.timezone != getattr(loader, "timezone", None):
                register_tzloader(self.timezone, cursor)
            # As Django's _prepare_cursor does for its own cursors.
            self.validate_thread_sharing()
            # (django-stubs types their argument as a wrapper; it is the database's cursor.)
            if self.queries_logged:
                return self.make_debug_cursor(cast(Any, cursor))
            return self.make_cursor(cast(Any, cursor))

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
