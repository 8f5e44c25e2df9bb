"""Call routing: ask the right buyers in the right way, answer within one deadline, log it all.

Two strategies (SPEC §3 Call, §4):

- ``waterfall``: eligible buyers in priority order, one at a time, stopping at the first
  acceptable bid (the Bid API guide's "Multi-Buyer Strategy").
- ``highest_bid``: every eligible buyer at once; the best acceptable bid wins and ties go to
  priority. All the bids, and any retry, run in one event loop on the routing thread
  (:func:`~callgrid_portal.bidapi.client.send_bids`), on kept-alive connections.

One deadline per call (``ROUTING_DEADLINE_SECONDS``, never more than the largest timeout of the
buyers in play) is handed to the client, so no attempt, retry or backoff runs past it. In an
auction, buyers still pending at the deadline are logged ``timeout`` and the answer goes out
without them.

Before a request goes out, :mod:`bidlog.routing.eligibility` rules out buyers that would refuse the
call anyway, and admission (:func:`bidlog.routing.send.bids_admit`, the batch form of the one
way every bid is sent) takes a concurrency slot and a rate-limit token shared by every
process. Every decision becomes a BidLog row (``skipped_*`` ones send nothing).

The database alone cannot hold caps and duplicate windows against routes running at the same
time in other processes, so admission also reserves them in the shared cache: one place under
each capped buyer's daily and monthly cap, and the (buyer, caller) pair of a buyer with a
duplicate window. The winner keeps its reservation; every other buyer's is given back as soon
as it is out of the running, and all of them when the route fails or its log cannot be written.

Each buyer's bid rows are built as soon as its final answer arrives, while the others are
still out; every query runs on the routing thread. The call and its rows are written in one
statement before the answer goes out; the slots and reservations are settled after it (see
:func:`call_route`'s ``defer``).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.utils import timezone

from bidlog.choices import RoutingStrategy, Source
from bidlog.models import BidLog, Call
from bidlog.routing import limits, spool
from bidlog.routing.eligibility import Block, buyers_with_last_paid, eligibility_check
from bidlog.routing.errors import RouteError
from bidlog.routing.record import call_paid_out_set
from bidlog.routing.route_rows import StartedBidRow, bid_rows_prepare
from bidlog.routing.send import Admitted, Candidate, bid_answered, bids_admit
from bidlog.selectors import call_list
from buyers.models import Buyer
from buyers.validators import US_STATE_CODES
from callgrid_portal.bidapi.client import (
    RESERVED_KEYS,
    Bid,
    BidResult,
    build_request,
    param_problem,
    prepare,
    send_bids,
)
from callgrid_portal.bidapi.phone import CallerId, InvalidCallerId, normalize_caller_id

logger = logging.getLogger(__name__)

# Their homes are the selectors and services; importing them from here keeps working.
__all__ = ["RouteError", "call_list", "call_paid_out_set", "call_route"]

# A slot outlives the longest request it can cover (deadline <= 10 s) by a wide margin; it
# only matters if this process dies while holding it.
LEASE_MARGIN_SECONDS = 50.0


@dataclass
class _Answer:
    """What happened with one buyer: a block (nothing sent) or the client's result."""

    buyer: Buyer
    block: Block | None = None
    result: BidResult | None = None
    reservation: limits.Reservation | None = None
    # The result's bid rows, built where the answer arrived (see _ask).
    rows: list[BidLog] | None = None


@dataclass
class _Route:
    """What admission needs to know about the call, and every reservation it has taken."""

    caller_id: str
    moment: datetime
    lease_ttl: float
    held: list[limits.Reservation]
    source: str = Source.LIVE
    # Slots of requests that have ended, given back with the route's last settle.
    finished: list[limits.Lease] = field(default_factory=list)


# --- input --------------------------------------------------------------------------------


