"""The error-code catalog over the API: ``GET /api/v1/error-codes/`` and ``/error-codes/{code}/``.

Read-only and open to every role (``viewer`` and up, the default permission). The catalog is
data in :mod:`callgrid_portal.bidapi.codes`; these views only shape it as JSON.
"""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callgrid_portal.allowed import not_one_of
from callgrid_portal.bidapi import codes
from callgrid_portal.bidapi.outcomes import outcome_class


class ErrorCodeOutputSerializer(serializers.Serializer):
    """One catalog entry."""

    code = serializers.IntegerField()
    http_status = serializers.IntegerField()
    callgrid_message = serializers.CharField()
    title = serializers.CharField()
    meaning = serializers.CharField()
    causes = serializers.ListField(child=serializers.CharField())
    fixes = serializers.ListField(child=serializers.CharField())
    priority = serializers.ChoiceField(choices=codes.Priority.choices)
    priority_label = serializers.CharField()
    contact_support = serializers.CharField()
    outcome = serializers.CharField()
    outcome_class = serializers.SerializerMethodField()
    retry = serializers.BooleanField()

    def get_outcome_class(self, entry: codes.ErrorCode) -> str:
        return outcome_class(entry.outcome)


class SupportFieldOutputSerializer(serializers.Serializer):
    """One item a support request to CallGrid should include."""

    key = serializers.CharField()
    # DRF's serializer metaclass moves declared fields off the class, so this never replaces
    # Field.label; the stubs see a class attribute of another type.
    label = serializers.CharField()  # type: ignore[assignment]
    description = serializers.CharField()


class ErrorCodeListOutputSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = ErrorCodeOutputSerializer(many=True)
    support_request_fields = SupportFieldOutputSerializer(many=True)


class ErrorCodeListView(APIView):
    """Every CallGrid code, most urgent first, and what a support request must carry."""

    @extend_schema(
        operation_id="error_codes_list",
        parameters=[
            OpenApiParameter(
                "priority",
                OpenApiTypes.STR,
                enum=codes.Priority.values,
                description="Only codes of this priority.",
            )
        ],
        responses=ErrorCodeListOutputSerializer,
    )
    def get(self, request: Request) -> Response:
        entries = codes.by_priority()
        priority = request.query_params.get("priority")
        if priority is not None:
            if priority not in codes.Priority.values:
                raise ValidationError({"priority": [not_one_of(priority, codes.Priority.values)]})
            entries = [entry for entry in entries if entry.priority == priority]
        data: dict[str, Any] = {
            "count": len(entries),
            "results": entries,
            "support_request_fields": codes.support_request_fields(),
        }
        return Response(ErrorCodeListOutputSerializer(data).data)


class ErrorCodeDetailView(APIView):
    """One CallGrid code; any code the catalog does not hold is a JSON 404."""

    @extend_schema(operation_id="error_codes_retrieve", responses=ErrorCodeOutputSerializer)
    def get(self, request: Request, code: str) -> Response:
        entry = codes.get(code)
        if entry is None:
            # The route takes any text so that "/error-codes/abc/" answers JSON like the rest
            # of the API instead of Django's HTML page.
            raise NotFound(f"CallGrid has no documented code {code!r}.")
        return Response(ErrorCodeOutputSerializer(entry).data)
