"""Bulk import of bid records pushed by tools that bid on their own (``POST /bids/import/``).

All or nothing: every record is checked first and one bad record rejects the batch with the
errors of each bad row. Idempotent by ``external_id``: a record already imported is counted as
``existing`` and left alone, so a client can safely resend a batch after a timeout. Imported
rows have source ``import`` and count in reports like any other bid; the hours they land in
are marked stale so reports read them raw until the rollups catch up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from bidlog.choices import Outcome, Source
from bidlog.filters import parse_iso_datetime
from bidlog.models import BidLog
from bidlog.reports.rollups import retention_floor
from bidlog.stale import rollup_mark_stale
from buyers.models import Buyer
from callgrid_portal.bidapi.answers import ACCEPT_OUTCOMES, outcome_for
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id
from callgrid_portal.text import NUL_MESSAGE, contains_nul

MAX_RECORDS = 5000
# A clock a little ahead of ours is fine; a bid from tomorrow is a mistake.
FUTURE_SLACK = timedelta(minutes=5)
MAX_AMOUNT = Decimal("99999999.99")

_STATE = re.compile(r"^[A-Z]{2}$")
_TEXT_LIMITS = {"message": None, "destination": 32, "error": None, "response_caller_id": 32}
FIELDS = frozenset(
    {
        "external_id",
        "grid_id",
        "created_at",
        "caller_id",
        "state_code",
        "code",
        "http_status",
        "bid_amount",
        "duration_ms",
        "outcome",
        "attempt",
        "request",
        *_TEXT_LIMITS,
    }
)


# Every column an imported row writes, with the value a record may leave out.
ROW_DEFAULTS: dict[str, Any] = {
    "source": Source.IMPORT,
    "http_status": None,
    "code": None,
    "message": "",
    "bid_amount": None,
    "destination": "",
    "response_caller_id": "",
    "duration_ms": 0,
    "attempt": 1,
    "error": "",
    "raw_response": "",
    "trace": [],
}
_JSON_COLUMNS = frozenset({"request", "trace"})
COLUMNS = (
    "buyer_id",
    "created_at",
    "caller_id",
    "state_code",
    "request",
    "outcome",
    "external_id",
    *ROW_DEFAULTS,
)

_NUL_ERROR = f"{NUL_MESSAGE.capitalize()}."


class ImportRejected(Exception):
    """The batch was refused; ``errors`` maps a record's index to ``{field: [messages]}``."""

    def __init__(self, errors: dict[int, dict[str, list[str]]]) -> None:
        super().__init__(f"{len(errors)} records are invalid")
        self.errors = errors


@dataclass(frozen=True)
class ImportResult:
    """What one import did: rows created, records already imported before, records received."""

    created: int
    existing: int
    received: int


def _int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"must be between {low} and {high}")
    return number


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError("must be a number of dollars such as 25.50")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a number of dollars such as 25.50") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise ValueError("must be between 0 and 99999999.99")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError("must have at most 2 decimal places")
    return amount


def _outcome(
    given: Any, values: dict[str, Any], buyer: Buyer | None, fail: Callable[[str, str], None]
) -> tuple[Any, str]:
    """The record's outcome and, when it was derived, why (the row's ``error``).

    With a code, the outcome is what the live client makes of that answer
    (:func:`~callgrid_portal.bidapi.answers.outcome_for`); a given outcome must agree with
    it. Without one, the given outcome stands, except those only code 1000 gives.
    """
    code = values.get("code")
    if given is not None and (given not in Outcome.values or given == Outcome.PENDING):
        fail("outcome", "Not a known outcome.")
        return given, ""
    if code is None:
        if given is None:
            fail("outcome", "Give an outcome, or a CallGrid code it can be read from.")
        elif given in ACCEPT_OUTCOMES:
            fail("outcome", f"Outcome {given} needs its code (1000).")
        return given, ""
    if buyer is None:
        return given, ""  # the missing buyer is reported; its minimum bid is unknown
    derived = outcome_for(
        code,
        values.get("bid_amount"),
        values.get("destination", ""),
        buyer.min_bid,
        http_status=values.get("http_status"),
    )
    if given is not None and given != derived.outcome:
        why = f" ({derived.reason})" if derived.reason else ""
        fail("outcome", f"Code {code} is {derived.outcome}{why}, not {given}.")
    return derived.outcome, derived.reason


