"""Local protection shared by every process: per-grid rate limit, concurrency cap and cooldown.

The state lives in Django's cache so that every web process and worker of a fleet sees the
same numbers (SPEC §4). Two stores do the arithmetic:

- **Redis** (``REDIS_URL``/``CACHE_URL``): each check-and-update is one Lua script, which
  Redis runs atomically, so two gunicorn processes can never both take the last token.
- **Any other cache** (the file cache of the embedded default, local memory in tests): the
  read-modify-write runs under an ``fcntl`` file lock (plus a thread lock), because
  ``FileBasedCache.incr`` is a plain get-then-set and would lose updates between processes.

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

Reservations. Daily and monthly caps and the duplicate window are decided by the database,
but a database read cannot see the routes still in flight, so concurrent routes could overshoot
a cap or sell one caller twice. Admission therefore also *reserves*, in the same atomic step as
the slot and the token:

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

import fcntl
import functools
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import NoScriptError

from callgrid_portal.outage import REDIS_ERRORS, Outage

# A crashed process frees its slot after this long; every live request ends well before it
# (the call deadline is at most 10 s and the client never retries past it).
DEFAULT_LEASE_TTL_SECONDS = 60.0

_RATE_KEY = "limits:rate:{grid_id}"
_LEASE_KEY = "limits:leases:{grid_id}"
_COOLDOWN_KEY = "limits:cooldown:{grid_id}"
# Caps and duplicate windows belong to a buyer (its calls), not to its grid.
_CAP_KEY = "limits:cap:{buyer_id}:{period}"
_CAP_INFLIGHT_KEY = "limits:cap:{buyer_id}:inflight"
_DUPLICATE_KEY = "limits:dup:{buyer_id}:{caller_id}"
_PENDING = "pending:"
_WON = "won:"


@dataclass(frozen=True)
class RateDecision:
    """The answer of the token bucket: allowed or not, what is left, when the next token comes."""

    allowed: bool
    tokens: float
    capacity: float
    retry_after: float  # seconds until one token is available again (0 when one is)


@dataclass(frozen=True)
class Lease:
    """One concurrency slot held for one request to one grid."""

    grid_id: str
    lease_id: str
    expires_at: float


# The Bid API's burst allowance: twice the per-minute rate for short periods.
BURST_FACTOR = 2


def bucket_shape(per_minute: int) -> tuple[float, float]:
    """Capacity and refill (tokens per second) of a grid's bucket: a burst of
    ``BURST_FACTOR`` x the per-minute rate, refilled at that rate."""
    per_minute = max(int(per_minute), 1)
    return float(per_minute * BURST_FACTOR), per_minute / 60.0


# --- public operations -------------------------------------------------------------------


def rate_limit_take(
    *, grid_id: str, per_minute: int, headroom: float = 0.0, now: float | None = None
) -> RateDecision:
    """Take one token from the grid's bucket if at least ``headroom`` tokens stay behind.

    Live routing passes no headroom. Health checks pass some (a share of the capacity), so
    monitoring backs off when a buyer is near its limit and never starves live traffic.
    """
    capacity, refill = bucket_shape(per_minute)
    return _store().bucket(
        _RATE_KEY.format(grid_id=grid_id),
        capacity=capacity,
        refill=refill,
        cost=1.0,
        keep=max(float(headroom), 0.0),
        now=time.time() if now is None else now,
    )


def rate_limit_peek(*, grid_id: str, per_minute: int, now: float | None = None) -> RateDecision:
    """Tell whether a token is available now, without taking it (eligibility pages)."""
    capacity, refill = bucket_shape(per_minute)
    return _store().bucket(
        _RATE_KEY.format(grid_id=grid_id),
        capacity=capacity,
        refill=refill,
        cost=0.0,
        keep=0.0,
        now=time.time() if now is None else now,
    )


def concurrency_acquire(
    *, grid_id: str, limit: int, ttl_seconds: float = DEFAULT_LEASE_TTL_SECONDS
) -> Lease | None:
    """Take one of the grid's ``limit`` slots, or return ``None`` when all are held."""
    now = time.time()
    lease = Lease(grid_id=grid_id, lease_id=uuid.uuid4().hex, expires_at=now + ttl_seconds)
    taken = _store().lease_acquire(
        _LEASE_KEY.format(grid_id=grid_id),
        lease_id=lease.lease_id,
        limit=max(int(limit), 1),
        now=now,
        expires_at=lease.expires_at,
    )
    return lease if taken else None


def concurrency_release(lease: Lease) -> None:
    """Give a slot back; releasing twice (or after expiry) is harmless."""
    _store().lease_release(_LEASE_KEY.format(grid_id=lease.grid_id), lease_id=lease.lease_id)


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
    return _store().lease_count(_LEASE_KEY.format(grid_id=grid_id), now=time.time())


