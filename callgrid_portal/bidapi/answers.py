"""Read a buyer's answer into an attempt: one parser for every bid, hostile input included.

The answer comes from outside, so its size and shape are checked before anything in it is
converted (Bid API guide, "Response Format"):

- the body is at most 64 KiB (the transport stops reading past that), UTF-8, JSON nested at
  most :data:`MAX_JSON_DEPTH` levels, with no key given twice;
- numbers have at most :data:`MAX_NUMBER_CHARS` characters and exponents at most three digits,
  checked on their text before ``int`` or ``Decimal`` sees them; ``NaN`` and ``Infinity``
  are refused. Without these checks one answer with a huge exponent or a 5,000-digit integer
  costs seconds of CPU under the GIL, or raises in the middle of an auction;
- ``code`` is an integer, an integral number (``1000.0``) or a string of digits (the guide's
  reference table writes it as a string) below :data:`MAX_CODE`;
- ``bid_amount`` is compared with ``min_bid`` at full precision, then truncated to cents
  (``25.505`` is recorded as ``25.50``), so we never record more than the buyer offered;
- 1000 is acceptable only with ``bid_amount >= min_bid`` and a destination.

Anything implausible is a ``bad_response`` whose ``error`` says why; :func:`parse_response`
never raises for any body.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from callgrid_portal.bidapi.outcomes import Outcome
from callgrid_portal.text import ascii_digits, nul_replaced

MAX_BODY_BYTES = 64 * 1024
RAW_RESPONSE_KEEP = 2000  # characters of an odd body kept for the log
MAX_JSON_DEPTH = 8  # an answer is one flat object; eight levels is generous
MAX_NUMBER_CHARS = 40
MAX_EXPONENT_DIGITS = 3
MAX_CODE = 99_999
MAX_BID_AMOUNT = Decimal("99999999.99")  # what BidLog.bid_amount (10 digits, 2 dp) can hold
MAX_STORED_CODE = 32767  # BidLog.code is a small integer column
MAX_FIELD_CHARS = 32  # BidLog.destination / response_caller_id
MAX_MESSAGE_CHARS = 500
CENT = Decimal("0.01")

# The answer each CallGrid code stands for (1000 needs the checks in _read_accept).
CODE_OUTCOMES: dict[int, Outcome] = {
    1000: Outcome.ACCEPTED,
    2000: Outcome.DECLINED,
    3000: Outcome.NO_CAPACITY,
    4000: Outcome.INVALID_REQUEST,
    5000: Outcome.SYSTEM_ERROR,
    4001: Outcome.DISABLED,
    4002: Outcome.PAUSED,
    4003: Outcome.INVALID_CALLER_ID,
    4004: Outcome.CAPACITY_CHECK_FAILED,
    4005: Outcome.DUPLICATE,
    4006: Outcome.NO_NUMBERS,
    5001: Outcome.RATE_LIMITED,
}


class ImplausibleAnswer(ValueError):
    """An answer whose shape or numbers no CallGrid buyer would send."""


# --- the JSON reader ------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_EXPONENT = re.compile(r"[eE]([+-]?)(\d+)$")
_SECONDS = re.compile(r"-?\d+(?:\.\d+)?")


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` before the parser recurses."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # too few brackets to nest that deep, whatever the strings hold
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ImplausibleAnswer(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        else:
            depth -= 1


def _check_number_text(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise ImplausibleAnswer(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    exponent = _EXPONENT.search(text)
    if exponent is not None and len(exponent.group(2).lstrip("0")) > MAX_EXPONENT_DIGITS:
        raise ImplausibleAnswer(f"a number with an exponent of {len(exponent.group(2))} digits")


def _json_int(text: str) -> int:
    _check_number_text(text)
    return int(text)


def _json_decimal(text: str) -> Decimal:
    _check_number_text(text)
    return Decimal(text)


def _json_constant(name: str) -> Any:
    raise ImplausibleAnswer(f"{name} is not a number")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ImplausibleAnswer(f"the key {key[:40]!r} is given more than once")
            seen.add(key)
    return found


def read_json(raw: bytes) -> Any:
    """Parse an answer's body with its size and shape checked first; raises ``ValueError``.

    :class:`ImplausibleAnswer`, ``UnicodeDecodeError`` and ``json.JSONDecodeError`` are all
    ``ValueError``: the message is the reason kept on the row.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise ImplausibleAnswer(f"answer larger than {MAX_BODY_BYTES // 1024} KiB")
    text = raw.decode("utf-8")
    _check_depth(text)
    return json.loads(
        text,
        parse_int=_json_int,
        parse_float=_json_decimal,
        parse_constant=_json_constant,
        object_pairs_hook=_json_object,
    )


