"""Writes of the bid log: record every attempt the client made, and every local skip.

Sending is :mod:`bidlog.routing.send`'s (within the limits); each sender records what came
back with the functions here. A route's call and all its rows are written together by
:mod:`bidlog.routing.route_rows`.
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, cast

from django.db import models, transaction

from bidlog.choices import Outcome
from bidlog.models import BidLog, Call
from bidlog.routing import limits
from bidlog.routing.errors import RouteError
from buyers.models import Buyer
from callgrid_portal.bidapi.client import BidAttempt, BidResult
from callgrid_portal.bidapi.phone import InvalidCallerId, normalize_caller_id

# Outcomes a local decision may record; ``pending`` belongs to the queued test bid instead.
SKIP_OUTCOMES = frozenset(o for o in Outcome.values if o.startswith("skipped_"))

_CENT = Decimal("0.01")
# BidLog.bid_amount is DECIMAL(10, 2): anything at or above this cannot be stored.
_MAX_AMOUNT = Decimal("100000000")


@functools.cache
def _field_max(name: str) -> int:
    # Only ever asked about BidLog's CharFields, which all have a max_length.
    field = cast("models.CharField[Any, Any]", BidLog._meta.get_field(name))
    return cast(int, field.max_length)


def _clip(value: str | None, name: str) -> str:
    """Cut ``value`` to the column's length: a malformed answer must not lose the whole row."""
    return (value or "")[: _field_max(name)]


def _storable_amount(amount: Decimal | None) -> tuple[Decimal | None, str]:
    """Round a bid amount to cents, or drop it with a note when the column cannot hold it."""
    if amount is None:
        return None, ""
    try:
        rounded = Decimal(amount).quantize(_CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, TypeError, ValueError):
        return None, f"bid amount {amount!r} is not a number"
    if not rounded.is_finite() or rounded < 0 or rounded >= _MAX_AMOUNT:
        return None, f"bid amount {amount} is out of range and was not stored"
    return rounded, ""


def _normalized_or_raw(caller_id: str) -> str:
    """The 10 digits when the caller ID is valid, else what was given (cut to fit)."""
    try:
        return normalize_caller_id(caller_id).digits
    except InvalidCallerId:
        return _clip(str(caller_id).strip(), "caller_id")


# The BidLog fields a sent bid fills in (everything but who, where from and bookkeeping):
# what bid_result_values returns for a test bid's pending row.
ATTEMPT_FIELDS = (
    "created_at",
    "caller_id",
    "state_code",
    "request",
    "http_status",
    "code",
    "message",
    "bid_amount",
    "destination",
    "response_caller_id",
    "duration_ms",
    "attempt",
    "outcome",
    "error",
    "raw_response",
    "trace",
)


def _request_values(
    *, buyer: Buyer, attempt: BidAttempt, source: str, call: Call | None
) -> dict[str, Any]:
    """A bid row's columns known once the bid is sent: who was asked, when, and with what."""
    return {
        "id": None,
        "buyer_id": buyer.pk,
        "call_id": call.pk if call is not None else None,
        "source": source,
        "created_at": attempt.started_at,
        "caller_id": _normalized_or_raw(attempt.caller_id) if attempt.caller_id else "",
        "state_code": _clip(attempt.state_code, "state_code"),
        "request": attempt.request or {},
        "external_id": None,
        "claimed_at": None,
        "trace": [],
    }


def bid_answer_values(attempt: BidAttempt) -> dict[str, Any]:
    """A bid row's columns that the buyer's answer (or its absence) decides."""
    amount, amount_note = _storable_amount(attempt.bid_amount)
    return {
        "http_status": attempt.http_status,
        "code": attempt.code,
        "message": attempt.message or "",
        "bid_amount": amount,
        "destination": _clip(attempt.destination, "destination"),
        "response_caller_id": _clip(attempt.response_caller_id, "response_caller_id"),
        "duration_ms": max(0, int(attempt.duration_ms)),
        "attempt": attempt.attempt,
        "outcome": str(Outcome(attempt.outcome)),
        "error": "; ".join(part for part in (attempt.error, amount_note) if part),
        "raw_response": attempt.raw_response or "",
    }


def bid_from_attempt(
    *, buyer: Buyer, attempt: BidAttempt, source: str, call: Call | None
) -> BidLog:
    """An unsaved BidLog row holding ``attempt``: its :data:`ATTEMPT_FIELDS` and the owner.

    The row is built from its values in field order (the way ``Model.from_db`` builds one),
    with the buyer and call cached on it so that reading them costs no query. It runs once
    per answer on the live path (see docs/PERFORMANCE.md).
    """
    values = {
        **_request_values(buyer=buyer, attempt=attempt, source=source, call=call),
        **bid_answer_values(attempt),
    }
    # A field missing above fails here (KeyError) rather than being left empty.
    # django-stubs' model __init__ check takes a *args unpacking for the single "id" argument.
    row = BidLog(*map(values.__getitem__, _bid_attnames()))  # type: ignore[misc]
    BidLog.buyer.field.set_cached_value(row, buyer)
    if call is not None:
        BidLog.call.field.set_cached_value(row, call)
    return row


# A lost worker's send in a row's trace: what we know of it, and what we do not.
LOST_SEND_NOTE = (
    "the worker sending this bid was lost before it recorded an answer; "
    "the buyer may have received that bid"
)


