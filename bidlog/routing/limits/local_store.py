"""The limits on any cache but Redis: read-modify-write of plain entries under a lock per key.

``FileBasedCache.incr`` is a plain get-then-set and would lose updates between processes, so
the file cache of the embedded default is changed under an ``fcntl`` file lock (plus a thread
lock). The process-local limiter that stands in while Redis is away runs the same arithmetic
over local memory under thread locks only.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from bidlog.routing.limits.keys import (
    CAP_INFLIGHT_KEY,
    COOLDOWN_KEY,
    LEASE_KEY,
    PENDING,
    RATE_KEY,
    buyer_of_duplicate_key,
)
from bidlog.routing.limits.records import (
    EPSILON,
    REFUSED_CAP,
    REFUSED_CONCURRENCY,
    REFUSED_COOLDOWN,
    REFUSED_DUPLICATE,
    REFUSED_RATE_LIMIT,
    Admission,
    AdmitItem,
    Lease,
    RateDecision,
    Reservation,
    SettleOp,
    admitted,
    rate_decision,
    refused_admission,
    reservation_for,
)


class FileLock:
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
        """Hold the lock for the ``with`` block."""
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


class ThreadLock:
    """A lock for the threads of this process only (the process-local limiter's)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the ``with`` block."""
        with self.lock:
            yield


_LOCK_STRIPES = 32
_FILE_LOCKS: dict[Path, FileLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()
_THREAD_LOCKS = [ThreadLock() for _ in range(_LOCK_STRIPES)]


def _stripe(key: str) -> int:
    # Striped by key so unrelated grids rarely wait for each other.
    return int(hashlib.blake2b(key.encode(), digest_size=2).hexdigest(), 16) % _LOCK_STRIPES


def file_lock(key: str) -> FileLock:
    """The cross-process lock of ``key``'s stripe, under ``LIMITS_LOCK_DIR``."""
    path = Path(settings.LIMITS_LOCK_DIR) / f"limits-{_stripe(key):02d}.lock"
    with _FILE_LOCKS_GUARD:
        lock = _FILE_LOCKS.get(path)
        if lock is None:
            lock = _FILE_LOCKS[path] = FileLock(path)
        return lock


def thread_lock(key: str) -> ThreadLock:
    """The in-process lock of ``key``'s stripe."""
    return _THREAD_LOCKS[_stripe(key)]


class LockedCacheStore:
    """Limits as read-modify-write of plain cache entries under a lock per key: a
    cross-process file lock for a shared cache, a thread lock for process-local memory."""

    def __init__(
        self, backend: Any, *, lock: Callable[[str], FileLock | ThreadLock] = file_lock
    ) -> None:
        self.backend = backend
        self._lock = lock

    def _buyer_lock(self, buyer_id: int) -> FileLock | ThreadLock:
        # One lock per buyer for its caps and duplicate keys: a reservation touches several
        # keys of one buyer at once, and they must change together.
        return self._lock(f"limits:reserve:{buyer_id}")

    def bucket(
        self, key: str, *, capacity: float, refill: float, cost: float, keep: float, now: float
    ) -> RateDecision:
        """Take ``cost`` tokens if ``keep`` stay behind (0: only look), as lua/bucket.lua."""
        with self._lock(key).held():
            state = self.backend.get(key) or {}
            tokens = float(state.get("tokens", capacity))
            ts = float(state.get("ts", now))
            if now > ts:
                tokens = min(capacity, tokens + (now - ts) * refill)
                ts = now
            if cost > 0:
                allowed = tokens - cost >= keep - EPSILON
                if allowed:
                    tokens -= cost
            else:
                allowed = tokens >= 1 - EPSILON
            self.backend.set(key, {"tokens": tokens, "ts": ts}, timeout=int(capacity / refill) + 2)
        return rate_decision(allowed, tokens, capacity, refill)

    def lease_acquire(
        self, key: str, *, lease_id: str, limit: int, now: float, expires_at: float
    ) -> bool:
        """Take one of ``limit`` slots; whether one was free."""
        with self._lock(key).held():
            leases = self._live(key, now)
            if len(leases) >= limit:
                return False
            leases[lease_id] = expires_at
            self.backend.set(key, leases, timeout=int(max(leases.values()) - now) + 2)
            return True

    def lease_release(self, key: str, *, lease_id: str) -> None:
        """Give a slot back (nothing when it is gone already)."""
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
        """Unexpired slots held."""
        return len(self._live(key, now))

    def in_flight_count(self, key: str, *, now: float) -> int:
        """Unexpired cap reservations in flight."""
        return len(self._inflight(key, now))

    def duplicate_value(self, key: str) -> str:
        """What a duplicate key holds, or ``""``."""
        return str(self.backend.get(key) or "")

    def lease_release_many(self, leases: list[Lease]) -> None:
        """Give several slots back."""
        for lease in leases:
            self.lease_release(LEASE_KEY.format(grid_id=lease.grid_id), lease_id=lease.lease_id)

    def admit(self, items: list[AdmitItem], *, now: float) -> list[Admission]:
        """Admit each grid or not, with the steps and order of lua/admit.lua.

        Grid by grid: each step is atomic under its key's lock (never two locks at once, so
        stripes cannot deadlock), and a grid refused at a later step gives back what the
        earlier steps took, so nothing leaks between the steps.
        """
        return [self._admit_one(item, now=now) for item in items]

    def _admit_one(self, item: AdmitItem, *, now: float) -> Admission:
        grid_id = item.request.grid_id
        cooling = self.backend.get(COOLDOWN_KEY.format(grid_id=grid_id))
        if cooling is not None and int(cooling) > now * 1000:
            return refused_admission(item, REFUSED_COOLDOWN, str(cooling))
        reservation = reservation_for(item)
        if reservation is not None:
            status, detail = self._reserve(item, now=now)
            if status:
                return refused_admission(item, status, detail)
        lease_key = LEASE_KEY.format(grid_id=grid_id)
        limit = max(int(item.request.max_concurrency), 1)
        if not self.lease_acquire(
            lease_key, lease_id=item.lease_id, limit=limit, now=now, expires_at=item.expires_at
        ):
            if reservation is not None:
                self.settle([], [("release", reservation, "", 0)])
            return refused_admission(item, REFUSED_CONCURRENCY, "0")
        rate = self.bucket(
            RATE_KEY.format(grid_id=grid_id),
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
            return refused_admission(item, REFUSED_RATE_LIMIT, repr(rate.tokens))
        return admitted(item)

    def _reserve(self, item: AdmitItem, *, now: float) -> tuple[int, str]:
        """The duplicate and cap steps of the admission script, under the buyer's lock."""
        reserve = item.request.reserve
        assert reserve is not None
        ttl = int(item.expires_at - now) + 2
        inflight_key = CAP_INFLIGHT_KEY.format(buyer_id=reserve.buyer_id)
        with self._buyer_lock(reserve.buyer_id).held():
            if reserve.duplicate_key:
                held = self.backend.get(reserve.duplicate_key)
                if held is not None and held != reserve.duplicate_expect:
                    return REFUSED_DUPLICATE, str(held)
            if reserve.caps:
                inflight = self._inflight(inflight_key, now)
                for number, cap in enumerate(reserve.caps, start=1):
                    committed = self._counter(cap.key)
                    if committed is None:
                        committed = int(cap.seed)
                        self._counter_set(cap.key, committed, until=now + cap.ttl_seconds)
                    total = committed + len(inflight)
                    if total >= cap.limit:
                        return REFUSED_CAP, f"{number}:{total}"
                inflight[item.lease_id] = item.expires_at
                self.backend.set(inflight_key, inflight, timeout=ttl)
            if reserve.duplicate_key:
                self.backend.set(reserve.duplicate_key, PENDING + item.lease_id, timeout=ttl)
        return 0, ""

    def _inflight(self, key: str, now: float) -> dict[str, float]:
        held = self.backend.get(key) or {}
        return {token: expiry for token, expiry in held.items() if expiry > now}

    def settle(self, leases: list[Lease], ops: list[SettleOp]) -> None:
        """Give slots back and settle reservations, as lua/settle.lua does for each."""
        self.lease_release_many(leases)
        for op, reservation, won, hold_ms in ops:
            with self._buyer_lock(reservation.buyer_id).held():
                self._settle_one(op, reservation, won, hold_ms)

    def _settle_one(self, op: str, reservation: Reservation, won: str, hold_ms: int) -> None:
        inflight_key = CAP_INFLIGHT_KEY.format(buyer_id=reservation.buyer_id)
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
            return
        if op != "keep":
            self.backend.delete(dup)
        elif won:
            self.backend.set(dup, won, timeout=max(hold_ms // 1000, 1))

    def duplicate_swap(self, key: str, *, expect: str, value: str, ttl_seconds: float) -> None:
        """Replace (or delete, for ``""``) a duplicate key that still holds ``expect``."""
        with self._buyer_lock(buyer_of_duplicate_key(key)).held():
            if self.backend.get(key) != expect:
                return
            if value:
                self.backend.set(key, value, timeout=max(int(ttl_seconds), 1))
            else:
                self.backend.delete(key)

    def cap_total(self, buyer_id: int, key: str, *, now: float) -> int:
        """A cap's committed count plus the buyer's reservations in flight."""
        inflight = self._inflight(CAP_INFLIGHT_KEY.format(buyer_id=buyer_id), now)
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