# --- the answer -----------------------------------------------------------------------------


def parse_response(
    attempt: Any,
    http_status: int,
    headers: Mapping[str, str],
    raw: bytes,
    min_bid: Decimal,
) -> None:
    """Fill ``attempt`` (a :class:`~.client.BidAttempt`) from an HTTP answer; never raises."""
    attempt.http_status = http_status
    try:
        _read(attempt, http_status, headers, raw, min_bid)
    except Exception as exc:  # one buyer's answer must never break a call
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"the answer could not be read: {type(exc).__name__}"
        attempt.raw_response = raw_text(raw)


def _read(
    attempt: Any, http_status: int, headers: Mapping[str, str], raw: bytes, min_bid: Decimal
) -> None:
    if http_status == 429:
        attempt.retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        payload = read_json(raw)
    except (ValueError, RecursionError) as exc:
        _no_json(attempt, http_status, raw, f"not valid JSON ({_reason(exc)})")
        return
    if not isinstance(payload, dict):
        _no_json(attempt, http_status, raw, f"JSON {type(payload).__name__}, not an object")
        return
    code = parse_code(payload.get("code"))
    if code is None:
        _no_json(attempt, http_status, raw, f"no integer code (code={_shown(payload.get('code'))})")
        return
    attempt.code = code if 0 <= code <= MAX_STORED_CODE else None
    attempt.message = nul_replaced(_text(payload.get("message"))[:MAX_MESSAGE_CHARS])
    attempt.response_caller_id = _short(payload.get("caller_id"))
    amount, amount_error = parse_amount(payload.get("bid_amount"))
    attempt.bid_amount = None if amount is None else amount.quantize(CENT, rounding=ROUND_DOWN)
    destination = payload.get("destination")
    if amount_error and http_status != 429 and CODE_OUTCOMES.get(code) == Outcome.ACCEPTED:
        # Only an acceptance carries a meaningful amount (the guide sends 0 with the others),
        # so an odd amount elsewhere does not hide the real answer, e.g. a retryable 5000.
        classified = Classified(Outcome.BAD_RESPONSE, amount_error)
    else:
        classified = outcome_for(code, amount, destination, min_bid, http_status=http_status)
    attempt.outcome = classified.outcome
    if classified.outcome in ACCEPT_OUTCOMES:
        attempt.destination = _text(destination).strip()
    if classified.outcome in (Outcome.BAD_RESPONSE, Outcome.BELOW_MIN_BID):
        attempt.error = classified.reason
    if classified.outcome == Outcome.BAD_RESPONSE:
        attempt.raw_response = raw_text(raw)


@dataclass(frozen=True)
class Classified:
    """An outcome and, when the answer was not taken at its word, why (the bid's ``error``)."""

    outcome: Outcome
    reason: str = ""


# Outcomes only an answer with code 1000 gives.
ACCEPT_OUTCOMES = frozenset({Outcome.ACCEPTED, Outcome.BELOW_MIN_BID})


