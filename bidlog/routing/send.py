"""Sending bids within each grid's limits: the one way a bid leaves the portal.

Every sender comes through here. Test bids, health checks and the ``send_test_bid`` command
send one bid with :func:`bid_send`; the route admits its whole auction at once with
:func:`bids_admit` (one round trip to the shared store for every buyer) and sends the bids
itself, all in one event loop. Either way admission takes the grid's concurrency slot and a
rate token, shared by every process (:mod:`bidlog.routing.limits`), a refusal is a
:class:`~bidlog.routing.eligibility.Block` that says why in plain words, and an answer of
3000 No Capacity starts the grid's cooldown for every sender (:func:`bid_answered`).

What each sender adds: the route also reserves caps and the caller's duplicate window and
respects the cooldown; a health check keeps a share of the grid's rate for live calls and
respects the cooldown; a test bid deliberately ignores status, hours, caps and cooldown (an
operator sends one precisely to see what CallGrid answers right now).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from bidlog.choices import Outcome
from bidlog.routing import limits
from bidlog.routing.eligibility import (
    Block,
    cap_counters,
    duplicate_block,
    in_flight_duplicate_block,
    last_paid_calls,
    reserved_cap_block,
    show_utc,
)
from buyers.models import Buyer
from callgrid_portal.bidapi.client import BidResult, send_bid

# Three attempts of at most timeout_seconds each, plus backoff, fit in this; the test-bid
# task's soft time limit (45 s) is above it, so the client always returns before Celery
# interrupts it.
SEND_BUDGET_SECONDS = 35.0
# A concurrency slot outlives any bid it covers; it only matters if the process dies.
LEASE_TTL_SECONDS = 90.0


def bid_send(
    *,
    buyer: Buyer,
    caller_id: str,
    state_code: str = "",
    params: dict[str, Any] | None = None,
    rate_headroom: float = 0.0,
    respect_cooldown: bool = False,
) -> BidResult | Block:
    """Send ``buyer`` one bid now, within its grid's limits; the client's result, or the
    :class:`Block` that kept it from being sent (nothing is sent then).

    ``rate_headroom`` keeps that many tokens in the grid's bucket for live calls (health
    checks pass a share of the capacity). With ``respect_cooldown`` a grid cooling down after
    a 3000 is not asked. Nothing is written here: each sender records the answer its own way.
    """
    grid_id = buyer.grid_id
    if respect_cooldown:
        until = limits.cooldown_until(grid_id=grid_id)
        if until is not None:
            return _cooldown_block(until)
    lease = limits.concurrency_acquire(
        grid_id=grid_id, limit=buyer.max_concurrency, ttl_seconds=LEASE_TTL_SECONDS
    )
    if lease is None:
        return _concurrency_block(buyer)
    try:
        rate = limits.rate_limit_take(
            grid_id=grid_id, per_minute=buyer.rate_limit_per_minute, headroom=rate_headroom
        )
        if not rate.allowed:
            if not rate_headroom:
                return _rate_block(buyer, rate.retry_after)
            return Block(
                Outcome.SKIPPED_RATE_LIMIT,
                f"near the rate limit of {buyer.rate_limit_per_minute}/min "
                f"({rate.tokens:.0f} requests left, {rate_headroom:.0f} kept for live calls)",
            )
        result = send_bid(
            buyer.as_bid_target(),
            caller_id,
            state_code or None,
            params,
            deadline=time.monotonic() + SEND_BUDGET_SECONDS,
        )
        bid_answered(buyer=buyer, result=result)
        return result
    finally:
        limits.concurrency_release(lease)


def bid_answered(*, buyer: Buyer, result: BidResult) -> None:
    """What every sender does with an answer: a 3000 starts the grid's cooldown for all."""
    if result.outcome == Outcome.NO_CAPACITY:
        limits.cooldown_start(grid_id=buyer.grid_id, seconds=buyer.capacity_cooldown_seconds)


# --- the batch form, for a route ----------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A buyer a route may ask, the first block found before admission, and its cap counts."""

    buyer: Buyer
    block: Block | None
    caps: tuple[int, int] | None


@dataclass(frozen=True)
class Admitted:
    """One candidate after admission: the slot and reservation it holds, or its block."""

    lease: limits.Lease | None
    reservation: limits.Reservation | None
    block: Block | None


