"""Reads of buyers: lists, single buyers and their health."""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from buyers.filters import BuyerFilter
from buyers.models import Buyer


def buyer_list(filters: Mapping[str, Any] | None = None) -> QuerySet[Buyer]:
    """Buyers in waterfall order, narrowed by :class:`~buyers.filters.BuyerFilter`.

    ``filters`` uses the filter's parameter names (``status``, ``vertical``, ``q``,
    ``grid_id``, ``caller_id_format``). An unknown choice raises ``ValidationError`` rather
    than silently returning every buyer, so a typo never looks like a match.
    """
    queryset = Buyer.objects.all()
    if not filters:
        return queryset
    filterset = BuyerFilter(data=filters, queryset=queryset)
    if not filterset.is_valid():
        raise ValidationError(filterset.form.errors.as_data())
    return filterset.qs


def buyer_get(buyer_id: int) -> Buyer:
    """The buyer with primary key ``buyer_id``; raises ``Buyer.DoesNotExist`` if there is none."""
    return Buyer.objects.get(pk=buyer_id)


# Bookkeeping the history records but nobody changes by hand.
_UNTRACKED = ["created_at", "updated_at", "next_health_check_at"]


def buyer_changes(buyer: Buyer, *, limit: int = 10) -> list[dict[str, Any]]:
    """The buyer's latest ``limit`` changes, newest first: when, who, and each changed field's
    name with its old and new value (from django-simple-history, which every save path
    records with its author)."""
    records = list(
        buyer.history.select_related("history_user").order_by("-history_id")[: limit + 1]
    )
    changes: list[dict[str, Any]] = []
    for record, previous in zip(records, [*records[1:], None], strict=True):
        if len(changes) == limit or (previous is None and record.history_type == "~"):
            break  # enough, or a change whose earlier state was not read
        fields: list[tuple[str, Any, Any]] = []
        if previous is not None and record.history_type == "~":
            delta = record.diff_against(previous, excluded_fields=_UNTRACKED)
            fields = [(c.field, c.old, c.new) for c in delta.changes]
            if not fields:
                continue  # a save that changed nothing anybody set
        changes.append(
            {
                "when": record.history_date,
                "who": record.history_user.get_username() if record.history_user else "",
                "kind": record.get_history_type_display(),
                "fields": fields,
            }
        )
    return changes
