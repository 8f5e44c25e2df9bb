"""Which store does the limits' arithmetic: Redis, or the locked cache of any other backend."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from bidlog.routing.limits.local_store import LockedCacheStore
from bidlog.routing.limits.redis_store import RedisStore, redis_client, redis_outage


def store() -> RedisStore | LockedCacheStore:
    """The store of the default cache; chosen per call, since tests switch ``CACHES``."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return RedisStore(backend, redis_client(settings.CACHES["default"]))
    return LockedCacheStore(backend)


def limits_store_kind() -> str:
    """Where the limits live right now: ``redis``, ``local`` (Redis away) or ``cache``."""
    if not isinstance(caches["default"], RedisCache):
        return "cache"
    return "local" if redis_outage.down else "redis"
