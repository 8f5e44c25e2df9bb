"""Throttles that stop guessing: caller searches by viewers, and failed API token logins.

A viewer sees caller numbers masked (``303***1234``); without a limit, trying the thousand
possible middles in the ``caller_id`` filter (or the eligibility check) would give the full
number back in seconds. Every search a viewer makes counts, whether it matched, found nothing
or was refused as not a complete number, so failed lookups use up the allowance too.
Operators and admins see numbers in full and are not limited here.

Failed token authentications are counted per client address
(:class:`FailedTokenThrottle`), so a client trying tokens is refused before it can find one.
"""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle

from callgrid_portal.privacy import can_see_caller_ids

CALLER_PARAM = "caller_id"


class CallerSearchThrottle(SimpleRateThrottle):
    """Scope ``caller_search``: ``CALLER_SEARCH_THROTTLE_RATE`` searches by caller per viewer.

    Works on DRF requests (as a throttle class) and on page requests
    (:func:`caller_search_wait`); a request without ``caller_id``, or by an operator or
    admin, is not counted.
    """

    scope = "caller_search"

    def get_rate(self) -> str:
        return str(settings.CALLER_SEARCH_THROTTLE_RATE)

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or can_see_caller_ids(user):
            return None
        if not request.GET.get(CALLER_PARAM, "").strip():
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


def caller_search_wait(request: HttpRequest) -> int | None:
    """Count a page's caller search; ``None`` when allowed, else the seconds to wait."""
    throttle = CallerSearchThrottle()
    # The throttle reads only the user and the query, which a page's request has too; no view.
    if throttle.allow_request(cast(Any, request), cast(Any, None)):
        return None
    return max(int(throttle.wait() or 0), 1)


def throttled_message(wait: int) -> str:
    """What a page says when a search by caller is refused for now."""
    return f"Too many searches by caller ID: try again in {wait} seconds."


class FailedTokenThrottle(SimpleRateThrottle):
    """Scope ``failed_token``: ``TOKEN_FAILURE_THROTTLE_RATE`` failed token logins per client
    address (:func:`client_address`). :meth:`record` counts a failure; :meth:`retry_after`
    tells whether the address must wait (authentication then refuses it unchecked)."""

    scope = "failed_token"

    def get_rate(self) -> str:
        return str(settings.TOKEN_FAILURE_THROTTLE_RATE)

    def get_cache_key(self, request: Any, view: Any) -> str:
        address = client_address(request) or "unknown"
        return self.cache_format % {"scope": self.scope, "ident": address}

    def retry_after(self, request: Any) -> int | None:
        """``None`` while this address has failures left (this request is not counted), else
        the seconds until its oldest counted failure is forgotten."""
        allowed, duration = self.parse_rate(self.get_rate())
        if allowed is None or duration is None:
            return None
        now = self.timer()
        history = self.cache.get(self.get_cache_key(request, None), [])
        recent = [moment for moment in history if moment > now - duration]
        if len(recent) < allowed:
            return None
        return max(int(min(recent) + duration - now), 1)

    def record(self, request: Any) -> None:
        """Count one failed token login for this address."""
        self.allow_request(request, cast(Any, None))


def client_address(request: Any) -> str | None:
    """The client's IP address: ``REMOTE_ADDR``, or the address a trusted proxy put in
    ``X-Forwarded-For`` when ``TRUSTED_PROXY_COUNT`` says how many proxies stand in front;
    ``None`` when the request carries none (a request built in code).

    The header's entries are taken from the right, the side our own proxies append to: a
    client can write anything on the left, so a rotated header never changes what is read.
    An entry that is not an IP address is ignored in favour of the connection's address.
    """
    meta = request.META
    proxies = int(settings.TRUSTED_PROXY_COUNT)
    if proxies > 0:
        hops = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if len(hops) >= proxies and _is_ip(hops[-proxies]):
            return hops[-proxies]
    remote = str(meta.get("REMOTE_ADDR", "") or "").strip()
    return remote if _is_ip(remote) else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
