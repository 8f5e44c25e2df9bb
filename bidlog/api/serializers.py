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
    return data


class BidLogSerializer(serializers.ModelSerializer):
    """One bid attempt with its buyer's name and Grid ID, its outcome class and its URL.

    Caller IDs are masked unless the requesting user is an operator or admin.
    """

    url = serializers.HyperlinkedIdentityField(view_name="api:bid-detail")
    buyer_name = serializers.CharField(source="buyer.name", read_only=True)
    grid_id = serializers.CharField(source="buyer.grid_id", read_only=True)
    outcome_class = serializers.CharField(read_only=True)

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
