"""Campaign and publisher tags of a call: what a tag may hold, checked in one place.

A publisher labels each call with the campaign it belongs to and the traffic source
(publisher) that sent it, so reports can say which campaign or source earns and which loses.
The route API, the call and bid filters and the reports all read tags through
:func:`tag_problem`, so a tag the log accepts is a tag every filter can find.
"""

from __future__ import annotations

import re

# Long enough for "summer-2026/auto-insurance/tv-spot-3", short enough for a table cell.
TAG_MAX_LENGTH = 64
# Letters, digits and a few separators; no quotes, angle brackets or control characters, so a
# tag is safe in a URL, a CSV cell and a page without escaping surprises.
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:/-]*")
TAG_RULE = (
    f"at most {TAG_MAX_LENGTH} characters: letters, digits, spaces and _ . : / -, "
    "starting with a letter or digit"
)
TAG_FIELDS = ("campaign", "publisher")


def tag_problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the ``name`` tag (``campaign`` or ``publisher``), or ``None``.

    An empty string is no tag and is fine; anything that is not a string is refused.
    """
    if not isinstance(value, str):
        return f"{name} must be a string ({TAG_RULE})."
    if value == "":
        return None
    if len(value) > TAG_MAX_LENGTH:
        return f"{name} is {len(value)} characters long; use {TAG_RULE}."
    if TAG_PATTERN.fullmatch(value) is None:
        return f"{name} {value[:TAG_MAX_LENGTH]!r} has characters not allowed; use {TAG_RULE}."
    return None
