"""Admission of a call's grids in one step, with the caps and duplicate window it reserves.

Daily and monthly caps and the duplicate window are decided by the database, but a database
read cannot see the routes still in flight, so concurrent routes could overshoot a cap or sell
one caller twice. Admission therefore also *reserves*, in the same atomic step as the slot and
the token:

- a cap: per buyer, a committed count per local day and month (seeded add-if-absent from the
  database count, so two processes seeding at once agree) plus a set of in-flight reservations
  with expiries. A reservation fits when committed + in flight stays under every cap. The
  winner *keeps* it (moved from in flight to committed); every other route gives it back.
  An in-flight entry of a process that dies expires with its lease, so nothing leaks.
- a duplicate window: one key per (buyer, caller), added only if absent, holding ``pending``
  while the route runs and ``won:<call id>`` for a short hold after the winner's call is
  written, which covers routes that read the database just before that write. After the hold
  the database is the only truth again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence

from bidlog.routing.limits.keys import (
    CAP_INFLIGHT_KEY,
    DEFAULT_LEASE_TTL_SECONDS,
    PENDING,
    WON,
    bucket_shape,
    duplicate_key,
)
from bidlog.routing.limits.records import (
    Admission,
    AdmissionRequest,
    AdmitItem,
    Lease,
    Reservation,
    SettleOp,
)
from bidlog.routing.limits.store import store


def admit(
    *,
    requests: Sequence[AdmissionRequest],
    ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS,
    now: float | None = None,
) -> list[Admission]:
    """For each grid: not cooling down, a concurrency slot free and a rate token left.

    Admitted grids come back holding a slot and minus one token; give the slots back with
    :func:`concurrency_release_many`. On Redis the whole batch is one script, so an auction
    over ten buyers costs one round trip instead of thirty.
    """
    if not requests:
        return []
    current = time.time() if now is None else now
    items = []
    for request in requests:
        capacity, refill = bucket_shape(request.per_minute)
        items.append(
            AdmitItem(
                request=request,
                lease_id=uuid.uuid4().hex,
                expires_at=current + ttl_seconds,
                capacity=capacity,
                refill=refill,
            )
        )
    return store().admit(items, now=current)


def admission_settle(
    *,
    leases: Iterable[Lease] = (),
    release: Iterable[Reservation] = (),
    keep: Iterable[Reservation] = (),
    call_id: int | None = None,
    hold_seconds: float = 0.0,
) -> None:
    """Give slots back, give reservations back and keep the winner's, in one round trip.

    ``release`` accepts reservations in any state: a held one leaves the in-flight set, a kept
    one (the winner whose call could not be written) takes its count back, a released or
    confirmed one is left alone. Every step is safe to run in a ``finally``.

    With ``call_id`` (the winner's call is written), a kept reservation is confirmed in the
    same round trip: its duplicate key names the call for ``hold_seconds``. The hold only has
    to outlast a route that read the database just before the call was written (at most one
    deadline); later routes find the call in the database.
    """
    won = f"{WON}{call_id}" if call_id is not None else ""
    hold_ms = max(int(hold_seconds * 1000), 1)
    ops: list[SettleOp] = []
    for reservation in keep:
        if reservation.move(("held",), "confirmed" if won else "kept"):
            ops.append(("keep", reservation, won, hold_ms))
    for reservation in release:
        if reservation.move(("held",), "released"):
            ops.append(("release", reservation, "", 0))
        elif reservation.move(("kept",), "released"):
            ops.append(("give_back", reservation, "", 0))
    leases = list(leases)
    if leases or ops:
        store().settle(leases, ops)


def duplicate_forget(*, buyer_id: int, caller_id: str, call_id: int) -> None:
    """Drop the hold a call left on its caller (the call was marked not paid out).

    Only that call's own ``won:`` value is removed: a route in flight for the same caller
    keeps its ``pending`` value.
    """
    store().duplicate_swap(
        duplicate_key(buyer_id=buyer_id, caller_id=caller_id),
        expect=f"{WON}{call_id}",
        value="",
        ttl_seconds=0,
    )


def duplicate_holder_call(holder: str) -> int | None:
    """The call id in a ``won:`` value, or ``None`` for a route still in flight."""
    if holder.startswith(WON):
        try:
            return int(holder[len(WON) :])
        except ValueError:
            return None
    return None


def duplicate_holder(*, buyer_id: int, caller_id: str) -> str:
    """What holds the caller with the buyer right now: ``pending:...`` (a route selling it),
    ``won:<call id>`` (a call just written) or ``""``."""
    return store().duplicate_value(duplicate_key(buyer_id=buyer_id, caller_id=caller_id))


def duplicate_in_flight(holder: str) -> bool:
    """Whether a :func:`duplicate_holder` value is a route still selling the caller."""
    return holder.startswith(PENDING)


def cap_in_flight(*, buyer_id: int, now: float | None = None) -> int:
    """Routes in flight holding a place under the buyer's caps, across all processes."""
    key = CAP_INFLIGHT_KEY.format(buyer_id=buyer_id)
    return store().in_flight_count(key, now=time.time() if now is None else now)


def cap_reserved(*, buyer_id: int, key: str, now: float | None = None) -> int:
    """Committed count plus routes in flight for one cap key (tests and the eligibility page)."""
    return store().cap_total(buyer_id, key, now=time.time() if now is None else now)
