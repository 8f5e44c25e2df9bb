"""The rules an imported bid record must meet, and the row each good record becomes.

The one home of every check of ``POST /bids/import/``. Each value's type and size are checked
before it is converted (a whole number of at most 10 characters before ``int``, an amount of at
most 32 before ``Decimal``), and the checks are written for a batch of 5,000 records: a record
that passes every check costs a few microseconds, with no function built per record and the
error messages formed only for the records that fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from bidlog.choices import Outcome, Source
from bidlog.filters import parse_iso_datetime
from buyers.models import Buyer
from callgrid_portal.bidapi.answers import ACCEPT_OUTCOMES, MAX_BID_AMOUNT, outcome_for
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id
from callgrid_portal.text import NUL, NUL_MESSAGE, contains_nul

MAX_RECORDS = 5000
# A clock a little ahead of ours is fine; a bid from tomorrow is a mistake.
FUTURE_SLACK = timedelta(minutes=5)
CENT = Decimal("0.01")
# The longest spelling of a whole number or an amount converted at all: "-2147483647" has 11
# characters, "99999999.99" 11; anything longer is refused before int() or Decimal() sees it.
MAX_INT_CHARS = 11
MAX_AMOUNT_CHARS = 32

_STATE = re.compile(r"[A-Za-z]{2}")
_WHOLE = re.compile(r"\s*([+-]?[0-9]+)\s*")
# Whole numbers and their ranges; a text field and its length limit (None: no limit).
INT_RANGES = (
    ("code", 0, 9999),
    ("http_status", 100, 599),
    ("duration_ms", 0, 2**31 - 1),
    ("attempt", 1, 100),
)
TEXT_LIMITS = (("message", None), ("destination", 32), ("error", None), ("response_caller_id", 32))
FIELDS = frozenset(
    {
        "external_id",
        "grid_id",
        "created_at",
        "caller_id",
        "state_code",
        "outcome",
        "bid_amount",
        "request",
        *(name for name, _low, _high in INT_RANGES),
        *(name for name, _limit in TEXT_LIMITS),
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

NUL_ERROR = f"{NUL_MESSAGE.capitalize()}."
WHOLE_ERROR = "Must be a whole number."
AMOUNT_ERROR = "Must be a number of dollars such as 25.50."

Errors = dict[str, list[str]]


class Invalid(ValueError):
    """One value broke a rule; the message is shown as is under the field's name."""


@dataclass(frozen=True)
class Batch:
    """What every record of one import is checked against."""

    buyers: dict[str, Buyer]
    floor: datetime  # the oldest moment retention keeps
    latest: datetime  # the newest moment accepted (now, plus a little clock slack)


def whole_number(value: Any, low: int, high: int) -> int:
    """An int, or a string of at most ``MAX_INT_CHARS`` digits, inside ``[low, high]``."""
    if type(value) is not int:
        if type(value) is not str or len(value) > MAX_INT_CHARS:
            raise Invalid(WHOLE_ERROR)
        whole = _WHOLE.fullmatch(value)
        if whole is None:
            raise Invalid(WHOLE_ERROR)
        # The digits alone: the pattern's \s takes separators (such as \x1f) that int() refuses.
        value = int(whole.group(1))
    if not low <= value <= high:
        raise Invalid(f"Must be between {low} and {high}.")
    return value


def amount(value: Any) -> Decimal:
    """Dollars and cents from a number or a string of at most ``MAX_AMOUNT_CHARS`` characters."""
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise Invalid(AMOUNT_ERROR)
    text = str(value)
    if len(text) > MAX_AMOUNT_CHARS:
        raise Invalid(AMOUNT_ERROR)
    try:
        dollars = Decimal(text)
    except InvalidOperation:
        raise Invalid(AMOUNT_ERROR) from None
    if not dollars.is_finite() or dollars < 0 or dollars > MAX_BID_AMOUNT:
        raise Invalid(f"Must be between 0 and {MAX_BID_AMOUNT}.")
    if dollars != dollars.quantize(CENT):
        raise Invalid("Must have at most 2 decimal places.")
    return dollars


def _fail(errors: Errors, name: str, message: str) -> None:
    errors.setdefault(name, []).append(message)


def _identity(record: dict[str, Any], batch: Batch, errors: Errors) -> tuple[Any, Any, Any]:
    """The record's ``external_id``, buyer and ``created_at``, each checked."""
    external_id = record.get("external_id")
    if type(external_id) is not str or not external_id.strip():
        _fail(errors, "external_id", "This field is required.")
    elif len(external_id) > 100:
        _fail(errors, "external_id", "Must be at most 100 characters.")
    elif NUL in external_id:
        _fail(errors, "external_id", NUL_ERROR)
    grid_id = record.get("grid_id")
    buyer = batch.buyers.get(grid_id) if type(grid_id) is str else None
    if buyer is None:
        _fail(errors, "grid_id", "No buyer has this Grid ID.")
    created_at = record.get("created_at")
    if type(created_at) is not str:
        _fail(errors, "created_at", "This field is required (ISO 8601).")
        return external_id, buyer, None
    try:
        created_at = parse_iso_datetime(created_at)
    except ValueError as exc:
        _fail(errors, "created_at", str(exc))
        return external_id, buyer, None
    if created_at < batch.floor:
        _fail(errors, "created_at", "Older than the retention period; it would be deleted.")
    elif created_at > batch.latest:
        _fail(errors, "created_at", "Lies in the future.")
    return external_id, buyer, created_at


