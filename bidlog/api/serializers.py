"""Output serializers of the bid log API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from bidlog.models import BidLog
from callgrid_portal.privacy import can_see_caller_ids, mask_phone, mask_phones_in

# Fields that hold one phone number each: the caller's, and where the buyer sends the call.
_PHONE_FIELDS = ("caller_id", "response_caller_id", "destination")
# Free text and JSON that may quote numbers back (the request sent with its extra parameters
# under any key, an error detail, a non-JSON body, a route's reason).
_TEXT_FIELDS = ("request", "message", "error", "raw_response", "reason")


def mask_bid_data(data: dict[str, Any]) -> dict[str, Any]:
    """Mask every phone-like value in one serialized bid: its number fields, and every number
    inside the request, the texts and the raw answer (see :mod:`callgrid_portal.privacy`)."""
    for field in _PHONE_FIELDS:
        if data.get(field):
            data[field] = mask_phone(data[field])
    request = data.get("request")
    if isinstance(request, dict) and request.get("CallerId"):
        # The caller ID as sent is hidden even when it is too short to look like a number.
        data["request"] = {**request, "CallerId": mask_phone(request["CallerId"])}
    for field in _TEXT_FIELDS:
        if data.get(field):
            data[field] = mask_phones_in(data[field])
    if data.get("trace"):
        data["trace"] = [
            {**entry, "error": mask_phones_in(entry.get("error") or "")} for entry in data["trace"]
        ]
    return data


class BidTraceEntrySerializer(serializers.Serializer):
    """One attempt of a test bid or health check, as its row's ``trace`` lists it.

    ``send`` counts the times the whole bid went out; an entry with ``lost`` true is a send
    whose worker was lost before it wrote an answer down (no outcome, the buyer may have
    received it).
    """

    send = serializers.IntegerField()
    attempt = serializers.IntegerField(allow_null=True)
    at = serializers.DateTimeField()
    outcome = serializers.CharField(allow_blank=True)
    code = serializers.IntegerField(allow_null=True)
    http_status = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    bid_amount = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    error = serializers.CharField(allow_blank=True)
    lost = serializers.BooleanField()


class BidLogSerializer(serializers.ModelSerializer):
    """One bid with its buyer's name and Grid ID, its outcome class and its URL.

    A test bid or health check is one row: its final attempt's answer, and ``trace`` listing
    every attempt. A live routing attempt is a row of its own (``trace`` empty).

    Caller IDs are masked unless the requesting user is an operator or admin.
    """

    url = serializers.HyperlinkedIdentityField(view_name="api:bid-detail")
    buyer_name = serializers.CharField(source="buyer.name", read_only=True)
    grid_id = serializers.CharField(source="buyer.grid_id", read_only=True)
    outcome_class = serializers.CharField(read_only=True)
    trace = BidTraceEntrySerializer(many=True, read_only=True)

    class Meta:
        model = BidLog
        fields = "__all__"
        read_only_fields = [field.name for field in BidLog._meta.concrete_fields]

    def to_representation(self, instance: BidLog) -> dict[str, Any]:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not can_see_caller_ids(getattr(request, "user", None)):
            data = mask_bid_data(data)
        return data
