"""Routing API's serializers: the route request and answer, calls, and the calls filter."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Context, Decimal
from typing import Any, cast

import django_filters
from django.db.models import QuerySet
from rest_framework import serializers

from bidlog.api.serializers import mask_bid_data
from bidlog.choices import Outcome, RoutingStrategy, Source, outcome_class
from bidlog.filters import CallerIdFilter, IdFilter, IsoDateTimeFilter, TagFilter
from bidlog.models import BidLog, Call
from bidlog.selectors import call_bids
from bidlog.tags import TAG_MAX_LENGTH, TAG_RULE
from buyers.models import Buyer
from callgrid_portal.allowed import BooleanFilter, ChoiceFilter, drf_invalid_choice
from callgrid_portal.privacy import can_see_caller_ids, mask_phone, mask_phones_in

_CENTS = Decimal("0.01")
# Money in answers: two places, at most ten digits, as the serializers declare it.
_MONEY_CONTEXT = Context(prec=10)


class RouteInputSerializer(serializers.Serializer):
    """The Bid API request fields plus routing controls; other keys are forwarded as-is."""

    # Documented here, checked by the service (it owns the 4003 rules).
    CallerId = serializers.CharField(
        required=False, help_text="Required: the caller's number, in any common spelling."
    )
    InboundStateCode = serializers.CharField(
        required=False, allow_blank=True, help_text="Two-letter US state code."
    )
    strategy = serializers.ChoiceField(
        choices=RoutingStrategy.choices,
        required=False,
        error_messages={"invalid_choice": drf_invalid_choice(RoutingStrategy.choices)},
    )
    buyers = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_empty=False
    )
    # Documented here, checked by the service (bidlog.tags owns the rule).
    campaign = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=TAG_MAX_LENGTH,
        help_text=f"The campaign this call belongs to, for reports; {TAG_RULE}.",
    )
    publisher = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=TAG_MAX_LENGTH,
        help_text=f"The traffic source that sent the call, for reports; {TAG_RULE}.",
    )


# The routing controls of a route request, in the order they are checked.
CONTROL_NAMES = ("strategy", "buyers")


@functools.cache
def control_fields() -> Mapping[str, serializers.Field]:
    """:class:`RouteInputSerializer`'s fields, bound once for every route of the process.

    A field keeps no state while it validates a value, and building the serializer for each
    route (its fields deep-copied every time) cost more than the rest of the view's own work.
    """
    return RouteInputSerializer().fields


def first_error(detail: Any) -> str:
    """The first message of a field's errors; a list's item errors say which item."""
    if isinstance(detail, Mapping):
        index, inner = next(iter(detail.items()))
        return f"item {int(index) + 1}: {first_error(inner)}"
    if isinstance(detail, list | tuple):
        return first_error(detail[0]) if detail else "invalid value"
    return str(detail)


class RouteBidSerializer(serializers.Serializer):
    """One attempt or skip behind a routing decision, with the reason in plain words.

    Declared field by field rather than as a ``ModelSerializer``: it is on the live path of
    every route, and building fields from the model on each call cost more than the rest of
    the answer.
    """

    id = serializers.IntegerField(read_only=True)
    buyer = serializers.IntegerField(source="buyer_id", read_only=True)
    buyer_name = serializers.CharField(source="buyer.name", read_only=True)
    grid_id = serializers.CharField(source="buyer.grid_id", read_only=True)
    attempt = serializers.IntegerField(read_only=True)
    outcome = serializers.ChoiceField(choices=Outcome.choices, read_only=True)
    outcome_class = serializers.SerializerMethodField()
    code = serializers.IntegerField(read_only=True, allow_null=True)
    http_status = serializers.IntegerField(read_only=True, allow_null=True)
    bid_amount = serializers.DecimalField(
        max_digits=10, decimal_places=2, read_only=True, allow_null=True
    )
    destination = serializers.CharField(read_only=True)
    duration_ms = serializers.IntegerField(read_only=True)
    reason = serializers.SerializerMethodField()

    def get_outcome_class(self, bid: BidLog) -> str:
        return outcome_class(bid.outcome)

    def get_reason(self, bid: BidLog) -> str:
        return bid.error or bid.message


class RouteOutputSerializer(serializers.Serializer):
    """The answer of ``POST /route/``: where the call goes, and every bid behind it."""

    call = serializers.IntegerField(
        source="pk",
        allow_null=True,
        help_text="The call's id in the log; null while the database is away and the decision "
        "waits in the spool (it is written later under its route_key).",
    )
    route_key = serializers.CharField(
        allow_null=True,
        help_text="This decision's unique key: GET /calls/?route_key=... finds it once logged.",
    )
    routed = serializers.BooleanField()
    strategy = serializers.CharField()
    buyer = serializers.IntegerField(source="winner_id", allow_null=True)
    grid_id = serializers.SerializerMethodField()
    bid_amount = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    destination = serializers.CharField()
    caller_id = serializers.CharField()
    duration_ms = serializers.IntegerField()
    campaign = serializers.CharField(help_text="The campaign tag given; empty when none.")
    publisher = serializers.CharField(help_text="The publisher tag given; empty when none.")
    bids = RouteBidSerializer(source="route_bids", many=True)

    def get_grid_id(self, call: Call) -> str | None:
        # A winner_id always names a buyer (the foreign key is enforced).
        return cast(Buyer, call.winner).grid_id if call.winner_id else None


class CallSerializer(serializers.ModelSerializer):
    """A routing decision; caller IDs are masked for viewers.

    ``paid_out`` is null for a call that was not routed: there was no sale to pay out.
    ``PATCH`` changes it through :class:`PaidOutInputSerializer`.
    """

    url = serializers.HyperlinkedIdentityField(view_name="api:call-detail")
    winner_name = serializers.CharField(
        source="winner.name", read_only=True, default=None, allow_null=True
    )
    grid_id = serializers.CharField(
        source="winner.grid_id", read_only=True, default=None, allow_null=True
    )
    paid_out = serializers.BooleanField(
        read_only=True,
        allow_null=True,
        help_text="Whether the buyer paid for the call; null when the call was not routed.",
    )

    class Meta:
        model = Call
        fields = [
            "id",
            "url",
            "created_at",
            "caller_id",
            "state_code",
            "params",
            "strategy",
            "source",
            "routed",
            "winner",
            "winner_name",
            "grid_id",
            "bid_amount",
            "destination",
            "duration_ms",
            "paid_out",
            "route_key",
            "campaign",
            "publisher",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Call) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not instance.routed:
            data["paid_out"] = None
        if not can_see_caller_ids(getattr(self.context.get("request"), "user", None)):
            data["caller_id"] = mask_phone(data["caller_id"])
            data["destination"] = mask_phone(data["destination"])
            data["params"] = mask_phones_in(data["params"])
        return data


class CallDetailSerializer(CallSerializer):
    """A routing decision with the bids behind it."""

    bids = serializers.SerializerMethodField()

    class Meta(CallSerializer.Meta):
        fields = [*CallSerializer.Meta.fields, "bids"]
        read_only_fields = [*CallSerializer.Meta.read_only_fields, "bids"]

    def get_bids(self, call: Call) -> list[dict[str, Any]]:
        rows = RouteBidSerializer(call_bids(call), many=True).data
        if can_see_caller_ids(getattr(self.context.get("request"), "user", None)):
            return list(rows)
        return [mask_bid_data(dict(row)) for row in rows]


class PaidOutInputSerializer(serializers.Serializer):
    paid_out = serializers.BooleanField()


class CallFilter(django_filters.FilterSet):
    """Filter calls by outcome, winner, strategy, source, caller and time (since ≤ t < until)."""

    routed = BooleanFilter()
    # Only a routed call can be paid out or not; an unrouted one matches neither.
    paid_out = BooleanFilter(method="filter_paid_out")
    winner = IdFilter(field_name="winner_id")
    grid_id = django_filters.CharFilter(field_name="winner__grid_id")
    strategy = ChoiceFilter(choices=RoutingStrategy.choices)
    source = ChoiceFilter(choices=Source.choices)
    caller_id = CallerIdFilter()
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    route_key = django_filters.UUIDFilter()
    campaign = TagFilter(tag="campaign")
    publisher = TagFilter(tag="publisher")

    class Meta:
        model = Call
        fields: list[str] = []

    def filter_paid_out(self, queryset: QuerySet[Call], name: str, value: bool) -> QuerySet[Call]:
        return queryset.filter(routed=True, paid_out=value)


def _money(amount: Decimal | None) -> str | None:
    """An amount the way ``DecimalField(decimal_places=2)`` shows it: a string, two places."""
    if amount is None:
        return None
    return f"{amount.quantize(_CENTS, context=_MONEY_CONTEXT):f}"


def route_answer(call: Call) -> dict[str, Any]:
    """The body of ``POST /route/``: :class:`RouteOutputSerializer`'s output, built directly.

    The serializer stays the documented shape (OpenAPI) and the reference this must match;
    on the live path, building a serializer per answer (its fields deep-copied for the call
    and again for the bids) cost more CPU than the rest of the response.
    """
    bids = [
        {
            "id": bid.pk,  # None while the decision is spooled
            "buyer": bid.buyer_id,
            "buyer_name": bid.buyer.name,
            "grid_id": bid.buyer.grid_id,
            "attempt": bid.attempt,
            "outcome": str(bid.outcome),
            "outcome_class": outcome_class(bid.outcome),
            "code": bid.code,
            "http_status": bid.http_status,
            "bid_amount": _money(bid.bid_amount),
            "destination": bid.destination,
            "duration_ms": bid.duration_ms,
            "reason": bid.error or bid.message,
        }
        for bid in call.route_bids  # type: ignore[attr-defined]
    ]
    return {
        "call": call.pk,
        "route_key": str(call.route_key) if call.route_key is not None else None,
        "routed": call.routed,
        "strategy": str(call.strategy),
        "buyer": call.winner_id,
        # A winner_id always names a buyer (the foreign key is enforced).
        "grid_id": cast(Buyer, call.winner).grid_id if call.winner_id else None,
        "bid_amount": _money(call.bid_amount),
        "destination": call.destination,
        "caller_id": call.caller_id,
        "duration_ms": call.duration_ms,
        "campaign": call.campaign,
        "publisher": call.publisher,
        "bids": bids,
    }
