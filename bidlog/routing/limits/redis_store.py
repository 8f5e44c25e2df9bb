"""The limits on Redis: each check-and-update is one Lua script, and a local stand-in while
Redis is away.

Redis runs a script atomically, so two gunicorn processes can never both take the last token.
Each operation that cannot reach Redis runs on a process-local store instead (the same
arithmetic over local memory, under thread locks). It is weaker: each process counts only its
own requests, so a fleet of N processes may let up to N times a grid's limits through, and
reservations taken in Redis before the outage are not seen. For ``REDIS_RETRY_SECONDS`` after
a failure every operation goes local without trying Redis (a Redis that hangs would otherwise
cost each request a timeout); then the next operation tries Redis again, and the first that
works brings every process's limits back to it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis import Redis
from redis.exceptions import NoScriptError

from bidlog.routing.limits.keys import (
    CAP_INFLIGHT_KEY,
    COOLDOWN_KEY,
    LEASE_KEY,
    PENDING,
    RATE_KEY,
)
from bidlog.routing.limits.local_store import LockedCacheStore, thread_lock
from bidlog.routing.limits.records import (
    Admission,
    AdmitItem,
    Lease,
    RateDecision,
    SettleOp,
    admitted,
    rate_decision,
    refused_admission,
)
from bidlog.routing.limits.scripts import script
from callgrid_portal.outage import REDIS_ERRORS, Outage

redis_outage = Outage(
    "Redis for the shared limits",
    effect="per-grid limits fall back to a process-local limiter (weaker: per process)",
)
_local_lock = threading.Lock()
_local: LockedCacheStore | None = None


def local_store() -> LockedCacheStore:
    """The process-local limiter's store, made on first use."""
    global _local
    if _local is None:
        with _local_lock:
            if _local is None:
                options = {"OPTIONS": {"MAX_ENTRIES": 100_000}}
                backend = LocMemCache("callgrid-limits-local", options)
                _local = LockedCacheStore(backend, lock=thread_lock)
    return _local


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _or_local(
    method: Callable[Concatenate[RedisStore, _P], _R],
) -> Callable[Concatenate[RedisStore, _P], _R]:
    """Run a Redis store operation, or the same operation on the local store when Redis
    cannot be reached (see the module)."""
    name = method.__name__

    @functools.wraps(method)
    def guarded(self: RedisStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if redis_outage.resting(settings.REDIS_RETRY_SECONDS):
            return cast(_R, getattr(local_store(), name)(*args, **kwargs))
        try:
            result = method(self, *args, **kwargs)
        except REDIS_ERRORS as exc:
            redis_outage.failed(exc)
            return cast(_R, getattr(local_store(), name)(*args, **kwargs))
        redis_outage.recovered()
        return result

    return guarded


# Options of Django's RedisCache that configure Django itself, not the connection pool.
_DJANGO_ONLY_OPTIONS = ("serializer", "parser_class", "pool_class")
_clients: dict[tuple[str, str], Redis] = {}
_clients_lock = threading.Lock()


def redis_client(config: dict[str, Any]) -> Redis:
    """A redis-py client of the cache configured by ``config`` (one ``CACHES`` entry).

    Built from the cache's own settings, its first (write) server and its connection options
    (timeouts), once per process and server: redis-py clients are thread-safe and keep their
    own connection pool. Django's ``RedisCache`` has no public way to hand out its client.
    """
    location = config["LOCATION"]
    if isinstance(location, str):
        location = location.split(",")
    options = {
        name: value
        for name, value in config.get("OPTIONS", {}).items()
        if name not in _DJANGO_ONLY_OPTIONS
    }
    key = (location[0], repr(sorted(options.items())))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.setdefault(key, Redis.from_url(location[0], **options))
    return client


class RedisStore:
    """Limits as Lua scripts (``lua/``) on a redis-py client of the cache's Redis server."""

    def __init__(self, backend: RedisCache, client: Redis) -> None:
        self.backend = backend
        self.client = client

    def _key(self, key: str) -> str:
        # The keys are built here from grid IDs (letters and digits) and numbers, so the
        # memcached-safety scan of make_and_validate_key (a loop over every character, for
        # every key of an auction) would never find anything.
        return self.backend.make_key(key)

    def _run(self, name: str, key: str, args: list[Any]) -> Any:
        return script(name, self.client)(keys=[self._key(key)], args=args, client=self.client)

    @_or_local
    def bucket(
        self, key: str, *, capacity: float, refill: float, cost: float, keep: float, now: float
    ) -> RateDecision:
        """Take ``cost`` tokens if ``keep`` stay behind (0: only look): lua/bucket.lua."""
        allowed, tokens = self._run("bucket", key, [capacity, refill, repr(now), cost, keep])
        return rate_decision(bool(int(allowed)), float(tokens), capacity, refill)

    @_or_local
    def lease_acquire(
        self, key: str, *, lease_id: str, limit: int, now: float, expires_at: float
    ) -> bool:
        """Take one of ``limit`` slots; whether one was free (lua/lease_acquire.lua)."""
        ttl_ms = int((expires_at - now) * 1000) + 1000
        args = [lease_id, limit, repr(now), repr(expires_at), ttl_ms]
        return bool(int(self._run("lease_acquire", key, args)))

    @_or_local
    def lease_release(self, key: str, *, lease_id: str) -> None:
        """Give a slot back (nothing when it is gone already)."""
        self.client.zrem(self._key(key), lease_id)

    @_or_local
    def lease_release_many(self, leases: list[Lease]) -> None:
        """Give several slots back in one pipelined round trip."""
        keys = [self._key(LEASE_KEY.format(grid_id=lease.grid_id)) for lease in leases]
        pipe = self.client.pipeline(transaction=False)
        for key, lease in zip(keys, leases, strict=True):
            pipe.zrem(key, lease.lease_id)
        pipe.execute()

    @_or_local
    def admit(self, items: list[AdmitItem], *, now: float) -> list[Admission]:
        """Admit each grid or not, all in one script (lua/admit.lua)."""
        keys: list[str] = []
        args: list[Any] = [repr(now)]
        for item in items:
            self._admit_arguments(item, now=now, keys=keys, args=args)
        client = self.client
        replies = script("admit", client)(keys=keys, args=args, client=client)
        admissions: list[Admission] = []
        for item, (status, detail) in zip(items, replies, strict=True):
            detail = detail.decode() if isinstance(detail, bytes) else str(detail)
            if int(status) == 0:
                admissions.append(admitted(item))
            else:
                admissions.append(refused_admission(item, int(status), detail))
        return admissions

    def _admit_arguments(
        self, item: AdmitItem, *, now: float, keys: list[str], args: list[Any]
    ) -> None:
        """Append one grid's KEYS and ARGV, in the order lua/admit.lua reads them."""
        grid_id = item.request.grid_id
        keys += [
            self._key(COOLDOWN_KEY.format(grid_id=grid_id)),
            self._key(LEASE_KEY.format(grid_id=grid_id)),
            self._key(RATE_KEY.format(grid_id=grid_id)),
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
            PENDING + item.lease_id,
            reserve.duplicate_expect if reserve else "",
            len(caps),
        ]
        if dup:
            keys.append(self._key(dup))
        if reserve is not None and caps:
            keys.append(self._key(CAP_INFLIGHT_KEY.format(buyer_id=reserve.buyer_id)))
            for cap in caps:
                keys.append(self._key(cap.key))
                args += [cap.limit, cap.seed, max(int(cap.ttl_seconds * 1000), 1000)]

    @_or_local
    def settle(self, leases: list[Lease], ops: list[SettleOp]) -> None:
        """Give slots back and settle reservations in one round trip (lua/settle.lua)."""
        try:
            self._settle(leases, ops, by_sha=True)
        except NoScriptError:
            # Redis lost its scripts (restart, SCRIPT FLUSH). Every step is safe to repeat:
            # a slot or reservation already given back is simply not found again.
            self._settle(leases, ops, by_sha=False)

    def _settle(self, leases: list[Lease], ops: list[SettleOp], *, by_sha: bool) -> None:
        """One pipelined round trip; ``by_sha`` skips redis-py's SCRIPT EXISTS check first.

        A pipeline running a registered script asks the server whether it is loaded before
        every execution, a second round trip on each route; EVALSHA alone answers NOSCRIPT
        in the rare case it is not, and :meth:`settle` then goes the checked way.
        """
        pipe = self.client.pipeline(transaction=False)
        for lease in leases:
            pipe.zrem(self._key(LEASE_KEY.format(grid_id=lease.grid_id)), lease.lease_id)
        settle = script("settle", self.client)
        for op, reservation, won, hold_ms in ops:
            keys: list[str] = []
            if reservation.cap_keys:
                keys.append(self._key(CAP_INFLIGHT_KEY.format(buyer_id=reservation.buyer_id)))
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
        """Replace (or delete, for ``""``) a duplicate key that still holds ``expect``."""
        self._run("swap", key, [expect, value, max(int(ttl_seconds * 1000), 1)])

    @_or_local
    def cap_total(self, buyer_id: int, key: str, *, now: float) -> int:
        """A cap's committed count plus the buyer's reservations in flight."""
        inflight = self._key(CAP_INFLIGHT_KEY.format(buyer_id=buyer_id))
        client = self.client
        total = script("cap_total", client)(
            keys=[inflight, self._key(key)], args=[repr(now)], client=client
        )
        return int(total)

    @_or_local
    def lease_count(self, key: str, *, now: float) -> int:
        """Unexpired slots held (lua/lease_count.lua)."""
        return int(self._run("lease_count", key, [repr(now)]))

    @_or_local
    def in_flight_count(self, key: str, *, now: float) -> int:
        """Unexpired cap reservations in flight, scored by expiry like a grid's slots."""
        return self.lease_count(key, now=now)

    @_or_local
    def duplicate_value(self, key: str) -> str:
        """What a duplicate key holds, or ``""``."""
        value = self.client.get(self._key(key))
        return value.decode() if isinstance(value, bytes) else str(value or "")
