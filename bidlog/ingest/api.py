"""Import API: ``POST /bids/import/``, bid records from other systems, for the operator role.

The view only parses the request, calls :func:`bidlog.ingest.imports.bids_import` and shapes
the answer.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bidlog.ingest.imports import ImportRejected, bids_import
from callgrid_portal.roles import OPERATOR


class BidImportView(APIView):
    """``POST {"records": [...]}``: up to 5,000 bid records, all or nothing, by ``external_id``.

    201 with ``{"created", "existing", "received"}``; 400 with the errors of each bad record
    under ``errors.records.<index>`` and nothing written.
    """

    write_role = OPERATOR

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: OpenApiResponse(OpenApiTypes.OBJECT, "{created, existing, received}")},
    )
    def post(self, request: Request) -> Response:
        records = request.data.get("records") if isinstance(request.data, dict) else None
        if not isinstance(records, list):
            raise serializers.ValidationError({"records": ["Send a list of bid records."]})
        try:
            result = bids_import(records=records)
        except ImportRejected as exc:
            raise serializers.ValidationError(
                {"records": {str(index): errors for index, errors in exc.errors.items()}}
            ) from None
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(
            {"created": result.created, "existing": result.existing, "received": result.received},
            status=code,
        )
