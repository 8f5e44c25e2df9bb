"""Request checks every view relies on, made once at the door."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

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
