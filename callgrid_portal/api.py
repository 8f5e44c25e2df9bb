"""API plumbing shared by every app: error format and the readiness probe."""

import logging
import os
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class PortalTokenScheme(OpenApiAuthenticationExtension):
    """Document :class:`PortalTokenAuthentication` exactly as knox's token (same scheme name)."""

    target_class = "callgrid_portal.authentication.PortalTokenAuthentication"
    name = "knoxApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=self.target.authenticate_header(None)
        )


class ErrorSerializer(serializers.Serializer):
    """The shape of every API error (see :func:`exception_handler`)."""

    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    field = serializers.CharField(allow_null=True, help_text="The request field at fault, or null.")
    # DRF's serializer metaclass moves declared fields off the class, so this never replaces
    # Serializer.errors; the stubs see a class attribute of another type.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Every field at fault with its messages (validation errors only).",
    )


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the error answers every endpoint can give.

    Without them the OpenAPI document only shows successes, and a client generated from it
    cannot read our ``{"detail", "field", "errors"}`` errors.
    """

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)  # type: ignore[arg-type]
        if direction != "response":
            return responses
        errors = {"400": "Bad input; `field` names the field at fault."}
        if self.method in ("POST", "PUT", "PATCH"):
            errors["415"] = "The body is not JSON (nor a form)."
        if self.get_auth() and getattr(self.view, "authentication_classes", None):
            errors["401"] = "No valid token or session."
            errors["403"] = "Your role does not allow this."
        if getattr(self.view, "throttle_classes", None):
            errors["429"] = "Too many requests (API_THROTTLE_RATE)."
        if "{" in self.path:
            errors["404"] = "No such object."
        for code, description in errors.items():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code)
                response["description"] = description
                responses[code] = response
        return responses


def _first_field(detail: Any) -> str | None:
    """Name the first field at fault in a DRF validation error, if any."""
    if isinstance(detail, dict):
        for key in detail:
            if key != "non_field_errors":
                return str(key)
    return None


def _first_message(detail: Any) -> str:
    """Flatten the first message of a DRF error detail into one sentence."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            message = _first_message(value)
            if key in ("non_field_errors", "detail"):
                return message
            return f"{key}: {message}"
        return "Invalid input."
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


def request_refusal(exc: Exception) -> str:
    """What was wrong with a request Django refused as a whole, in a sentence."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return f"The request body is larger than {limit:,} bytes; send less at a time."
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return f"The request has more than {limit:,} query or form fields."
    return "The request was refused as malformed."


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 view (``handler400``): JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": request_refusal(exception), "field": None}, status=400)
    return defaults.bad_request(request, exception)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every API error as JSON with a message and, for bad input, the field at fault.

    Shape: ``{"detail": "...", "field": "min_bid" | null, "errors": {field: [messages]}}``.
    DRF's own per-field dictionary stays under ``errors`` so clients can show every problem.
    """
    if isinstance(exc, SuspiciousOperation):
        # Django's refusals of a request as a whole (a body past DATA_UPLOAD_MAX_MEMORY_SIZE,
        # too many fields) would otherwise reach its HTML 400 page, which says nothing.
        return Response(
            {"detail": request_refusal(exc), "field": None}, status=status.HTTP_400_BAD_REQUEST
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        detail = exc.detail
        errors = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = {
            "detail": _first_message(detail),
            "field": _first_field(detail),
            "errors": errors,
        }
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "field": None}
    return response


class HealthView(APIView):
    """Readiness of the portal itself: database, cache and the Celery broker."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        """``{"status": "ok" | "unavailable", "down": [parts], "checks": {part: {...}}}``.

        A part that fails says only ``"error": "unreachable"``: the exception (hosts, ports,
        user names) goes to the log, never to this unauthenticated answer.
        """
        checks: dict[str, dict[str, Any]] = {}
        checks["database"] = _check("database", _ping_database)
        checks["cache"] = _check("cache", _ping_cache)
        checks["broker"] = _check("broker", _ping_broker)
        down = [part for part, check in checks.items() if not check["ok"]]
        response = Response(
            {"status": "unavailable" if down else "ok", "down": down, "checks": checks},
            status=status.HTTP_503_SERVICE_UNAVAILABLE if down else status.HTTP_200_OK,
        )
        if down:
            response["Retry-After"] = str(settings.OUTAGE_RETRY_AFTER_SECONDS)
        return response


def _check(part: str, probe: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        probe()
    except Exception as exc:  # a readiness probe reports every failure, whatever it is
        logger.warning("health check: %s failed: %s: %s", part, type(exc).__name__, exc)
        return {"ok": False, "error": "unreachable"}
    return {"ok": True, "duration_ms": int((time.monotonic() - started) * 1000)}


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _ping_cache() -> None:
    cache.set("health:ping", "pong", 10)
    if cache.get("health:ping") != "pong":
        raise RuntimeError("cache did not return the value just written")


def _ping_broker() -> None:
    """Connect to the Celery broker; for the filesystem transport, check its folder is writable."""
    from callgrid_portal.celery import app

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
        folder = (app.conf.broker_transport_options or {}).get("data_folder_out")
        if folder and not os.access(folder, os.W_OK):
            raise RuntimeError(f"broker folder {folder} is not writable")