def cooldown_start(*, grid_id: str, seconds: int, now: float | None = None) -> None:
    """Skip the grid for ``seconds`` (after a 3000 No Capacity); 0 turns the cooldown off."""
    if seconds <= 0:
        return
    started = time.time() if now is None else now
    # Integer milliseconds: Django's Redis cache stores ints unpickled, so the admission
    # script can read the value inside Redis.
    until_ms = int((started + seconds) * 1000)
    cache.set(_COOLDOWN_KEY.format(grid_id=grid_id), until_ms, timeout=seconds)


def cooldown_until(*, grid_id: str, now: float | None = None) -> datetime | None:
    """When the grid's cooldown ends (aware UTC), or ``None`` when it is not cooling down."""
    until_ms = cache.get(_COOLDOWN_KEY.format(grid_id=grid_id))
    current = time.time() if now is None else now
    if until_ms is None or int(until_ms) / 1000 <= current:
        return None
    return datetime.fromtimestamp(int(until_ms) / 1000, tz=UTC)


def cap_key(*, buyer_id: int, period: str) -> str:
    """The committed-count key of one buyer's cap period (``d2026-06-10``, ``m2026-06``)."""
    return _CAP_KEY.format(buyer_id=buyer_id, period=period)


def duplicate_key(*, buyer_id: int, caller_id: str) -> str:
    """The key that holds one caller's duplicate window with one buyer while it is racy."""
    return _DUPLICATE_KEY.format(buyer_id=buyer_id, caller_id=caller_id)


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
        return _PENDING + self.token

    def _move(self, allowed: tuple[str, ...], to: str) -> bool:
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
    items = [
        _AdmitItem(
            request=request,
            lease_id=uuid.uuid4().hex,
            expires_at=current + ttl_seconds,
            capacity=bucket_shape(request.per_minute)[0],
            refill=bucket_shape(request.per_minute)[1],
        )
        for request in requests
    ]
    return _store().admit(items, now=current)


def _reservation_for(item: _AdmitItem) -> Reservation | None:
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


def concurrency_release_many(leases: Iterable[Lease]) -> None:
    """Give several slots back at once (one pipelined round trip on Redis)."""
    leases = list(leases)
    if leases:
        _store().lease_release_many(leases)


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
    won = f"{_WON}{call_id}" if call_id is not None else ""
    ops: list[tuple[str, Reservation, str, int]] = []
    for reservation in keep:
        if reservation._move(("held",), "confirmed" if won else "kept"):
            ops.append(("keep", reservation, won, _hold_ms(hold_seconds)))
    for reservation in release:
        if reservation._move(("held",), "released"):
            ops.append(("release", reservation, "", 0))
        elif reservation._move(("kept",), "released"):
            ops.append(("give_back", reservation, "", 0))
    leases = list(leases)
    if leases or ops:
        _store().settle(leases, ops)


def _hold_ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def duplicate_forget(*, buyer_id: int, caller_id: str, call_id: int) -> None:
    """Drop the hold a call left on its caller (the call was marked not paid out).

    Only that call's own ``won:`` value is removed: a route in flight for the same caller
    keeps its ``pending`` value.
    """
    _store().duplicate_swap(
        duplicate_key(buyer_id=buyer_id, caller_id=caller_id),
        expect=f"{_WON}{call_id}",
        value="",
        ttl_seconds=0,
    )


def duplicate_holder_call(holder: str) -> int | None:
    """The call id in a ``won:`` value, or ``None`` for a route still in flight."""
    if holder.startswith(_WON):
        try:
            return int(holder[len(_WON) :])
        except ValueError:
            return None
    return None


def cap_in_flight(*, buyer_id: int, now: float | None = None) -> int:
    """Routes in flight holding a place under the buyer's caps, across all processes."""
    key = _CAP_INFLIGHT_KEY.format(buyer_id=buyer_id)
    return _store().in_flight_count(key, now=time.time() if now is None else now)


def duplicate_holder(*, buyer_id: int, caller_id: str) -> str:
    """What holds the caller with the buyer right now: ``pending:...`` (a route selling it),
    ``won:<call id>`` (a call just written) or ``""``."""
    return _store().duplicate_value(duplicate_key(buyer_id=buyer_id, caller_id=caller_id))


def duplicate_in_flight(holder: str) -> bool:
    """Whether a :func:`duplicate_holder` value is a route still selling the caller."""
    return holder.startswith(_PENDING)


def cap_reserved(*, buyer_id: int, key: str, now: float | None = None) -> int:
    """Committed count plus routes in flight for one cap key (tests and the eligibility page)."""
    return _store().cap_total(buyer_id, key, now=time.time() if now is None else now)


def limits_reset(*, grid_id: str) -> None:
    """Forget the grid's bucket, slots and cooldown (tests, or an operator clearing a block)."""
    cache.delete_many(
        [key.format(grid_id=grid_id) for key in (_RATE_KEY, _LEASE_KEY, _COOLDOWN_KEY)]
    )


