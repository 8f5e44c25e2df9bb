"""Errors of the routing service, shared by :mod:`bidlog.routing.strategies` and
:mod:`bidlog.routing.record`.

Kept apart so both can raise them without importing each other.
"""

from __future__ import annotations


class RouteError(Exception):
    """The route request itself is wrong; nothing was sent and no call was recorded.

    ``code`` is CallGrid's (4003 for a caller ID that is not a NANP number, 4000 for any other
    bad field) and ``field`` names the request field at fault.
    """

    def __init__(self, *, code: int, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
