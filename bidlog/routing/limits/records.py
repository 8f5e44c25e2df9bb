"""What the limits take and answer: decisions, leases, reservations and admissions."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bidlog.routing.limits.keys import PENDING

# Refill arithmetic in floats may land a hair under a whole token.
EPSILON = 1e-9


@dataclass(frozen=True)
class RateDecision:
    """The answer of the token bucket: allowed or not, what is left, when the next token comes."""

    allowed: bool
    tokens: float
    capacity: float
    retry_after: float  # seconds until one token is available again (0 when one is)


def rate_decision(allowed: bool, tokens: float, capacity: float, refill: float) -> RateDecision:
    """A :class:`RateDecision` with the wait for the next whole token worked out."""
    retry_after = 0.0 if tokens >= 1 - EPSILON else (1 - tokens) / refill
    return RateDecision(allowed=allowed, tokens=tokens, capacity=capacity, retry_after=retry_after)


@dataclass(frozen=True)
class Lease:
    """One concurrency slot held for one request to one grid."""

    grid_id: str
    lease_id: str
    expires_at: float


@dataclass(frozen=True)
class CapCounter:
    """One cap to reserve against: its key, its limit and the database count to seed it."""

    key: str
    limit: int
    seed: int
    ttl_seconds: float  # outlives the period, so the key is never re-seeded mid-period


@dataclass(frozen=True)
class ReservationRequest:
    """What a route must reserve with a buyer besides the grid's slot and token.

    ``duplicate_key`` is empty for a buyer without a duplicate window. ``duplicate_expect`` is
    a ``won:`` value the caller has checked against the database and found stale (the call was
    marked not paid out), which may then be replaced; otherwise the key must be absent.
    """

    buyer_id: int
    caps: tuple[CapCounter, ...] = ()
    duplicate_key: str = ""
    duplicate_expect: str = ""


@dataclass(eq=False)
class Reservation:
    """Caps and a duplicate window held for one route with one buyer.

    ``state`` moves ``held`` -> ``released``, ``held`` -> ``confirmed`` (kept with its call
    written), or ``held`` -> ``kept`` (kept before any call, then back to ``released`` when
    it cannot be written). The moves are guarded here, so a counter is never given back twice
    whatever path an exception takes.
    """

    buyer_id: int
    token: str
    expires_at: float
    cap_keys: tuple[str, ...] = ()
    duplicate_key: str = ""
    state: str = "held"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pending_value(self) -> str:
        """What the duplicate key holds while this reservation's route runs."""
        return PENDING + self.token

    def move(self, allowed: tuple[str, ...], to: str) -> bool:
        """Go to state ``to`` if the state is one of ``allowed``; whether it moved."""
        with self.lock:
            if self.state not in allowed:
                return False
            self.state = to
            return True


@dataclass(frozen=True)
class AdmissionRequest:
    """One grid a call wants to ask, with the limits that grid has."""

    grid_id: str
    max_concurrency: int
    per_minute: int
    reserve: ReservationRequest | None = None


@dataclass(frozen=True)
class Admission:
    """Whether one grid may be asked now; when it may, the slot (and reservation) it holds.

    ``refused`` is ``""`` when admitted, else ``cooldown``, ``duplicate``, ``cap``,
    ``concurrency`` or ``rate_limit`` (checked in that order, and nothing is taken from a grid
    that is refused). ``holder`` is the value found in the duplicate key; ``cap_index`` and
    ``cap_total`` say which cap was full and at what count, routes in flight included.
    """

    grid_id: str
    lease: Lease | None = None
    reservation: Reservation | None = None
    refused: str = ""
    cooldown_until: datetime | None = None
    retry_after: float = 0.0
    holder: str = ""
    cap_index: int = -1
    cap_total: int = 0

    @property
    def admitted(self) -> bool:
        return self.lease is not None


@dataclass(frozen=True)
class AdmitItem:
    """One admission request as a store runs it: with its lease id, expiry and bucket shape."""

    request: AdmissionRequest
    lease_id: str
    expires_at: float
    capacity: float
    refill: float


# Why a store refused a grid, as the admission script numbers it (lua/admit.lua).
REFUSED_COOLDOWN = 1
REFUSED_CONCURRENCY = 2
REFUSED_RATE_LIMIT = 3
REFUSED_DUPLICATE = 4
REFUSED_CAP = 5


def admitted(item: AdmitItem) -> Admission:
    """The admission of a grid that got its slot, token and reservation."""
    lease = Lease(item.request.grid_id, item.lease_id, item.expires_at)
    return Admission(grid_id=item.request.grid_id, lease=lease, reservation=reservation_for(item))


def refused_admission(item: AdmitItem, status: int, detail: str) -> Admission:
    """The admission of a grid refused with ``status`` (see above) and the script's detail."""
    grid_id = item.request.grid_id
    if status == REFUSED_DUPLICATE:
        return Admission(grid_id=grid_id, refused="duplicate", holder=detail)
    if status == REFUSED_CAP:
        index, total = detail.split(":")
        return Admission(
            grid_id=grid_id, refused="cap", cap_index=int(index) - 1, cap_total=int(total)
        )
    if status == REFUSED_COOLDOWN:
        until = datetime.fromtimestamp(int(float(detail)) / 1000, tz=UTC)
        return Admission(grid_id=grid_id, refused="cooldown", cooldown_until=until)
    if status == REFUSED_CONCURRENCY:
        return Admission(grid_id=grid_id, refused="concurrency")
    tokens = float(detail)
    return Admission(
        grid_id=grid_id, refused="rate_limit", retry_after=max(1 - tokens, 0.0) / item.refill
    )


def reservation_for(item: AdmitItem) -> Reservation | None:
    """The reservation an admitted grid holds, or ``None`` when it reserves nothing."""
    reserve = item.request.reserve
    if reserve is None or not (reserve.caps or reserve.duplicate_key):
        return None
    return Reservation(
        buyer_id=reserve.buyer_id,
        # The lease id doubles as the reservation's token: one id per admitted grid.
        token=item.lease_id,
        expires_at=item.expires_at,
        cap_keys=tuple(cap.key for cap in reserve.caps),
        duplicate_key=reserve.duplicate_key,
    )


# How a store settles one reservation: op (keep, release, give_back), the reservation, the
# won value ("" unless a kept call is written) and how long that value holds, in ms.
SettleOp = tuple[str, Reservation, str, int]