# --- stores ------------------------------------------------------------------------------


def _store() -> _RedisStore | _LockedCacheStore:
    # Chosen per call, not at import: tests switch CACHES with override_settings.
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _RedisStore(backend)
    return _LockedCacheStore(backend)


# --- while Redis is away --------------------------------------------------------------------
# Each operation of the Redis store that cannot reach Redis runs on a process-local store
# instead (the same arithmetic over local memory, under thread locks). It is weaker: each
# process counts only its own requests, so a fleet of N processes may let up to N times a
# grid's limits through, and reservations taken in Redis before the outage are not seen. For
# REDIS_RETRY_SECONDS after a failure every operation goes local without trying Redis
# (a Redis that hangs would otherwise cost each request a timeout); then the next operation
# tries Redis again, and the first that works brings every process's limits back to it.

redis_outage = Outage(
    "Redis for the shared limits",
    effect="per-grid limits fall back to a process-local limiter (weaker: per process)",
)
_local_lock = threading.Lock()
_local: _LockedCacheStore | None = None


def _local_store() -> _LockedCacheStore:
    """The process-local limiter's store, made on first use."""
    global _local
    if _local is None:
        with _local_lock:
            if _local is None:
                options = {"OPTIONS": {"MAX_ENTRIES": 100_000}}
                backend = LocMemCache("callgrid-limits-local", options)
                _local = _LockedCacheStore(backend, lock=_thread_lock)
    return _local


