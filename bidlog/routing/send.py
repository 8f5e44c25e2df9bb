"""Sending bids within each grid's limits: the one way a bid leaves the portal.

Test bids, health checks and the ``send_test_bid`` command send one bid with
:func:`bid_send`; the route admits its whole auction at once
(:func:`bidlog.routing.route_admission.admit_candidates`, one round trip to the shared store
for every buyer) and sends the bids itself, all in one event loop. Either way admission takes
the grid's concurrency slot and a rate token, shared by every process
(:mod:`bidlog.routing.limits`), a refusal is a :class:`~bidlog.routing.blocks.Block` worded by
:mod:`bidlog.routing.blocks`, and an answer of 3000 No Capacity starts the grid's cooldown for
every sender (:func:`bid_answered`).

What each sender adds: the route also reserves caps and the caller's duplicate window and
respects the cooldown; a health check keeps a share of the grid's rate for live calls and
respects the cooldown; a test bid deliberately ignores status, hours, caps and cooldown (an
operator sends one precisely to see what CallGrid answers right now).
"""

from __future__ import annotations

import time
from typing import Any

from bidlog.choices import Outcome
from bidlog.routing import limits
from bidlog.routing.blocks import Block, concurrency_block, cooldown_block, rate_limit_block
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
            return cooldown_block(until)
    lease = limits.concurrency_acquire(
        grid_id=grid_id, limit=buyer.max_concurrency, ttl_seconds=LEASE_TTL_SECONDS
    )
    if lease is None:
        return concurrency_block(buyer)
    try:
        rate = limits.rate_limit_take(
            grid_id=grid_id, per_minute=buyer.rate_limit_per_minute, headroom=rate_headroom
        )
        if not rate.allowed:
            return rate_limit_block(
                buyer, retry_after=rate.retry_after, tokens=rate.tokens, headroom=rate_headroom
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
