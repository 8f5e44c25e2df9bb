"""What the portal does while PostgreSQL, Redis or the broker is unreachable.

- :class:`Outage` remembers, per process, that a service is down, so the code that works
  around it (the fail-open cache, the process-local limiter) logs one warning when the outage
  starts and one line when it ends, not one per request.
- :func:`unavailable_part` tells an outage (a lost connection, a refused connect, a timeout)
  from any other error, and names the part: ``database``, ``cache`` or ``broker``.
- :class:`ServiceUnavailableMiddleware` and :func:`server_error` (``handler500``) answer a
  request that failed on an outage with 503 and ``Retry-After``: JSON under ``/api/``, the
  standalone ``503.html`` page elsewhere (it uses nothing that needs the database).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)

_WHAT = {
    "database": "The database",
    "cache": "The cache (Redis)",
    "broker": "The task queue (broker)",
}


class Outage:
    """Whether one service is known to be down in this process, logged once per outage."""

    def __init__(self, name: str, *, effect: str) -> None:
        self.name = name
        # What the process does meanwhile, for the warning ("caches answer empty").
        self.effect = effect
        self._since: float | None = None
        self._last_failure = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._since is not None

    def resting(self, seconds: float) -> bool:
        """Down, and the last failure is less than ``seconds`` old: not worth trying yet."""
        return self._since is not None and time.monotonic() - self._last_failure < seconds

    def failed(self, exc: BaseException) -> None:
        """Record a failure; the first one of an outage logs a warning (no traceback)."""
        self._last_failure = time.monotonic()
        if self._since is not None:
            return
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning("%s is unreachable (%s); %s", self.name, type(exc).__name__, self.effect)

    def recovered(self) -> None:
        """Record a success; ends an outage, with one line in the log."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            logger.info("%s is back after %.1f s", self.name, time.monotonic() - since)


def unavailable_part(exc: BaseException | None) -> str | None:
    """``database``, ``cache`` or ``broker`` when ``exc`` (or what caused it) is that
    service being unreachable; ``None`` for any other error."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, DATABASE_ERRORS):
            return "database"
        if isinstance(exc, REDIS_ERRORS):
            return "cache"
        if isinstance(exc, BrokerError):
            return "broker"
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def service_unavailable(request: HttpRequest, part: str) -> HttpResponse:
    """503 with ``Retry-After``: JSON ``{"detail", "field", "unavailable"}`` under /api/,
    the branded page elsewhere."""
    retry_after = max(int(settings.OUTAGE_RETRY_AFTER_SECONDS), 1)
    what = _WHAT.get(part, "A service the portal needs")
    detail = f"{what} is unavailable right now; try again in {retry_after} s."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail, "field": None, "unavailable": part}, status=503)
    else:
        # No request in the context: the context processors would read the session and the
        # user, which may be exactly what is unreachable.
        html = loader.render_to_string(
            "503.html", {"detail": detail, "part": part, "retry_after": retry_after}
        )
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(retry_after)
    response["Cache-Control"] = "no-store"
    return response


class ServiceUnavailableMiddleware:
    """Turn a view's outage error (database, Redis, broker) into a 503 instead of a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # Django logs each 503 in one line ("Service Unavailable: /path"); a traceback per
        # request of an outage would bury the log.
        part = unavailable_part(exception)
        return None if part is None else service_unavailable(request, part)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an outage raised outside a view (a middleware) is a 503 as well;
    any other error gets Django's own 500 page."""
    part = unavailable_part(sys.exc_info()[1])
    if part is not None:
        return service_unavailable(request, part)
    return defaults.server_error(request)
