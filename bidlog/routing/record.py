"""Writes of the bid log: record every attempt the client made, and every local skip.

Sending is :mod:`bidlog.routing.send`'s (within the limits); each sender records what came
back with the functions here.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict, deque
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from psycopg.types.json import Json, Jsonb

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing import limits
from bidlog.routing.errors import RouteError
from buyers.models import Buyer
from callgrid_portal.bidapi.client import BidAttempt, BidResult
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id

# Outcomes a local decision may record; ``pending`` belongs to the queued test bid instead.
SKIP_OUTCOMES = frozenset(o for o in Outcome.values if o.startswith("skipped_"))

_M = TypeVar("_M", bound=models.Model)

_CENT = Decimal("0.01")
# BidLog.bid_amount is DECIMAL(10, 2): anything at or above this cannot be stored.
_MAX_AMOUNT = Decimal("100000000")


@functools.cache
def _field_max(name: str) -> int:
    # Only ever asked about BidLog's CharFields, which all have a max_length.
    field = cast("models.CharField[Any, Any]", BidLog._meta.get_field(name))
    return cast(int, field.max_length)


def _clip(value: str | None, name: str) -> str:
    """Cut ``value`` to the column's length: a malformed answer must not lose the whole row."""
    return (value or "")[: _field_max(name)]


def _storable_amount(amount: Decimal | None) -> tuple[Decimal | None, str]:
    """Round a bid amount to cents, or drop it with a note when the column cannot hold it."""
    if amount is None:
        return None, ""
    try:
        rounded = Decimal(amount).quantize(_CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, TypeError, ValueError):
        return None, f"bid amount {amount!r} is not a number"
    if not rounded.is_finite() or rounded < 0 or rounded >= _MAX_AMOUNT:
        return None, f"bid amount {amount} is out of range and was not stored"
    return rounded, ""


def _normalized_or_raw(caller_id: str) -> str:
    """The 10 digits when the caller ID is valid, else what was given (cut to fit)."""
    try:
        return normalize_caller_id(caller_id).digits
    except InvalidCallerId:
        return _clip(str(caller_id).strip(), "caller_id")


# The BidLog fields a sent bid fills in (everything but who, where from and bookkeeping):
# what bid_result_values returns for a test bid's pending row.
ATTEMPT_FIELDS = (
    "created_at",
    "caller_id",
    "state_code",
    "request",
    "http_status",
    "code",
    "message",
    "bid_amount",
    "destination",
    "response_caller_id",
    "duration_ms",
    "attempt",
    "outcome",
    "error",
    "raw_response",
    "trace",
)


def _request_values(
    *, buyer: Buyer, attempt: BidAttempt, source: str, call: Call | None
) -> dict[str, Any]:
    """A bid row's columns known once the bid is sent: who was asked, when, and with what."""
    return {
        "id": None,
        "buyer_id": buyer.pk,
        "call_id": call.pk if call is not None else None,
        "source": source,
        "created_at": attempt.started_at,
        "caller_id": _normalized_or_raw(attempt.caller_id) if attempt.caller_id else "",
        "state_code": _clip(attempt.state_code, "state_code"),
        "request": attempt.request or {},
        "external_id": None,
        "claimed_at": None,
        "trace": [],
    }


def _answer_values(attempt: BidAttempt) -> dict[str, Any]:
    """A bid row's columns that the buyer's answer (or its absence) decides."""
    amount, amount_note = _storable_amount(attempt.bid_amount)
    return {
        "http_status": attempt.http_status,
        "code": attempt.code,
        "message": attempt.message or "",
        "bid_amount": amount,
        "destination": _clip(attempt.destination, "destination"),
        "response_caller_id": _clip(attempt.response_caller_id, "response_caller_id"),
        "duration_ms": max(0, int(attempt.duration_ms)),
        "attempt": attempt.attempt,
        "outcome": str(Outcome(attempt.outcome)),
        "error": "; ".join(part for part in (attempt.error, amount_note) if part),
        "raw_response": attempt.raw_response or "",
    }