def _answer(record: dict[str, Any], errors: Errors) -> dict[str, Any]:
    """The answer fields a record gives (numbers, amount, texts), each checked."""
    values: dict[str, Any] = {}
    for name, low, high in INT_RANGES:
        value = record.get(name)
        if value is not None:
            try:
                values[name] = whole_number(value, low, high)
            except Invalid as exc:
                _fail(errors, name, str(exc))
    value = record.get("bid_amount")
    if value is not None:
        try:
            values["bid_amount"] = amount(value)
        except Invalid as exc:
            _fail(errors, "bid_amount", str(exc))
    for name, limit in TEXT_LIMITS:
        value = record.get(name)
        if value is None:
            continue
        if type(value) is not str:
            _fail(errors, name, "Must be a string.")
        elif NUL in value:
            _fail(errors, name, NUL_ERROR)
        elif limit and len(value) > limit:
            _fail(errors, name, f"Must be at most {limit} characters.")
        elif value:
            values[name] = value
    return values


def _outcome(given: Any, values: dict[str, Any], buyer: Buyer | None, errors: Errors) -> Any:
    """The record's outcome; when derived from its code, also why (put in ``values``).

    With a code, the outcome is what the live client makes of that answer
    (:func:`~callgrid_portal.bidapi.answers.outcome_for`); a given outcome must agree with
    it. Without one, the given outcome stands, except those only code 1000 gives.
    """
    code = values.get("code")
    if given is not None and (given not in Outcome.values or given == Outcome.PENDING):
        _fail(errors, "outcome", "Not a known outcome.")
        return given
    if code is None:
        if given is None:
            _fail(errors, "outcome", "Give an outcome, or a CallGrid code it can be read from.")
        elif given in ACCEPT_OUTCOMES:
            _fail(errors, "outcome", f"Outcome {given} needs its code (1000).")
        return given
    if buyer is None:
        return given  # the missing buyer is reported; its minimum bid is unknown
    derived = outcome_for(
        code,
        values.get("bid_amount"),
        values.get("destination", ""),
        buyer.min_bid,
        http_status=values.get("http_status"),
    )
    if given is not None and given != derived.outcome:
        why = f" ({derived.reason})" if derived.reason else ""
        _fail(errors, "outcome", f"Code {code} is {derived.outcome}{why}, not {given}.")
    if derived.reason and not values.get("error"):
        values["error"] = derived.reason
    return derived.outcome


def _caller_id(value: Any, outcome: Any, errors: Errors) -> str:
    if type(value) not in (str, int) or value == "":
        _fail(errors, "caller_id", "This field is required.")
        return ""
    try:
        return normalize_caller_id(value).digits
    except InvalidCallerId as exc:
        # A refused caller ID is itself what a 4003 record reports; keep it as sent.
        if outcome != Outcome.INVALID_CALLER_ID:
            _fail(errors, "caller_id", exc.message)
        return str(value)[:20]


def record_row(record: Any, batch: Batch) -> tuple[dict[str, Any] | None, Errors]:
    """Check one record and build its row's column values; on failure, the errors by field."""
    if type(record) is not dict:
        return None, {"non_field_errors": ["Each record must be a JSON object."]}
    errors: Errors = {}
    unknown = record.keys() - FIELDS
    for name in sorted(unknown):
        _fail(errors, name, "Unknown field.")
    external_id, buyer, created_at = _identity(record, batch, errors)
    values = _answer(record, errors)
    state = record.get("state_code") or ""
    if type(state) is not str or (state and not _STATE.fullmatch(state)):
        _fail(errors, "state_code", "Must be a two-letter state code.")
    request = record.get("request", {})
    if type(request) is not dict:
        _fail(errors, "request", "Must be a JSON object.")
    elif request and contains_nul(request):
        _fail(errors, "request", f"Keys and values {NUL_MESSAGE}.")
    outcome = _outcome(record.get("outcome"), values, buyer, errors)
    caller_id = _caller_id(record.get("caller_id"), outcome, errors)
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


def batch_rows(records: list[Any], batch: Batch) -> tuple[list[dict[str, Any]], dict[int, Errors]]:
    """The rows of the good records and the errors of the bad ones, by index.

    A repeated ``external_id`` inside the batch is an error of the later record.
    """
    rows: list[dict[str, Any]] = []
    errors: dict[int, Errors] = {}
    seen: set[str] = set()
    for index, record in enumerate(records):
        row, problems = record_row(record, batch)
        if row is None:
            errors[index] = problems
        elif row["external_id"] in seen:
            errors[index] = {"external_id": ["Appears more than once in this batch."]}
        else:
            seen.add(row["external_id"])
            rows.append(row)
    return rows, errors