def _clean_input(
    *,
    caller_id: object,
    state_code: str,
    params: Mapping[str, Any] | None,
    strategy: str | None,
    buyer_ids: Sequence[int] | None,
    deadline_seconds: float | None,
    now: datetime,
) -> tuple[CallerId, str, dict[str, Any], str, list[Buyer], float]:
    try:
        number = normalize_caller_id(caller_id)
    except InvalidCallerId as exc:
        message = f"Invalid caller ID: {exc.reason}."
        raise RouteError(code=4003, message=message, field="CallerId") from None
    state = (state_code or "").strip().upper()
    if state and state not in US_STATE_CODES:
        raise RouteError(
            code=4000,
            message=f"{state_code!r} is not a US state code; use two letters like CO.",
            field="InboundStateCode",
        )
    chosen = strategy or settings.ROUTING_DEFAULT_STRATEGY
    if chosen not in RoutingStrategy.values:
        raise RouteError(
            code=4000,
            message=f"Unknown strategy {chosen!r}; use {' or '.join(RoutingStrategy.values)}.",
            field="strategy",
        )
    extra: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key in RESERVED_KEYS:
            continue
        problem = param_problem(key, value)
        if problem is not None:
            raise RouteError(code=4000, message=problem, field=str(key))
        extra[str(key)] = value
    wanted = {int(pk) for pk in buyer_ids} if buyer_ids is not None else None
    # One query for the buyers and this caller's duplicate windows with them.
    ordered = buyers_with_last_paid(buyer_ids=wanted, caller_id=number.ten_digit, now=now)
    if wanted is not None:
        missing = wanted - {b.pk for b in ordered}
        if missing:
            raise RouteError(
                code=4000,
                message=f"No buyer with id {', '.join(str(pk) for pk in sorted(missing))}.",
                field="buyers",
            )
    limit = float(deadline_seconds or settings.ROUTING_DEADLINE_SECONDS)
    if limit <= 0:
        raise RouteError(code=4000, message="The deadline must be positive.", field="deadline")
    if ordered:
        # No buyer may be waited on longer than its own timeout allows anyway.
        limit = min(limit, max(float(b.timeout_seconds) for b in ordered))
    return number, state, extra, chosen, ordered, limit


# --- sending ------------------------------------------------------------------------------


def _admit(candidates: list[Candidate], route: _Route) -> list[Admitted]:
    """:func:`bids_admit` for this route; every reservation taken is held by the route."""
    admitted = bids_admit(
        candidates, caller_id=route.caller_id, moment=route.moment, ttl_seconds=route.lease_ttl
    )
    route.held.extend(a.reservation for a in admitted if a.reservation is not None)
    return admitted


def _answered(
    *, buyer: Buyer, result: BidResult, source: str, started: StartedBidRow | None = None
) -> tuple[BidResult, list[BidLog]]:
    """A buyer's final result and its bid rows; a 3000 starts the grid's cooldown for everyone.

    ``started`` is the row begun for the first attempt while it was awaited, if any.
    """
    bid_answered(buyer=buyer, result=result)
    return result, bid_rows_prepare(buyer=buyer, result=result, source=source, started=started)


def _acceptable_amount(answer: _Answer) -> Decimal | None:
    if answer.result is None or not answer.result.acceptable:
        return None
    return answer.result.final.bid_amount


# --- strategies ---------------------------------------------------------------------------


def _waterfall(
    *,
    candidates: list[Candidate],
    caller: CallerId,
    state: str,
    params: dict[str, Any],
    deadline: float,
    route: _Route,
) -> tuple[list[_Answer], _Answer | None]:
    answers: list[_Answer] = []
    for i, candidate in enumerate(candidates):
        buyer, block = candidate.buyer, candidate.block
        if block is not None:
            answers.append(_Answer(buyer, block=block))
            continue
        bid = prepare(i, buyer.as_bid_target(), caller.ten_digit, state, params)
        if time.monotonic() >= deadline:
            # Out of time: the client logs the timeout without sending, so take no slot.
            (result,) = send_bids([bid], deadline=deadline)
            answers.append(_Answer(buyer, result=result))
            continue
        (admitted,) = _admit([candidate], route)
        lease, reservation = admitted.lease, admitted.reservation
        if lease is None:
            answers.append(_Answer(buyer, block=admitted.block))
            continue
        try:
            (result,) = send_bids([bid], deadline=deadline)
            result, rows = _answered(buyer=buyer, result=result, source=route.source)
        except BaseException:
            # The reservation goes back with the others in call_route's handler.
            limits.concurrency_release(lease)
            raise
        answer = _Answer(buyer, result=result, reservation=reservation, rows=rows)
        answers.append(answer)
        if _acceptable_amount(answer) is not None:
            # The winner's slot goes back with the route's last settle, after the log.
            route.finished.append(lease)
            return answers, answer
        # The slot and this buyer's reservation go back in one round trip now, so a buyer
        # that declined is free for other routes while this one goes on.
        limits.admission_settle(
            leases=[lease], release=[reservation] if reservation is not None else []
        )
    return answers, None


