"""API token authentication: knox's, refusing malformed tokens as invalid instead of crashing.

Kept apart from :mod:`callgrid_portal.api`: DRF imports authentication classes while it is
still loading its own views, so this module imports nothing of DRF but what knox needs.
"""

from __future__ import annotations

from typing import Any

from knox.auth import TokenAuthentication
from rest_framework.authentication import get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request

from callgrid_portal.text import contains_nul
from callgrid_portal.throttles import FailedTokenThrottle


class PortalTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``; a token that is not UTF-8 text, or holds a NUL (which
    PostgreSQL cannot compare), is refused as invalid: knox itself would crash on it (500).

    Failed token logins are counted per client address (:class:`FailedTokenThrottle`); once an
    address has used up ``TOKEN_FAILURE_THROTTLE_RATE``, its token logins are answered 429
    without being checked, so tokens cannot be guessed at full speed.
    """

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.authenticate_header(request).lower().encode():
            return None
        throttle = FailedTokenThrottle()
        # A token this process has just found good skips the count: a guess cannot be one,
        # and the live path saves a round trip to the cache on every call.
        wait = None if self.recently_checked(header[-1]) else throttle.retry_after(request)
        if wait is not None:
            raise Throttled(wait=wait, detail="Too many failed token logins from this address.")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttle.record(request)
            raise

    def recently_checked(self, token: bytes) -> bool:
        """Whether this process found ``token`` good a moment ago (never, here)."""
        return False

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Any]:
        token_text(token)
        return super().authenticate_credentials(token)


def token_text(token: bytes) -> str:
    """The token as text; one that is not UTF-8 or holds a NUL is refused as invalid."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed("Invalid token.") from None
    if contains_nul(text):
        raise AuthenticationFailed("Invalid token.")
    return text
