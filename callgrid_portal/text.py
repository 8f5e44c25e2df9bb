"""Text the database can store.

PostgreSQL's ``text`` and ``jsonb`` types refuse the NUL character (U+0000), and an insert
carrying one fails as a whole: a whole call's log, or a whole import batch. What we are sent
is refused with the field named (:func:`contains_nul`); what a buyer answers is kept, with each
NUL replaced by U+FFFD (:func:`nul_replaced`), so its answer is never lost.

An id or a number sent as text is read only when it is ASCII digits (:func:`ascii_digits`):
``str.isdigit`` also takes superscripts such as "²", which ``int`` refuses;
:func:`whole_number_upto` also bounds its length and value before and after ``int``.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"
NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def contains_nul(value: Any) -> bool:
    """Whether a string, or any key or string inside a JSON-like value, holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


def nul_replaced(text: str) -> str:
    """``text`` with each NUL replaced by U+FFFD, the mark of an unreadable character."""
    return text.replace(NUL, REPLACEMENT) if NUL in text else text


def ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits, which ``int`` reads as they look."""
    return text.isascii() and text.isdigit()


def whole_number_upto(text: str, maximum: int) -> int | None:
    """``text`` as a whole number from 0 to ``maximum``, or ``None`` when it is not one.

    Its length is checked before ``int`` reads it: a number of thousands of digits costs
    ``int`` time, and beyond 4,300 digits ``int`` refuses it with a ValueError.
    """
    if not ascii_digits(text) or len(text) > len(str(maximum)):
        return None
    number = int(text)
    return number if number <= maximum else None
