"""A route's call and its bid rows: begun while the buyers answer, written in one statement.

The route builds each buyer's rows as its answer arrives (:class:`StartedBidRow`,
:func:`bid_rows_prepare`) and writes the call with every row at once
(:func:`call_with_bids_create`); on PostgreSQL each row travels as its part of one JSON
parameter. The rows are the ones :mod:`bidlog.routing.record` builds for every bid.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict, deque
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from psycopg.types.json import Json, Jsonb

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing.record import bid_answer_values, bid_from_attempt
from buyers.models import Buyer
from callgrid_portal.bidapi.client import BidAttempt, BidResult

_M = TypeVar("_M", bound=models.Model)


class StartedBidRow:
    """The row of a bid sent and not yet answered, begun while the buyer thinks.

    An auction's answers arrive together, and its thread takes them one after the other;
    whatever it does per answer delays the ones behind it. So the row (a model instance) and,
    on PostgreSQL, the request half of its insert JSON are made in the wait, and
    :func:`bid_row_finish` only adds what the answer decided.
    """

    __slots__ = ("attempt", "head", "row")

    def __init__(self, *, buyer: Buyer, attempt: BidAttempt, source: str) -> None:
        self.attempt = attempt
        self.row = bid_from_attempt(buyer=buyer, attempt=attempt, source=source, call=None)
        # The request columns as a JSON object without its closing brace.
        self.head: str | None = None
        if connection.vendor == "postgresql":
            head = _columns_json(self.row, _request_columns())
            self.head = head[:-1] if head is not None else None


def bid_row_finish(started: StartedBidRow) -> BidLog:
    """``started``'s row with the answer its attempt now holds, ready to insert."""
    row = started.row
    for attname, value in bid_answer_values(started.attempt).items():
        setattr(row, attname, value)  # plain column attributes: no descriptor runs
    if started.head is not None:
        answer = _columns_json(row, _answer_columns())
        row._callgrid_insert_json = (  # type: ignore[attr-defined]
            f"{started.head},{answer[1:]}" if answer is not None else _row_json(row)
        )
    return row


def call_with_bids_create(
    *, call: Call, bids: list[BidLog], synchronous_commit: bool = True
) -> tuple[Call, list[BidLog]]:
    """Write a new call and its bid rows, all or nothing; returns them as saved, with ids.

    On PostgreSQL it is one statement (the call inserted in a CTE, the rows selected against
    its id): one round trip and one commit for the whole route. The saved call and rows it
    returns are new instances made with ``Model.from_db``, as Django makes the rows it reads.
    Elsewhere it is the ORM in a transaction, which saves ``call`` and ``bids`` themselves.
    ``synchronous_commit`` off lets PostgreSQL answer before the commit reaches the disk (see
    the setting ``ROUTING_SYNCHRONOUS_COMMIT``).
    """
    if connection.vendor != "postgresql" or not bids:
        with transaction.atomic():
            call.save(force_insert=True)
            for bid in bids:
                bid.call = call
            return call, BidLog.objects.bulk_create(bids)
    if synchronous_commit and not connection.in_atomic_block:
        # One statement in autocommit is its own transaction.
        return _call_with_bids_insert(call, bids)
    # Inside a caller's transaction, a savepoint keeps a failure here from spoiling it.
    with transaction.atomic():
        if not synchronous_commit:
            with connection.cursor() as cursor:
                # Only this transaction skips the wait for the disk flush.
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        return _call_with_bids_insert(call, bids)