def _record_to_row(
    record: Any, buyers: dict[str, Buyer], floor: datetime, latest: datetime
) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """Check one record and build its row's column values; on failure, the errors by field."""
    if not isinstance(record, dict):
        return None, {"non_field_errors": ["Each record must be a JSON object."]}
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for name in sorted(set(record) - FIELDS):
        fail(name, "Unknown field.")
    external_id = record.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip():
        fail("external_id", "This field is required.")
    elif len(external_id) > 100:
        fail("external_id", "Must be at most 100 characters.")
    elif contains_nul(external_id):
        fail("external_id", _NUL_ERROR)
    grid_id = record.get("grid_id")
    buyer = buyers.get(grid_id) if isinstance(grid_id, str) else None
    if buyer is None:
        fail("grid_id", "No buyer has this Grid ID.")
    created_at = None
    raw_created = record.get("created_at")
    if not isinstance(raw_created, str):
        fail("created_at", "This field is required (ISO 8601).")
    else:
        try:
            created_at = parse_iso_datetime(raw_created)
        except ValueError as exc:
            fail("created_at", str(exc))
        else:
            if created_at < floor:
                fail("created_at", "Older than the retention period; it would be deleted.")
            elif created_at > latest:
                fail("created_at", "Lies in the future.")
    values: dict[str, Any] = {}
    for name, (low, high) in {
        "code": (0, 9999),
        "http_status": (100, 599),
        "duration_ms": (0, 2**31 - 1),
        "attempt": (1, 100),
    }.items():
        if record.get(name) is not None:
            try:
                values[name] = _int(record[name], low, high)
            except ValueError as exc:
                fail(name, f"{str(exc).capitalize()}.")
    if record.get("bid_amount") is not None:
        try:
            values["bid_amount"] = _amount(record["bid_amount"])
        except ValueError as exc:
            fail("bid_amount", f"{str(exc).capitalize()}.")
    for name, limit in _TEXT_LIMITS.items():
        value = record.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            fail(name, "Must be a string.")
        elif contains_nul(value):
            fail(name, _NUL_ERROR)
        elif limit and len(value) > limit:
            fail(name, f"Must be at most {limit} characters.")
        else:
            values[name] = value
    state = record.get("state_code") or ""
    if not isinstance(state, str) or (state and not _STATE.match(state.upper())):
        fail("state_code", "Must be a two-letter state code.")
    request = record.get("request", {})
    if not isinstance(request, dict):
        fail("request", "Must be a JSON object.")
    elif contains_nul(request):
        fail("request", f"Keys and values {NUL_MESSAGE}.")
    outcome, reason = _outcome(record.get("outcome"), values, buyer, fail)
    if reason and not values.get("error"):
        values["error"] = reason
    caller_id = record.get("caller_id")
    if not isinstance(caller_id, str | int) or isinstance(caller_id, bool) or caller_id == "":
        fail("caller_id", "This field is required.")
    else:
        try:
            caller_id = normalize_caller_id(caller_id).digits
        except InvalidCallerId as exc:
            # A refused caller ID is itself what a 4003 record reports; keep it as sent.
            if outcome != Outcome.INVALID_CALLER_ID:
                fail("caller_id", f"Invalid caller ID: {exc.reason}.")
            caller_id = str(caller_id)[:20]
    # A missing buyer is always among the errors; the second test only tells mypy so.
    if errors or buyer is None:
        return None, errors
    return (
        {
            **ROW_DEFAULTS,
            **values,
            "buyer_id": buyer.pk,
            "created_at": created_at,
            "caller_id": caller_id,
            "state_code": state.upper(),
            "request": request,
            "outcome": outcome,
            "external_id": external_id,
        },
        {},
    )


# The staging table lives for one import: dropped at its end, and by ON COMMIT DROP should the
# statement that drops it never run.
_STAGING = "bidlog_import_staging"


