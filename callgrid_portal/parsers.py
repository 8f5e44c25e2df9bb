"""Request parsers of the API (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

Kept apart from :mod:`callgrid_portal.api`: DRF imports these while it is still loading its
own views, so this module imports nothing of DRF but its parsers.
"""

from __future__ import annotations

import codecs
import json
import math
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from callgrid_portal.jsondepth import MAX_DEPTH, TOO_DEEP_MESSAGE

# No value the portal takes needs more digits than this (a bigint has 19, money 12); a longer
# number is refused before Python converts it, which costs time quadratic in its length.
MAX_NUMBER_CHARS = 100
NOT_AN_OBJECT_MESSAGE = "Send a JSON object."


class NumberRefused(ValueError):
    """A JSON number the API does not take: not finite, or too long to convert.

    ``field`` is the key of the object that held it (``None`` outside any object).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field is not None else message)
        self.message = message
        self.field = field


class _Refused:
    """Stands in for a refused number until the object holding it can name its key."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _too_long(text: str) -> _Refused | None:
    if len(text) > MAX_NUMBER_CHARS:
        return _Refused(
            f"a number longer than {MAX_NUMBER_CHARS} characters ({text[:20]}...) is not accepted"
        )
    return None


def _int(text: str) -> int | _Refused:
    if len(text) <= MAX_NUMBER_CHARS:
        return int(text)
    return _too_long(text) or int(text)


def _float(text: str) -> float | _Refused:
    refused = _too_long(text)
    if refused is not None:
        return refused
    number = float(text)
    if not math.isfinite(number):
        # 1e999 is valid JSON, but Python reads it as infinity, which no field can hold.
        return _Refused(f"{text} is not a finite number")
    return number


def _constant(name: str) -> _Refused:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259), though Python's parser reads them.
    return _Refused(f"{name} is not a finite number; JSON has no such value")


class TooDeep(ValueError):
    """JSON nested more than :data:`~callgrid_portal.jsondepth.MAX_DEPTH` levels."""


def _checked(data: Any) -> Any:
    """``data``, after one walk over its lists and objects that stops at the first fault.

    Raises :class:`NumberRefused` for a refused number, naming the key of the object that
    held it, directly or in lists (``None`` outside any object), and :class:`TooDeep` for
    nesting past ``MAX_DEPTH``. It descends only into lists and objects, without a function
    call per value (a batch of 5,000 import records is walked in a few milliseconds), where a
    hook on every object and a second walk for the depth took several times longer.
    """
    if type(data) is _Refused:
        raise NumberRefused(data.message)
    stack: list[tuple[Any, int, str | None]] = [(data, 1, None)]
    while stack:
        item, depth, key = stack.pop()
        if type(item) is dict:
            pairs: Any = item.items()
        elif type(item) is list:
            pairs = ((key, value) for value in item)
        else:
            continue
        if depth > MAX_DEPTH:
            raise TooDeep(TOO_DEEP_MESSAGE)
        for name, value in pairs:
            kind = type(value)
            if kind is dict or kind is list:
                stack.append((value, depth + 1, name))
            elif kind is _Refused:
                raise NumberRefused(value.message, name)
    return data


def json_loads_strict(text: str) -> Any:
    """``json.loads`` refusing what no request may carry: NaN, infinities, numbers too long.

    Raises :class:`NumberRefused` (a ``ValueError``) naming the key that held such a number,
    :class:`TooDeep` for JSON nested too deeply, ``ValueError`` for text that is not JSON.
    """
    return _checked(json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant))


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing with a 400 what would crash or corrupt what follows.

    JSON nested too deeply, ``NaN``/``Infinity``/``-Infinity``, numbers that overflow to
    infinity (``1e999``), numbers longer than :data:`MAX_NUMBER_CHARS` characters and a body
    that is not a JSON object (every endpoint takes one) are refused here, before any view
    sends or writes anything.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            data = json_loads_strict(text)
        except NumberRefused as exc:
            if exc.field is None:
                raise ParseError(f"JSON parse error - {exc}") from None
            # Named like any other bad field: {"detail": "Score: ...", "field": "Score"}.
            raise ValidationError({exc.field: [f"{exc.message}."]}) from None
        except (TooDeep, RecursionError):
            raise ParseError(f"JSON parse error - {TOO_DEEP_MESSAGE}") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if not isinstance(data, dict):
            # Every body the API takes is an object; a list where one belongs was read as
            # "no fields given" (a test bid went out with defaults).
            raise ParseError(NOT_AN_OBJECT_MESSAGE)
        return data
