"""Routing API: ``POST /route/``, ``/calls/`` and ``GET /buyers/eligibility/`` (SPEC §7).

Views stay thin: they read the request, call :mod:`bidlog.routing.strategies` or
:mod:`bidlog.routing.eligibility`, and shape the answer. A bad caller ID is answered the way
CallGrid
itself would phrase it: ``400 {"code": 4003, "message": ..., "field": "CallerId"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bidlog.api.views import BidCursorPagination
from bidlog.choices import Source
from bidlog.filters import IdField
from bidlog.models import Call
from bidlog.routing import spool
from bidlog.routing.eligibility import eligibility_check
from bidlog.routing.errors import RouteError
from bidlog.routing.record import call_paid_out_set
from bidlog.routing.serializers import (
    CONTROL_NAMES,
    CallDetailSerializer,
    CallFilter,
    CallSerializer,
    PaidOutInputSerializer,
    RouteInputSerializer,
    RouteOutputSerializer,
    control_fields,
    first_error,
    route_answer,
)
from bidlog.routing.strategies import call_route
from bidlog.routing.tokens import RouteTokenAuthentication
from bidlog.selectors import call_list
from buyers.models import Buyer
from callgrid_portal.bidapi.client import RESERVED_KEYS
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id
from callgrid_portal.privacy import can_see_caller_ids, mask_phone
from callgrid_portal.roles import OPERATOR, VIEWER

logger = logging.getLogger(__name__)

# Keys of the route request that steer routing; every other key is forwarded to buyers.
# The campaign and publisher tags are the portal's own: stored on the call, never sent to buyers.
_CONTROL_KEYS = RESERVED_KEYS | {"strategy", "buyers", "campaign", "publisher"}


def _route_error(exc: RouteError) -> Response:
    body = {"code": exc.code, "message": exc.message, "field": exc.field, "detail": exc.message}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _bad_field(field: str, message: str) -> Response:
    return _route_error(RouteError(code=4000, message=message, field=field))


# --- views --------------------------------------------------------------------------------


class _AfterResponse:
    """Work the route hands over once its call is written (see ``call_route``'s ``defer``),
    run by :meth:`run`, the response's ``close()``, once the answer is out.

    The step is one round trip to the shared store, run on the request's own thread: handing
    it to another thread and waiting for it cost more than the round trip (about 2 % of the
    routes a second under load, docs/PERFORMANCE.md). A step that reads the database uses the
    request's connection, which goes back to the pool when the request ends.
    """

    def __init__(self) -> None:
        self._steps: list[Callable[[], None]] = []

    def add(self, step: Callable[[], None]) -> None:
        self._steps.append(step)

    def run(self) -> None:
        steps, self._steps = self._steps, []
        for step in steps:
            try:
                step()
            except Exception:
                # The answer is out; the slots and holds a failed step leaves lapse on their
                # own (see bidlog.routing.limits), and the error must reach the log, not the caller.
                logger.exception("routing: the step after the answer failed")


class RouteResponse(Response):
    """The route's answer; the WSGI server's ``close()`` runs the deferred steps.

    Every WSGI server calls ``close()`` once the body is written (PEP 3333), also when the
    client has gone away, so each step has run, or its failure is logged, when the server is
    done with the request; none of them delays the answer.
    """

    def __init__(self, data: dict[str, Any], *, after: _AfterResponse) -> None:
        super().__init__(data)
        self._after = after

    def close(self) -> None:
        try:
            self._after.run()
        finally:
            super().close()


class RouteView(APIView):
    """``POST /route/``: decide where one inbound call goes, within the call's deadline."""

    write_role = OPERATOR
    authentication_classes = [RouteTokenAuthentication, SessionAuthentication]
    # Live calls are protected by each grid's own limits; a per-user API throttle would
    # drop real calls from the telephony platform at peak, which is worse than useless.
    throttle_classes: list[type] = []

    @extend_schema(request=RouteInputSerializer, responses={200: RouteOutputSerializer})
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            return _bad_field("non_field_errors", "Send a JSON object.")
        data = request.data
        # The caller ID and state are checked by the service, which owns the 4003 rules.
        controls: dict[str, Any] = {}
        for name in CONTROL_NAMES:
            if name in data:
                try:
                    controls[name] = control_fields()[name].run_validation(data[name])
                except serializers.ValidationError as exc:
                    return _bad_field(name, f"{name}: {first_error(exc.detail)}")
        state = data.get("InboundStateCode") or ""
        if not isinstance(state, str):
            return _bad_field("InboundStateCode", "InboundStateCode must be a two-letter code.")
        # Decisions this process spooled while the database was away go in first, so this
        # route's duplicate windows and caps see them.
        spool.spool_replay_if_due()
        after = _AfterResponse()
        try:
            call = call_route(
                caller_id=data.get("CallerId"),
                state_code=state,
                params={k: v for k, v in data.items() if k not in _CONTROL_KEYS},
                strategy=controls.get("strategy"),
                buyer_ids=controls.get("buyers"),
                source=Source.LIVE,
                defer=after.add,
                campaign=data.get("campaign", ""),
                publisher=data.get("publisher", ""),
            )
        except RouteError as exc:
            return _route_error(exc)
        try:
            return RouteResponse(route_answer(call), after=after)
        except BaseException:
            after.run()
            raise


class CallViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """``GET /calls/``, ``GET /calls/{id}/`` and ``PATCH /calls/{id}/`` (``paid_out`` only)."""

    pagination_class = BidCursorPagination
    filterset_class = CallFilter
    read_role = VIEWER
    write_role = OPERATOR
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Call]:
        return call_list()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return CallSerializer if self.action == "list" else CallDetailSerializer

    @extend_schema(request=PaidOutInputSerializer, responses={200: CallDetailSerializer})
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        call = self.get_object()
        unknown = sorted(set(request.data) - {"paid_out"}) if isinstance(request.data, dict) else []
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["Only paid_out can be changed."]})
        given = PaidOutInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            call = call_paid_out_set(call=call, paid_out=given.validated_data["paid_out"])
        except RouteError as exc:
            raise serializers.ValidationError({exc.field: [exc.message]}) from None
        return Response(CallDetailSerializer(call, context=self.get_serializer_context()).data)


