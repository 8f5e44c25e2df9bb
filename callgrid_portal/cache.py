"""Django's Redis cache, failing open: while Redis is unreachable it answers as an empty cache.

What lives in the cache is a speed-up or a courtesy (the API throttle's history, cooldowns),
never the only copy of anything, so a request that only needed the cache must not fail with
it. Reads return their default, writes are dropped, and one warning is logged per outage
(:class:`callgrid_portal.outage.Outage`). For ``REDIS_RETRY_SECONDS`` after a failure the
cache does not even try Redis (a Redis that hangs would cost every request a timeout); then
the next command tries again, and the first that works ends the outage. ``incr``/``decr``
still raise: they have no value to make up. The shared limits do not go through these
methods (they run Lua scripts on the client) and fall back on their own (``bidlog.routing.limits``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

from callgrid_portal.outage import REDIS_ERRORS, Outage

cache_outage = Outage("the cache (Redis)", effect="caches answer empty and throttles let through")

_T = TypeVar("_T")


class FailOpenRedisCache(RedisCache):
    """:class:`RedisCache` whose reads and writes survive Redis being away (see module)."""

    @staticmethod
    def _fail_open(fallback: _T, command: Callable[..., _T], *args: Any) -> _T:
        """``command(*args)``, or ``fallback`` while Redis cannot be reached."""
        if cache_outage.resting(settings.REDIS_RETRY_SECONDS):
            return fallback
        try:
            result = command(*args)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return fallback
        cache_outage.recovered()
        return result

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._fail_open(default, super().get, key, default, version)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return self._fail_open({}, super().get_many, keys, version)

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._fail_open(False, super().has_key, key, version)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._fail_open(False, super().add, key, value, timeout, version)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._fail_open(None, super().set, key, value, timeout, version)

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return self._fail_open(list(data), super().set_many, data, timeout, version)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._fail_open(False, super().touch, key, timeout, version)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._fail_open(False, super().delete, key, version)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        self._fail_open(None, super().delete_many, keys, version)

    def clear(self) -> None:
        self._fail_open(None, super().clear)
