"""Local protection shared by every process: per-grid rate limit, concurrency cap, cooldown,
and the caps and duplicate window a route reserves.

The state lives in Django's cache so that every web process and worker of a fleet sees the
same numbers (SPEC §4). Two stores do the arithmetic: Redis, where each check-and-update is
one Lua script (:mod:`.redis_store`, scripts in ``lua/``), and any other cache under locks
(:mod:`.local_store`). :mod:`.grid` holds a grid's own limits, :mod:`.admission` the one-step
admission of a call's grids and the reservations it takes. Callers import from here.
"""

from bidlog.routing.limits.admission import (
    admission_settle,
    admit,
    cap_in_flight,
    cap_reserved,
    duplicate_forget,
    duplicate_holder,
    duplicate_holder_call,
    duplicate_in_flight,
)
from bidlog.routing.limits.grid import (
    concurrency_acquire,
    concurrency_in_flight,
    concurrency_release,
    concurrency_release_many,
    concurrency_slot,
    cooldown_start,
    cooldown_until,
    limits_reset,
    rate_limit_peek,
    rate_limit_take,
)
from bidlog.routing.limits.keys import (
    BURST_FACTOR,
    DEFAULT_LEASE_TTL_SECONDS,
    bucket_shape,
    cap_key,
    duplicate_key,
)
from bidlog.routing.limits.records import (
    Admission,
    AdmissionRequest,
    CapCounter,
    Lease,
    RateDecision,
    Reservation,
    ReservationRequest,
)
from bidlog.routing.limits.redis_store import redis_outage
from bidlog.routing.limits.store import limits_store_kind

__all__ = [
    "BURST_FACTOR",
    "DEFAULT_LEASE_TTL_SECONDS",
    "Admission",
    "AdmissionRequest",
    "CapCounter",
    "Lease",
    "RateDecision",
    "Reservation",
    "ReservationRequest",
    "admission_settle",
    "admit",
    "bucket_shape",
    "cap_in_flight",
    "cap_key",
    "cap_reserved",
    "concurrency_acquire",
    "concurrency_in_flight",
    "concurrency_release",
    "concurrency_release_many",
    "concurrency_slot",
    "cooldown_start",
    "cooldown_until",
    "duplicate_forget",
    "duplicate_holder",
    "duplicate_holder_call",
    "duplicate_in_flight",
    "duplicate_key",
    "limits_reset",
    "limits_store_kind",
    "rate_limit_peek",
    "rate_limit_take",
    "redis_outage",
]
