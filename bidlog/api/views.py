"""Bid log API: read the attempts, filtered and paged by cursor."""

from __future__ import annotations

from typing import TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

from bidlog.api.serializers import BidLogSerializer
from bidlog.filters import BidLogFilter, parse_iso_datetime
from bidlog.models import BidLog
from bidlog.selectors import bid_get, bid_list
from callgrid_portal.roles import VIEWER

# What the queryset's rows are (models, or values() dicts): filter_queryset keeps it.
_Row = TypeVar("_Row")


class BidCursorPagination(CursorPagination):
    """Newest first by (created_at, id), 50 a page, up to 500 with ``page_size``.

    A cursor never counts the table, so a page costs the same on millions of rows as on ten
    and rows written while someone pages never shift what they see.
    """

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    invalid_cursor_message = "Invalid cursor; follow the next or previous link of a page."

    def decode_cursor(self, request: Request) -> Cursor | None:
        """The cursor of the request; a broken one is a 400 naming ``cursor``, not a 404.

        Its position is a ``created_at`` from outside too, read by the one date parser.
        """
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
            broken = True
        else:
            broken = False
            if cursor is not None and cursor.position is not None:
                try:
                    parse_iso_datetime(str(cursor.position))
                except ValueError:
                    broken = True
        if broken:
            raise serializers.ValidationError({"cursor": [self.invalid_cursor_message]})
        return cursor


class BidViewSet(viewsets.ReadOnlyModelViewSet):
    """``GET /bids/`` and ``GET /bids/{id}/``: every attempt, for anyone with the viewer role."""

    serializer_class = BidLogSerializer
    pagination_class = BidCursorPagination
    read_role = VIEWER
    # The backend and FilterSet describe the filters in the schema and the browsable API;
    # the filtering itself happens in the selector (see filter_queryset).
    filter_backends = [DjangoFilterBackend]
    filterset_class = BidLogFilter

    def get_queryset(self) -> QuerySet[BidLog]:
        try:
            return bid_list(filters=self.request.query_params)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None

    def filter_queryset(self, queryset: QuerySet[BidLog, _Row]) -> QuerySet[BidLog, _Row]:
        # bid_list already applied the filters; running the backend again would filter twice.
        return queryset

    def get_object(self) -> BidLog:
        bid = bid_get(self.kwargs["pk"])
        if bid is None:
            raise Http404("No such bid.")
        self.check_object_permissions(self.request, bid)
        return bid