def bid_from_attempt(
    *, buyer: Buyer, attempt: BidAttempt, source: str, call: Call | None
) -> BidLog:
    """An unsaved BidLog row holding ``attempt``: its :data:`ATTEMPT_FIELDS` and the owner.

    The row is built from its values in field order (the way ``Model.from_db`` builds one),
    with the buyer and call cached on it so that reading them costs no query. It runs once
    per answer on the live path (see docs/PERFORMANCE.md).
    """
    values = {
        **_request_values(buyer=buyer, attempt=attempt, source=source, call=call),
        **_answer_values(attempt),
    }
    # A field missing above fails here (KeyError) rather than being left empty.
    # django-stubs' model __init__ check takes a *args unpacking for the single "id" argument.
    row = BidLog(*map(values.__getitem__, _bid_attnames()))  # type: ignore[misc]
    BidLog.buyer.field.set_cached_value(row, buyer)
    if call is not None:
        BidLog.call.field.set_cached_value(row, call)
    return row


# A lost worker's send in a row's trace: what we know of it, and what we do not.
LOST_SEND_NOTE = (
    "the worker sending this bid was lost before it recorded an answer; "
    "the buyer may have received that bid"
)


def bid_trace_entry(attempt: BidAttempt, *, send: int = 1) -> dict[str, Any]:
    """One attempt as an entry of :attr:`BidLog.trace` (JSON: plain strings and numbers).

    ``send`` counts how many times the whole bid went out: above 1 only when a worker was lost
    mid-send and the bid was sent again (see :func:`bid_trace_lost_send`).
    """
    amount, amount_note = _storable_amount(attempt.bid_amount)
    return {
        "send": send,
        "attempt": attempt.attempt,
        "at": attempt.started_at.isoformat(),
        "outcome": str(Outcome(attempt.outcome)),
        "code": attempt.code,
        "http_status": attempt.http_status,
        "duration_ms": max(0, int(attempt.duration_ms)),
        "bid_amount": str(amount) if amount is not None else None,
        "error": "; ".join(part for part in (attempt.error, amount_note) if part),
        "lost": False,
    }


def bid_trace_lost_send(*, send: int, claimed_at: datetime) -> dict[str, Any]:
    """The trace entry of a send whose worker died before it wrote an answer down.

    Its answer is unknown (no outcome, no code): the worker may have been killed before the
    request left, or while the buyer was answering.
    """
    return {
        "send": send,
        "attempt": None,
        "at": claimed_at.isoformat(),
        "outcome": "",
        "code": None,
        "http_status": None,
        "duration_ms": None,
        "bid_amount": None,
        "error": LOST_SEND_NOTE,
        "lost": True,
    }


def bid_sends_lost(trace: list[dict[str, Any]]) -> int:
    """How many sends of a bid a lost worker left without an answer, from its ``trace``."""
    return sum(1 for entry in trace if entry.get("lost"))