def _insert_by_copy(rows: list[dict[str, Any]]) -> tuple[int, list[datetime]]:
    """Write new rows on PostgreSQL: ``COPY`` into a staging table, then one merge.

    The merge is one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on the unique
    ``(external_id, created_at)``, so a record that a concurrent import wrote first is
    skipped, not an error. The unique index holds ``created_at`` because the table is
    partitioned by it; ``NOT EXISTS`` on ``external_id`` alone skips a record imported
    before at another time too, and imports take turns (an advisory lock), so two at once
    cannot both miss the other's record.
    Returns the number of rows written and the UTC hours they fall in.
    """
    quote = connection.ops.quote_name
    table = quote(BidLog._meta.db_table)
    columns = ", ".join(map(quote, COLUMNS))
    created_at = quote("created_at")
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE {_STAGING} ON COMMIT DROP AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.copy(f"COPY {_STAGING} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [Jsonb(row[name]) if name in _JSON_COLUMNS else row[name] for name in COLUMNS]
                )
        # The hours come back grouped: a few rows instead of one timestamp per row written.
        external_id = quote("external_id")
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [4242, 9])
        cursor.execute(
            f"WITH written AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGING} "
            f"AS staged WHERE NOT EXISTS (SELECT 1 FROM {table} AS known "
            f"WHERE known.{external_id} = staged.{external_id}) "
            f"ON CONFLICT ({external_id}, {created_at}) WHERE {external_id} IS NOT NULL "
            f"DO NOTHING RETURNING {created_at}) "
            f"SELECT date_trunc('hour', {created_at}, 'UTC'), count(*) FROM written GROUP BY 1"
        )
        hours = cursor.fetchall()
        cursor.execute(f"DROP TABLE {_STAGING}")
    return sum(count for _hour, count in hours), [hour for hour, _count in hours]


def _insert_by_orm(rows: list[dict[str, Any]]) -> tuple[int, list[datetime]]:
    """Write the rows whose ``external_id`` is new through the ORM; the count and their times.

    SQLite lets one writer in at a time (the settings open IMMEDIATE transactions), so nothing
    can write the same records between the check and the insert.
    """
    existing = set(
        BidLog.objects.filter(external_id__in=[row["external_id"] for row in rows]).values_list(
            "external_id", flat=True
        )
    )
    new = [row for row in rows if row["external_id"] not in existing]
    BidLog.objects.bulk_create(
        [BidLog(**row) for row in new], batch_size=1000, ignore_conflicts=True
    )
    return len(new), [row["created_at"] for row in new]


def _insert(rows: list[dict[str, Any]]) -> tuple[int, list[datetime]]:
    """Write the validated rows not imported before; return how many, and when they happened.

    The moments are enough to mark the rollup hours stale: every row's ``created_at``, or
    only the start of each UTC hour written to.

    ``COPY`` and a merge on PostgreSQL (several times faster than row inserts), the ORM on
    SQLite. Call inside a transaction: all rows are written or none.
    """
    if not rows:
        return 0, []
    if connection.vendor == "postgresql":
        return _insert_by_copy(rows)
    return _insert_by_orm(rows)


def bids_import(*, records: list[Any], now: datetime | None = None) -> ImportResult:
    """Import up to ``MAX_RECORDS`` bid records at once, all or nothing.

    Raises :class:`ImportRejected` with per-record errors when any record is bad (a repeated
    ``external_id`` inside the batch included); nothing is written then.
    """
    if not records:
        raise ImportRejected({0: {"non_field_errors": ["Send at least one record."]}})
    if len(records) > MAX_RECORDS:
        raise ImportRejected(
            {MAX_RECORDS: {"non_field_errors": [f"At most {MAX_RECORDS} records per request."]}}
        )
    now = now or timezone.now()
    # Only strings can name a buyer; anything else is reported per record below.
    grid_ids = {
        grid_id
        for record in records
        if isinstance(record, dict)
        and isinstance(grid_id := record.get("grid_id"), str)
        and not contains_nul(grid_id)
    }
    buyers = {buyer.grid_id: buyer for buyer in Buyer.objects.filter(grid_id__in=grid_ids)}
    floor, latest = retention_floor(now=now), now + FUTURE_SLACK
    rows: list[dict[str, Any]] = []
    errors: dict[int, dict[str, list[str]]] = {}
    seen: set[str] = set()
    for index, record in enumerate(records):
        row, problems = _record_to_row(record, buyers, floor, latest)
        if row is not None and row["external_id"] in seen:
            problems = {"external_id": ["Appears more than once in this batch."]}
        if problems:
            errors[index] = problems
        elif row is not None:
            seen.add(row["external_id"])
            rows.append(row)
    if errors:
        raise ImportRejected(errors)
    with transaction.atomic():
        created, moments = _insert(rows)
        rollup_mark_stale(moments=moments)
    return ImportResult(created=created, existing=len(rows) - created, received=len(records))
