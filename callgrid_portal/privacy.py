"""What viewers may read of phone numbers: every phone-like value is partly masked (SPEC §6).

One rule, :func:`mask_phone`, decides what stays visible: the leading digits up to the area
code (at most four, so ``+1`` and the area code for a NANP number) and the last four, with
``***`` in between: ``3035551234`` → ``303***1234``, ``+1 (303) 555-1234`` → ``+1303***1234``.
That is enough to tell callers apart and to spot a test number without exposing a consumer's
number to read-only users. :func:`mask_phones_in` applies it to every phone-like run inside free
text and JSON (extra parameters under any key, raw answers, messages, support text, alerts).

Operators and admins see numbers in full (:func:`can_see_caller_ids`).
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from callgrid_portal.roles import OPERATOR, has_role

MASK = "***"
# A phone-like value: 10 to 15 digits, an optional leading +, and up to two of space, dash,
# dot or parentheses between digits ("+1 (303) 555-1234", "303.555.1234"). It must not sit
# inside a longer word or number (a 20-digit id, a Grid ID) nor run into a time ("...12:00"),
# so timestamps such as "2025-05-01 12:00:00" are left alone.
PHONE_RE = re.compile(r"(?<![\w+])\+?\(?\d(?:[ .\-()]{0,2}\d){9,14}(?![\w:])")
_MIN_DIGITS = 10
_MAX_DIGITS = 15
# Digits hidden at least: the exchange of a NANP number (3), more for longer numbers.
_HIDDEN_AT_LEAST = 3
_TAIL = 4
_HEAD_AT_MOST = 4


def mask_phone(value: Any) -> str:
    """Mask one phone number: leading digits (at most 4) + ``***`` + the last 4 digits.

    A leading ``+`` stays. A value that is not 10 to 15 digits long (after dropping spaces,
    dashes, dots and parentheses) cannot be masked safely and is hidden entirely (``***``);
    an empty value stays empty.
    """
    text = str(value or "").strip()
    if not text:
        return ""
    digits = re.sub(r"\D", "", text)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return MASK
    head = digits[: min(len(digits) - _TAIL - _HIDDEN_AT_LEAST, _HEAD_AT_MOST)]
    sign = "+" if text.startswith("+") else ""
    return f"{sign}{head}{MASK}{digits[-_TAIL:]}"


def mask_phones_in(value: Any) -> Any:
    """``value`` with every phone-like run masked by :func:`mask_phone`.

    Strings are searched with :data:`PHONE_RE`; dicts (keys and values), lists and tuples are
    walked; a number (a JSON ``3035551234``) is masked when it has phone-like size; anything
    else (``None``, booleans, amounts) is returned as it is.
    """
    if isinstance(value, str):
        return PHONE_RE.sub(lambda match: mask_phone(match.group(0)), value)
    if isinstance(value, dict):
        return {mask_phones_in(key): mask_phones_in(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_phones_in(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        return mask_phone(text) if PHONE_RE.fullmatch(text) else value
    return value


def can_see_caller_ids(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """Operators and admins see phone numbers in full; viewers (and unknown users) masked."""
    return has_role(user, OPERATOR)


def shown_to(user: AbstractBaseUser | AnonymousUser | None, value: Any) -> Any:
    """``value`` as ``user`` may read it: unchanged for operators, phone-masked otherwise."""
    return value if can_see_caller_ids(user) else mask_phones_in(value)