def _highest_bid(
    *,
    candidates: list[Candidate],
    caller: CallerId,
    state: str,
    params: dict[str, Any],
    deadline: float,
    route: _Route,
) -> tuple[list[_Answer], _Answer | None]:
    """Ask every admitted buyer at once in one event loop; the best acceptable bid wins."""
    answers = [_Answer(c.buyer, block=c.block) for c in candidates]
    asked = [(answer, c) for answer, c in zip(answers, candidates, strict=True) if c.block is None]
    admitted: list[tuple[_Answer, limits.Lease]] = []
    for (answer, _), admission in zip(asked, _admit([c for _, c in asked], route), strict=True):
        if admission.lease is None:
            answer.block = admission.block
        else:
            answer.reservation = admission.reservation
            admitted.append((answer, admission.lease))
    bids = [
        prepare(i, answer.buyer.as_bid_target(), caller.ten_digit, state, params)
        for i, (answer, _) in enumerate(admitted)
    ]
    # Each bid's log row, begun while its buyer thinks (see StartedBidRow).
    started_rows: dict[Hashable, StartedBidRow] = {}

    def on_sent(sent: list[Bid]) -> None:
        for bid in sent:
            if bid.current is not None:
                buyer = admitted[cast(int, bid.key)][0].buyer
                started_rows[bid.key] = StartedBidRow(
                    buyer=buyer, attempt=bid.current, source=route.source
                )

    def on_result(key: Hashable, result: BidResult) -> None:
        answer = admitted[cast(int, key)][0]
        answer.result, answer.rows = _answered(
            buyer=answer.buyer, result=result, source=route.source, started=started_rows.get(key)
        )

    try:
        send_bids(bids, deadline=deadline, on_sent=on_sent, on_result=on_result)
    except BaseException:
        # Reservations go back with the others in call_route's handler.
        limits.concurrency_release_many(lease for _, lease in admitted)
        raise
    winner: _Answer | None = None
    best: Decimal | None = None  # the winner's amount
    for answer in answers:  # priority order, so a strict ">" leaves ties to priority
        amount = _acceptable_amount(answer)
        if amount is not None and (best is None or amount > best):
            winner, best = answer, amount
    # Every request has ended: the slots go back with the losers' reservations in the
    # route's last settle, after the log.
    route.finished.extend(lease for _, lease in admitted)
    return answers, winner


# --- the service --------------------------------------------------------------------------


