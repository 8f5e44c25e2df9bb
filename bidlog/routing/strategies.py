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
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.utils import timezone

from bidlog.choices import RoutingStrategy, Source
from bidlog.models import BidLog, Call
from bidlog.routing import limits, spool
from bidlog.routing.blocks import Block
from bidlog.routing.call_write import StartedBidRow, bid_rows_prepare
from bidlog.routing.eligibility import eligibility_check
from bidlog.routing.errors import RouteError
from bidlog.routing.record import call_paid_out_set
from bidlog.routing.route_admission import Candidate, Route, admit_candidates
from bidlog.routing.route_input import RouteInput, route_input_clean
from bidlog.routing.send import bid_answered
from bidlog.selectors import call_list
from buyers.models import Buyer
from callgrid_portal.bidapi.client import (
    Bid,
    BidResult,
    build_request,
    prepare,
    send_bids,
)
from callgrid_portal.bidapi.phone import CallerId

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


# --- sending ------------------------------------------------------------------------------


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
    route: Route,
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
        ((lease, reservation, refused),) = admit_candidates([candidate], route)
        if lease is None:
            answers.append(_Answer(buyer, block=refused))
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
    route: Route,
) -> tuple[list[_Answer], _Answer | None]:
    """Ask every admitted buyer at once in one event loop; the best acceptable bid wins."""
    answers = [_Answer(c.buyer, block=c.block) for c in candidates]
    asked = [(answer, c) for answer, c in zip(answers, candidates, strict=True) if c.block is None]
    admitted: list[tuple[_Answer, limits.Lease]] = []
    for (answer, _), (lease, reservation, refused) in zip(
        asked, admit_candidates([c for _, c in asked], route), strict=True
    ):
        if lease is None:
            answer.block = refused
        else:
            answer.reservation = reservation
            admitted.append((answer, lease))
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


def _candidates(
    buyers: list[Buyer], *, caller: CallerId, state: str, moment: datetime
) -> list[Candidate]:
    """Each buyer with the first block the database finds (the limits come at admission)."""
    return [
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


def _settle_after_write(
    route: Route, winner: _Answer | None, *, call_id: int, hold_seconds: float
) -> Callable[[], None]:
    """The step that gives back the slots still held and the losers' reservations, and
    confirms the winner's: its caller's duplicate key now names the call, for a short hold."""
    kept = winner.reservation if winner is not None else None
    return functools.partial(
        limits.admission_settle,
        leases=route.finished,
        release=[r for r in route.held if r is not kept],
        keep=[kept] if kept is not None else [],
        call_id=call_id,
        hold_seconds=hold_seconds,
    )


def _route_and_record(
    cleaned: RouteInput, route: Route, *, started: float
) -> tuple[Call, _Answer | None]:
    """Ask the buyers as the strategy says, then write the call and its rows.

    Whatever fails (a bug, the database, an interrupt), no call was written: every slot and
    reservation goes back, the winner's included, so no cap place or caller is lost.
    """
    candidates = _candidates(
        cleaned.buyers, caller=cleaned.caller, state=cleaned.state, moment=route.moment
    )
    run = _waterfall if cleaned.strategy == RoutingStrategy.WATERFALL else _highest_bid
    try:
        answers, winner = run(
            candidates=candidates,
            caller=cleaned.caller,
            state=cleaned.state,
            params=cleaned.params,
            deadline=started + cleaned.budget,
            route=route,
        )
        call = _record(
            caller=cleaned.caller,
            state=cleaned.state,
            params=cleaned.params,
            strategy=cleaned.strategy,
            source=route.source,
            moment=route.moment,
            answers=answers,
            winner=winner,
            duration_ms=int((time.monotonic() - started) * 1000),
            tags=cleaned.tags,
        )
    except BaseException:
        limits.admission_settle(leases=route.finished, release=route.held)
        raise
    return call, winner


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
    campaign: str = "",
    publisher: str = "",
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
    that step instead of it running here: the API view runs it in the response's ``close()``,
    once the answer is out, so the live call does not wait for it. Whoever takes it must run
    it.
    """
    started = time.monotonic()
    moment = now or timezone.now()
    cleaned = route_input_clean(
        caller_id=caller_id,
        state_code=state_code,
        params=params,
        strategy=strategy,
        buyer_ids=buyer_ids,
        deadline_seconds=deadline_seconds,
        now=moment,
        campaign=campaign,
        publisher=publisher,
    )
    lease_ttl = cleaned.budget + LEASE_MARGIN_SECONDS
    route = Route(
        caller_id=cleaned.caller.ten_digit,
        moment=moment,
        lease_ttl=lease_ttl,
        held=[],
        source=source,
    )
    call, winner = _route_and_record(cleaned, route, started=started)
    settle = _settle_after_write(route, winner, call_id=call.pk, hold_seconds=lease_ttl)
    if defer is None:
        settle()
    else:
        defer(settle)
    return call


def _skip_row(
    buyer: Buyer, block: Block, *, caller: CallerId, state: str, params: dict[str, Any], source: str
) -> BidLog:
    """The log row of a buyer skipped before any request: the request it would have had."""
    target = buyer.as_bid_target()
    return BidLog(
        buyer=buyer,
        source=source,
        caller_id=caller.ten_digit,
        state_code=state,
        request=build_request(target, caller.formatted(target.caller_id_format), state, params),
        outcome=block.outcome,
        error=block.reason,
    )


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
    tags: Mapping[str, str],
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
        **tags,
    )
    rows: list[BidLog] = []
    for answer in answers:
        if answer.block is not None:
            rows.append(
                _skip_row(
                    answer.buyer,
                    answer.block,
                    caller=caller,
                    state=state,
                    params=params,
                    source=source,
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
