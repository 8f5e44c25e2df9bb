"""Output serializers of the bid log API."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from rest_framework import serializers

from bidlog.models import BidLog
from callgrid_portal.roles import OPERATOR, has_role

# Fields that hold the caller's number, in the row and in the exact JSON that was sent.
_CALLER_FIELDS = ("caller_id", "response_caller_id")
_REQUEST_CALLER_KEY = "CallerId"
# Free text that may quote the number back (an error detail, a non-JSON body).
_TEXT_FIELDS = ("message", "error", "raw_response")


def mask_caller_id(value: str) -> str:
    """Hide the middle of a phone number: ``3035551234`` → ``303***1234``.

    The area code and last four digits stay, which is enough to tell callers apart and to spot
    a test number, without exposing a full consumer number to read-only users (SPEC §6).
    A ``+1`` prefix is kept in front. Anything too short to mask is hidden entirely.
    """
    text = str(value or "")
    if not text:
        return ""
    if len(text) < 10:
        return "***"
    return text[:-7] + "***" + text[-4:]


def can_see_caller_ids(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """Operators and admins see caller IDs in full; viewers (and unknown users) see them masked."""
    return has_role(user, OPERATOR)


def mask_bid_data(data: dict[str, Any]) -> dict[str, Any]:
    """Mask every copy of the caller's number in one serialized bid (fields, request, text)."""
    numbers = {str(data[field]) for field in _CALLER_FIELDS if data.get(field)}
    for field in _CALLER_FIELDS:
        if data.get(field):
            data[field] = mask_caller_id(data[field])
    request = data.get("request")
    if isinstance(request, dict) and request.get(_REQUEST_CALLER_KEY):
        sent = str(request[_REQUEST_CALLER_KEY])
        numbers.add(sent)
        data["request"] = {**request, _REQUEST_CALLER_KEY: mask_caller_id(sent)}
    for field in _TEXT_FIELDS:
        if data.get(field):
            data[field] = mask_numbers_in(data[field], numbers)
    if data.get("trace"):
        data["trace"] = [
            {**entry, "error": mask_numbers_in(entry.get("error") or "", numbers)}
            for entry in data["trace"]
        ]
    return data


def mask_numbers_in(text: str, numbers: set[str]) -> str:
    """``text`` with every phone number of ``numbers`` in it masked (see :func:`mask_caller_id`).

    Longest first, so "+13035551234" is masked whole before "3035551234" inside it; anything
    shorter than a phone number is left alone.
    """
    for number in sorted((n for n in numbers if len(n) >= 10), key=len, reverse=True):
        if number in text:
            text = text.replace(number, mask_caller_id(number))
    return text


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