def call_route(
    *,
    caller_id: object,
    state_code: str = "",
    params: Mapping[str, Any] | None = None,
    strategy: str | None = None,
    buyer_ids: Sequence[int] | None = None,
    source: str = Source.LIVE,
    deadline_seconds: float | None = None,
    now: datetime | None = None,
    defer: Callable[[Callable[[], None]], None] | None = None,
) -> Call:
    """Route one inbound call and record the decision with every attempt behind it.

    Raises :class:`RouteError` for bad input (4003 for the caller ID) before anything is sent
    or written. Otherwise returns the saved :class:`Call`, routed or not; its ``route_bids``
    attribute lists the BidLog rows written for it, in buyer priority order.

    ``now`` is the routing clock for duplicate windows, operating hours and caps (tests move
    it); the deadline always runs on the real monotonic clock. Call it outside a transaction:
    it commits its own, and other processes must see the call once the caller's duplicate key
    names it.

    Once the call is written, one round trip to the shared store gives back the slots still
    held, gives back the losers' reservations and confirms the winner's. ``defer`` receives
    that step instead of it running here: the API view runs it on another thread while the
    answer is built and sent, so the live call does not wait for it. Whoever takes it must
    run it.
    """
    started = time.monotonic()
    moment = now or timezone.now()
    caller, state, extra, chosen, buyers, budget = _clean_input(
        caller_id=caller_id,
        state_code=state_code,
        params=params,
        strategy=strategy,
        buyer_ids=buyer_ids,
        deadline_seconds=deadline_seconds,
        now=moment,
    )
    deadline = started + budget
    lease_ttl = budget + LEASE_MARGIN_SECONDS
    candidates = [
        Candidate(e.buyer, e.first, e.caps)
        for e in eligibility_check(
            buyers=buyers,
            caller_id=caller.ten_digit,
            state_code=state,
            now=moment,
            check_cooldown=False,
            last_paid={b.pk: b.last_paid_at for b in buyers},  # type: ignore[attr-defined]
        )
    ]
    route = _Route(
        caller_id=caller.ten_digit, moment=moment, lease_ttl=lease_ttl, held=[], source=source
    )
    run = _waterfall if chosen == RoutingStrategy.WATERFALL else _highest_bid
    try:
        answers, winner = run(
            candidates=candidates,
            caller=caller,
            state=state,
            params=extra,
            deadline=deadline,
            route=route,
        )
        duration_ms = int((time.monotonic() - started) * 1000)
        call = _record(
            caller=caller,
            state=state,
            params=extra,
            strategy=chosen,
            source=source,
            moment=moment,
            answers=answers,
            winner=winner,
            duration_ms=duration_ms,
        )
    except BaseException:
        # Whatever failed (a bug, the database, an interrupt), no call was written: every
        # slot and reservation goes back, the winner's included, so no cap place or caller
        # is lost.
        limits.admission_settle(leases=route.finished, release=route.held)
        raise
    kept = winner.reservation if winner is not None else None
    settle = functools.partial(
        limits.admission_settle,
        leases=route.finished,
        release=[r for r in route.held if r is not kept],
        keep=[kept] if kept is not None else [],
        # Written: the caller's duplicate key now names the call, for a short hold.
        call_id=call.pk,
        hold_seconds=lease_ttl,
    )
    if defer is None:
        settle()
    else:
        defer(settle)
    return call


def _record(
    *,
    caller: CallerId,
    state: str,
    params: dict[str, Any],
    strategy: str,
    source: str,
    moment: datetime,
    answers: list[_Answer],
    winner: _Answer | None,
    duration_ms: int,
) -> Call:
    """Write the call and one BidLog row per attempt or skip, all or nothing.

    The write is retried on a fresh connection and, while the database stays away, spooled
    (:func:`bidlog.routing.spool.call_write`): the returned call then has no id yet, only its
    ``route_key``, and the caller still gets the decision.
    """
    final = winner.result.final if winner and winner.result else None
    call = Call(
        created_at=moment,
        caller_id=caller.ten_digit,
        state_code=state,
        params=params,
        strategy=strategy,
        winner=winner.buyer if winner else None,
        bid_amount=final.bid_amount if final else None,
        destination=final.destination if final else "",
        routed=winner is not None,
        duration_ms=duration_ms,
        source=source,
        route_key=uuid.uuid4(),
    )
    rows: list[BidLog] = []
    for answer in answers:
        if answer.block is not None:
            target = answer.buyer.as_bid_target()
            rows.append(
                BidLog(
                    buyer=answer.buyer,
                    source=source,
                    caller_id=caller.ten_digit,
                    state_code=state,
                    request=build_request(
                        target, caller.formatted(target.caller_id_format), state, params
                    ),
                    outcome=answer.block.outcome,
                    error=answer.block.reason,
                )
            )
        elif answer.rows is not None:
            rows.extend(answer.rows)
        elif answer.result is not None:  # a buyer not waited for: its timeout row
            rows.extend(bid_rows_prepare(buyer=answer.buyer, result=answer.result, source=source))
    # One statement for the call and every row on PostgreSQL (see call_with_bids_create).
    saved, written = spool.call_write(
        call=call, bids=rows, synchronous_commit=settings.ROUTING_SYNCHRONOUS_COMMIT
    )
    saved.route_bids = written  # type: ignore[attr-defined]
    return saved
