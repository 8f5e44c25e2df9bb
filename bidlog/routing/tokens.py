"""The route API's token check: knox's, remembered briefly by each process (the live path)."""

from __future__ import annotations

import binascii
import threading
import time
from collections import OrderedDict
from hmac import compare_digest
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.crypto import hash_token
from knox.models import AuthToken, get_token_model
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework.exceptions import AuthenticationFailed

from callgrid_portal.authentication import PortalTokenAuthentication, token_text

INVALID_TOKEN = "Invalid token."


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
    it, and :meth:`token_check` does knox's check of the presented token without it: an
    expired one is deleted and refused. A token found good is trusted for
    ``ROUTE_TOKEN_CACHE_SECONDS`` by this process (the telephony platform routes every call
    with the same token), together with its user and role; expiry is still checked on every
    route.
    """

    def recently_checked(self, token: bytes) -> bool:
        max_age = settings.ROUTE_TOKEN_CACHE_SECONDS
        try:
            digest = hash_token(token.decode("utf-8"))
        except (TypeError, UnicodeDecodeError, binascii.Error):
            return False
        return max_age > 0 and checked_tokens.get(digest, max_age=max_age) is not None

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        text = token_text(token)
        try:
            digest = hash_token(text)
        except (TypeError, binascii.Error):
            raise AuthenticationFailed(INVALID_TOKEN) from None
        max_age = settings.ROUTE_TOKEN_CACHE_SECONDS
        known = checked_tokens.get(digest, max_age=max_age) if max_age > 0 else None
        if known is not None:
            return known
        user, auth_token = self.token_check(text, digest)
        if max_age > 0:
            checked_tokens.put(digest, user, auth_token)
        return user, auth_token

    def token_check(self, text: str, digest: str) -> tuple[Any, AuthToken]:
        """Knox's check of one token, through knox's public names, without its sweep.

        Knox's own check (``TokenAuthentication.authenticate_credentials``) also deletes the
        user's other expired tokens, in a private method; this is the same check of the
        presented token alone: an expired one is deleted (knox's ``token_expired`` signal)
        and refused, the digest is compared in constant time, the user must be active.
        """
        candidates = (
            get_token_model()
            .objects.filter(token_key=text[: CONSTANTS.TOKEN_KEY_LENGTH])
            .select_related("user")
        )
        for auth_token in candidates:
            if auth_token.expiry is not None and auth_token.expiry < timezone.now():
                username = auth_token.user.get_username()
                auth_token.delete()
                token_expired.send(sender=self.__class__, username=username, source="auth_token")
                continue
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                return self.validate_user(auth_token)
        raise AuthenticationFailed(INVALID_TOKEN)


class RouteTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Document the route's token authentication as the API's usual ``Token`` header."""

    target_class = RouteTokenAuthentication
    name = "routeToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization"}
