"""Django's Redis cache, failing open: while Redis is unreachable it answers as an empty cache.

What lives in the cache is a speed-up or a courtesy (the API throttle's history, cooldowns),
never the only copy of anything, so a request that only needed the cache must not fail with
it. Reads return their default, writes are dropped, and one warning is logged per outage
(:class:`callgrid_portal.outage.Outage`); the first command that works again ends it.
``incr``/``decr`` still raise: they have no value to make up. The shared limits do not go
through these methods (they run Lua scripts on the client) and fall back on their own
(``bidlog.limits``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

from callgrid_portal.outage import REDIS_ERRORS, Outage

cache_outage = Outage("the cache (Redis)", effect="caches answer empty and throttles let through")


class FailOpenRedisCache(RedisCache):
    """:class:`RedisCache` whose reads and writes survive Redis being away (see module)."""

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            value = super().get(key, default, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return default
        cache_outage.recovered()
        return value

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        try:
            values = super().get_many(keys, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return {}
        cache_outage.recovered()
        return values

    def has_key(self, key: Any, version: int | None = None) -> bool:
        try:
            found = super().has_key(key, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return False
        cache_outage.recovered()
        return found

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        try:
            added = super().add(key, value, timeout, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return False
        cache_outage.recovered()
        return added

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        try:
            super().set(key, value, timeout, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return
        cache_outage.recovered()

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        try:
            failed = super().set_many(data, timeout, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return list(data)
        cache_outage.recovered()
        return failed

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        try:
            touched = super().touch(key, timeout, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return False
        cache_outage.recovered()
        return touched

    def delete(self, key: Any, version: int | None = None) -> bool:
        try:
            deleted = super().delete(key, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return False
        cache_outage.recovered()
        return deleted

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        try:
            super().delete_many(keys, version)
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return
        cache_outage.recovered()

    def clear(self) -> None:
        try:
            super().clear()
        except REDIS_ERRORS as exc:
            cache_outage.failed(exc)
            return
        cache_outage.recovered()
