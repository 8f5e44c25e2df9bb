"""API token authentication: knox's, refusing malformed tokens as invalid instead of crashing.

Kept apart from :mod:`callgrid_portal.api`: DRF imports authentication classes while it is
still loading its own views, so this module imports nothing of DRF but what knox needs.
"""

from __future__ import annotations

from typing import Any

from knox.auth import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from callgrid_portal.text import contains_nul


class PortalTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``; a token that is not UTF-8 text, or holds a NUL (which
    PostgreSQL cannot compare), is refused as invalid: knox itself would crash on it (500)."""

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Any]:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        if contains_nul(text):
            raise AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)