def bid_result_values(
    *, result: BidResult, earlier: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The :data:`ATTEMPT_FIELDS` and ``trace`` of one row that stands for a whole bid.

    The answer fields are the final attempt's, ``created_at`` is when the first attempt
    started, and ``trace`` is ``earlier`` (sends a lost worker made) followed by every attempt
    of ``result``. A bid sent again after a lost worker says so in ``error``.
    """
    earlier = list(earlier or [])
    send = bid_sends_lost(earlier) + 1
    final = result.final
    values = {
        "created_at": result.attempts[0].started_at,
        "caller_id": _normalized_or_raw(final.caller_id) if final.caller_id else "",
        "state_code": _clip(final.state_code, "state_code"),
        "request": final.request or {},
        **_answer_values(final),
        "trace": [*earlier, *(bid_trace_entry(a, send=send) for a in result.attempts)],
    }
    if send > 1:
        note = f"sent again after the worker was lost (send {send}; see the trace)"
        values["error"] = "; ".join(part for part in (note, values["error"]) if part)
    return values


@transaction.atomic
def bid_result_record(
    *, buyer: Buyer, result: BidResult, source: str, call: Call | None = None
) -> BidLog:
    """Write one row for a whole bid (a health check): the final answer and every attempt.

    See :func:`bid_result_values` for what the row holds.
    """
    row = bid_from_attempt(buyer=buyer, attempt=result.final, source=source, call=call)
    for name, value in bid_result_values(result=result).items():
        setattr(row, name, value)
    row.save(force_insert=True)
    return row


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
    for attname, value in _answer_values(started.attempt).items():
        setattr(row, attname, value)  # plain column attributes: no descriptor runs
    if started.head is not None:
        answer = _columns_json(row, _answer_columns())
        row._callgrid_insert_json = (  # type: ignore[attr-defined]
            f"{started.head},{answer[1:]}" if answer is not None else _row_json(row)
        )
    return row


@functools.cache
def _bid_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field in BidLog._meta.concrete_fields)


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
    # The keys of _answer_values, whatever the attempt holds.
    answer = set(
        _answer_values(BidAttempt(attempt=1, outcome=Outcome.TIMEOUT, started_at=datetime.min))
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


@transaction.atomic
def bid_attempts_record(
    *, buyer: Buyer, result: BidResult, source: str, call: Call | None = None
) -> list[BidLog]:
    """Write one BidLog row per attempt of ``result``, in the order they were made.

    Every field the client reported is kept, including the error detail and the raw body of
    a non-JSON answer, so a failed bid can be explained later without re-sending it. A bid
    amount that cannot fit the column is dropped and the reason appended to ``error``.
    """
    bids = [
        bid_from_attempt(buyer=buyer, attempt=attempt, source=source, call=call)
        for attempt in result.attempts
    ]
    return BidLog.objects.bulk_create(bids)


@transaction.atomic
def bid_skip_record(
    *,
    buyer: Buyer,
    outcome: str,
    source: str,
    caller_id: str,
    state_code: str = "",
    reason: str,
    call: Call | None = None,
    request: dict[str, Any] | None = None,
) -> BidLog:
    """Record a local decision not to ask ``buyer`` (a ``skipped_*`` outcome); nothing is sent.

    ``reason`` goes to ``error`` in plain words ("rate limit of 100/min reached"), so the log
    says why a buyer was passed over just as it says why a buyer declined.
    """
    if outcome not in SKIP_OUTCOMES:
        raise ValueError(f"{outcome!r} is not a skip outcome ({', '.join(sorted(SKIP_OUTCOMES))})")
    return BidLog.objects.create(
        buyer=buyer,
        call=call,
        source=source,
        caller_id=_normalized_or_raw(caller_id),
        state_code=_clip(state_code, "state_code"),
        request=request or {},
        outcome=outcome,
        error=reason,
    )


@transaction.atomic
def call_paid_out_set(*, call: Call, paid_out: bool) -> Call:
    """Mark a routed call paid out or not; ``False`` frees the caller for that buyer again.

    Only a routed call has a buyer whose duplicate window it could count against, so an
    unrouted call refuses the change (a :class:`RouteError` on ``paid_out``).
    """
    if not call.routed:
        raise RouteError(
            code=4000, message="Only a routed call can be marked paid out.", field="paid_out"
        )
    Call.objects.filter(pk=call.pk).update(paid_out=paid_out)
    call.paid_out = paid_out
    if not paid_out and call.winner_id is not None:
        # The route that sold the call may still hold the caller in the shared cache for a
        # short while (see bidlog.routing.limits); drop it so the very next route may sell again.
        limits.duplicate_forget(buyer_id=call.winner_id, caller_id=call.caller_id, call_id=call.pk)
    return call
