"""API for the work the Celery workers do: queue a test bid; list, acknowledge and mute alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bidlog.choices import AlertStatus
from bidlog.filters import MAX_ID, parse_iso_datetime
from bidlog.models import Alert, AlertMute
from bidlog.monitoring import testbids, triage
from bidlog.monitoring.alerts import alert_list
from buyers.models import Buyer
from buyers.validators import US_STATE_CODES, caller_id_clean
from callgrid_portal.allowed import not_one_of
from callgrid_portal.api import ErrorSerializer
from callgrid_portal.bidapi.client import RESERVED_KEYS, param_problem
from callgrid_portal.privacy import shown_to
from callgrid_portal.roles import OPERATOR, VIEWER
from callgrid_portal.text import whole_number_upto


class TestBidInputSerializer(serializers.Serializer):
    """Body of a test bid; every key is optional and any other key is sent as a parameter."""

    CallerId = serializers.CharField(required=False, allow_blank=True, max_length=32)
    InboundStateCode = serializers.CharField(required=False, allow_blank=True, max_length=2)

    def validate_CallerId(self, value: str) -> str:
        if not value:
            return value
        return caller_id_clean(value).ten_digit

    def validate_InboundStateCode(self, value: str) -> str:
        state = value.strip().upper()
        if state and state not in US_STATE_CODES:
            raise serializers.ValidationError(f"{value!r} is not a US state code such as CO.")
        return state


class TestBidOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.CharField()
    url = serializers.CharField()


def _extra_params(data: Any) -> dict[str, Any]:
    """Keys of the body other than CallerId/InboundStateCode: flat values only."""
    if not isinstance(data, dict):
        return {}
    params: dict[str, Any] = {}
    for key, value in data.items():
        if key in RESERVED_KEYS:
            continue
        problem = param_problem(key, value)
        if problem is not None:
            raise serializers.ValidationError({str(key): [problem]})
        params[str(key)] = value
    return params


class TestBidView(APIView):
    """``POST /buyers/{id}/test-bid/``: queue one test bid; 202 with the pending row.

    A worker sends it through the same client and limits as routing and fills the row in;
    poll ``url`` (the bid's detail) for the answer. 503 when the task queue is unreachable,
    in which case nothing is recorded.
    """

    write_role = OPERATOR

    @extend_schema(
        request=TestBidInputSerializer,
        responses={
            202: TestBidOutputSerializer,
            503: OpenApiResponse(
                ErrorSerializer, "The task queue is unreachable; nothing was recorded."
            ),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        buyer = get_object_or_404(Buyer, pk=pk)
        body = request.data if isinstance(request.data, dict) else {}
        incoming = TestBidInputSerializer(data=body)
        incoming.is_valid(raise_exception=True)
        params = _extra_params(body)
        caller_id = incoming.validated_data.get("CallerId") or testbids.caller_id_for_test_bids(
            buyer
        )
        try:
            bid = testbids.test_bid_queue(
                buyer=buyer,
                caller_id=caller_id,
                state_code=incoming.validated_data.get("InboundStateCode", ""),
                params=params,
                actor=request.user,
            )
        except testbids.BrokerUnavailable as exc:
            return Response(
                {"detail": str(exc), "field": None}, status=status.HTTP_503_SERVICE_UNAVAILABLE
            )
        url = request.build_absolute_uri(reverse("api:bid-detail", args=[bid.pk]))
        out = TestBidOutputSerializer({"id": bid.pk, "outcome": bid.outcome, "url": url})
        return Response(out.data, status=status.HTTP_202_ACCEPTED)


class AlertSerializer(serializers.ModelSerializer):
    buyer_name = serializers.CharField(source="buyer.name", read_only=True)
    grid_id = serializers.CharField(source="buyer.grid_id", read_only=True)
    acknowledged_by = serializers.SerializerMethodField()
    muted_until = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "buyer",
            "buyer_name",
            "grid_id",
            "rule",
            "code",
            "priority",
            "status",
            "title",
            "detail",
            "occurrences",
            "opened_at",
            "last_seen_at",
            "resolved_at",
            "notified_at",
            "acknowledged_at",
            "acknowledged_by",
            "muted_until",
        ]
        read_only_fields = fields

    def get_acknowledged_by(self, instance: Alert) -> str | None:
        """The username of who acknowledged it; null when nobody has (or the user is gone)."""
        user = instance.acknowledged_by
        return user.get_username() if user is not None else None

    def get_muted_until(self, instance: Alert) -> datetime | None:
        """When the buyer's mute ends; null when its notices are not muted now."""
        mute = getattr(instance.buyer, "alert_mute", None)
        return mute.until if mute is not None and mute.until > timezone.now() else None

    def to_representation(self, instance: Alert) -> dict[str, Any]:
        data = super().to_representation(instance)
        user = getattr(self.context.get("request"), "user", None)
        data["title"] = shown_to(user, data["title"])
        data["detail"] = shown_to(user, data["detail"])
        return data


class AlertListView(generics.ListAPIView):
    """``GET /alerts/``: open alerts and those resolved in the last 7 days.

    Filters: ``status`` (``open`` or ``resolved``) and ``buyer`` (id).
    """

    serializer_class = AlertSerializer
    read_role = VIEWER
    filter_backends: list[type] = []
    # Open alerts plus a week of resolved ones: a short list, given whole.
    pagination_class = None

    def get_queryset(self) -> Any:
        params = self.request.query_params
        wanted = params.get("status") or None
        if wanted and wanted not in AlertStatus.values:
            raise serializers.ValidationError({"status": [not_one_of(wanted, AlertStatus.values)]})
        buyer = params.get("buyer") or None
        buyer_id = whole_number_upto(buyer, MAX_ID) if buyer is not None else None
        if buyer is not None and buyer_id is None:
            raise serializers.ValidationError({"buyer": ["A buyer id is a whole number."]})
        return alert_list(status_filter=wanted, buyer_id=buyer_id)


def _conflict(exc: triage.TriageError) -> Response:
    return Response({"detail": exc.message, "field": exc.field}, status=status.HTTP_409_CONFLICT)


class AlertAcknowledgeView(APIView):
    """``POST /alerts/{id}/acknowledge/``: record that the caller took the alert (operator).

    409 when it was acknowledged already (the first stands) or has resolved.
    """

    write_role = OPERATOR

    @extend_schema(
        request=None,
        responses={
            200: AlertSerializer,
            409: OpenApiResponse(ErrorSerializer, "Acknowledged already, or resolved."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        alert = get_object_or_404(Alert, pk=pk)
        try:
            alert = triage.alert_acknowledge(alert=alert, user=request.user)
        except triage.TriageError as exc:
            return _conflict(exc)
        shown = alert_list().get(pk=alert.pk)
        return Response(AlertSerializer(shown, context={"request": request}).data)


class AlertMuteSerializer(serializers.ModelSerializer):
    buyer_name = serializers.CharField(source="buyer.name", read_only=True)
    muted_by = serializers.SerializerMethodField()

    class Meta:
        model = AlertMute
        fields = ["buyer", "buyer_name", "until", "muted_at", "muted_by"]
        read_only_fields = fields

    def get_muted_by(self, instance: AlertMute) -> str | None:
        """The username of who set the mute; null when the user is gone."""
        return instance.muted_by.get_username() if instance.muted_by is not None else None


class AlertMuteInputSerializer(serializers.Serializer):
    """A buyer and how long: ``minutes`` (1 to 43200) or ``until`` (ISO 8601, within 30 days)."""

    buyer = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    minutes = serializers.IntegerField(
        required=False, min_value=1, max_value=triage.MUTE_MAX_MINUTES
    )
    until = serializers.CharField(required=False, max_length=64)

    def validate_buyer(self, value: int) -> Buyer:
        buyer = Buyer.objects.filter(pk=value).first()
        if buyer is None:
            raise serializers.ValidationError(f"No buyer with id {value}.")
        return buyer

    def validate_until(self, value: str) -> datetime:
        try:
            return parse_iso_datetime(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("minutes" in attrs) == ("until" in attrs):
            raise serializers.ValidationError(
                {"minutes": ["Give either minutes or until (an ISO 8601 time), not both."]}
            )
        try:
            attrs["span"] = triage.mute_span(minutes=attrs.get("minutes"), until=attrs.get("until"))
        except triage.TriageError as exc:
            raise serializers.ValidationError({exc.field or "until": [exc.message]}) from None
        return attrs


class AlertMuteListView(APIView):
    """``GET /alerts/mutes/``: buyers whose notices are muted now; ``POST`` mutes one
    (operator): body ``{"buyer": id, "minutes": 60}`` or ``{"buyer": id, "until": ISO}``.

    Muting a muted buyer again replaces the end. Its alerts still open and show; no email
    or webhook goes out until the mute ends.
    """

    read_role = VIEWER
    write_role = OPERATOR

    @extend_schema(responses={200: AlertMuteSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(AlertMuteSerializer(triage.mutes_active(), many=True).data)

    @extend_schema(request=AlertMuteInputSerializer, responses={201: AlertMuteSerializer})
    def post(self, request: Request) -> Response:
        incoming = AlertMuteInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        mute = triage.alert_mute_set(
            buyer=incoming.validated_data["buyer"],
            span=incoming.validated_data["span"],
            user=request.user,
        )
        return Response(AlertMuteSerializer(mute).data, status=status.HTTP_201_CREATED)


class AlertMuteDetailView(APIView):
    """``DELETE /alerts/mutes/{buyer_id}/``: unmute a buyer (operator); 404 when not muted."""

    delete_role = OPERATOR

    @extend_schema(responses={204: None, 404: ErrorSerializer})
    def delete(self, request: Request, buyer_id: int) -> Response:
        buyer = get_object_or_404(Buyer, pk=buyer_id)
        if not triage.alert_mute_clear(buyer=buyer):
            return Response(
                {"detail": f"Buyer {buyer_id} is not muted.", "field": "buyer"},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