def bids_admit(
    candidates: list[Candidate], *, caller_id: str, moment: datetime, ttl_seconds: float
) -> list[Admitted]:
    """For each buyer of a route, a slot, a rate token and its reservations, or its block.

    One round trip to the shared store for the whole list (see :func:`limits.admit`). A
    duplicate key left by an earlier winner is checked against the database (one query, only
    then): if that call no longer counts (marked not paid out), the key is taken over. The
    caller gives back what it holds (``limits.admission_settle``).
    """
    requests = [
        limits.AdmissionRequest(
            grid_id=c.buyer.grid_id,
            max_concurrency=c.buyer.max_concurrency,
            per_minute=c.buyer.rate_limit_per_minute,
            reserve=_reservation_request(c, caller_id=caller_id, moment=moment),
        )
        for c in candidates
    ]
    admissions = limits.admit(requests=requests, ttl_seconds=ttl_seconds)
    decided = _duplicates_rechecked(
        candidates, requests, admissions, caller_id=caller_id, moment=moment, ttl=ttl_seconds
    )
    return [
        Admitted(
            admission.lease,
            admission.reservation,
            decided.get(i) or _refusal(candidate.buyer, admission, moment),
        )
        for i, (candidate, admission) in enumerate(zip(candidates, admissions, strict=True))
    ]


def _reservation_request(
    candidate: Candidate, *, caller_id: str, moment: datetime
) -> limits.ReservationRequest | None:
    """What must be reserved with this buyer: its caps, and the caller's duplicate window."""
    buyer = candidate.buyer
    caps = cap_counters(buyer=buyer, now=moment, counts=candidate.caps)
    dup = (
        limits.duplicate_key(buyer_id=buyer.pk, caller_id=caller_id)
        if buyer.duplicate_window_days
        else ""
    )
    if not caps and not dup:
        return None
    return limits.ReservationRequest(buyer_id=buyer.pk, caps=caps, duplicate_key=dup)


def _duplicates_rechecked(
    candidates: list[Candidate],
    requests: list[limits.AdmissionRequest],
    admissions: list[limits.Admission],
    *,
    caller_id: str,
    moment: datetime,
    ttl: float,
) -> dict[int, Block]:
    """Blocks of the buyers whose caller an earlier written call holds and still counts;
    the others are admitted again over that call's key (``admissions`` is updated)."""
    sold = [
        i
        for i, a in enumerate(admissions)
        if a.refused == "duplicate" and limits.duplicate_holder_call(a.holder) is not None
    ]
    if not sold:
        return {}
    paid = last_paid_calls(
        caller_id=caller_id, buyers=[candidates[i].buyer for i in sold], now=moment
    )
    decided: dict[int, Block] = {}
    retry: list[int] = []
    for i in sold:
        buyer = candidates[i].buyer
        block = duplicate_block(buyer=buyer, last_paid=paid.get(buyer.pk), now=moment)
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
            ttl_seconds=ttl,
        )
        for i, admission in zip(retry, again, strict=True):
            admissions[i] = admission
    return decided


def _refusal(buyer: Buyer, admission: limits.Admission, moment: datetime) -> Block | None:
    if admission.admitted:
        return None
    if admission.refused == "duplicate":
        return in_flight_duplicate_block()
    if admission.refused == "cap":
        return reserved_cap_block(
            buyer=buyer, now=moment, cap_index=admission.cap_index, total=admission.cap_total
        )
    if admission.refused == "cooldown" and admission.cooldown_until is not None:
        return _cooldown_block(admission.cooldown_until)
    if admission.refused == "concurrency":
        return _concurrency_block(buyer)
    return _rate_block(buyer, admission.retry_after)


# --- the words of a refusal ---------------------------------------------------------------


def _cooldown_block(until: datetime) -> Block:
    return Block(
        Outcome.SKIPPED_COOLDOWN,
        f"answered 3000 No Capacity; cooling down until {show_utc(until)}",
        until,
    )


def _concurrency_block(buyer: Buyer) -> Block:
    return Block(
        Outcome.SKIPPED_CONCURRENCY,
        f"all {buyer.max_concurrency} simultaneous requests to this grid are in flight",
    )


def _rate_block(buyer: Buyer, retry_after: float) -> Block:
    return Block(
        Outcome.SKIPPED_RATE_LIMIT,
        f"rate limit of {buyer.rate_limit_per_minute}/min reached; next slot in "
        f"{retry_after:.1f} s",
        timezone.now() + timedelta(seconds=retry_after),
    )