def bid_trace_entry(attempt: BidAttempt, *, send: int = 1) -> dict[str, Any]:
    """One attempt as an entry of :attr:`BidLog.trace` (JSON: plain strings and numbers).

    ``send`` counts how many times the whole bid went out: above 1 only when a worker was lost
    mid-send and the bid was sent again (see :func:`bid_trace_lost_send`).
    """
    amount, amount_note = _storable_amount(attempt.bid_amount)
    return {
        "send": send,
        "attempt": attempt.attempt,
        "at": attempt.started_at.isoformat(),
        "outcome": str(Outcome(attempt.outcome)),
        "code": attempt.code,
        "http_status": attempt.http_status,
        "duration_ms": max(0, int(attempt.duration_ms)),
        "bid_amount": str(amount) if amount is not None else None,
        "error": "; ".join(part for part in (attempt.error, amount_note) if part),
        "lost": False,
    }


def bid_trace_lost_send(*, send: int, claimed_at: datetime) -> dict[str, Any]:
    """The trace entry of a send whose worker died before it wrote an answer down.

    Its answer is unknown (no outcome, no code): the worker may have been killed before the
    request left, or while the buyer was answering.
    """
    return {
        "send": send,
        "attempt": None,
        "at": claimed_at.isoformat(),
        "outcome": "",
        "code": None,
        "http_status": None,
        "duration_ms": None,
        "bid_amount": None,
        "error": LOST_SEND_NOTE,
        "lost": True,
    }


def bid_sends_lost(trace: list[dict[str, Any]]) -> int:
    """How many sends of a bid a lost worker left without an answer, from its ``trace``."""
    return sum(1 for entry in trace if entry.get("lost"))


def bid_result_values(
    *, result: BidResult, earlier: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The :data:`ATTEMPT_FIELDS` and ``trace`` of one row that stands for a whole bid.

    The answer fields are the final attempt's, ``created_at`` is when the first attempt
    started, and ``trace`` is ``earlier`` (sends a lost worker made) followed by every attempt
    of ``result``. A bid sent again after a lost worker says so in ``error``.
    """
    earlier = list(earlier or [])
    send = bid_sends_lost(earlier) + 1
    final = result.final
    values = {
        "created_at": result.attempts[0].started_at,
        "caller_id": _normalized_or_raw(final.caller_id) if final.caller_id else "",
        "state_code": _clip(final.state_code, "state_code"),
        "request": final.request or {},
        **bid_answer_values(final),
        "trace": [*earlier, *(bid_trace_entry(a, send=send) for a in result.attempts)],
    }
    if send > 1:
        note = f"sent again after the worker was lost (send {send}; see the trace)"
        values["error"] = "; ".join(part for part in (note, values["error"]) if part)
    return values


@transaction.atomic
def bid_result_record(
    *, buyer: Buyer, result: BidResult, source: str, call: Call | None = None
) -> BidLog:
    """Write one row for a whole bid (a health check): the final answer and every attempt.

    See :func:`bid_result_values` for what the row holds.
    """
    row = bid_from_attempt(buyer=buyer, attempt=result.final, source=source, call=call)
    for name, value in bid_result_values(result=result).items():
        setattr(row, name, value)
    row.save(force_insert=True)
    return row


@functools.cache
def _bid_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field in BidLog._meta.concrete_fields)


@transaction.atomic
def bid_attempts_record(
    *, buyer: Buyer, result: BidResult, source: str, call: Call | None = None
) -> list[BidLog]:
    """Write one BidLog row per attempt of ``result``, in the order they were made.

    Every field the client reported is kept, including the error detail and the raw body of
    a non-JSON answer, so a failed bid can be explained later without re-sending it. A bid
    amount that cannot fit the column is dropped and the reason appended to ``error``.
    """
    bids = [
        bid_from_attempt(buyer=buyer, attempt=attempt, source=source, call=call)
        for attempt in result.attempts
    ]
    return BidLog.objects.bulk_create(bids)


@transaction.atomic
def bid_skip_record(
    *,
    buyer: Buyer,
    outcome: str,
    source: str,
    caller_id: str,
    state_code: str = "",
    reason: str,
    call: Call | None = None,
    request: dict[str, Any] | None = None,
) -> BidLog:
    """Record a local decision not to ask ``buyer`` (a ``skipped_*`` outcome); nothing is sent.

    ``reason`` goes to ``error`` in plain words ("rate limit of 100/min reached"), so the log
    says why a buyer was passed over just as it says why a buyer declined.
    """
    if outcome not in SKIP_OUTCOMES:
        raise ValueError(f"{outcome!r} is not a skip outcome ({', '.join(sorted(SKIP_OUTCOMES))})")
    return BidLog.objects.create(
        buyer=buyer,
        call=call,
        source=source,
        caller_id=_normalized_or_raw(caller_id),
        state_code=_clip(state_code, "state_code"),
        request=request or {},
        outcome=outcome,
        error=reason,
    )


@transaction.atomic
def call_paid_out_set(*, call: Call, paid_out: bool) -> Call:
    """Mark a routed call paid out or not; ``False`` frees the caller for that buyer again.

    Only a routed call has a buyer whose duplicate window it could count against, so an
    unrouted call refuses the change (a :class:`RouteError` on ``paid_out``).
    """
    if not call.routed:
        raise RouteError(
            code=4000, message="Only a routed call can be marked paid out.", field="paid_out"
        )
    Call.objects.filter(pk=call.pk).update(paid_out=paid_out)
    call.paid_out = paid_out
    if not paid_out and call.winner_id is not None:
        # The route that sold the call may still hold the caller in the shared cache for a
        # short while (see bidlog.routing.limits); drop it so the very next route may sell again.
        limits.duplicate_forget(buyer_id=call.winner_id, caller_id=call.caller_id, call_id=call.pk)
    return call