class EligibilityView(APIView):
    """``GET /buyers/eligibility/?caller_id=...``: could this caller be sent to each buyer now?"""

    read_role = VIEWER

    @extend_schema(
        parameters=[
            OpenApiParameter("caller_id", str, required=True),
            OpenApiParameter("state_code", str),
            OpenApiParameter("buyer", int, many=True),
        ],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, "For each buyer: eligible now or not, why, and until when."
        ),
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("caller_id", "")
        try:
            caller = normalize_caller_id(raw)
        except InvalidCallerId as exc:
            return _route_error(RouteError(code=4003, message=exc.message, field="caller_id"))
        state = request.query_params.get("state_code", "").strip().upper()
        buyers = Buyer.objects.order_by("priority", "name", "pk")
        wanted = request.query_params.getlist("buyer")
        if wanted:
            try:
                buyers = buyers.filter(pk__in=[IdField().clean(pk) for pk in wanted])
            except ValidationError:
                return _bad_field("buyer", "buyer must be a buyer id (a number).")
        now = timezone.now()
        answers = eligibility_check(
            buyers=buyers, caller_id=caller.digits, state_code=state, now=now, include_limits=True
        )
        shown = caller.digits if can_see_caller_ids(request.user) else mask_phone(caller.digits)
        return Response(
            {
                "caller_id": shown,
                "state_code": state,
                "checked_at": now.isoformat(),
                "buyers": [
                    {
                        "buyer": answer.buyer.pk,
                        "name": answer.buyer.name,
                        "grid_id": answer.buyer.grid_id,
                        "eligible": answer.eligible,
                        # When every block lifts by itself, the caller can go from the latest.
                        "eligible_from": _eligible_from(answer.blocks),
                        "reasons": [block.as_dict() for block in answer.blocks],
                    }
                    for answer in answers
                ],
            }
        )


def _eligible_from(blocks: list[Any]) -> str | None:
    if not blocks or any(block.until is None for block in blocks):
        return None
    return max(block.until for block in blocks).isoformat()
