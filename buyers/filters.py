"""Filters for buyer lists, shared by the API and the buyer pages."""

import django_filters
from django.db.models import Q, QuerySet

from buyers.choices import BuyerStatus, CallerIdFormat, Vertical
from buyers.models import Buyer
from callgrid_portal.allowed import ChoiceFilter


class BuyerFilter(django_filters.FilterSet):
    """Narrow buyers by status, vertical, Grid ID or a free-text ``q``.

    ``q`` matches part of the name or the Grid ID, case-insensitively, which is what someone
    searching for "that solar buyer" or a pasted Grid ID fragment expects.
    """

    q = django_filters.CharFilter(method="search", label="Search")
    status = ChoiceFilter(choices=BuyerStatus.choices)
    vertical = ChoiceFilter(choices=Vertical.choices)
    caller_id_format = ChoiceFilter(choices=CallerIdFormat.choices)
    grid_id = django_filters.CharFilter(field_name="grid_id", lookup_expr="exact")

    class Meta:
        model = Buyer
        fields = ["q", "status", "vertical", "caller_id_format", "grid_id"]

    def search(self, queryset: QuerySet[Buyer], name: str, value: str) -> QuerySet[Buyer]:
        """Match ``value`` anywhere in the name or the Grid ID."""
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(grid_id__icontains=value))
