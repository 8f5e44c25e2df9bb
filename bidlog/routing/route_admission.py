"""Admission of a route's buyers: for each, a slot, a rate token and its reservations (caps,
duplicate window) from the shared limits, or the block that refused it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from bidlog.choices import Source
from bidlog.routing import limits
from bidlog.routing.blocks import (
    Block,
    concurrency_block,
    cooldown_block,
    in_flight_duplicate_block,
    rate_limit_block,
)
from bidlog.routing.eligibility import (
    cap_counters,
    duplicate_block,
    last_paid_calls,
    reserved_cap_block,
)
from buyers.models import Buyer

Admitted = tuple[limits.Lease | None, limits.Reservation | None, Block | None]


@dataclass(frozen=True)
class Candidate:
    """A buyer in the running, the first block found before admission, and its cap counts."""

    buyer: Buyer
    block: Block | None
    caps: tuple[int, int] | None


@dataclass
class Route:
    """What admission needs to know about the call, and every reservation it has taken."""

    caller_id: str
    moment: datetime
    lease_ttl: float
    held: list[limits.Reservation]
    source: str = Source.LIVE
    # Slots of requests that have ended, given back with the route's last settle.
    finished: list[limits.Lease] = field(default_factory=list)


def reservation_request(candidate: Candidate, route: Route) -> limits.ReservationRequest | None:
    """What must be reserved with this buyer: its caps, and the caller's duplicate window."""
    buyer = candidate.buyer
    caps = cap_counters(buyer=buyer, now=route.moment, counts=candidate.caps)
    dup = (
        limits.duplicate_key(buyer_id=buyer.pk, caller_id=route.caller_id)
        if buyer.duplicate_window_days
        else ""
    )
    if not caps and not dup:
        return None
    return limits.ReservationRequest(buyer_id=buyer.pk, caps=caps, duplicate_key=dup)


def admit_candidates(candidates: list[Candidate], route: Route) -> list[Admitted]:
    """For each buyer, a slot, a rate token and its reservations, or the block that refused it.

    One round trip to the shared store for the whole list (see :func:`limits.admit`). A
    duplicate key left by an earlier winner is checked against the database (one query, only
    then): if that call no longer counts (marked not paid out), the key is taken over.
    """
    requests = [
        limits.AdmissionRequest(
            grid_id=c.buyer.grid_id,
            max_concurrency=c.buyer.max_concurrency,
            per_minute=c.buyer.rate_limit_per_minute,
            reserve=reservation_request(c, route),
        )
        for c in candidates
    ]
    admissions = limits.admit(requests=requests, ttl_seconds=route.lease_ttl)
    decided = _retake_stale_duplicates(candidates, route, requests, admissions)
    out: list[Admitted] = []
    for i, (candidate, admission) in enumerate(zip(candidates, admissions, strict=True)):
        if admission.reservation is not None:
            route.held.append(admission.reservation)
        block = decided.get(i) or refusal(candidate.buyer, admission, route.moment)
        out.append((admission.lease, admission.reservation, block))
    return out


def _retake_stale_duplicates(
    candidates: list[Candidate],
    route: Route,
    requests: list[limits.AdmissionRequest],
    admissions: list[limits.Admission],
) -> dict[int, Block]:
    """Admit again the buyers refused for a duplicate key whose call no longer counts.

    ``admissions`` is updated in place; returns the duplicate blocks of the buyers whose
    earlier call still counts, by position.
    """
    decided: dict[int, Block] = {}
    sold = [
        i
        for i, a in enumerate(admissions)
        if a.refused == "duplicate" and limits.duplicate_holder_call(a.holder) is not None
    ]
    if not sold:
        return decided
    paid = last_paid_calls(
        caller_id=route.caller_id,
        buyers=[candidates[i].buyer for i in sold],
        now=route.moment,
    )
    retry: list[int] = []
    for i in sold:
        buyer = candidates[i].buyer
        block = duplicate_block(buyer=buyer, last_paid=paid.get(buyer.pk), now=route.moment)
        if block is None:
            retry.append(i)
        else:
            decided[i] = block
    if retry:
        again = limits.admit(
            requests=[
                replace(
                    requests[i],
                    reserve=replace(
                        requests[i].reserve,  # type: ignore[type-var]
                        duplicate_expect=admissions[i].holder,
                    ),
                )
                for i in retry
            ],
            ttl_seconds=route.lease_ttl,
        )
        for i, admission in zip(retry, again, strict=True):
            admissions[i] = admission
    return decided


def refusal(buyer: Buyer, admission: limits.Admission, moment: datetime) -> Block | None:
    """The block of a buyer admission refused (``None`` when it was admitted)."""
    if admission.admitted:
        return None
    if admission.refused == "duplicate":
        return in_flight_duplicate_block()
    if admission.refused == "cap":
        return reserved_cap_block(
            buyer=buyer, now=moment, cap_index=admission.cap_index, total=admission.cap_total
        )
    if admission.refused == "cooldown" and admission.cooldown_until is not None:
        return cooldown_block(admission.cooldown_until)
    if admission.refused == "concurrency":
        return concurrency_block(buyer)
    return rate_limit_block(buyer, retry_after=admission.retry_after)
