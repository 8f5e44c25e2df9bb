"""The API's front door: ``GET /api/v1/`` lists the endpoints, and any other path under
``/api/`` that names none answers a JSON 404 like every other API error."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callgrid_portal.roles import VIEWER

# What the index lists: a name for each endpoint and its URL name. Detail URLs
# (``buyers/{id}/``...) follow from the lists; the schema has every path and method.
ENDPOINTS = {
    "buyers": "api:buyer-list",
    "buyers/eligibility": "api:buyer-eligibility",
    "bids": "api:bid-list",
    "bids/import": "api:bid-import",
    "route": "api:route",
    "calls": "api:call-list",
    "reports/summary": "api:report-summary",
    "reports/timeseries": "api:report-timeseries",
    "reports/states": "api:report-states",
    "reports/campaigns": "api:report-campaigns",
    "alerts": "api:alert-list",
    "alerts/mutes": "api:alert-mute-list",
    "error-codes": "api:error-code-list",
    "health": "api:health",
}
NOT_FOUND_NAME = "api-not-found"
NOT_FOUND_MESSAGE = "No API endpoint at this path."


class ApiIndexView(APIView):
    """``GET /api/v1/``: every endpoint's URL, the OpenAPI schema and the docs."""

    read_role = VIEWER

    @extend_schema(
        operation_id="api_index",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, "{schema, docs, endpoints}")},
    )
    def get(self, request: Request) -> Response:
        def url(name: str) -> str:
            return request.build_absolute_uri(reverse(name))

        return Response(
            {
                "schema": url("api:schema"),
                "docs": url("api:docs"),
                "endpoints": {key: url(name) for key, name in ENDPOINTS.items()},
            }
        )


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """A JSON 404 for any method on a path under ``/api/`` that names no endpoint.

    A GET of an endpoint's path without its trailing slash is still redirected to it, as
    ``APPEND_SLASH`` does for the rest of the site (this catch-all would otherwise stop it).
    """
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != NOT_FOUND_NAME:
            if request.method in ("GET", "HEAD"):
                return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
            return JsonResponse(
                {"detail": f"{NOT_FOUND_MESSAGE} Did you mean {request.path}/?", "field": None},
                status=404,
            )
    return JsonResponse({"detail": NOT_FOUND_MESSAGE, "field": None}, status=404)
