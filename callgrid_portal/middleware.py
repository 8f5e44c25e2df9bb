"""Request checks every view relies on, made once at the door, and the security policy header
every response leaves with."""

from __future__ import annotations

from collections.abc import Callable

from csp.constants import HEADER as CSP_HEADER
from csp.middleware import CSPMiddleware
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    JsonResponse,
)

from callgrid_portal.text import NUL_MESSAGE, contains_nul


def nul_query_guard(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Refuse a query string holding the NUL character, naming the parameter.

    PostgreSQL refuses NUL in text, so a filter value holding one (``%00``) failed the
    query: the API's own filters refuse it, but the admin's list filters passed it through to
    the database and answered 500.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if contains_nul(name) or contains_nul(values):
                message = f"Query parameter {name!r} {NUL_MESSAGE}."
                if request.path.startswith("/api/"):
                    return JsonResponse({"detail": message, "field": name}, status=400)
                return HttpResponseBadRequest(message, content_type="text/plain")
        return get_response(request)

    return middleware


# What a response that is not a page may load or be framed by: nothing. A JSON answer, a CSV
# or a static file is never rendered as a page of the portal.
NOT_A_PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'"


class PageCSPMiddleware(CSPMiddleware):
    """django-csp's policy (``CONTENT_SECURITY_POLICY``) on HTML responses; every other
    response gets :data:`NOT_A_PAGE_POLICY`, the same string each time.

    django-csp builds its policy afresh for each response (a page's may carry a nonce), and
    that was about a twentieth of a route's CPU; an API answer has no use for the pages'
    policy, and the strictest one costs nothing to write.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if response.get("Content-Type", "").startswith("text/html"):
            return super().process_response(request, response)
        if CSP_HEADER not in response:
            response[CSP_HEADER] = NOT_A_PAGE_POLICY
        return response
