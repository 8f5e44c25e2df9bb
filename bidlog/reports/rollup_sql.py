"""Rollup rows written by the database itself: ``INSERT INTO ... SELECT`` from a queryset.

Shared by the builders of :mod:`bidlog.reports.rollups` and
:mod:`bidlog.reports.summary_rollups`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from django.db import connection, models
from django.db.models import QuerySet


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
