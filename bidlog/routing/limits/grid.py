"""A grid's own limits: its rate limit (token bucket), concurrency slots and cooldown.

Rate limit. The error-code reference allows ``rate_limit_per_minute`` sustained with a "burst
allowance: 2x rate for short periods" (SPEC §3: bursts up to 2x). We model that as a token
bucket holding two minutes of tokens (capacity = 2 x rate) that refills at rate/60 per second:
an idle grid can take twice its per-minute rate at once, then goes on at the refill rate, so
the long-run average never exceeds the rate.

Concurrency. Each request in flight holds a *lease* with its own expiry (a sorted set in
Redis, a dict elsewhere). Releasing happens in ``finally``; the expiry is only the safety net
for a process that dies mid-request, and it frees that one slot instead of resetting the
whole counter.

Cooldown. After a 3000 No Capacity the grid is skipped for ``capacity_cooldown_seconds``; a
plain cache entry with that timeout is enough (last writer wins, which is what we want).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.core.cache import cache

from bidlog.routing.limits.keys import (
    COOLDOWN_KEY,
    DEFAULT_LEASE_TTL_SECONDS,
    LEASE_KEY,
    RATE_KEY,
    bucket_shape,
)
from bidlog.routing.limits.records import Lease, RateDecision
from bidlog.routing.limits.store import store


def _bucket(
    grid_id: str, per_minute: int, *, cost: float, keep: float, now: float | None
) -> RateDecision:
    capacity, refill = bucket_shape(per_minute)
    return store().bucket(
        RATE_KEY.format(grid_id=grid_id),
        capacity=capacity,
        refill=refill,
        cost=cost,
        keep=keep,
        now=time.time() if now is None else now,
    )


def rate_limit_take(
    *, grid_id: str, per_minute: int, headroom: float = 0.0, now: float | None = None
) -> RateDecision:
    """Take one token from the grid's bucket if at least ``headroom`` tokens stay behind.

    Live routing passes no headroom. Health checks pass some (a share of the capacity), so
    monitoring backs off when a buyer is near its limit and never starves live traffic.
    """
    return _bucket(grid_id, per_minute, cost=1.0, keep=max(float(headroom), 0.0), now=now)


def rate_limit_peek(*, grid_id: str, per_minute: int, now: float | None = None) -> RateDecision:
    """Tell whether a token is available now, without taking it (eligibility pages)."""
    return _bucket(grid_id, per_minute, cost=0.0, keep=0.0, now=now)


def concurrency_acquire(
    *, grid_id: str, limit: int, ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS
) -> Lease | None:
    """Take one of the grid's ``limit`` slots, or return ``None`` when all are held."""
    now = time.time()
    lease = Lease(grid_id=grid_id, lease_id=uuid.uuid4().hex, expires_at=now + ttl_seconds)
    taken = store().lease_acquire(
        LEASE_KEY.format(grid_id=grid_id),
        lease_id=lease.lease_id,
        limit=max(int(limit), 1),
        now=now,
        expires_at=lease.expires_at,
    )
    return lease if taken else None


def concurrency_release(lease: Lease) -> None:
    """Give a slot back; releasing twice (or after expiry) is harmless."""
    store().lease_release(LEASE_KEY.format(grid_id=lease.grid_id), lease_id=lease.lease_id)


def concurrency_release_many(leases: Iterable[Lease]) -> None:
    """Give several slots back at once (one pipelined round trip on Redis)."""
    leases = list(leases)
    if leases:
        store().lease_release_many(leases)


@contextmanager
def concurrency_slot(
    *, grid_id: str, limit: int, ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS
) -> Iterator[Lease | None]:
    """Hold a slot for the duration of a ``with`` block (``None`` when the grid is full)."""
    lease = concurrency_acquire(grid_id=grid_id, limit=limit, ttl_seconds=ttl_seconds)
    try:
        yield lease
    finally:
        if lease is not None:
            concurrency_release(lease)


def concurrency_in_flight(*, grid_id: str) -> int:
    """How many unexpired slots of the grid are held right now, across all processes."""
    return store().lease_count(LEASE_KEY.format(grid_id=grid_id), now=time.time())


def cooldown_start(*, grid_id: str, seconds: int, now: float | None = None) -> None:
    """Skip the grid for ``seconds`` (after a 3000 No Capacity); 0 turns the cooldown off."""
    if seconds <= 0:
        return
    started = time.time() if now is None else now
    # Integer milliseconds: Django's Redis cache stores ints unpickled, so the admission
    # script can read the value inside Redis.
    until_ms = int((started + seconds) * 1000)
    cache.set(COOLDOWN_KEY.format(grid_id=grid_id), until_ms, timeout=seconds)


def cooldown_until(*, grid_id: str, now: float | None = None) -> datetime | None:
    """When the grid's cooldown ends (aware UTC), or ``None`` when it is not cooling down."""
    until_ms = cache.get(COOLDOWN_KEY.format(grid_id=grid_id))
    current = time.time() if now is None else now
    if until_ms is None or int(until_ms) / 1000 <= current:
        return None
    return datetime.fromtimestamp(int(until_ms) / 1000, tz=UTC)


def limits_reset(*, grid_id: str) -> None:
    """Forget the grid's bucket, slots and cooldown (tests, or an operator clearing a block)."""
    cache.delete_many([key.format(grid_id=grid_id) for key in (RATE_KEY, LEASE_KEY, COOLDOWN_KEY)])
