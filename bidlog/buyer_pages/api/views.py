"""API views of buyers: CRUD by role, filtered with the same FilterSet as the pages."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.exceptions import APIException

from bidlog.buyer_pages.api.serializers import BuyerSerializer
from buyers import services
from buyers.filters import BuyerFilter
from buyers.models import Buyer
from buyers.selectors import buyer_list
from callgrid_portal.api import ErrorSerializer
from callgrid_portal.roles import ADMIN, OPERATOR, VIEWER


class BuyerHasBids(APIException):
    """The buyer cannot be deleted because its bid logs must keep pointing at it."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "has_bids"


@extend_schema_view(
    destroy=extend_schema(
        responses={
            204: None,
            409: OpenApiResponse(
                ErrorSerializer, "The buyer has bid logs; disable it instead of deleting it."
            ),
        }
    )
)
class BuyerViewSet(viewsets.ModelViewSet):
    """Buyers: viewers read, operators create and edit, admins delete.

    ``DELETE`` of a buyer with bid logs answers 409 and suggests disabling it instead.
    Filters: ``status``, ``vertical``, ``caller_id_format``, ``grid_id`` and ``q`` (part of
    the name or Grid ID).
    """

    serializer_class = BuyerSerializer
    filterset_class = BuyerFilter
    read_role = VIEWER
    write_role = OPERATOR
    delete_role = ADMIN

    def get_queryset(self) -> QuerySet[Buyer]:
        return buyer_list()

    def perform_destroy(self, instance: Buyer) -> None:
        try:
            services.buyer_delete(buyer=instance, actor=self.request.user)
        except DjangoValidationError as exc:
            raise BuyerHasBids(" ".join(exc.messages)) from None
