"""Routing API: ``POST /route/``, ``/calls/`` and ``GET /buyers/eligibility/`` (SPEC §7).

Views stay thin: they read the request, call :mod:`bidlog.routing.strategies` or
:mod:`bidlog.routing.eligibility`, and shape the answer. A bad caller ID is answered the way
CallGrid
itself would phrase it: ``400 {"code": 4003, "message": ..., "field": "CallerId"}``.
"""

from __future__ import annotations

import binascii
import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Context, Decimal
from typing import Any, cast

import django_filters
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.signals import token_expired
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bidlog.api.serializers import mask_bid_data
from bidlog.api.views import BidCursorPagination
from bidlog.choices import Outcome, RoutingStrategy, Source, outcome_class
from bidlog.filters import CallerIdFilter, IdField, IdFilter, IsoDateTimeFilter
from bidlog.models import BidLog, Call
from bidlog.routing import spool
from bidlog.routing.eligibility import eligibility_check
from bidlog.routing.errors import RouteError
from bidlog.routing.record import call_paid_out_set
from bidlog.routing.strategies import call_route
from bidlog.selectors import call_list
from buyers.models import Buyer
from callgrid_portal.allowed import BooleanFilter, ChoiceFilter, drf_invalid_choice
from callgrid_portal.authentication import PortalTokenAuthentication
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id
from callgrid_portal.privacy import can_see_caller_ids, mask_phone, mask_phones_in
from callgrid_portal.roles import OPERATOR, VIEWER

logger = logging.getLogger(__name__)

# Keys of the route request that steer routing; every other key is forwarded to buyers.
_CONTROL_KEYS = ("CallerId", "InboundStateCode", "strategy", "buyers")
# Money in answers: two places, at most ten digits, as the serializers declare it.
_CENTS = Decimal("0.01")
_MONEY_CONTEXT = Context(prec=10)


def _route_error(exc: RouteError) -> Response:
    body = {"code": exc.code, "message": exc.message, "field": exc.field, "detail": exc.message}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _bad_field(field: str, message: str) -> Response:
    return _route_error(RouteError(code=4000, message=message, field=field))


# --- serializers --------------------------------------------------------------------------


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


# The routing controls of a route request, in the order they are checked.
_CONTROL_NAMES = ("strategy", "buyers")


@functools.cache
def _control_fields() -> Mapping[str, serializers.Field]:
    """:class:`RouteInputSerializer`'s fields, bound once for every route of the process.

    A field keeps no state while it validates a value, and building the serializer for each
    route (its fields deep-copied every time) cost more than the rest of the view's own work.
    """
    return RouteInputSerializer().fields


def _first_error(detail: Any) -> str:
    """The first message of a field's errors; a list's item errors say which item."""
    if isinstance(detail, Mapping):
        index, inner = next(iter(detail.items()))
        return f"item {int(index) + 1}: {_first_error(inner)}"
    if isinstance(detail, list | tuple):
        return _first_error(detail[0]) if detail else "invalid value"
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
        rows = RouteBidSerializer(call.bids.select_related("buyer").order_by("id"), many=True).data
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
        "bids": bids,
    }


# --- views --------------------------------------------------------------------------------


class _CheckedTokens:
    """Tokens this process has just checked, for ``ROUTE_TOKEN_CACHE_SECONDS``.

    Keyed by the token's digest (what knox stores), never by the token itself; bounded, the
    oldest entry going first.
    """

    SIZE = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Any, AuthToken]] = OrderedDict()

    def get(self, digest: str, *, max_age: float) -> tuple[Any, AuthToken] | None:
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None:
            return None
        checked_at, user, auth_token = entry
        if time.monotonic() - checked_at >= max_age or (
            auth_token.expiry is not None and auth_token.expiry <= timezone.now()
        ):
            return None
        return user, auth_token

    def put(self, digest: str, user: Any, auth_token: AuthToken) -> None:
        with self._lock:
            self._entries[digest] = (time.monotonic(), user, auth_token)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_checked_tokens = _CheckedTokens()


