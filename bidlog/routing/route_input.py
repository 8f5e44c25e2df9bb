"""A route request checked before anything is sent: caller, state, strategy, parameters,
buyers, deadline and tags, each refused with a :class:`RouteError` naming its field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings

from bidlog.choices import RoutingStrategy
from bidlog.routing.eligibility import buyers_with_last_paid
from bidlog.routing.errors import RouteError
from bidlog.tags import tag_problem
from buyers.models import Buyer
from buyers.validators import US_STATE_CODES
from callgrid_portal.bidapi.client import RESERVED_KEYS, param_problem
from callgrid_portal.bidapi.phone import CallerId, InvalidCallerId, normalize_caller_id


@dataclass(frozen=True)
class RouteInput:
    """The cleaned request: who calls, from where, how to route, to whom, within how long."""

    caller: CallerId
    state: str
    params: dict[str, Any]
    strategy: str
    buyers: list[Buyer]  # in priority order, each with ``last_paid_at`` for this caller
    budget: float  # seconds
    tags: dict[str, str] = field(default_factory=dict)  # campaign and publisher


def route_input_clean(
    *,
    caller_id: object,
    state_code: str,
    params: Mapping[str, Any] | None,
    strategy: str | None,
    buyer_ids: Sequence[int] | None,
    deadline_seconds: float | None,
    now: datetime,
    campaign: object = "",
    publisher: object = "",
) -> RouteInput:
    """Check every field of a route request (4003 for the caller ID, 4000 for the rest)."""
    tags = _tags(campaign=campaign, publisher=publisher)
    caller = _caller(caller_id)
    state = _state(state_code)
    chosen = _strategy(strategy)
    extra = _forwarded_params(params)
    buyers = _buyers(buyer_ids, caller=caller, now=now)
    budget = _budget(deadline_seconds, buyers)
    return RouteInput(caller, state, extra, chosen, buyers, budget, tags)


def _tags(*, campaign: object, publisher: object) -> dict[str, str]:
    """The call's campaign and publisher tags, or a 400 naming the first bad one."""
    tags = {"campaign": campaign, "publisher": publisher}
    for name, value in tags.items():
        problem = tag_problem(name, value)
        if problem is not None:
            raise RouteError(code=4000, message=problem, field=name)
    return {name: str(value) for name, value in tags.items()}


def _caller(caller_id: object) -> CallerId:
    try:
        return normalize_caller_id(caller_id)
    except InvalidCallerId as exc:
        raise RouteError(code=4003, message=exc.message, field="CallerId") from None


def _state(state_code: str) -> str:
    state = (state_code or "").strip().upper()
    if state and state not in US_STATE_CODES:
        raise RouteError(
            code=4000,
            message=f"{state_code!r} is not a US state code; use two letters like CO.",
            field="InboundStateCode",
        )
    return state


def _strategy(strategy: str | None) -> str:
    chosen = strategy or settings.ROUTING_DEFAULT_STRATEGY
    if chosen not in RoutingStrategy.values:
        raise RouteError(
            code=4000,
            message=f"Unknown strategy {chosen!r}; use {' or '.join(RoutingStrategy.values)}.",
            field="strategy",
        )
    return chosen


def _forwarded_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The request's own parameters sent on to buyers; the reserved keys are set per call."""
    extra: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key in RESERVED_KEYS:
            continue
        problem = param_problem(key, value)
        if problem is not None:
            raise RouteError(code=4000, message=problem, field=str(key))
        extra[str(key)] = value
    return extra


def _buyers(buyer_ids: Sequence[int] | None, *, caller: CallerId, now: datetime) -> list[Buyer]:
    wanted = {int(pk) for pk in buyer_ids} if buyer_ids is not None else None
    # One query for the buyers and this caller's duplicate windows with them.
    ordered = buyers_with_last_paid(buyer_ids=wanted, caller_id=caller.ten_digit, now=now)
    if wanted is not None:
        missing = wanted - {b.pk for b in ordered}
        if missing:
            raise RouteError(
                code=4000,
                message=f"No buyer with id {', '.join(str(pk) for pk in sorted(missing))}.",
                field="buyers",
            )
    return ordered


def _budget(deadline_seconds: float | None, buyers: list[Buyer]) -> float:
    limit = float(deadline_seconds or settings.ROUTING_DEADLINE_SECONDS)
    if limit <= 0:
        raise RouteError(code=4000, message="The deadline must be positive.", field="deadline")
    if buyers:
        # No buyer may be waited on longer than its own timeout allows anyway.
        limit = min(limit, max(float(b.timeout_seconds) for b in buyers))
    return limit