def bid_rows_prepare(
    *, buyer: Buyer, result: BidResult, source: str, started: StartedBidRow | None = None
) -> list[BidLog]:
    """The unsaved rows of ``result``'s attempts, ready for :func:`call_with_bids_create`.

    Rows are built by :func:`bid_from_attempt`, so routed attempts are stored exactly like test
    bids and health checks. In an auction this runs on the thread that received each answer,
    while other buyers are still answering rather than after the last one. On PostgreSQL each
    row also carries its part of the insert: its column values as one JSON object.
    ``started`` is the row begun for the result's first attempt while it was awaited, if any.
    """
    rows = [
        bid_row_finish(started)
        if started is not None and attempt is started.attempt
        else bid_from_attempt(buyer=buyer, attempt=attempt, source=source, call=None)
        for attempt in result.attempts
    ]
    if connection.vendor == "postgresql":
        for row in rows:
            if not hasattr(row, "_callgrid_insert_json"):
                row._callgrid_insert_json = _row_json(row)  # type: ignore[attr-defined]
    return rows


def _column(field: models.Field) -> str:
    # A concrete field always has a column; the stub allows None for the others.
    return cast(str, field.column)


@functools.cache
def _insert_fields(model: type[models.Model], exclude: str = "") -> tuple[models.Field, ...]:
    return tuple(
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and field.name != exclude
    )


@functools.cache
def _call_with_bids_sql() -> str:
    """The statement: the call in a CTE, the rows as one JSON array of objects against its id.

    One parameter holds every row, whatever their number, so the one statement PostgreSQL
    prepares (``DB_PREPARED_STATEMENTS``) serves any number of rows, and the client sends one
    string ``json.dumps`` wrote rather than adapting every column value on its own.
    ``json_populate_recordset`` reads each object as a ``bidlog_bidlog`` row, converting each
    value with the column type's own input function.
    """
    quote = connection.ops.quote_name
    call_fields = _insert_fields(Call)
    bid_fields = _insert_fields(BidLog, "call")
    bid_columns = ", ".join(quote(_column(f)) for f in bid_fields)
    row_columns = ", ".join(f"rows.{quote(_column(f))}" for f in bid_fields)
    return (
        f"WITH new_call AS (INSERT INTO {quote(Call._meta.db_table)} "
        f"({', '.join(quote(_column(f)) for f in call_fields)}) "
        f"VALUES ({', '.join(['%s'] * len(call_fields))}) RETURNING {quote('id')}) "
        f"INSERT INTO {quote(BidLog._meta.db_table)} ({quote('call_id')}, {bid_columns}) "
        f"SELECT new_call.{quote('id')}, {row_columns} FROM new_call, "
        f"json_populate_recordset(NULL::{quote(BidLog._meta.db_table)}, %s::json) "
        f"WITH ORDINALITY AS rows ORDER BY rows.ordinality "
        f"RETURNING {quote('id')}, {quote('call_id')}, {quote('buyer_id')}, {quote('attempt')}"
    )


def _db_values(fields: tuple[models.Field, ...], obj: models.Model) -> list[Any]:
    db = connections[DEFAULT_DB_ALIAS]
    return [field.get_db_prep_save(field.pre_save(obj, True), db) for field in fields]


def _json_value(value: Any) -> Any:
    """A database value ``json.dumps`` cannot write, as PostgreSQL's input functions read it."""
    if isinstance(value, Json | Jsonb):  # a JSONField's value, wrapped for psycopg
        if value.dumps is None or value.dumps is json.dumps:
            return value.obj
        return json.loads(value.dumps(value.obj))  # written by the field's own encoder
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime) and value.utcoffset() is None:
        # Django would read it in the current time zone (and warn); let the field say how.
        raise TypeError("a naive datetime")
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be written as a bid log column")


def _row_json(row: BidLog) -> str:
    """One bid row's column values (the call's id aside) as a JSON object.

    The row's own values go straight to ``json.dumps``: for the strings, numbers, amounts,
    aware moments and JSON a bid row holds, every field's ``get_db_prep_save`` hands the
    database what PostgreSQL's input functions read from this JSON anyway. Any other value
    (a naive moment, a type only its field knows) takes the fields' own path.
    """
    found = _columns_json(row, _bid_insert_columns())
    return found if found is not None else _row_json_by_fields(row)