class RouteTokenAuthentication(PortalTokenAuthentication):
    """Knox token authentication for the live path: no token sweep, a short memory.

    Knox reads every token of the user on each request to delete the expired ones. That
    housekeeping is a query on the live path of each call; every other API request still does
    it. The token presented is checked exactly as before: an expired one is deleted and
    refused. A token found good is trusted for ``ROUTE_TOKEN_CACHE_SECONDS`` by this process
    (the telephony platform routes every call with the same token), together with its user
    and role; expiry is still checked on every route.
    """

    def recently_checked(self, token: bytes) -> bool:
        max_age = settings.ROUTE_TOKEN_CACHE_SECONDS
        try:
            digest = hash_token(token.decode("utf-8"))
        except (TypeError, UnicodeDecodeError, binascii.Error):
            return False
        return max_age > 0 and _checked_tokens.get(digest, max_age=max_age) is not None

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        max_age = settings.ROUTE_TOKEN_CACHE_SECONDS
        if max_age <= 0:
            return super().authenticate_credentials(token)
        try:
            digest = hash_token(token.decode("utf-8"))
        except (TypeError, UnicodeDecodeError, binascii.Error):
            return super().authenticate_credentials(token)  # refused there, as invalid
        known = _checked_tokens.get(digest, max_age=max_age)
        if known is not None:
            return known
        user, auth_token = super().authenticate_credentials(token)
        _checked_tokens.put(digest, user, auth_token)
        return user, auth_token

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False


class RouteTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """Document the route's token authentication as the API's usual ``Token`` header."""

    target_class = RouteTokenAuthentication
    name = "routeToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization"}


# The threads that run what routes hand over once their call is written. One is all a
# healthy shared store needs; more start only while earlier steps are still running, so a
# slow store holds each route's own close() for its own step, not for a queue of others'.
SETTLE_THREADS = 32


class ProcessThreadPool:
    """A thread pool made on first use in each process: its threads do not survive a fork
    (gunicorn and Celery workers are forked), so a child makes its own."""

    def __init__(self, *, name: str, max_workers: Callable[[], int]) -> None:
        self._name = name
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    self._pool = ThreadPoolExecutor(
                        max_workers=self._max_workers(), thread_name_prefix=self._name
                    )
                    self._pid = os.getpid()
        return self._pool


_settle_pool = ProcessThreadPool(name="route-settle", max_workers=lambda: SETTLE_THREADS)


class _AfterResponse:
    """Work the route hands over once its call is written (see ``call_route``'s ``defer``).

    Each step starts at once on a settle thread, while this thread builds and sends the
    answer, and :meth:`run` (the response's ``close()``) waits for them. The step is a round
    trip to the shared store; run inside ``close()`` it held the server's thread, and with it
    the client's keep-alive connection, for that round trip after every answer, so the
    client's next request waited for it.
    """

    def __init__(self) -> None:
        self._running: list[Future[None]] = []

    def add(self, step: Callable[[], None]) -> None:
        try:
            self._running.append(_settle_pool.get().submit(_returning_connections, step))
        except RuntimeError:
            # The interpreter is shutting down and takes no new threads: run it here.
            self._running.append(_done(step))

    def run(self) -> None:
        running, self._running = self._running, []
        for future in running:
            try:
                future.result()
            except Exception:
                # The answer is out; the slots and holds a failed step leaves lapse on their
                # own (see bidlog.routing.limits), and the error must reach the log, not the caller.
                logger.exception("routing: the step after the answer failed")


def _returning_connections(step: Callable[[], None]) -> None:
    """Run ``step`` on a settle thread, then give back any database connection it took.

    Django returns a pooled connection when the request that borrowed it ends, and only on
    that request's thread; a connection another thread opens stays lent until that thread
    closes it, and a pool whose connections all stay lent makes every request wait.
    """
    try:
        step()
    finally:
        close_old_connections()


def _done(step: Callable[[], None]) -> Future[None]:
    """``step`` run on this thread, as a finished future."""
    future: Future[None] = Future()
    try:
        step()
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(None)
    return future


class RouteResponse(Response):
    """The route's answer; the WSGI server's ``close()`` waits for the deferred steps.

    Every WSGI server calls ``close()`` once the body is written (PEP 3333), also when the
    client has gone away, so each step has finished, or its failure is logged, when the
    server is done with the request; none of them delays the answer.
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
        for name in _CONTROL_NAMES:
            if name in data:
                try:
                    controls[name] = _control_fields()[name].run_validation(data[name])
                except serializers.ValidationError as exc:
                    return _bad_field(name, f"{name}: {_first_error(exc.detail)}")
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
            message = f"Invalid caller ID: {exc.reason}."
            return _route_error(RouteError(code=4003, message=message, field="caller_id"))
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
