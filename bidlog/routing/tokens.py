"""The route API's token check: knox's, remembered briefly by each process (the live path)."""

from __future__ import annotations

import binascii
import threading
import time
from collections import OrderedDict
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.signals import token_expired

from callgrid_portal.authentication import PortalTokenAuthentication


class CheckedTokens:
    """Tokens this process has just checked, for ``ROUTE_TOKEN_CACHE_SECONDS``.

    Keyed by the token's digest (what knox stores), never by the token itself; bounded, the
    oldest entry going first.
    """

    SIZE = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Any, AuthToken]] = OrderedDict()

    def get(self, digest: str, *, max_age: float) -> tuple[Any, AuthToken] | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None:
            return None
        checked_at, user, auth_token = entry
        if time.monotonic() - checked_at >= max_age or (
            auth_token.expiry is not None and auth_token.expiry <= timezone.now()
        ):
            return None
        return user, auth_token

    def put(self, digest: str, user: Any, auth_token: AuthToken) -> None:
        with self._lock:
            self._entries[digest] = (time.monotonic(), user, auth_token)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


checked_tokens = CheckedTokens()


class RouteTokenAuthentication(PortalTokenAuthentication):
    """Knox token authentication for the live path: no token sweep, a short memory.

    Knox reads every token of the user on each request to delete the expired ones. That
    housekeeping is a query on the live path of each call; every other API request still does
    it. The token presented is checked exactly as before: an expired one is deleted and
    refused. A token found good is trusted for ``ROUTE_TOKEN_CACHE_SECONDS`` by this process
    (the telephony platform routes every call with the same token), together with its user
    and role; expiry is still checked on every route.
    """

    def recently_checked(self, token: bytes) -> bool:
        max_age = settings.ROUTE_TOKEN_CACHE_SECONDS
        try:
            digest = hash_token(token.decode("utf-8"))
        except (TypeError, UnicodeDecodeError, binascii.Error):
            return False
        return max_age > 0 and checked_tokens.get(digest, max_age=max_age) is not None

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        max_age = settings.ROUTE_TOKEN_CACHE_SECONDS
        if max_age <= 0:
            return super().authenticate_credentials(token)
        try:
            digest = hash_token(token.decode("utf-8"))
        except (TypeError, UnicodeDecodeError, binascii.Error):
            return super().authenticate_credentials(token)  # refused there, as invalid
        known = checked_tokens.get(digest, max_age=max_age)
        if known is not None:
            return known
        user, auth_token = super().authenticate_credentials(token)
        checked_tokens.put(digest, user, auth_token)
        return user, auth_token

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False


class RouteTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Document the route's token authentication as the API's usual ``Token`` header."""

    target_class = RouteTokenAuthentication
    name = "routeToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization"}