def _columns_json(row: BidLog, columns: tuple[tuple[str, str], ...]) -> str | None:
    """Some of ``row``'s ``(column, attname)`` values as a JSON object, as :func:`_row_json`
    writes them; ``None`` when a value needs its field's own preparation."""
    try:
        values = {column: getattr(row, attname) for column, attname in columns}
        return json.dumps(values, default=_json_value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:
        return None


@functools.cache
def _answer_columns() -> tuple[tuple[str, str], ...]:
    # The keys of bid_answer_values, whatever the attempt holds.
    answer = set(
        bid_answer_values(BidAttempt(attempt=1, outcome=Outcome.TIMEOUT, started_at=datetime.min))
    )
    return tuple((c, a) for c, a in _bid_insert_columns() if a in answer)


@functools.cache
def _request_columns() -> tuple[tuple[str, str], ...]:
    answer = set(_answer_columns())
    return tuple(pair for pair in _bid_insert_columns() if pair not in answer)


@functools.cache
def _bid_insert_columns() -> tuple[tuple[str, str], ...]:
    fields = _insert_fields(BidLog, "call")
    if any(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) for f in fields):
        # pre_save would fill such a field in; reading the attribute would not.
        raise RuntimeError("BidLog has an auto_now field: _row_json must call pre_save")
    return tuple((_column(field), field.attname) for field in fields)


def _row_json_by_fields(row: BidLog) -> str:
    """:func:`_row_json` with each value prepared by its field, as the ORM would save it."""
    db = connections[DEFAULT_DB_ALIAS]  # the thread's connection, found once, not per field
    values: dict[str, Any] = {}
    for field in _insert_fields(BidLog, "call"):
        value = field.pre_save(row, True)
        if value is not None and type(value) not in _STORED_AS_IS:
            value = field.get_db_prep_save(value, db)
        values[_column(field)] = value
    return json.dumps(values, default=_json_value, ensure_ascii=False, separators=(",", ":"))


# Exact types, not subclasses: a bool is an int to isinstance, and a str enum member is a str.
_STORED_AS_IS = frozenset({str, int})


def _call_with_bids_insert(call: Call, bids: list[BidLog]) -> tuple[Call, list[BidLog]]:
    rows = (
        "["
        + ",".join(getattr(bid, "_callgrid_insert_json", None) or _row_json(bid) for bid in bids)
        + "]"
    )
    params = [*_db_values(_insert_fields(Call), call), rows]
    with connection.cursor() as cursor:
        cursor.execute(_call_with_bids_sql(), params)
        returned = cursor.fetchall()
    # Rows come back in insertion order, which ORDER BY fixes; they are matched on (buyer,
    # attempt) all the same, so an id can never be given to the wrong row.
    ids: dict[tuple[int, int], deque[int]] = defaultdict(deque)
    for pk, _call_id, buyer_id, attempt in returned:
        ids[buyer_id, attempt].append(pk)
    saved = _as_saved(call, pk=returned[0][1])
    if call.winner_id is not None:
        saved.winner = call.winner  # the buyer the route already holds: no query
    saved_bids: list[BidLog] = []
    for bid in bids:
        row = _as_saved(bid, pk=ids[bid.buyer_id, bid.attempt].popleft(), call_id=saved.pk)
        row.buyer = bid.buyer
        row.call = saved
        saved_bids.append(row)
    return saved, saved_bids


def _as_saved(instance: _M, *, pk: int, **written: Any) -> _M:
    """``instance`` as the row the database now holds: its values, its new ``pk`` and the other
    ``written`` columns, made by ``Model.from_db`` as Django makes every row it reads."""
    written[instance._meta.pk.attname] = pk
    names = _concrete_attnames(type(instance))
    values = [written[name] if name in written else getattr(instance, name) for name in names]
    return type(instance).from_db(connection.alias, names, values)


@functools.cache
def _concrete_attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)
