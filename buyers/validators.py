"""Validation rules for buyers, shared by the model, the admin form and the API."""

import functools
import re
from collections import Counter
from datetime import time
from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError

from buyers.choices import DUPLICATE_WINDOW_DAYS, Vertical
from callgrid_portal.bidapi.client import RESERVED_KEYS
from callgrid_portal.bidapi.endpoints import EndpointPolicy
from callgrid_portal.bidapi.phone import CallerId, InvalidCallerId, normalize_caller_id
from callgrid_portal.text import NUL_MESSAGE, contains_nul

GRID_ID_RE = re.compile(r"^[a-z0-9]{20,40}$")

# The 50 states, DC and the inhabited territories that use NANP numbers.
US_STATE_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP".split()
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The most bad values one message names; a pasted list of hundreds says how many more.
MAX_NAMED = 20
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def validate_grid_id(value: str) -> None:
    """A Grid ID is 20-40 lowercase letters and digits, like ``cm97s8hmv000ijt06r4djmije``."""
    if not isinstance(value, str) or not GRID_ID_RE.match(value):
        raise ValidationError(
            "Enter a Grid ID of 20 to 40 lowercase letters and digits "
            "(like cm97s8hmv000ijt06r4djmije).",
            code="invalid_grid_id",
        )


def endpoint_policy() -> EndpointPolicy:
    """The endpoint guard as the settings say now; read at every save and every send."""
    allowlist = tuple(settings.CALLGRID_ENDPOINT_ALLOWLIST)
    insecure = tuple(settings.CALLGRID_INSECURE_HOSTS)
    return _policy(allowlist, insecure)


@functools.lru_cache(maxsize=8)
def _policy(allowlist: tuple[str, ...], insecure: tuple[str, ...]) -> EndpointPolicy:
    return EndpointPolicy.from_lists(allowlist, insecure)


def validate_endpoint_url(value: str) -> None:
    """Refuse endpoints the guard would not send to (see :mod:`callgrid_portal.bidapi.endpoints`).

    This is the server-side request forgery guard: a buyer record must never make the portal
    post to a private network or a cloud metadata address. The same rules run again at every
    send, on the address actually connected to.
    """
    problem = endpoint_policy().url_problem(value)
    if problem is not None:
        raise ValidationError(_sentence(problem) + ".", code="endpoint_not_allowed")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def validate_state_codes(value: Any) -> None:
    """Accepted states: a list of distinct two-letter US state codes (upper case).

    Every bad code and every repeated one is named in one answer, not only the first.
    """
    if not isinstance(value, list):
        raise ValidationError("Enter a list of two-letter state codes.", code="not_a_list")
    problems: list[ValidationError] = []
    bad = [code for code in value if not isinstance(code, str) or code not in US_STATE_CODES]
    if bad:
        shown = ", ".join(repr(code) for code in bad[:MAX_NAMED])
        more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        problems.append(
            ValidationError(
                f"Not US state codes: {shown}{more}. Use two upper-case letters like CO.",
                code="invalid_state",
            )
        )
    counts = Counter(code for code in value if isinstance(code, str))
    repeated = [code for code, count in counts.items() if count > 1]
    if repeated:
        problems.append(
            ValidationError(
                f"Each state may appear only once: {', '.join(repeated[:MAX_NAMED])} "
                "appear more than once.",
                code="duplicate_state",
            )
        )
    if problems:
        raise ValidationError(problems)


def validate_extra_params(value: Any) -> None:
    """Extra params: a flat JSON object of string keys and string values."""
    if not isinstance(value, dict):
        raise ValidationError("Enter a JSON object of parameters.", code="not_an_object")
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ValidationError("Parameter names must be non-empty strings.", code="bad_key")
        if key in RESERVED_KEYS:
            raise ValidationError(
                f"{key} is set per call and cannot be a static parameter.", code="reserved_key"
            )
        if not isinstance(item, str):
            raise ValidationError(
                f"Parameter {key} must be a string (got {type(item).__name__}).",
                code="not_a_string",
            )
        if contains_nul(key) or contains_nul(item):
            raise ValidationError(
                f"Parameter {key!r}: names and values {NUL_MESSAGE}.", code="nul_character"
            )


def caller_id_clean(value: object) -> CallerId:
    """``value`` as a NANP number, or the field error every form, filter and API gives."""
    try:
        return normalize_caller_id(value)
    except InvalidCallerId as exc:
        raise ValidationError(exc.message, code="invalid_caller_id") from None


def validate_caller_id(value: str) -> None:
    """A caller ID that normalizes to a valid NANP number."""
    if value:
        caller_id_clean(value)