def outcome_for(
    code: int,
    amount: Decimal | None,
    destination: Any,
    min_bid: Decimal,
    *,
    http_status: int | None = None,
) -> Classified:
    """The outcome of an answer with CallGrid ``code``: one rule for live and imported bids.

    HTTP 429 is a rate limit whatever the code (error-code reference, 5001); an unknown code
    is a bad response; code 1000 is accepted only with an amount, a destination that can
    receive a call and an amount at or above ``min_bid`` (else a bad response, or below the
    minimum bid). The amount is compared exactly: 24.999 is below a 25.00 minimum.
    """
    if http_status == 429:
        return Classified(Outcome.RATE_LIMITED, "HTTP 429")
    outcome = CODE_OUTCOMES.get(code)
    if outcome is None:
        return Classified(Outcome.BAD_RESPONSE, f"unknown code {code}")
    if outcome != Outcome.ACCEPTED:
        return Classified(outcome)
    if amount is None:
        return Classified(Outcome.BAD_RESPONSE, "accepted without a bid amount")
    problem = destination_problem(destination)
    if problem is not None:
        return Classified(Outcome.BAD_RESPONSE, problem)
    if amount < min_bid:
        return Classified(Outcome.BELOW_MIN_BID, f"bid {amount} is below the minimum {min_bid}")
    return Classified(Outcome.ACCEPTED)


def destination_problem(destination: Any) -> str | None:
    """Why an accepting answer's ``destination`` cannot receive the call, or ``None``."""
    if isinstance(destination, bool) or not isinstance(destination, str | int):
        return "accepted without a destination"
    text = str(destination).strip()
    if not text:
        return "accepted without a destination"
    if not text.isprintable():
        # A control character (NUL, newline, ...) cannot be part of a number to send a call to.
        return "destination contains control characters"
    if len(text) > MAX_FIELD_CHARS:
        return f"destination longer than {MAX_FIELD_CHARS} characters"
    return None


def parse_code(value: Any) -> int | None:
    """An integer code from an int, an integral number or a string of digits; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not ascii_digits(value) or len(value) > len(str(MAX_CODE)):
            return None
        return int(value)
    if isinstance(value, Decimal):
        if not value.is_finite() or abs(value) > MAX_CODE or value != value.to_integral_value():
            return None
        return int(value)
    if isinstance(value, int):
        return value if abs(value) <= MAX_CODE else None
    return None


def parse_amount(value: Any) -> tuple[Decimal | None, str]:
    """The bid amount as a Decimal (``None`` when absent) and an error when it is unusable."""
    if value is None:
        return None, ""
    if isinstance(value, str):
        text = value.strip()
        try:
            _check_number_text(text)
            amount = Decimal(text)
        except (InvalidOperation, ImplausibleAnswer):
            return None, f"bid_amount {value[:40]!r} is not a number"
    elif isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None, f"bid_amount {_shown(value)} is not a number"
    else:
        amount = Decimal(value)
    if not amount.is_finite():
        return None, f"bid_amount {amount} is not a finite number"
    if amount < 0:
        return None, f"bid_amount {amount} is negative"
    if amount > MAX_BID_AMOUNT:
        return None, "bid_amount is out of range"
    return amount, ""


def _no_json(attempt: Any, http_status: int, raw: bytes, detail: str) -> None:
    """Classify an answer that carries no usable CallGrid code."""
    attempt.raw_response = raw_text(raw)
    if http_status == 429:
        attempt.outcome = Outcome.RATE_LIMITED
        attempt.error = f"HTTP 429 Too Many Requests; body {detail}"
    elif http_status >= 500:
        # The buyer's side failed before CallGrid could answer: the same as a 5000, retried.
        attempt.outcome = Outcome.SYSTEM_ERROR
        attempt.error = f"HTTP {http_status}; body {detail}"
    elif 300 <= http_status < 400:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"HTTP {http_status} redirect not followed"
    elif http_status != 200:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"HTTP {http_status}; body {detail}"
    else:
        attempt.outcome = Outcome.BAD_RESPONSE
        attempt.error = f"answer {detail}"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()[:64]
    if _SECONDS.fullmatch(value):
        seconds = float(value) if len(value) <= 12 else math.inf
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)


def raw_text(raw: bytes) -> str:
    """The start of a body as text for the log: undecodable bytes and NULs replaced."""
    return nul_replaced(
        raw[: RAW_RESPONSE_KEEP * 4].decode("utf-8", errors="replace")[:RAW_RESPONSE_KEEP]
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc)[:200]


def _text(value: Any) -> str:
    """A scalar as text; nested values are not text."""
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value)


def _short(value: Any) -> str:
    return nul_replaced(_text(value)[:MAX_FIELD_CHARS])


def _shown(value: Any) -> str:
    return repr(value)[:60]
