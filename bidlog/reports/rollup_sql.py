"""SQL the rollups share: rows written by the database itself (``INSERT INTO ... SELECT`` from
a queryset), for the builders of :mod:`bidlog.reports.rollups` and
:mod:`bidlog.reports.summary_rollups`, and bucket starts read as seconds, for the readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from django.db import connection, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BigIntegerField, Func, QuerySet
from django.db.models.sql.compiler import SQLCompiler


def insert_select(
    model: type[models.Model],
    fixed: Mapping[str, object],
    queryset: QuerySet,
    rename: dict[str, str] | None = None,
) -> int:
    """``INSERT INTO model (fixed..., selected...) SELECT ... FROM (queryset)`` in SQL.

    Rollup rows never pass through Python: the database groups and writes them in one
    statement. ``queryset`` must be a ``values(...).annotate(...)`` whose names are fields of
    ``model`` (or mapped to one by ``rename``); ``fixed`` gives constant columns.
    """
    quote = connection.ops.quote_name
    rename = rename or {}
    selected = [*queryset.query.values_select, *queryset.query.annotation_select]
    fields = [*fixed, *(rename.get(name, name) for name in selected)]
    columns = [cast(str, cast(models.Field, model._meta.get_field(name)).column) for name in fields]
    inner_sql, inner_params = queryset.query.sql_with_params()
    placeholders = ", ".join(["%s"] * len(fixed))
    outer = ", ".join(f"sub.{quote(name)}" for name in selected)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) "
        f"SELECT {placeholders}, {outer} FROM ({inner_sql}) sub"
    )
    params: list[Any] = [adapt(value) for value in fixed.values()] + list(inner_params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def adapt(value: object) -> object:
    """A constant as Django passes a value of its field type to the database."""
    # SQLite stores datetimes as naive UTC text; let Django spell them as it does for fields.
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


class EpochSeconds(Func):
    """A moment as whole seconds since 1970 (UTC), worked out by the database.

    For the bucket starts reports read by the thousand (on the hour, or the five minutes):
    Django loads each ``timestamptz`` through a loader written in Python, an integer goes
    through psycopg's C one, and :func:`from_epoch` makes the moment again. Measured on 943
    rollup buckets: 4.0 ms read as moments, 2.3 ms as seconds.
    """

    output_field = BigIntegerField()
    template = "CAST(EXTRACT(EPOCH FROM %(expressions)s) AS BIGINT)"

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, Any]:
        # SQLite keeps moments as UTC text; the format goes as a parameter, as Django's Cast.
        template = "CAST(strftime(%%s, %(expressions)s) AS INTEGER)"
        sql, params = super().as_sql(compiler, connection, template=template, **extra_context)
        return sql, ["%s", *params]


def from_epoch(seconds: int) -> datetime:
    """The UTC moment of :class:`EpochSeconds`' value."""
    return datetime.fromtimestamp(seconds, UTC)