def validate_timezone(value: str) -> None:
    """An IANA time-zone name such as ``America/Denver``."""
    if not isinstance(value, str) or value not in _timezones():
        raise ValidationError(
            f"Unknown time zone {value!r}; use an IANA name like America/Denver.",
            code="invalid_timezone",
        )


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.cache
def timezone_names() -> tuple[str, ...]:
    """Every IANA time-zone name this machine knows, sorted, for the buyer form's picker."""
    return tuple(sorted(_timezones()))


def parse_hhmm(value: str) -> time | None:
    """Parse ``HH:MM``; ``24:00`` (end of day) is returned as ``None``."""
    if value == "24:00":
        return None
    hour, minute = value.split(":")
    return time(int(hour), int(minute))


def validate_operating_hours(value: Any) -> None:
    """Operating hours: ``{"mon": [["09:00", "17:00"], ...], ...}``; empty means always open.

    Each window is [open, close) in the buyer's time zone, open before close; ``24:00`` closes
    at midnight. A weekday left out is closed all day. Windows of one day may touch
    (12:00-13:00 and 13:00-17:00) but not overlap. Every problem is reported, not only the
    first, so one save shows everything to fix.
    """
    if not isinstance(value, dict):
        raise ValidationError("Enter operating hours as a JSON object.", code="not_an_object")
    problems: list[ValidationError] = []
    for day, windows in value.items():
        if day not in WEEKDAYS:
            problems.append(
                ValidationError(
                    f"Unknown weekday {day!r}; use {', '.join(WEEKDAYS)}.", code="bad_weekday"
                )
            )
        elif not isinstance(windows, list):
            problems.append(
                ValidationError(f"{day}: enter a list of [open, close] pairs.", code="bad_day")
            )
        else:
            problems.extend(_day_problems(day, windows))
    if problems:
        raise ValidationError(problems)


def _day_problems(day: str, windows: list[Any]) -> list[ValidationError]:
    """What is wrong with one day's windows: each bad window, then each overlapping pair."""
    problems: list[ValidationError] = []
    good: list[tuple[str, str]] = []
    for window in windows:
        if (
            not isinstance(window, list | tuple)
            or len(window) != 2
            or not all(isinstance(t, str) and _HHMM.match(t) for t in window)
        ):
            problems.append(
                ValidationError(
                    f'{day}: each window is a pair of HH:MM times like ["09:00", "17:00"].',
                    code="bad_window",
                )
            )
            continue
        opens, closes = window
        if opens == "24:00" or (closes != "24:00" and closes <= opens):
            problems.append(
                ValidationError(
                    f"{day}: window {opens}-{closes} must open before it closes.",
                    code="bad_window",
                )
            )
            continue
        good.append((opens, closes))
    problems.extend(
        ValidationError(
            f"{day}: windows {a[0]}-{a[1]} and {b[0]}-{b[1]} overlap; "
            "join them into one window or move one of them.",
            code="overlapping_windows",
        )
        for a, b in overlapping_windows(good)
    )
    return problems


def overlapping_windows(
    windows: list[tuple[str, str]],
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Each pair of one day's valid ``(open, close)`` windows that overlap, earlier first.

    ``HH:MM`` strings sort as times, and ``24:00`` sorts after every other close. Windows
    that only touch (one closes when the next opens) do not overlap.
    """
    ordered = sorted(windows)
    pairs = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second[0] >= first[1]:
                break
            pairs.append((first, second))
    return pairs


def default_duplicate_window(vertical: str) -> int:
    """The duplicate window a vertical starts with (error-code reference, 4005)."""
    return DUPLICATE_WINDOW_DAYS.get(vertical, DUPLICATE_WINDOW_DAYS[Vertical.OTHER])[0]


def validate_buyer(buyer: Any) -> None:
    """Rules that span fields; raises a ``ValidationError`` keyed by field."""
    errors: dict[str, str] = {}
    # Field validation runs first but leaves a value it could not convert in place, so each
    # rule here only compares values of the right type (the field error already explains).
    if isinstance(buyer.duplicate_window_days, int):
        _default, low, high = DUPLICATE_WINDOW_DAYS.get(
            buyer.vertical, DUPLICATE_WINDOW_DAYS[Vertical.OTHER]
        )
        if not low <= buyer.duplicate_window_days <= high:
            label = Vertical(buyer.vertical).label if buyer.vertical in Vertical.values else "This"
            errors["duplicate_window_days"] = f"{label} duplicate windows run {low} to {high} days."
    if buyer.health_check_minutes and not buyer.health_check_caller_id:
        errors["health_check_caller_id"] = (
            "Set a test caller ID for health checks (never a live caller)."
        )
    if (
        isinstance(buyer.daily_cap, int)
        and isinstance(buyer.monthly_cap, int)
        and buyer.daily_cap > buyer.monthly_cap
    ):
        errors["daily_cap"] = "The daily cap cannot be above the monthly cap."
    if errors:
        raise ValidationError(errors)