def limits_store_kind() -> str:
    """Where the limits live right now: ``redis``, ``local`` (Redis away) or ``cache``."""
    if not isinstance(caches["default"], RedisCache):
        return "cache"
    return "local" if redis_outage.down else "redis"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _or_local(
    method: Callable[Concatenate[_RedisStore, _P], _R],
) -> Callable[Concatenate[_RedisStore, _P], _R]:
    """Run a Redis store operation, or the same operation on the local store when Redis
    cannot be reached (see above)."""
    name = method.__name__

    @functools.wraps(method)
    def guarded(self: _RedisStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if redis_outage.resting(settings.REDIS_RETRY_SECONDS):
            return cast(_R, getattr(_local_store(), name)(*args, **kwargs))
        try:
            result = method(self, *args, **kwargs)
        except REDIS_ERRORS as exc:
            redis_outage.failed(exc)
            return cast(_R, getattr(_local_store(), name)(*args, **kwargs))
        redis_outage.recovered()
        return result

    return guarded


# Lua runs atomically inside Redis: no other client sees the state half-updated.

# The token bucket, shared by the single-take script and the auction's admission script: read
# it refilled up to ``now``, and write it back with an expiry of one full refill.
_BUCKET_FUNCTIONS_LUA = """
local function bucket_read(key, capacity, refill, now)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
  end
  if now > ts then
    tokens = math.min(capacity, tokens + (now - ts) * refill)
    ts = now
  end
  return tokens, ts
end

local function bucket_write(key, tokens, ts, capacity, refill)
  local tokens_text = string.format('%.17g', tokens)
  redis.call('HSET', key, 'tokens', tokens_text, 'ts', string.format('%.17g', ts))
  redis.call('PEXPIRE', key, math.ceil(capacity / refill * 1000) + 1000)
  return tokens_text
end
"""

_BUCKET_LUA = (
    _BUCKET_FUNCTIONS_LUA
    + """
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local keep = tonumber(ARGV[5])
local tokens, ts = bucket_read(KEYS[1], capacity, refill, now)
local allowed = 0
if cost > 0 and tokens - cost >= keep - 1e-9 then
  tokens = tokens - cost
  allowed = 1
elseif cost == 0 and tokens >= 1 - 1e-9 then
  allowed = 1
end
return {allowed, bucket_write(KEYS[1], tokens, ts, capacity, refill)}
"""
)

_LEASE_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""

_LEASE_COUNT_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


@dataclass(frozen=True)
class _AdmitItem:
    request: AdmissionRequest
    lease_id: str
    expires_at: float
    capacity: float
    refill: float


# One script for a whole auction: per grid, cooldown, duplicate window, caps, a slot, then a
# token. A refused grid keeps its slots, tokens and reservations unchanged. Replies
# {status, detail} per grid: 0 admitted, 1 cooling down (detail: until, ms), 2 no slot free,
# 3 no token (detail: tokens left), 4 duplicate key held (detail: its value), 5 a cap is full
# (detail: "<cap number>:<total>").
# Per grid, KEYS: cooldown, leases, bucket, [duplicate], [in-flight set, cap counters...];
# ARGV: lease id, limit, capacity, refill, expiry, lease ttl ms, has duplicate, duplicate
# value, duplicate expected, cap count, then per cap: limit, seed, ttl ms.
_ADMIT_LUA = (
    _BUCKET_FUNCTIONS_LUA
    + """
local now = tonumber(ARGV[1])
local out = {}
local k = 1
local a = 2
while a <= #ARGV do
  local cooldown_key, lease_key, bucket_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local lease_id = ARGV[a]
  local limit = tonumber(ARGV[a + 1])
  local capacity = tonumber(ARGV[a + 2])
  local refill = tonumber(ARGV[a + 3])
  local expires_at = ARGV[a + 4]
  local ttl_ms = tonumber(ARGV[a + 5])
  local has_dup = ARGV[a + 6] == '1'
  local dup_value = ARGV[a + 7]
  local dup_expect = ARGV[a + 8]
  local n_caps = tonumber(ARGV[a + 9])
  a = a + 10
  local dup_key = nil
  if has_dup then
    dup_key = KEYS[k]
    k = k + 1
  end
  local inflight_key = nil
  local caps = {}
  if n_caps > 0 then
    inflight_key = KEYS[k]
    k = k + 1
    for c = 1, n_caps do
      caps[c] = {KEYS[k], tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2]}
      k = k + 1
      a = a + 3
    end
  end
  local status = 0
  local detail = '0'
  local cooling = redis.call('GET', cooldown_key)
  if cooling and tonumber(cooling) > now * 1000 then
    status = 1
    detail = cooling
  end
  if status == 0 and dup_key then
    local held = redis.call('GET', dup_key)
    if held and held ~= dup_expect then
      status = 4
      detail = held
    end
  end
  if status == 0 and inflight_key then
    redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', ARGV[1])
    local pending = redis.call('ZCARD', inflight_key)
    for c = 1, n_caps do
      redis.call('SET', caps[c][1], caps[c][3], 'NX', 'PX', caps[c][4])
      local total = tonumber(redis.call('GET', caps[c][1])) + pending
      if status == 0 and total >= caps[c][2] then
        status = 5
        detail = c .. ':' .. total
      end
    end
  end
  if status == 0 then
    redis.call('ZREMRANGEBYSCORE', lease_key, '-inf', ARGV[1])
    if redis.call('ZCARD', lease_key) >= limit then
      status = 2
    end
  end
  if status == 0 then
    local tokens, ts = bucket_read(bucket_key, capacity, refill, now)
    status = 3
    if tokens - 1 >= -1e-9 then
      tokens = tokens - 1
      status = 0
      redis.call('ZADD', lease_key, expires_at, lease_id)
      redis.call('PEXPIRE', lease_key, ttl_ms)
      if dup_key then
        redis.call('SET', dup_key, dup_value, 'PX', ttl_ms)
      end
      if inflight_key then
        redis.call('ZADD', inflight_key, expires_at, lease_id)
        redis.call('PEXPIRE', inflight_key, ttl_ms)
      end
    end
    detail = bucket_write(bucket_key, tokens, ts, capacity, refill)
  end
  out[#out + 1] = {status, detail}
end
return out
"""
)

# Settle one reservation. ARGV: op (keep, release, give_back), token, pending value, has
# in-flight set, has duplicate key, won value ("" unless a kept call is written), its hold in
# ms; KEYS: [in-flight set], [duplicate], cap counters...
# A counter that expired is not re-created: its next seed comes from the database.
_SETTLE_LUA = """
local op, token, pending = ARGV[1], ARGV[2], ARGV[3]
local k = 1
local inflight, dup = nil, nil
if ARGV[4] == '1' then
  inflight = KEYS[k]
  k = k + 1
end
if ARGV[5] == '1' then
  dup = KEYS[k]
  k = k + 1
end
if op == 'keep' then
  if inflight and redis.call('ZREM', inflight, token) == 1 then
    for i = k, #KEYS do
      if redis.call('EXISTS', KEYS[i]) == 1 then
        redis.call('INCR', KEYS[i])
      end
    end
  end
  if dup and ARGV[6] ~= '' and redis.call('GET', dup) == pending then
    redis.call('SET', dup, ARGV[6], 'PX', ARGV[7])
  end
  return 1
end
if op == 'release' then
  if inflight then
    redis.call('ZREM', inflight, token)
  end
else
  for i = k, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('DECR', KEYS[i])
    end
  end
end
if dup and redis.call('GET', dup) == pending then
  redis.call('DEL', dup)
end
return 1
"""

# Compare and swap one duplicate key: replace (or delete, for an empty value) only when it
# still holds the expected value, so nobody clears a hold that another route has taken since.
_SWAP_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  return 1
end
return 0
"""

_CAP_TOTAL_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return (tonumber(redis.call('GET', KEYS[2])) or 0) + redis.call('ZCARD', KEYS[1])
"""


def _refused_admission(item: _AdmitItem, status: int, detail: str) -> Admission:
    grid_id = item.request.grid_id
    if status == 4:
        return Admission(grid_id=grid_id, refused="duplicate", holder=detail)
    if status == 5:
        index, total = detail.split(":")
        return Admission(
            grid_id=grid_id, refused="cap", cap_index=int(index) - 1, cap_total=int(total)
        )
    if status == 1:
        until = datetime.fromtimestamp(int(float(detail)) / 1000, tz=UTC)
        return Admission(grid_id=grid_id, refused="cooldown", cooldown_until=until)
    if status == 2:
        return Admission(grid_id=grid_id, refused="concurrency")
    tokens = float(detail)
    return Admission(
        grid_id=grid_id, refused="rate_limit", retry_after=max(1 - tokens, 0.0) / item.refill
    )


# Refill arithmetic in floats may land a hair under a whole token.
_EPSILON = 1e-9

_SCRIPTS: dict[str, Any] = {}
_SCRIPTS_LOCK = threading.Lock()


def _decision(allowed: bool, tokens: float, capacity: float, refill: float) -> RateDecision:
    retry_after = 0.0 if tokens >= 1 - _EPSILON else (1 - tokens) / refill
    return RateDecision(allowed=allowed, tokens=tokens, capacity=capacity, retry_after=retry_after)


class _RedisStore:
    """Limits as Lua scripts on the cache's own Redis connection pool."""

    def __init__(self, backend: RedisCache) -> None:
        self.backend = backend

    def _client(self) -> Any:
        """The cache's redis-py client for writes, built once per cache object.

        Django's ``get_client`` builds a new ``Redis`` object on every call; over the same
        connection pool that is pure overhead on the live path, so the first one is kept.
        Cache objects are per thread, so the client is too.
        """
        inner = self.backend._cache
        client = getattr(inner, "_callgrid_limits_client", None)
        if client is None:
            client = inner.get_client(None, write=True)
            # A memo on the cache's own client object, which no stub declares.
            inner._callgrid_limits_client = client  # type: ignore[attr-defined]
        return client

    def _run(self, name: str, lua: str, key: str, args: list[Any]) -> Any:
        full_key = self._key(key)
        # Django keeps its redis-py client private; it is the documented way to reach the
        # server for commands the cache API lacks (EVALSHA here), sharing its pool.
        client = self._client()
        script = _SCRIPTS.get(name)
        if script is None:
            with _SCRIPTS_LOCK:
                script = _SCRIPTS.setdefault(name, client.register_script(lua))
        return script(keys=[full_key], args=args, client=client)

    @_or_local
    def bucket(
        self, key: str, *, capacity: float, refill: float, cost: float, keep: float, now: float
    ) -> RateDecision:
        allowed, tokens = self._run(
            "bucket", _BUCKET_LUA, key, [capacity, refill, repr(now), cost, keep]
        )
        return _decision(bool(int(allowed)), float(tokens), capacity, refill)

    @_or_local
    def lease_acquire(
        self, key: str, *, lease_id: str, limit: int, now: float, expires_at: float
    ) -> bool:
        ttl_ms = int((expires_at - now) * 1000) + 1000
        taken = self._run(
            "lease_acquire",
            _LEASE_ACQUIRE_LUA,
            key,
            [lease_id, limit, repr(now), repr(expires_at), ttl_ms],
        )
        return bool(int(taken))

    @_or_local
    def lease_release(self, key: str, *, lease_id: str) -> None:
        full_key = self._key(key)
        self._client().zrem(full_key, lease_id)

    @_or_local
    def lease_release_many(self, leases: list[Lease]) -> None:
        keys = [self._key(_LEASE_KEY.format(grid_id=lease.grid_id)) for lease in leases]
        pipe = self._client().pipeline(transaction=False)
        for key, lease in zip(keys, leases, strict=True):
            pipe.zrem(key, lease.lease_id)
        pipe.execute()

    @_or_local
    def admit(self, items: list[_AdmitItem], *, now: float) -> list[Admission]:
        keys: list[str] = []
        args: list[Any] = [repr(now)]
        for item in items:
            grid_id = item.request.grid_id
            keys += [
                self._key(_COOLDOWN_KEY.format(grid_id=grid_id)),
                self._key(_LEASE_KEY.format(grid_id=grid_id)),
                self._key(_RATE_KEY.format(grid_id=grid_id)),
            ]
            reserve = item.request.reserve
            caps = reserve.caps if reserve else ()
            dup = reserve.duplicate_key if reserve else ""
            args += [
                item.lease_id,
                max(int(item.request.max_concurrency), 1),
                item.capacity,
                item.refill,
                repr(item.expires_at),
                int((item.expires_at - now) * 1000) + 1000,
                "1" if dup else "0",
                _PENDING + item.lease_id,
                reserve.duplicate_expect if reserve else "",
                len(caps),
            ]
            if dup:
                keys.append(self._key(dup))
            if caps:
                buyer_id = reserve.buyer_id  # type: ignore[union-attr]
                keys.append(self._key(_CAP_INFLIGHT_KEY.format(buyer_id=buyer_id)))
                for cap in caps:
                    keys.append(self._key(cap.key))
                    args += [cap.limit, cap.seed, max(int(cap.ttl_seconds * 1000), 1000)]
        replies = self._script("admit", _ADMIT_LUA)(keys=keys, args=args, client=self._client())
        admissions: list[Admission] = []
        for item, (status, detail) in zip(items, replies, strict=True):
            detail = detail.decode() if isinstance(detail, bytes) else str(detail)
            if int(status) == 0:
                lease = Lease(item.request.grid_id, item.lease_id, item.expires_at)
                admissions.append(
                    Admission(
                        grid_id=item.request.grid_id,
                        lease=lease,
                        reservation=_reservation_for(item),
                    )
                )
            else:
                admissions.append(_refused_admission(item, int(status), detail))
        return admissions

    def _key(self, key: str) -> str:
        # The keys are built here from grid IDs (letters and digits) and numbers, so the
        # memcached-safety scan of make_and_validate_key (a loop over every character, for
        # every key of an auction) would never find anything.
        return self.backend.make_key(key)

    def _script(self, name: str, lua: str) -> Any:
        script = _SCRIPTS.get(name)
        if script is None:
            with _SCRIPTS_LOCK:
                script = _SCRIPTS.setdefault(name, self._client().register_script(lua))
        return script

    @_or_local
    def settle(self, leases: list[Lease], ops: list[tuple[str, Reservation, str, int]]) -> None:
        try:
            self._settle(leases, ops, by_sha=True)
        except NoScriptError:
            # Redis lost its scripts (restart, SCRIPT FLUSH). Every step is safe to repeat:
            # a slot or reservation already given back is simply not found again.
            self._settle(leases, ops, by_sha=False)

    def _settle(
        self, leases: list[Lease], ops: list[tuple[str, Reservation, str, int]], *, by_sha: bool
    ) -> None:
        """One pipelined round trip; ``by_sha`` skips redis-py's SCRIPT EXISTS check first.

        A pipeline running a registered script asks the server whether it is loaded before
        every execution, a second round trip on each route; EVALSHA alone answers NOSCRIPT
        in the rare case it is not, and :meth:`settle` then goes the checked way.
        """
        pipe = self._client().pipeline(transaction=False)
        for lease in leases:
            pipe.zrem(self._key(_LEASE_KEY.format(grid_id=lease.grid_id)), lease.lease_id)
        settle = self._script("settle", _SETTLE_LUA)
        for op, reservation, won, hold_ms in ops:
            keys: list[str] = []
            if reservation.cap_keys:
                keys.append(self._key(_CAP_INFLIGHT_KEY.format(buyer_id=reservation.buyer_id)))
            if reservation.duplicate_key:
                keys.append(self._key(reservation.duplicate_key))
            keys += [self._key(key) for key in reservation.cap_keys]
            args = [
                op,
                reservation.token,
                reservation.pending_value,
                "1" if reservation.cap_keys else "0",
                "1" if reservation.duplicate_key else "0",
                won,
                hold_ms,
            ]
            if by_sha:
                pipe.evalsha(settle.sha, len(keys), *keys, *args)
            else:
                settle(keys=keys, args=args, client=pipe)
        pipe.execute()

    @_or_local
    def duplicate_swap(self, key: str, *, expect: str, value: str, ttl_seconds: float) -> None:
        self._script("swap", _SWAP_LUA)(
            keys=[self._key(key)],
            args=[expect, value, max(int(ttl_seconds * 1000), 1)],
            client=self._client(),
        )

    @_or_local
    def cap_total(self, buyer_id: int, key: str, *, now: float) -> int:
        inflight = self._key(_CAP_INFLIGHT_KEY.format(buyer_id=buyer_id))
        script = self._script("cap_total", _CAP_TOTAL_LUA)
        return int(script(keys=[inflight, self._key(key)], args=[repr(now)], client=self._client()))

    @_or_local
    def lease_count(self, key: str, *, now: float) -> int:
        return int(self._run("lease_count", _LEASE_COUNT_LUA, key, [repr(now)]))

    @_or_local
    def in_flight_count(self, key: str, *, now: float) -> int:
        # The cap's in-flight set is scored by expiry like a grid's slots.
        return self.lease_count(key, now=now)

    @_or_local
    def duplicate_value(self, key: str) -> str:
        value = self._client().get(self._key(key))
        return value.decode() if isinstance(value, bytes) else str(value or "")


class _FileLock:
    """An exclusive lock shared by the threads of this process and by other processes.

    ``flock`` excludes other open file descriptions, so each process opens its own; the
    thread lock is needed because threads of one process share that description. The file is
    reopened after a fork so a child never inherits (and so shares) its parent's lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.thread_lock = threading.Lock()
        self.fd: int | None = None
        self.pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.thread_lock:
            if self.fd is None or self.pid != os.getpid():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self.pid = os.getpid()
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)


_LOCK_STRIPES = 32
_FILE_LOCKS: dict[Path, _FileLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _stripe(key: str) -> int:
    # Striped by key so unrelated grids rarely wait for each other.
    return int(hashlib.blake2b(key.encode(), digest_size=2).hexdigest(), 16) % _LOCK_STRIPES


def _file_lock(key: str) -> _FileLock:
    stripe = _stripe(key)
    directory = Path(getattr(settings, "LIMITS_LOCK_DIR", settings.DATA_DIR / "locks"))
    path = directory / f"limits-{stripe:02d}.lock"
    with _FILE_LOCKS_GUARD:
        lock = _FILE_LOCKS.get(path)
        if lock is None:
            lock = _FILE_LOCKS[path] = _FileLock(path)
        return lock


class _ThreadLock:
    """A lock for the threads of this process only (the process-local limiter's)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.lock:
            yield


_THREAD_LOCKS = [_ThreadLock() for _ in range(_LOCK_STRIPES)]


def _thread_lock(key: str) -> _ThreadLock:
    return _THREAD_LOCKS[_stripe(key)]


class _LockedCacheStore:
    """Limits as read-modify-write of plain cache entries under a lock per key: a
    cross-process file lock for a shared cache, a thread lock for process-local memory."""

    def __init__(
        self, backend: Any, *, lock: Callable[[str], _FileLock | _ThreadLock] = _file_lock
    ) -> None:
        self.backend = backend
        self._lock = lock

    def _buyer_lock(self, buyer_id: int) -> _FileLock | _ThreadLock:
        # One lock per buyer for its caps and duplicate keys: a reservation touches several
        # keys of one buyer at once, and they must change together.
        return self._lock(f"limits:reserve:{buyer_id}")

    def bucket(
        self, key: str, *, capacity: float, refill: float, cost: float, keep: float, now: float
    ) -> RateDecision:
        with self._lock(key).held():
            state = self.backend.get(key) or {}
            tokens = float(state.get("tokens", capacity))
            ts = float(state.get("ts", now))
            if now > ts:
                tokens = min(capacity, tokens + (now - ts) * refill)
                ts = now
            if cost > 0:
                allowed = tokens - cost >= keep - _EPSILON
                if allowed:
                    tokens -= cost
            else:
                allowed = tokens >= 1 - _EPSILON
            self.backend.set(key, {"tokens": tokens, "ts": ts}, timeout=int(capacity / refill) + 2)
        return _decision(allowed, tokens, capacity, refill)

    def lease_acquire(
        self, key: str, *, lease_id: str, limit: int, now: float, expires_at: float
    ) -> bool:
        with self._lock(key).held():
            leases = self._live(key, now)
            if len(leases) >= limit:
                return False
            leases[lease_id] = expires_at
            self.backend.set(key, leases, timeout=int(max(leases.values()) - now) + 2)
            return True

    def lease_release(self, key: str, *, lease_id: str) -> None:
        with self._lock(key).held():
            now = time.time()
            leases = self._live(key, now)
            if leases.pop(lease_id, None) is None:
                return
            if leases:
                self.backend.set(key, leases, timeout=int(max(leases.values()) - now) + 2)
            else:
                self.backend.delete(key)

    def lease_count(self, key: str, *, now: float) -> int:
        return len(self._live(key, now))

    def in_flight_count(self, key: str, *, now: float) -> int:
        return len(self._inflight(key, now))

    def duplicate_value(self, key: str) -> str:
        return str(self.backend.get(key) or "")

    def lease_release_many(self, leases: list[Lease]) -> None:
        for lease in leases:
            self.lease_release(_LEASE_KEY.format(grid_id=lease.grid_id), lease_id=lease.lease_id)

    def admit(self, items: list[_AdmitItem], *, now: float) -> list[Admission]:
        # Grid by grid: each step is atomic under its key's lock (never two locks at once, so
        # stripes cannot deadlock), and a grid refused at a later step gives back what the
        # earlier steps took, so nothing leaks between the steps.
        admissions: list[Admission] = []
        for item in items:
            grid_id = item.request.grid_id
            cooling = self.backend.get(_COOLDOWN_KEY.format(grid_id=grid_id))
            if cooling is not None and int(cooling) > now * 1000:
                admissions.append(_refused_admission(item, 1, str(cooling)))
                continue
            reservation = _reservation_for(item)
            if reservation is not None:
                status, detail = self._reserve(item, now=now)
                if status:
                    admissions.append(_refused_admission(item, status, detail))
                    continue
            lease_key = _LEASE_KEY.format(grid_id=grid_id)
            if not self.lease_acquire(
                lease_key,
                lease_id=item.lease_id,
                limit=max(int(item.request.max_concurrency), 1),
                now=now,
                expires_at=item.expires_at,
            ):
                if reservation is not None:
                    self.settle([], [("release", reservation, "", 0)])
                admissions.append(_refused_admission(item, 2, "0"))
                continue
            rate = self.bucket(
                _RATE_KEY.format(grid_id=grid_id),
                capacity=item.capacity,
                refill=item.refill,
                cost=1.0,
                keep=0.0,
                now=now,
            )
            if not rate.allowed:
                self.lease_release(lease_key, lease_id=item.lease_id)
                if reservation is not None:
                    self.settle([], [("release", reservation, "", 0)])
                admissions.append(_refused_admission(item, 3, repr(rate.tokens)))
                continue
            lease = Lease(grid_id, item.lease_id, item.expires_at)
            admissions.append(Admission(grid_id=grid_id, lease=lease, reservation=reservation))
        return admissions

    def _reserve(self, item: _AdmitItem, *, now: float) -> tuple[int, str]:
        """The duplicate and cap steps of the admission script, under the buyer's lock."""
        reserve = item.request.reserve
        assert reserve is not None
        ttl = int(item.expires_at - now) + 2
        inflight_key = _CAP_INFLIGHT_KEY.format(buyer_id=reserve.buyer_id)
        with self._buyer_lock(reserve.buyer_id).held():
            if reserve.duplicate_key:
                held = self.backend.get(reserve.duplicate_key)
                if held is not None and held != reserve.duplicate_expect:
                    return 4, str(held)
            if reserve.caps:
                inflight = self._inflight(inflight_key, now)
                for number, cap in enumerate(reserve.caps, start=1):
                    committed = self._counter(cap.key)
                    if committed is None:
                        committed = int(cap.seed)
                        self._counter_set(cap.key, committed, until=now + cap.ttl_seconds)
                    total = committed + len(inflight)
                    if total >= cap.limit:
                        return 5, f"{number}:{total}"
                inflight[item.lease_id] = item.expires_at
                self.backend.set(inflight_key, inflight, timeout=ttl)
            if reserve.duplicate_key:
                self.backend.set(reserve.duplicate_key, _PENDING + item.lease_id, timeout=ttl)
        return 0, ""

    def _inflight(self, key: str, now: float) -> dict[str, float]:
        held = self.backend.get(key) or {}
        return {token: expiry for token, expiry in held.items() if expiry > now}

    def settle(self, leases: list[Lease], ops: list[tuple[str, Reservation, str, int]]) -> None:
        self.lease_release_many(leases)
        for op, reservation, won, hold_ms in ops:
            inflight_key = _CAP_INFLIGHT_KEY.format(buyer_id=reservation.buyer_id)
            with self._buyer_lock(reservation.buyer_id).held():
                now = time.time()
                inflight = self._inflight(inflight_key, now) if reservation.cap_keys else {}
                was_in_flight = inflight.pop(reservation.token, None) is not None
                if reservation.cap_keys and op in ("keep", "release"):
                    if inflight:
                        timeout = int(max(inflight.values()) - now) + 2
                        self.backend.set(inflight_key, inflight, timeout=timeout)
                    else:
                        self.backend.delete(inflight_key)
                step = {"keep": 1 if was_in_flight else 0, "give_back": -1}.get(op, 0)
                for key in reservation.cap_keys if step else ():
                    state = self.backend.get(key)
                    if state is not None:  # expired: the next seed comes from the database
                        self._counter_set(key, int(state[0]) + step, until=float(state[1]))
                dup = reservation.duplicate_key
                if not dup or self.backend.get(dup) != reservation.pending_value:
                    continue
                if op != "keep":
                    self.backend.delete(dup)
                elif won:
                    self.backend.set(dup, won, timeout=max(hold_ms // 1000, 1))

    def duplicate_swap(self, key: str, *, expect: str, value: str, ttl_seconds: float) -> None:
        buyer_id = int(key.split(":")[2])
        with self._buyer_lock(buyer_id).held():
            if self.backend.get(key) != expect:
                return
            if value:
                self.backend.set(key, value, timeout=max(int(ttl_seconds), 1))
            else:
                self.backend.delete(key)

    def cap_total(self, buyer_id: int, key: str, *, now: float) -> int:
        inflight = self._inflight(_CAP_INFLIGHT_KEY.format(buyer_id=buyer_id), now)
        return (self._counter(key) or 0) + len(inflight)

    def _counter(self, key: str) -> int | None:
        state = self.backend.get(key)
        return None if state is None else int(state[0])

    def _counter_set(self, key: str, count: int, *, until: float) -> None:
        # The expiry travels with the count: the file cache cannot tell a key's remaining
        # time, and a plain set would restart it (Django's incr does exactly that).
        timeout = max(int(until - time.time()), 1)
        self.backend.set(key, (count, until), timeout=timeout)

    def _live(self, key: str, now: float) -> dict[str, float]:
        leases = self.backend.get(key) or {}
        return {lease: expiry for lease, expiry in leases.items() if expiry > now}
