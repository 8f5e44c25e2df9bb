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


def buyer_health(
    buyer: Buyer,
    *,
    open_alerts: dict[int, set[str]] | None = None,
    outcomes: list[str] | None = None,
) -> str:
    """The buyer's health badge: ``healthy``, ``degraded``, ``failing`` or ``unknown``.

    Computed by :func:`bidlog.monitoring.health.buyer_health` from recent answers and open alerts.
    When a
    list of buyers is shown, ``open_alerts`` comes from :func:`buyers_open_alerts` and
    ``outcomes`` from :func:`buyers_recent_outcomes`, each read once for the whole list.
    """
    # Imported here: models and services import one way (buyers <- bidlog), and only these
    # reads need the bid log.
    from bidlog.monitoring.health import buyer_health as health_of

    return health_of(buyer, open_alerts=open_alerts, outcomes=outcomes)


def buyers_recent_outcomes(buyer_ids: list[int]) -> dict[int, list[str]]:
    """Each buyer's latest answer outcomes (newest first), read once for a list of buyers."""
    from bidlog.monitoring.health import answer_outcomes_recent

    return answer_outcomes_recent(buyer_ids=buyer_ids)


def buyers_open_alerts() -> dict[int, set[str]]:
    """Priorities of every buyer's open alerts, read once for a whole list of buyers."""
    from bidlog.monitoring.health import open_alert_priorities

    return open_alert_priorities()


def buyers_health(buyers: list[Buyer]) -> dict[int, str]:
    """Each buyer's health badge by id, reading alerts and recent answers once for the list."""
    alerts = buyers_open_alerts()
    outcomes = buyers_recent_outcomes([buyer.pk for buyer in buyers])
    return {
        buyer.pk: buyer_health(buyer, open_alerts=alerts, outcomes=outcomes.get(buyer.pk, []))
        for buyer in buyers
    }


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
