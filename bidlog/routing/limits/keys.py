"""The limits' cache keys, their value markers and the shape of a grid's token bucket."""

from __future__ import annotations

# A crashed process frees its slot after this long; every live request ends well before it
# (the call deadline is at most 10 s and the client never retries past it).
DEFAULT_LEASE_TTL_SECONDS = 60.0

RATE_KEY = "limits:rate:{grid_id}"
LEASE_KEY = "limits:leases:{grid_id}"
COOLDOWN_KEY = "limits:cooldown:{grid_id}"
# Caps and duplicate windows belong to a buyer (its calls), not to its grid.
CAP_KEY = "limits:cap:{buyer_id}:{period}"
CAP_INFLIGHT_KEY = "limits:cap:{buyer_id}:inflight"
DUPLICATE_KEY = "limits:dup:{buyer_id}:{caller_id}"
# What a duplicate key holds: a route still selling the caller, or the call that won it.
PENDING = "pending:"
WON = "won:"

# The Bid API's burst allowance: twice the per-minute rate for short periods.
BURST_FACTOR = 2


def bucket_shape(per_minute: int) -> tuple[float, float]:
    """Capacity and refill (tokens per second) of a grid's bucket: a burst of
    ``BURST_FACTOR`` x the per-minute rate, refilled at that rate."""
    per_minute = max(int(per_minute), 1)
    return float(per_minute * BURST_FACTOR), per_minute / 60.0


def cap_key(*, buyer_id: int, period: str) -> str:
    """The committed-count key of one buyer's cap period (``d2026-06-10``, ``m2026-06``)."""
    return CAP_KEY.format(buyer_id=buyer_id, period=period)


def duplicate_key(*, buyer_id: int, caller_id: str) -> str:
    """The key that holds one caller's duplicate window with one buyer while it is racy."""
    return DUPLICATE_KEY.format(buyer_id=buyer_id, caller_id=caller_id)


def buyer_of_duplicate_key(key: str) -> int:
    """The buyer id inside a :func:`duplicate_key`."""
    return int(key.split(":")[2])
